/* ponder generate: text generation. By default the prompt fills K+1 KV
 * caches per attention layer (one per pondering pass) and every new token
 * runs only itself through each pass (runtime/cli/decoder.c); --no-cache
 * re-runs the whole forward for every token (the reference behaviour).
 * docs/generate.md has the details. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/interp/interp.h"
#include "compiler/module.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/decoder.h"
#include "runtime/cli/model_load.h"
#include "runtime/sample.h"
#include "runtime/tokenizer/tokenizer.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ponder generate MODEL.lua [options] [--prompt TEXT | --prompt-ids IDS | < prompt]\n"
          "\n"
          "Generates text after a prompt, streaming it to stdout; a summary goes to\n"
          "stderr. Keeps a KV cache per attention layer and pondering pass; --no-cache\n"
          "re-runs the whole forward for every token instead. Without --hf the weights\n"
          "are a seeded random initialisation.\n"
          "\n"
          "options:\n" MODEL_OPTIONS_HELP MODEL_DEVICE_HELP
          "  --prompt TEXT      the prompt (default: all of stdin)\n"
          "  --prompt-ids IDS   the prompt as token ids, \"1 2 3\"\n"
          "  --tokenizer FILE   tokenizer.json or tokenizer.model (default: from the --hf\n"
          "                     folder or its parent); not needed with --ids --prompt-ids\n"
          "  --bos              put the tokenizer's BOS token before the prompt\n"
          "  --max-tokens N     how many tokens to generate at most (default 64)\n"
          "  --temperature T    softmax temperature (default 1; 0 = greedy)\n"
          "  --top-k K          sample from the K most likely tokens only (default 0 = off)\n"
          "  --top-p P          nucleus sampling: the most likely tokens holding P of the\n"
          "                     probability (default 1 = off)\n"
          "  --greedy           always the most likely token (same as --temperature 0)\n"
          "  --sample-seed N    seed of the sampling (default 1; --seed is the init's)\n"
          "  --stop-at-eos      stop at the tokenizer's end-of-sequence token (default)\n"
          "  --no-stop-at-eos   go on past it\n"
          "  --ids              print token ids instead of text\n"
          "  --no-cache         recompute everything for every token (the reference behaviour)\n"
          "  -h, --help         this help\n");
}

typedef struct {
  ModelOpts model;
  const char *prompt, *prompt_ids, *tokenizer;
  long long max_tokens;
  Sampler sampler;
  uint64_t sample_seed;
  int greedy, stop_at_eos, ids_out, bos, no_cache;
} GenOpts;

enum {
  OPT_PROMPT = 2000, OPT_PROMPT_IDS, OPT_TOKENIZER, OPT_BOS, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_K,
  OPT_TOP_P, OPT_GREEDY, OPT_SAMPLE_SEED, OPT_STOP_EOS, OPT_NO_STOP_EOS, OPT_IDS, OPT_NO_CACHE
};

static int usage_error(const char *fmt, const char *arg) {
  fputs("ponder generate: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs(" (try --help)\n", stderr);
  return 2;
}

static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

/* Parses the command line: 0 to go on, else the exit status (-1: --help). */
static int parse_args(int argc, char **argv, GenOpts *o) {
  static const struct option opts[] = {
      MODEL_LONG_OPTIONS,
      {"prompt", required_argument, 0, OPT_PROMPT},
      {"prompt-ids", required_argument, 0, OPT_PROMPT_IDS},
      {"tokenizer", required_argument, 0, OPT_TOKENIZER},
      {"bos", no_argument, 0, OPT_BOS},
      {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
      {"temperature", required_argument, 0, OPT_TEMPERATURE},
      {"top-k", required_argument, 0, OPT_TOP_K},
      {"top-p", required_argument, 0, OPT_TOP_P},
      {"greedy", no_argument, 0, OPT_GREEDY},
      {"sample-seed", required_argument, 0, OPT_SAMPLE_SEED},
      {"stop-at-eos", no_argument, 0, OPT_STOP_EOS},
      {"no-stop-at-eos", no_argument, 0, OPT_NO_STOP_EOS},
      {"ids", no_argument, 0, OPT_IDS},
      {"no-cache", no_argument, 0, OPT_NO_CACHE},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  long long v;
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int taken = model_opts_take(&o->model, c, optarg);
    if (taken < 0) return 2;
    if (taken) continue;
    switch (c) {
    case OPT_PROMPT: o->prompt = optarg; break;
    case OPT_PROMPT_IDS: o->prompt_ids = optarg; break;
    case OPT_TOKENIZER: o->tokenizer = optarg; break;
    case OPT_BOS: o->bos = 1; break;
    case OPT_MAX_TOKENS:
      if (parse_ll(optarg, 0, 1LL << 40, &o->max_tokens))
        return usage_error("--max-tokens %s: expected a non-negative integer", optarg);
      break;
    case OPT_TEMPERATURE:
      if (parse_double(optarg, &o->sampler.temperature) || o->sampler.temperature < 0)
        return usage_error("--temperature %s: expected 0 (greedy) or a positive number", optarg);
      break;
    case OPT_TOP_K:
      if (parse_ll(optarg, 0, INT32_MAX, &v))
        return usage_error("--top-k %s: expected a non-negative integer (0 = off)", optarg);
      o->sampler.top_k = v;
      break;
    case OPT_TOP_P:
      if (parse_double(optarg, &o->sampler.top_p) || !(o->sampler.top_p > 0 && o->sampler.top_p <= 1))
        return usage_error("--top-p %s: expected a number in (0, 1] (1 = off)", optarg);
      break;
    case OPT_GREEDY: o->greedy = 1; break;
    case OPT_SAMPLE_SEED:
      if (parse_ll(optarg, 0, LLONG_MAX, &v))
        return usage_error("--sample-seed %s: expected a non-negative integer", optarg);
      o->sample_seed = (uint64_t)v;
      break;
    case OPT_STOP_EOS: o->stop_at_eos = 1; break;
    case OPT_NO_STOP_EOS: o->stop_at_eos = 0; break;
    case OPT_IDS: o->ids_out = 1; break;
    case OPT_NO_CACHE: o->no_cache = 1; break;
    case 'h': usage(stdout); return -1;
    case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
    default:
      if (optopt) {
        char opt[3] = {'-', (char)optopt, 0};
        return usage_error("unknown option '%s'", opt);
      }
      return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (o->greedy) o->sampler.temperature = 0;
  if (optind != argc - 1) return usage_error("expected one MODEL.lua%s", "");
  if (o->prompt && o->prompt_ids) return usage_error("give --prompt or --prompt-ids, not both%s", "");
  o->model.script = argv[optind];
  return 0;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "1 2, 3" -> ids (none is fine: an empty prompt). */
static int parse_ids(const char *s, TokIds *ids, PcError *err) {
  while (*s) {
    if (strchr(" ,\t\r\n", *s)) {
      s++;
      continue;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\r\n", *end)))
      return pc_errorf(err, "--prompt-ids: '%.20s' is not a token id", s);
    vec_push(ids, (uint32_t)v);
    s = end;
  }
  return 0;
}

static int read_stdin(TokBytes *out, PcError *err) {
  for (;;) {
    vec_reserve(out, out->n + 65536);
    size_t got = fread(out->a + out->n, 1, out->cap - out->n, stdin);
    out->n += got;
    if (!got) return ferror(stdin) ? pc_errorf(err, "cannot read the prompt from stdin: %s", strerror(errno)) : 0;
  }
}

/* The tokenizer: --tokenizer, else one next to the --hf folder. *t stays
 * NULL when there is none and none is needed. */
static int find_tokenizer(const GenOpts *o, int needed, Tokenizer **t, PcError *err) {
  *t = NULL;
  if (o->tokenizer) return tok_load(o->tokenizer, t, err);
  if (o->model.hf) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model", "../tokenizer.json",
                                        "../tokenizer.model"};
    char path[4096];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      snprintf(path, sizeof path, "%s/%s", o->model.hf, names[i]);
      if (!access(path, R_OK)) return tok_load(path, t, err);
    }
    if (needed)
      return pc_errorf(err, "no tokenizer.json or tokenizer.model in %s or its parent: give --tokenizer FILE",
                       o->model.hf);
  }
  if (needed) return pc_errorf(err, "text needs a tokenizer: give --tokenizer FILE (or use --ids --prompt-ids)");
  return 0;
}

/* The prompt as ids, from --prompt-ids, --prompt or stdin; an empty one
 * becomes the start token (BOS, else EOS). */
static int prompt_ids(const GenOpts *o, Tokenizer *t, TokIds *ids, PcError *err) {
  if (o->bos) {
    if (!t || tok_bos_id(t) < 0) return pc_errorf(err, "--bos: the tokenizer has no BOS token");
    vec_push(ids, (uint32_t)tok_bos_id(t));
  }
  if (o->prompt_ids) {
    if (parse_ids(o->prompt_ids, ids, err)) return -1;
  } else if (o->prompt) {
    if (tok_encode(t, o->prompt, strlen(o->prompt), 0, ids, err)) return -1;
  } else {
    TokBytes text = {0};
    int rc = read_stdin(&text, err);
    if (!rc) rc = tok_encode(t, text.a, text.n, 0, ids, err);
    vec_free(&text);
    if (rc) return -1;
  }
  if (ids->n) return 0;
  int64_t start = !t ? -1 : tok_bos_id(t) >= 0 ? tok_bos_id(t) : tok_eos_id(t);
  if (start < 0)
    return pc_errorf(err, "the prompt is empty and there is no BOS or EOS token to start from%s",
                     t ? "" : " (no tokenizer)");
  vec_push(ids, (uint32_t)start);
  return 0;
}

static void emit(const char *s, size_t n) {
  fwrite(s, 1, n, stdout);
  fflush(stdout);
}

typedef enum { STOP_MAX, STOP_EOS, STOP_CONTEXT } StopReason;

/* The generation loop; prints as it goes. *made gets the tokens printed. */
static int generate(const GenOpts *o, Decoder *dec, Tokenizer *t, int64_t vocab, int64_t ctx, TokIds *ids,
                    long long *made, StopReason *why, double *first_token_s, PcError *err) {
  double t0 = seconds();
  int64_t nv = t && tok_vocab_size(t) < vocab ? tok_vocab_size(t) : vocab; /* ids with text */
  if (sample_check(&o->sampler, nv, err)) return -1;
  int64_t eos = t && o->stop_at_eos ? tok_eos_id(t) : -1;
  Rng rng = rng_new(o->sample_seed);
  SampleScratch scratch = {0};
  TokStream ts;
  TokBytes text = {0};
  float *row = pc_xmalloc(pc_mul_size((size_t)vocab, sizeof *row));
  int rc = 0;
  if (!o->ids_out) { /* the prompt primes the decoder (spaces, pending bytes) but is not printed */
    tok_stream_init(&ts, t, 0);
    for (size_t i = 0; !rc && i < ids->n; i++) rc = tok_stream_push(&ts, ids->a[i], &text, err);
    text.n = 0;
  }
  *made = 0;
  *why = STOP_MAX;
  while (!rc && *made < o->max_tokens) {
    if (ctx && (int64_t)ids->n >= ctx) {
      *why = STOP_CONTEXT;
      break;
    }
    int32_t id;
    if (decoder_next(dec, ids->a, ids->n, row, err) || sample_token(&o->sampler, row, nv, &rng, &scratch, &id, err)) {
      rc = -1;
      break;
    }
    if (*made == 0) *first_token_s = seconds() - t0; /* the prompt's pass (prefill) */
    if (id == eos) {
      *why = STOP_EOS;
      break;
    }
    vec_push(ids, (uint32_t)id);
    ++*made;
    if (o->ids_out) {
      printf(*made > 1 ? " %d" : "%d", id);
      fflush(stdout);
    } else {
      text.n = 0;
      rc = tok_stream_push(&ts, (uint32_t)id, &text, err);
      if (text.n) emit(text.a, text.n);
    }
  }
  if (o->ids_out) {
    if (*made) emit("\n", 1);
  } else {
    text.n = 0;
    tok_stream_finish(&ts, &text);
    if (text.n) emit(text.a, text.n);
    if (*made && isatty(STDOUT_FILENO)) emit("\n", 1);
  }
  free(row);
  vec_free(&text);
  vec_free(&scratch);
  return rc;
}

static int run(GenOpts *o, PcError *err) {
  int text_in = !o->prompt_ids, needed = text_in || !o->ids_out;
  Tokenizer *t = NULL;
  TokIds ids = {0};
  LoadedModel m = {0};
  int loaded = 0, rc = find_tokenizer(o, needed, &t, err);
  if (!rc) rc = prompt_ids(o, t, &ids, err);
  if (!rc) rc = model_load(&o->model, &m, err);
  loaded = !rc;
  int64_t vocab = 0, ctx = 0;
  if (!rc) {
    vocab = m.vocab;
    ctx = m.context;
  }
  for (size_t i = 0; !rc && i < ids.n; i++)
    if (ids.a[i] >= vocab)
      rc = pc_errorf(err, "prompt token id %u is outside the model's vocabulary of %lld", ids.a[i], (long long)vocab);
  if (!rc && ctx && (int64_t)ids.n > ctx)
    rc = pc_errorf(err, "the prompt has %zu tokens but the model's context is %lld", ids.n, (long long)ctx);
  long long made = 0;
  StopReason why = STOP_MAX;
  Decoder dec = {0};
  int64_t cache_len = ctx ? ctx : (int64_t)ids.n + o->max_tokens;
  (void)cache_len;
  if (!rc) rc = decoder_open(&dec, &m, !o->no_cache, err);
  double t0 = seconds(), first = 0;
  if (!rc) rc = generate(o, &dec, t, vocab, ctx, &ids, &made, &why, &first, err);
  double dt = seconds() - t0;
  decoder_close(&dec);
  if (!rc && why == STOP_CONTEXT)
    fprintf(stderr, "ponder generate: stopped at the model's context of %lld tokens\n", (long long)ctx);
  if (!rc)
    fprintf(stderr, "ponder generate: %lld tokens in %.2f s (%.1f tokens/s; first token %.2f s, then %.1f tokens/s)%s\n",
            made, dt, dt > 0 ? made / dt : 0.0, first, made > 1 && dt > first ? (made - 1) / (dt - first) : 0.0,
            why == STOP_EOS ? ", stopped at EOS" : "");
  if (loaded) model_unload(&m);
  vec_free(&ids);
  tok_free(t);
  return rc;
}

int cmd_generate(int argc, char **argv) {
  GenOpts o = {.model = {.seed = 1, .max_batch = 1, .entries = PC_ENTRY_LOGITS | PC_ENTRY_DECODE}, .max_tokens = 64,
               .sampler = SAMPLER_DEFAULT, .sample_seed = 1, .stop_at_eos = 1};
  int rc = parse_args(argc, argv, &o);
  if (!rc) {
    PcError err;
    if (run(&o, &err)) {
      fprintf(stderr, "ponder generate: %s\n", err.msg);
      rc = 1;
    }
  }
  model_opts_free(&o.model);
  return rc < 0 ? 0 : rc;
}
