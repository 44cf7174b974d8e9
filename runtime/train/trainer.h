/* The training loop behind `ponder train`: micro-batches with gradient
 * accumulation, clipping, AdamW on a warm-up + cosine schedule, periodic
 * evaluation and checkpoints, a metrics log, and exact resumption. */
#ifndef PC_TRAINER_H
#define PC_TRAINER_H

#include "ir/autodiff.h"
#include "runtime/cli/model_load.h"

typedef struct {
  ModelOpts model;
  const char *data; /* a `ponder prepare` folder, or one .bin shard */
  const char *val;  /* validation shards, when not the data folder's val split */
  const char *out;  /* the run folder */
  const char *tokenizer; /* copied into the run folder (default: the manifest's) */
  int64_t steps, batch, seq, accum;
  int64_t stop_at; /* stop after this step as if interrupted (0: run to the end) */
  double lr, min_lr_ratio, weight_decay, beta1, beta2, eps, clip;
  int64_t warmup;
  int decay_embeddings;
  int64_t eval_every, eval_batches, ckpt_every, keep, log_every;
  uint64_t data_seed;
  int shuffle;
  int threads;
  int resume;
  int skip_nonfinite;
  int crash_in_checkpoint; /* tests: SIGKILL inside the N-th checkpoint write (0: never) */
} TrainConfig;

void train_defaults(TrainConfig *c);
/* Runs the whole training; returns 0, or -1 with err set. */
int train_run(const TrainConfig *c, PcError *err);

#endif
