/* NVRTC, opened with dlopen when first needed (nothing links it): CUDA C
 * -> PTX for a compute capability, with a disk cache of the results keyed
 * by the source's hash, the architecture and NVRTC's version. */
#ifndef PC_CUDA_NVRTC_H
#define PC_CUDA_NVRTC_H

#include <stddef.h>

#include "runtime/base/err.h"

typedef struct CudaNvrtc CudaNvrtc;

/* Finds libnvrtc: $PONDER_NVRTC (a path; "none" hides it), the loader's
 * path, then $CUDA_HOME, $CUDA_PATH and /usr/local/cuda. */
int cuda_nvrtc_open(CudaNvrtc **out, PcError *err);
void cuda_nvrtc_close(CudaNvrtc *n);
void cuda_nvrtc_version(const CudaNvrtc *n, int *major, int *minor);

typedef struct {
  double seconds; /* NVRTC's time (0 when cached) */
  int cached;     /* read from the cache */
} CudaPtxInfo;

/* PTX of source for compute_<arch> (80 = sm_80), malloc'ed. With use_cache,
 * looks in and writes to cuda_cache_dir(). The error carries NVRTC's log. */
int cuda_nvrtc_ptx(CudaNvrtc *n, const char *source, int arch, int use_cache, char **ptx, CudaPtxInfo *info, PcError *err);

/* $PONDER_CACHE_DIR, or $XDG_CACHE_HOME/pondercc, or ~/.cache/pondercc;
 * then /cuda. NULL when none can be named (no HOME). */
const char *cuda_cache_dir(char *buf, size_t n);

#endif
