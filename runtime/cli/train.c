/* ponder train: option parsing for the trainer (runtime/train/trainer.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/module.h"
#include "runtime/cli/commands.h"
#include "runtime/train/trainer.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ponder train --model MODEL.lua --data DIR --out RUN [options]\n"
          "\n"
          "Trains a model on token shards made by `ponder prepare`, writing metrics.jsonl and\n"
          "checkpoints (ckpt-NNNNNNNN/, loadable with --hf) into RUN. `ponder plot RUN` draws the curves.\n"
          "\n"
          "model:\n" MODEL_OPTIONS_HELP MODEL_DEVICE_HELP
          "  --model FILE          the model script (or give it as the first argument)\n"
          "data:\n"
          "  --data DIR|FILE       a `ponder prepare` folder (train and val splits) or one .bin shard\n"
          "  --val DIR|FILE        validation shards, if not the data folder's val split\n"
          "  --tokenizer FILE      copied into RUN for generation (default: the one data/manifest.json names)\n"
          "  --batch N             sequences per micro-batch (default 4)\n"
          "  --seq N               tokens per sequence (default 64)\n"
          "  --accum N             micro-batches per step (default 1)\n"
          "  --data-seed N         seed of the shuffled order (default 1)\n"
          "  --no-shuffle          read the data in order\n"
          "optimisation:\n"
          "  --steps N             optimizer steps (default 100)\n"
          "  --lr X                peak learning rate (default 6e-4)\n"
          "  --warmup N            linear warm-up steps (default 1%% of the steps)\n"
          "  --min-lr-ratio X      cosine decay floor, as a fraction of the peak (default 0.1)\n"
          "  --weight-decay X      AdamW decoupled weight decay on matrices (default 0.1)\n"
          "  --no-decay-embeddings no weight decay on embedding tables\n"
          "  --beta1 X --beta2 X --eps X   AdamW constants (default 0.9, 0.95, 1e-8)\n"
          "  --clip X              clip the global gradient norm to X (default 1.0; 0 = off)\n"
          "  --save-loop-activations  keep every loop iteration's activations instead of recomputing them\n"
          "run:\n"
          "  --out DIR             the run folder (required)\n"
          "  --resume              continue the run in --out from its newest checkpoint, exactly\n"
          "  --stop-at N           stop after step N (checkpointed) as if interrupted; --resume goes on\n"
          "  --eval-every N        validation every N steps (default: a tenth of the run)\n"
          "  --eval-batches N      validation batches (default 20)\n"
          "  --checkpoint-every N  checkpoint every N steps (default: a tenth of the run)\n"
          "  --keep N              checkpoints to keep (default 3)\n"
          "  --log-every N         progress line every N steps when not on a terminal\n"
          "  --skip-nonfinite      skip steps whose loss or gradient is NaN/Inf instead of stopping\n"
          "  --threads N           BLAS threads (default: all cores)\n"
          "  -h, --help            this help\n");
}

static int parse_int(const char *flag, const char *s, int64_t min, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || !*s || v < min) {
    fprintf(stderr, "ponder train: %s %s: expected an integer >= %lld\n", flag, s, (long long)min);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_float(const char *flag, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !*s || !(v >= 0)) {
    fprintf(stderr, "ponder train: %s %s: expected a non-negative number\n", flag, s);
    return -1;
  }
  *out = v;
  return 0;
}

int cmd_train(int argc, char **argv) {
  enum {
    O_MODEL = 2000, O_DATA, O_VAL, O_OUT, O_TOKENIZER, O_STEPS, O_BATCH, O_SEQ, O_ACCUM, O_LR, O_WARMUP, O_MINLR, O_WD,
    O_NODECAYEMB, O_BETA1, O_BETA2, O_EPS, O_CLIP, O_EVAL, O_EVALB, O_CKPT, O_KEEP, O_LOG, O_DSEED, O_NOSHUF,
    O_THREADS, O_RESUME, O_SKIP, O_SAVELOOP, O_STOPAT
  };
  static const struct option opts[] = {MODEL_LONG_OPTIONS,
                                       {"model", required_argument, 0, O_MODEL},
                                       {"data", required_argument, 0, O_DATA},
                                       {"val", required_argument, 0, O_VAL},
                                       {"out", required_argument, 0, O_OUT},
                                       {"tokenizer", required_argument, 0, O_TOKENIZER},
                                       {"steps", required_argument, 0, O_STEPS},
                                       {"batch", required_argument, 0, O_BATCH},
                                       {"seq", required_argument, 0, O_SEQ},
                                       {"accum", required_argument, 0, O_ACCUM},
                                       {"lr", required_argument, 0, O_LR},
                                       {"warmup", required_argument, 0, O_WARMUP},
                                       {"min-lr-ratio", required_argument, 0, O_MINLR},
                                       {"weight-decay", required_argument, 0, O_WD},
                                       {"no-decay-embeddings", no_argument, 0, O_NODECAYEMB},
                                       {"beta1", required_argument, 0, O_BETA1},
                                       {"beta2", required_argument, 0, O_BETA2},
                                       {"eps", required_argument, 0, O_EPS},
                                       {"clip", required_argument, 0, O_CLIP},
                                       {"eval-every", required_argument, 0, O_EVAL},
                                       {"eval-batches", required_argument, 0, O_EVALB},
                                       {"checkpoint-every", required_argument, 0, O_CKPT},
                                       {"keep", required_argument, 0, O_KEEP},
                                       {"log-every", required_argument, 0, O_LOG},
                                       {"data-seed", required_argument, 0, O_DSEED},
                                       {"no-shuffle", no_argument, 0, O_NOSHUF},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"resume", no_argument, 0, O_RESUME},
                                       {"skip-nonfinite", no_argument, 0, O_SKIP},
                                       {"save-loop-activations", no_argument, 0, O_SAVELOOP},
                                       {"stop-at", required_argument, 0, O_STOPAT},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  TrainConfig c;
  train_defaults(&c);
  int64_t v;
  int ch, bad = 0;
  while (!bad && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    int taken = model_opts_take(&c.model, ch, optarg);
    if (taken) {
      bad = taken < 0;
      continue;
    }
    switch (ch) {
    case O_MODEL: c.model.script = optarg; break;
    case O_DATA: c.data = optarg; break;
    case O_VAL: c.val = optarg; break;
    case O_OUT: c.out = optarg; break;
    case O_TOKENIZER: c.tokenizer = optarg; break;
    case O_STEPS: bad = parse_int("--steps", optarg, 1, &c.steps); break;
    case O_BATCH: bad = parse_int("--batch", optarg, 1, &c.batch); break;
    case O_SEQ: bad = parse_int("--seq", optarg, 1, &c.seq); break;
    case O_ACCUM: bad = parse_int("--accum", optarg, 1, &c.accum); break;
    case O_LR: bad = parse_float("--lr", optarg, &c.lr); break;
    case O_WARMUP: bad = parse_int("--warmup", optarg, 0, &c.warmup); break;
    case O_MINLR: bad = parse_float("--min-lr-ratio", optarg, &c.min_lr_ratio); break;
    case O_WD: bad = parse_float("--weight-decay", optarg, &c.weight_decay); break;
    case O_NODECAYEMB: c.decay_embeddings = 0; break;
    case O_BETA1: bad = parse_float("--beta1", optarg, &c.beta1); break;
    case O_BETA2: bad = parse_float("--beta2", optarg, &c.beta2); break;
    case O_EPS: bad = parse_float("--eps", optarg, &c.eps); break;
    case O_CLIP: bad = parse_float("--clip", optarg, &c.clip); break;
    case O_EVAL: bad = parse_int("--eval-every", optarg, 1, &c.eval_every); break;
    case O_EVALB: bad = parse_int("--eval-batches", optarg, 1, &c.eval_batches); break;
    case O_CKPT: bad = parse_int("--checkpoint-every", optarg, 1, &c.ckpt_every); break;
    case O_KEEP: bad = parse_int("--keep", optarg, 1, &c.keep); break;
    case O_LOG: bad = parse_int("--log-every", optarg, 1, &c.log_every); break;
    case O_DSEED: bad = parse_int("--data-seed", optarg, 0, &v) || (c.data_seed = (uint64_t)v, 0); break;
    case O_NOSHUF: c.shuffle = 0; break;
    case O_THREADS: bad = parse_int("--threads", optarg, 1, &v) || (c.threads = (int)v, 0); break;
    case O_RESUME: c.resume = 1; break;
    case O_SKIP: c.skip_nonfinite = 1; break;
    case O_SAVELOOP: c.model.pipeline.loop_mode = AD_LOOPS_SAVE; break;
    case O_STOPAT: bad = parse_int("--stop-at", optarg, 1, &c.stop_at); break;
    case 'h': usage(stdout); model_opts_free(&c.model); return 0;
    default: bad = 1;
    }
  }
  if (!bad && optind == argc - 1 && !c.model.script) c.model.script = argv[optind++];
  const char *missing = !c.model.script ? "--model" : !c.data ? "--data" : !c.out ? "--out" : NULL;
  if (!bad && optind != argc) fprintf(stderr, "ponder train: unexpected argument '%s' (try --help)\n", argv[optind]), bad = 1;
  if (!bad && missing) fprintf(stderr, "ponder train: %s is required (try --help)\n", missing), bad = 1;
  if (!bad && !(c.beta1 < 1 && c.beta2 < 1)) fprintf(stderr, "ponder train: --beta1 and --beta2 must be below 1\n"), bad = 1;
  if (bad) {
    model_opts_free(&c.model);
    return 2;
  }
  /* a compiled backend plans its memory for this run's batch and length */
  c.model.max_batch = c.batch;
  c.model.max_seq = c.seq;
  c.model.entries = PC_ENTRY_TRAIN | PC_ENTRY_EVAL;
  const char *fault = getenv("PONDER_FAULT_CHECKPOINT"); /* tests: crash inside the N-th checkpoint */
  if (fault) c.crash_in_checkpoint = atoi(fault);
  PcError err;
  int rc = train_run(&c, &err);
  if (rc) fprintf(stderr, "ponder train: %s\n", err.msg);
  model_opts_free(&c.model);
  return rc ? 1 : 0;
}
