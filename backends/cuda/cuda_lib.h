/* pondercc --target cuda -o model.so: a shared library with the model ABI's
 * three functions (its ponder_run refuses: the model runs on a GPU) and
 * ponder_cuda_image (runtime/include/ponder_cuda.h): the kernel program and
 * its PTX for each architecture asked for, compiled by NVRTC. */
#ifndef PC_CUDA_LIB_H
#define PC_CUDA_LIB_H

#include "compiler/module.h"

typedef struct {
  unsigned kernels;
  double render_s, nvrtc_s, link_s;
  size_t ptx_bytes; /* all architectures */
} CudaLibStats;

int cuda_build_shared(const PcModule *m, const int *archs, int n_archs, const char *so_path, CudaLibStats *st, PcError *err);

#endif
