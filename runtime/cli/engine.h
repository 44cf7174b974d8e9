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

typedef struct Engine Engine;
struct Engine {
  const char *backend; /* "interp", "c", "llvm" */
  /* Runs an entry. Outputs come back in the entry's order; an output whose
   * tensor the caller set (the right shape) is written in place, the
   * others are allocated (the caller frees them). */
  int (*run)(Engine *e, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
             size_t max_out, size_t *n_out, PcError *err);
  /* The entry's inputs (for the KV caches of decode); NULL if it has none. */
  const EngineIO *(*inputs)(Engine *e, EntryKind k, size_t *n, PcError *err);
  void (*free)(Engine *e);
};

/* The interpreter over graphs traced from fe with o's pipeline, built on
 * first use (max_seq: the KV caches' length for decode). */
Engine *engine_interp(FeModel *fe, const ModelOpts *o, int64_t max_seq);

/* A compiled model: a shared library made by pondercc. *info_json gets its
 * model info (owned by the engine). */
int engine_open_library(const char *path, Engine **out, const char **info_json, PcError *err);

#endif
