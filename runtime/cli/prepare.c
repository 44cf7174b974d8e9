/* `ponder prepare`: text or JSONL files -> token shards for training, split
 * into train and validation by document (docs/data-format.md). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cli/commands.h"
#include "runtime/tokenizer/docs.h"
#include "runtime/tokenizer/shard.h"
#include "runtime/tokenizer/tokenizer.h"

static const char usage[] =
    "usage: ponder prepare --tokenizer FILE --out DIR [options] INPUT...\n"
    "\n"
    "Tokenizes INPUT files (text, or JSONL with one {\"text\": ...} per line) into\n"
    "token shards DIR/train_000000.bin ... and DIR/val_000000.bin ..., with\n"
    "DIR/manifest.json listing them. An EOS token follows every document.\n"
    "\n"
    "options:\n"
    "  --tokenizer FILE     tokenizer.json or tokenizer.model (required)\n"
    "  --out DIR            output folder, made if missing (required)\n"
    "  --val-fraction F     share of documents for validation (default 0.01)\n"
    "  --shard-tokens N     tokens per shard (default 100000000)\n"
    "  --docs MODE          documents of a text file: file (default), line, or\n"
    "                       paragraph (blank-line separated)\n"
    "  --text-field NAME    the JSONL field with the text (default text)\n"
    "  --dtype TYPE         uint16 or uint32 (default: uint16 when the vocabulary fits)\n"
    "  --bos                also put the BOS token before every document\n"
    "  --no-eos             no EOS token after documents\n"
    "  -q, --quiet          no progress bar or summary\n";

typedef struct {
  const char *tokenizer, *out, *field;
  double val_fraction;
  uint64_t shard_tokens;
  DocsSplit docs;
  int width; /* 0: choose */
  bool bos, eos, quiet;
} Options;

static int fail(const char *msg) {
  fprintf(stderr, "ponder prepare: %s\n", msg);
  return 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
  bool on;
  double start, last;
  uint64_t total;
} Progress;

static void progress(Progress *p, uint64_t done, uint64_t tokens, bool final) {
  if (!p->on) return;
  double t = now();
  if (!final && t - p->last < 0.1) return;
  p->last = t;
  double frac = p->total ? (double)done / (double)p->total : 1.0;
  if (frac > 1) frac = 1;
  char bar[31];
  int filled = (int)(frac * 30);
  for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
  bar[30] = 0;
  double mbs = t > p->start ? (double)done / 1e6 / (t - p->start) : 0;
  fprintf(stderr, "\r[%s] %3.0f%%  %.1f MB/s  %llu tokens", bar, frac * 100, mbs, (unsigned long long)tokens);
  if (final) fputc('\n', stderr);
}

/* Removes shards of an earlier run (train_NNNNNN.bin, val_NNNNNN.bin). */
static void remove_old_shards(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    size_t len = strlen(n), p = !strncmp(n, "train_", 6) ? 6 : !strncmp(n, "val_", 4) ? 4 : 0;
    if (!p || len != p + 10 || strcmp(n + p + 6, ".bin")) continue;
    bool digits = true;
    for (size_t i = p; i < p + 6; i++) digits = digits && n[i] >= '0' && n[i] <= '9';
    if (!digits) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, n);
    remove(path);
  }
  closedir(d);
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void json_files(FILE *f, const ShardSet *s) {
  fputc('[', f);
  for (size_t i = 0; i < shard_set_nfiles(s); i++) {
    uint64_t n;
    const char *name = shard_set_file(s, i, &n);
    fprintf(f, "%s\n    {\"file\": ", i ? "," : "");
    json_str(f, name);
    fprintf(f, ", \"tokens\": %llu}", (unsigned long long)n);
  }
  fprintf(f, "%s]", shard_set_nfiles(s) ? "\n  " : "");
}

