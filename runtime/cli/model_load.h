/* What every `ponder` command that runs a model shares: the options that
 * pick the model (script, config, Hugging Face folder, overrides, seed) and
 * loading it (trace, parameter table, weights from the checkpoint or a
 * seeded initialisation). */
#ifndef PC_CLI_MODEL_LOAD_H
#define PC_CLI_MODEL_LOAD_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler/model_opts.h"
#include "runtime/params.h"

typedef struct {
  FeModel *fe;
  IrGraph *graph;
  Params params;
} LoadedModel;

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err);
void model_unload(LoadedModel *m);

#endif
