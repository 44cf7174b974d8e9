/* An engine runs a model's compiled entries (runtime/include/ponder_abi.h):
 * the reference interpreter over graph IR, or code compiled by a backend
 * (a shared library, or an in-process JIT). Training, evaluation, forward
 * and generation only talk to this interface. */
#ifndef PC_CLI_ENGINE_H
#define PC_CLI_ENGINE_H

#include "backends/interp/interp.h"
#include "compiler/model_opts.h"
#include "runtime/params.h"

typedef enum { ENTRY_TRAIN, ENTRY_EVAL, ENTRY_LOGITS, ENTRY_DECODE, ENTRY_COUNT } EntryKind;
const char *entry_name(EntryKind k);

/* An input or output of an entry: dims >= 0 static, -1 - k the k-th
 * symbolic dim (B, T). */
typedef struct {
  char name[128];
  PcDType dtype;
  int rank;
  int64_t dim[PC_MAX_RANK];
} EngineIO;

/* One AdamW update's numbers (adamw_next, runtime/train/optim.c), for
 * every element of every parameter, g its gradient:
 *   g *= grad_scale;  w *= decay (parameters that decay only);
 *   m += one_minus_b1 (g - m);  v = v b2 + one_minus_b2 g g;
 *   w += neg_step m / (sqrt(v) / bc2_sqrt + eps)
 * each operation rounded to float in this order (PyTorch's). */
typedef struct {
  float grad_scale, decay, neg_step, bc2_sqrt, eps, b2, one_minus_b1, one_minus_b2;
} AdamWStep;

typedef struct Engine Engine;

/* Training whose state stays on the device, for an engine that offers it
 * (Engine.train; NULL otherwise, and the trainer runs AdamW on the CPU).
 * From begin to end the engine owns the parameters and the AdamW moments:
 * its copies are the current ones and the host's are stale until fetch
 * writes them back; run() with the same Params reads the engine's copies.
 * The host must not write the parameters in between (params_changed then
 * makes the next call fail). */
typedef struct {
  /* Takes p's values and the moments m, v (a tensor per parameter) to the
   * device; decays[i]: whether weight decay applies to parameter i. */
  int (*begin)(Engine *e, const Params *p, Tensor *const *m, Tensor *const *v, const unsigned char *decays,
               PcError *err);
  /* Runs the train entry on micro-batch `micro` (0 .. of - 1) of a step
   * (in: as for run). The gradients stay on the device: the first
   * micro-batch's replace the step's, later ones are added, and after the
   * last the sum is scaled by float(1 / of), the CPU trainer's arithmetic.
   * Only the loss comes back. */
  int (*micro)(Engine *e, const NamedTensor *in, size_t n_in, int64_t micro, int64_t of, double *loss, PcError *err);
  /* The step's global gradient norm, summed in a fixed order. */
  int (*norm)(Engine *e, double *norm, PcError *err);
  /* One AdamW update of every parameter from the step's gradients. */
  int (*update)(Engine *e, const AdamWStep *s, PcError *err);
  /* The parameters into p (which stays the engine's: no params_changed)
   * and the moments into m, v: for checkpoints and the end. */
  int (*fetch)(Engine *e, Params *p, Tensor *const *m, Tensor *const *v, PcError *err);
  /* The host's values are the current ones again (fetch them first). */
  void (*end)(Engine *e);
} EngineTrain;

struct Engine {
  const char *backend; /* "interp", "compiled", "cuda" */
  /* Runs an entry. Outputs come back in the entry's order; an output whose
   * tensor the caller set (the right shape) is written in place, the
   * others are allocated (the caller frees them). */
  int (*run)(Engine *e, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
             size_t max_out, size_t *n_out, PcError *err);
  /* The entry's inputs (for the KV caches of decode); NULL if it has none. */
  const EngineIO *(*inputs)(Engine *e, EntryKind k, size_t *n, PcError *err);
  void (*free)(Engine *e);
  const EngineTrain *train; /* NULL: the engine has no device optimizer */
};

/* The interpreter over graphs traced from fe with o's pipeline, built on
 * first use (max_seq: the KV caches' length for decode). */
Engine *engine_interp(FeModel *fe, const ModelOpts *o, int64_t max_seq);

/* A compiled model: a shared library made by pondercc. *info_json gets its
 * model info (owned by the engine). */
int engine_open_library(const char *path, Engine **out, const char **info_json, PcError *err);

#endif
