/* The CUDA engine (--device cuda): a compiled model's entries on a GPU
 * (or on the CPU emulator with PONDER_CUDA_EMULATE=1). Parameters and
 * inputs go to the device for every call and outputs come back; the
 * arena stays there, and so do decode's KV caches, for one sequence at a
 * time. Matrix products run in the precision given (--precision: the
 * engine's choice, not compiled in). docs/cuda-backend.md has the details. */
#ifndef PC_CLI_ENGINE_CUDA_H
#define PC_CLI_ENGINE_CUDA_H

#include "backends/cuda/cuda_backend.h"
#include "compiler/module.h"
#include "runtime/cli/engine.h"

/* How the engine runs: the matrix products' precision (--precision), and
 * where the profile of the device's time goes when it closes (--profile
 * FILE, or "-" for stderr; NULL: PONDER_CUDA_PROFILE decides). */
typedef struct {
  CudaPrecision precision;
  const char *profile;
} CudaEngineOptions;

/* Takes m's kernel program and info (m is left empty); renders it, has
 * NVRTC compile it for the device (with the disk cache) and loads it. */
int engine_cuda_from_module(PcModule *m, const CudaEngineOptions *o, Engine **out, const char **info_json, PcError *err);

/* A library made by pondercc --target cuda. */
int engine_cuda_open_library(const char *path, const CudaEngineOptions *o, Engine **out, const char **info_json, PcError *err);

#endif
