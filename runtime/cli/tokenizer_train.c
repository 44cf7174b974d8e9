/* `ponder tokenizer`: `train` a byte-level BPE tokenizer.json from text or
 * JSONL files; `info` prints what a tokenizer file holds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/commands.h"
#include "runtime/tokenizer/docs.h"
#include "runtime/tokenizer/tok_train.h"
#include "runtime/tokenizer/tokenizer.h"

static const char usage[] =
    "usage: ponder tokenizer train --vocab-size N --out FILE [options] CORPUS...\n"
    "       ponder tokenizer info FILE\n"
    "\n"
    "train: learns a byte-level BPE (GPT-2 style) from CORPUS files (text, or\n"
    "JSONL with a \"text\" field) and writes a Hugging Face tokenizer.json.\n"
    "  --vocab-size N       vocabulary size: special tokens + 256 bytes + merges\n"
    "  --out FILE           where to write the tokenizer.json\n"
    "  --min-frequency N    do not merge pairs seen fewer than N times (default 2)\n"
    "  --special TOKEN      a special token (repeatable; default <|endoftext|>)\n"
    "  --text-field NAME    the JSONL field holding the text (default text)\n"
    "info: prints the kind, vocabulary size and special ids of a tokenizer.json\n"
    "or tokenizer.model.\n";

static int fail(const char *msg) {
  fprintf(stderr, "ponder tokenizer: %s\n", msg);
  return 1;
}

static int write_file(const char *path, const char *data, size_t n, PcError *err) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return pc_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
  bool ok = fwrite(data, 1, n, f) == n;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path)) {
    remove(tmp);
    return pc_errorf(err, "%s: cannot write", path);
  }
  return 0;
}

static bool parse_u64(const char *s, uint64_t *v) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return false;
  *v = x;
  return true;
}

static int train(int argc, char **argv) {
  uint64_t vocab = 0, min_freq = 2;
  const char *out = NULL, *field = "text";
  VEC(const char *) specials = {0};
  VEC(const char *) inputs = {0};
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      rc = 0;
      goto done;
    } else if (!strcmp(a, "--vocab-size") && has) {
      if (!parse_u64(argv[++i], &vocab) || vocab > (1u << 24)) {
        fprintf(stderr, "ponder tokenizer train: --vocab-size wants a number up to 16777216, not '%s'\n", argv[i]);
        goto done;
      }
    } else if (!strcmp(a, "--min-frequency") && has) {
      if (!parse_u64(argv[++i], &min_freq)) {
        fprintf(stderr, "ponder tokenizer train: --min-frequency wants a number, not '%s'\n", argv[i]);
        goto done;
      }
    } else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) {
      out = argv[++i];
    } else if (!strcmp(a, "--special") && has) {
      vec_push(&specials, argv[++i]);
    } else if (!strcmp(a, "--text-field") && has) {
      field = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "ponder tokenizer train: unknown or incomplete option '%s' (see ponder tokenizer --help)\n", a);
      goto done;
    } else {
      vec_push(&inputs, a);
    }
  }
  if (!vocab || !out || !inputs.n) {
    fprintf(stderr, "ponder tokenizer train: --vocab-size, --out and at least one corpus file are required "
                    "(see ponder tokenizer --help)\n");
    goto done;
  }
  TokTrainOptions opt = {.vocab_size = (uint32_t)vocab, .min_frequency = min_freq};
  if (specials.n) {
    opt.specials = specials.a;
    opt.nspecials = specials.n;
  }
  TokTrainer *tr = tok_trainer_new(&opt);
  PcError err;
  rc = 0;
  for (size_t i = 0; i < inputs.n && !rc; i++) {
    DocReader *r;
    if (docs_open(inputs.a[i], DOCS_FILE, field, &r, &err)) {
      rc = fail(err.msg);
      break;
    }
    const char *doc;
    size_t n;
    int k;
    while ((k = docs_next(r, &doc, &n, &err)) > 0) tok_trainer_feed(tr, doc, n);
    if (k < 0) rc = fail(err.msg);
    docs_close(r);
  }
  TokBytes json = {0};
  if (!rc && (tok_trainer_finish(tr, &json, &err) || write_file(out, json.a, json.n, &err))) rc = fail(err.msg);
  if (!rc) {
    /* check what we wrote loads, and say what it is */
    Tokenizer *t;
    if (tok_load(out, &t, &err)) {
      rc = fail(err.msg);
    } else {
      fprintf(stderr, "ponder tokenizer train: %llu words -> %u tokens in %s\n",
              (unsigned long long)tok_trainer_words(tr), tok_vocab_size(t), out);
      tok_free(t);
    }
  }
  vec_free(&json);
  tok_trainer_free(tr);
done:
  vec_free(&specials);
  vec_free(&inputs);
  return rc;
}

static void show_id(const Tokenizer *t, const char *what, int64_t id) {
  size_t n = 0;
  const char *p = id >= 0 ? tok_id_to_piece(t, (uint32_t)id, &n) : NULL;
  if (p) printf("%s: %lld %.*s\n", what, (long long)id, (int)n, p);
  else printf("%s: none\n", what);
}

static int info(int argc, char **argv) {
  if (argc != 2 || argv[1][0] == '-') {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
      fputs(usage, stdout);
      return 0;
    }
    fprintf(stderr, "ponder tokenizer info: expected one tokenizer file (see ponder tokenizer --help)\n");
    return 2;
  }
  Tokenizer *t;
  PcError err;
  if (tok_load(argv[1], &t, &err)) return fail(err.msg);
  uint32_t specials = 0;
  for (uint32_t id = 0; id < tok_vocab_size(t); id++) specials += tok_is_special(t, id);
  printf("kind: %s\nvocab size: %u\nspecial tokens: %u\n", tok_kind_name(t), tok_vocab_size(t), specials);
  show_id(t, "bos", tok_bos_id(t));
  show_id(t, "eos", tok_eos_id(t));
  show_id(t, "unk", tok_unk_id(t));
  tok_free(t);
  return 0;
}

int cmd_tokenizer(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
  if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
  fprintf(stderr, "ponder tokenizer: unknown subcommand '%s' (train or info)\n", argv[1]);
  return 2;
}