static int write_manifest(const Options *o, const Tokenizer *t, int width, ShardSet *const sets[2],
                          const uint64_t docs[2], PcError *err) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/manifest.json", o->out);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return pc_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
  fprintf(f, "{\n  \"format\": \"pondercc-token-shards\",\n  \"version\": %d,\n  \"tokenizer\": ", SHARD_VERSION);
  char *abs = realpath(o->tokenizer, NULL); /* absolute: the manifest is read from elsewhere */
  json_str(f, abs ? abs : o->tokenizer);
  free(abs);
  fprintf(f, ",\n  \"tokenizer_kind\": ");
  json_str(f, tok_kind_name(t));
  fprintf(f, ",\n  \"vocab_size\": %u,\n  \"bos_id\": %lld,\n  \"eos_id\": %lld,\n", tok_vocab_size(t),
          (long long)tok_bos_id(t), (long long)(o->eos ? tok_eos_id(t) : -1));
  fprintf(f, "  \"dtype\": \"%s\",\n  \"documents\": {\"train\": %llu, \"val\": %llu},\n",
          width == 2 ? "uint16" : "uint32", (unsigned long long)docs[0], (unsigned long long)docs[1]);
  fprintf(f, "  \"tokens\": {\"train\": %llu, \"val\": %llu},\n", (unsigned long long)shard_set_tokens(sets[0]),
          (unsigned long long)shard_set_tokens(sets[1]));
  fprintf(f, "  \"train\": ");
  json_files(f, sets[0]);
  fprintf(f, ",\n  \"val\": ");
  json_files(f, sets[1]);
  fprintf(f, "\n}\n");
  bool bad = ferror(f) != 0;
  if (fclose(f) || bad || rename(tmp, path)) {
    remove(tmp);
    return pc_errorf(err, "%s: cannot write", path);
  }
  return 0;
}

typedef VEC(const char *) Inputs;

static int parse_args(int argc, char **argv, Options *o, Inputs *inputs) {
  *o = (Options){.field = "text", .val_fraction = 0.01, .shard_tokens = 100000000, .eos = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    char *end;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(a, "--tokenizer") && has) {
      o->tokenizer = argv[++i];
    } else if (!strcmp(a, "--out") && has) {
      o->out = argv[++i];
    } else if (!strcmp(a, "--val-fraction") && has) {
      o->val_fraction = strtod(argv[++i], &end);
      if (*end || end == argv[i] || !(o->val_fraction >= 0 && o->val_fraction <= 1)) {
        fprintf(stderr, "ponder prepare: --val-fraction wants a number from 0 to 1, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--shard-tokens") && has) {
      errno = 0;
      unsigned long long v = strtoull(argv[++i], &end, 10);
      if (*end || end == argv[i] || errno || !v || argv[i][0] == '-') {
        fprintf(stderr, "ponder prepare: --shard-tokens wants a positive number, not '%s'\n", argv[i]);
        return 2;
      }
      o->shard_tokens = v;
    } else if (!strcmp(a, "--docs") && has) {
      const char *m = argv[++i];
      if (!strcmp(m, "file")) o->docs = DOCS_FILE;
      else if (!strcmp(m, "line")) o->docs = DOCS_LINE;
      else if (!strcmp(m, "paragraph")) o->docs = DOCS_PARAGRAPH;
      else {
        fprintf(stderr, "ponder prepare: --docs wants file, line or paragraph, not '%s'\n", m);
        return 2;
      }
    } else if (!strcmp(a, "--text-field") && has) {
      o->field = argv[++i];
    } else if (!strcmp(a, "--dtype") && has) {
      const char *d = argv[++i];
      if (!strcmp(d, "uint16")) o->width = 2;
      else if (!strcmp(d, "uint32")) o->width = 4;
      else {
        fprintf(stderr, "ponder prepare: --dtype wants uint16 or uint32, not '%s'\n", d);
        return 2;
      }
    } else if (!strcmp(a, "--bos")) {
      o->bos = true;
    } else if (!strcmp(a, "--no-eos")) {
      o->eos = false;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      o->quiet = true;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "ponder prepare: unknown or incomplete option '%s' (see ponder prepare --help)\n", a);
      return 2;
    } else {
      vec_push(inputs, a);
    }
  }
  if (!o->tokenizer || !o->out || !inputs->n) {
    fprintf(stderr, "ponder prepare: --tokenizer, --out and at least one input are required (see ponder prepare --help)\n");
    return 2;
  }
  return -1; /* go on */
}

