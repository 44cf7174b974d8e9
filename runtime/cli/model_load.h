/* What every `ponder` command that runs a model shares: the options that
 * pick the model (script, config, Hugging Face folder, overrides, seed) and
 * loading it (trace, parameter table, weights from the checkpoint or a
 * seeded initialisation). */
#ifndef PC_CLI_MODEL_LOAD_H
#define PC_CLI_MODEL_LOAD_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler/front.h"
#include "runtime/params.h"

typedef struct {
  const char *script;
  const char *config;
  const char *hf; /* folder with config.json and model.safetensors */
  VEC(char *) sets;
  uint64_t seed;
  unsigned trace_flags;
} ModelOpts;

enum { MODEL_OPT_CONFIG = 1000, MODEL_OPT_HF, MODEL_OPT_SET, MODEL_OPT_SEED };

#define MODEL_LONG_OPTIONS                                                                          \
  {"config", required_argument, 0, MODEL_OPT_CONFIG}, {"hf", required_argument, 0, MODEL_OPT_HF},    \
      {"set", required_argument, 0, MODEL_OPT_SET}, {"seed", required_argument, 0, MODEL_OPT_SEED}

#define MODEL_OPTIONS_HELP                                                                        \
  "  --config NAME      one of the script's configs (default: the script's default)\n"           \
  "  --hf DIR           a Hugging Face folder: config.json and model.safetensors (or shards)\n" \
  "  --set KEY=VALUE    override one hyperparameter (repeatable)\n"                              \
  "  --seed N           seed of the random initialisation when there is no --hf (default 1)\n"

/* Handles one getopt result if it is a model option: 1 if taken, 0 if not
 * a model option, -1 on a bad value (message printed). */
int model_opts_take(ModelOpts *o, int c, const char *arg);

typedef struct {
  FeModel *fe;
  IrGraph *graph;
  Params params;
} LoadedModel;

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err);
void model_unload(LoadedModel *m);
void model_opts_free(ModelOpts *o);

#endif
