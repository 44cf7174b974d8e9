/* Training checkpoints. A checkpoint is a folder RUN/ckpt-00000100 with
 *   model.safetensors      the weights, in Hugging Face names and layouts
 *   config.json            the model's hyperparameters (Hugging Face keys),
 *                          so the folder loads with --hf like any checkpoint
 *   optimizer.safetensors  the AdamW moments, "m.NAME" and "v.NAME"
 *   state.json             step, data position, run settings (the trainer's)
 * It is written into RUN/.ckpt-00000100.tmp, every file fsynced, then
 * renamed into place; a crash leaves the previous checkpoints intact. */
#ifndef PC_CHECKPOINT_H
#define PC_CHECKPOINT_H

#include <stdint.h>

#include "runtime/params.h"
#include "runtime/train/optim.h"

typedef struct {
  const char *config_json; /* contents of config.json */
  const char *state_json;  /* contents of state.json */
  int keep;                /* checkpoints to keep; older ones are removed */
  int crash_midway;        /* fault injection for tests: SIGKILL after the weights are written */
} CkptWrite;

int ckpt_save(const char *run_dir, int64_t step, const Params *p, const AdamW *o, const CkptWrite *w, PcError *err);
/* The newest complete checkpoint in run_dir: 1 and its path, or 0 if none. */
int ckpt_latest(const char *run_dir, char *path, size_t n);
/* The checkpoint's state.json (malloc'ed), read before anything else so
 * that a mismatched run is refused with a clear message. */
char *ckpt_state(const char *dir, PcError *err);
/* Restores weights (through hf_import) and the optimizer's moments. */
int ckpt_load(const char *dir, Params *p, AdamW *o, PcError *err);

#endif
