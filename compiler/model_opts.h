/* The options every command that compiles a model shares (pondercc and
 * the ponder tools): which script, which config, Hugging Face config.json,
 * overrides, pondering, the pipeline's switches; and turning them into a
 * traced, optimised forward graph. */
#ifndef PC_MODEL_OPTS_H
#define PC_MODEL_OPTS_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler/front.h"
#include "compiler/pipeline.h"

typedef struct {
  const char *script;
  const char *config;
  const char *hf; /* folder with config.json (and, for the runtime, model.safetensors) */
  VEC(char *) sets;
  VEC(char *) owned; /* --set strings made here (from --ponder), freed with the options */
  uint64_t seed;
  unsigned trace_flags;
  int64_t cache_len; /* FE_TRACE_DECODE: positions per KV cache (0: the model's context) */
  PcPipeline pipeline;
  const char *backend; /* runtime: interp (default), c or llvm */
  const char *device;  /* runtime: cpu (default) or cuda */
  const char *precision; /* runtime, --device cuda: the matrix products' precision, bf16 (default), tf32 or fp32 */
  const char *profile;   /* runtime, --device cuda: where the device time of every op goes ("-": stderr) */
  int64_t max_batch, max_seq; /* compiled backends: the largest call they are planned for */
  unsigned entries;            /* compiled backends: the PC_ENTRY_* to build (0: all) */
} ModelOpts;

enum {
  MODEL_OPT_CONFIG = 1000, MODEL_OPT_HF, MODEL_OPT_SET, MODEL_OPT_SEED, MODEL_OPT_PONDER, MODEL_OPT_NO_FUSE,
  MODEL_OPT_BACKEND, MODEL_OPT_JIT, MODEL_OPT_DEVICE, MODEL_OPT_PRECISION, MODEL_OPT_PROFILE
};

#define MODEL_LONG_OPTIONS                                                                          \
  {"config", required_argument, 0, MODEL_OPT_CONFIG}, {"hf", required_argument, 0, MODEL_OPT_HF},    \
      {"set", required_argument, 0, MODEL_OPT_SET}, {"seed", required_argument, 0, MODEL_OPT_SEED},  \
      {"ponder", required_argument, 0, MODEL_OPT_PONDER}, {"no-fuse", no_argument, 0, MODEL_OPT_NO_FUSE},  \
      {"backend", required_argument, 0, MODEL_OPT_BACKEND}, {"jit", no_argument, 0, MODEL_OPT_JIT},      \
      {"device", required_argument, 0, MODEL_OPT_DEVICE}, {"precision", required_argument, 0, MODEL_OPT_PRECISION}, \
      {"profile", required_argument, 0, MODEL_OPT_PROFILE}

#define MODEL_OPTIONS_HELP                                                                          \
  "  --config NAME      one of the script's configs (default: the script's default)\n"             \
  "  --hf DIR           a Hugging Face folder: config.json and model.safetensors (or shards)\n"   \
  "  --set KEY=VALUE    override one hyperparameter (repeatable)\n"                                \
  "  --ponder K         ponder K steps (--set ponderinglm=true --set pondering_steps=K)\n"        \
  "  --no-fuse          keep the vocabulary ops unfused (materialises [tokens x vocab] buffers)\n" \
  "  --backend NAME     llvm (compiled in-process; the default when the context length is known),\n" \
  "                     c, or interp (the reference interpreter)\n"                                 \
  "  --jit              the same as --backend llvm\n"                                            \
  "  --seed N           seed of the random initialisation when there is no --hf (default 1)\n"

/* for the commands that run the model (forward, generate, train) */
#define MODEL_DEVICE_HELP                                                                           \
  "  --device NAME      cpu (default) or cuda: the model compiled for the first GPU (docs/cuda-backend.md)\n" \
  "  --precision P      with --device cuda, the matrix products: bf16 (default; tensor cores, fp32 sums\n" \
  "                     and weights), tf32 (tensor cores on fp32 operands) or fp32\n"                \
  "  --profile FILE     with --device cuda, the device time of every kernel and product, by graph op,\n" \
  "                     written to FILE when the run ends (- for stderr; PONDER_CUDA_PROFILE too)\n"

/* Handles one getopt result if it is a model option: 1 if taken, 0 if not
 * a model option, -1 on a bad value (message printed). */
int model_opts_take(ModelOpts *o, int c, const char *arg);
void model_opts_free(ModelOpts *o);

/* Opens the script with the options' config, config.json and overrides. */
int model_opts_open(const ModelOpts *o, FeModel **out, PcError *err);
/* Traces the model and runs the forward pipeline (pc_optimize). */
int model_opts_compile(const ModelOpts *o, FeModel *fe, IrGraph **out, PcError *err);

#endif
