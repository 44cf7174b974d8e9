/* What every `ponder` command that runs a model shares: loading it. A model
 * is a script (run by the interpreter, or compiled in-process by a backend:
 * --backend c|llvm, --jit) or a library compiled by pondercc; its weights
 * come from a Hugging Face folder (--hf) or a seeded initialisation. */
#ifndef PC_CLI_MODEL_LOAD_H
#define PC_CLI_MODEL_LOAD_H

#include "compiler/model_opts.h"
#include "runtime/cli/engine.h"
#include "runtime/params.h"

typedef struct {
  Engine *engine;
  Params params;
  char *name;         /* the model's name */
  char *hparams_json; /* its resolved hyperparameters, config.json style */
  int64_t vocab;      /* vocab_size */
  int64_t context;    /* the longest sequence (0: unknown) */
  FeModel *fe;        /* the script, when the model is one (NULL for a library) */
  IrGraph *graph;     /* the script's forward graph with o->trace_flags (NULL for a library) */
} LoadedModel;

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err);
void model_unload(LoadedModel *m);

#endif