int cmd_prepare(int argc, char **argv) {
  Options o;
  Inputs inputs = {0};
  int rc = parse_args(argc, argv, &o, &inputs);
  if (rc >= 0) {
    vec_free(&inputs);
    return rc;
  }
  rc = 0;
  PcError err;
  Tokenizer *t = NULL;
  ShardSet *sets[2] = {NULL, NULL};
  TokIds ids = {0};
  uint64_t docs[2] = {0, 0}, total_bytes = 0, done_bytes = 0, ndoc = 0;
  if (tok_load(o.tokenizer, &t, &err)) {
    rc = fail(err.msg);
    goto done;
  }
  int width = o.width ? o.width : tok_vocab_size(t) <= 65536 ? 2 : 4;
  if (width == 2 && tok_vocab_size(t) > 65536) {
    char m[128];
    snprintf(m, sizeof m, "--dtype uint16 cannot hold a vocabulary of %u", tok_vocab_size(t));
    rc = fail(m);
    goto done;
  }
  if (o.eos && tok_eos_id(t) < 0) {
    rc = fail("the tokenizer has no EOS token to put between documents (use --no-eos)");
    goto done;
  }
  if (o.bos && tok_bos_id(t) < 0) {
    rc = fail("the tokenizer has no BOS token (--bos)");
    goto done;
  }
  for (size_t i = 0; i < inputs.n; i++) { /* check all inputs before writing anything */
    struct stat st;
    errno = 0;
    if (stat(inputs.a[i], &st) || !S_ISREG(st.st_mode)) {
      char m[4200];
      snprintf(m, sizeof m, "%s: %s", inputs.a[i], errno ? strerror(errno) : "not a regular file");
      rc = fail(m);
      goto done;
    }
    total_bytes += (uint64_t)st.st_size;
  }
  if (mkdir(o.out, 0777) && errno != EEXIST) {
    char m[4200];
    snprintf(m, sizeof m, "%s: cannot make the folder: %s", o.out, strerror(errno));
    rc = fail(m);
    goto done;
  }
  remove_old_shards(o.out);
  if (shard_set_open(o.out, "train", o.shard_tokens, (uint32_t)width, tok_vocab_size(t), tok_eos_id(t), &sets[0], &err) ||
      shard_set_open(o.out, "val", o.shard_tokens, (uint32_t)width, tok_vocab_size(t), tok_eos_id(t), &sets[1], &err)) {
    rc = fail(err.msg);
    goto done;
  }
  Progress prog = {.on = !o.quiet && isatty(2), .start = now(), .total = total_bytes};
  unsigned flags = (o.bos ? TOK_ADD_BOS : 0) | (o.eos ? TOK_ADD_EOS : 0);
  for (size_t i = 0; i < inputs.n && !rc; i++) {
    DocReader *r;
    if (docs_open(inputs.a[i], o.docs, o.field, &r, &err)) {
      rc = fail(err.msg);
      break;
    }
    const char *doc;
    size_t n;
    int k;
    while ((k = docs_next(r, &doc, &n, &err)) > 0) {
      /* document i goes to validation when floor((i+1)F) > floor(iF): an even spread of F */
      int split = (uint64_t)((double)(ndoc + 1) * o.val_fraction) > (uint64_t)((double)ndoc * o.val_fraction);
      ndoc++;
      ids.n = 0;
      if (tok_encode(t, doc, n, flags, &ids, &err) || shard_set_put(sets[split], ids.a, ids.n, &err)) {
        k = -1;
        break;
      }
      docs[split]++;
      progress(&prog, done_bytes + docs_offset(r), shard_set_tokens(sets[0]) + shard_set_tokens(sets[1]), false);
    }
    done_bytes += docs_size(r);
    docs_close(r);
    if (k < 0) rc = fail(err.msg);
  }
  if (!rc && (shard_set_close(sets[0], &err) || shard_set_close(sets[1], &err) ||
              write_manifest(&o, t, width, sets, docs, &err)))
    rc = fail(err.msg);
  if (!rc) {
    progress(&prog, total_bytes, shard_set_tokens(sets[0]) + shard_set_tokens(sets[1]), true);
    if (!o.quiet) {
      fprintf(stderr, "ponder prepare: %llu documents -> train %llu tokens in %zu shard(s), val %llu tokens in %zu shard(s), in %s\n",
              (unsigned long long)ndoc, (unsigned long long)shard_set_tokens(sets[0]), shard_set_nfiles(sets[0]),
              (unsigned long long)shard_set_tokens(sets[1]), shard_set_nfiles(sets[1]), o.out);
      if (o.val_fraction > 0 && !docs[1])
        fprintf(stderr, "ponder prepare: warning: the validation split is empty (%llu document(s) in all); "
                        "use --docs line or paragraph, or more documents\n", (unsigned long long)ndoc);
    }
  }
done:
  shard_set_free(sets[0]);
  shard_set_free(sets[1]);
  vec_free(&ids);
  vec_free(&inputs);
  tok_free(t);
  return rc;
}
