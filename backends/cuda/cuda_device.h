/* A device for the CUDA backend's host executor: a table of operations.
 * runtime/cuda/cuda_driver.c implements it with the CUDA driver API and
 * cuBLAS (both opened with dlopen); runtime/cuda/cuda_emu.c runs the same
 * kernels and launches on the CPU, for tests on machines without a GPU. */
#ifndef PC_CUDA_DEVICE_H
#define PC_CUDA_DEVICE_H

#include <stddef.h>

#include "backends/cuda/cuda_backend.h"

typedef struct CudaDevice CudaDevice;
struct CudaDevice {
  const char *name; /* "NVIDIA H100 80GB HBM3", "emulator" */
  int arch;         /* compute capability x 10 (90), 0 for the emulator */
  /* Loads the program's kernels: PTX for the device's architecture (a real
   * device), or the CUDA C source (the emulator compiles it). */
  int (*load)(CudaDevice *d, const char *source, const char *ptx, uint32_t n_kernels, PcError *err);
  int (*alloc)(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err);
  void (*release)(CudaDevice *d, CuPtr p);
  int (*upload)(CudaDevice *d, CuPtr dst, const void *src, size_t bytes, PcError *err);
  int (*download)(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err); /* waits for the work before it */
  int (*copy)(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err);     /* not overlapping */
  int (*fill32)(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err);
  int (*launch)(CudaDevice *d, uint32_t kernel, uint32_t grid, uint32_t block, void **params, PcError *err);
  int (*gemm)(CudaDevice *d, const CudaGemm *g, PcError *err); /* cuBLAS sgemm, column-major */
  int (*sync)(CudaDevice *d, PcError *err);
  void (*free)(CudaDevice *d);
};

/* Runs entry `entry` of cp on d: the host walks the entry's statements,
 * evaluating its own scalars, launching kernels and calling gemm, fill and
 * copy. bufs: every buffer's address (cuda_buffer_addresses); slots: 8
 * bytes per variable of the entry, where one-thread kernels leave the
 * values of host variables they assign. */
int cuda_exec(const CudaProgram *cp, CudaDevice *d, uint32_t entry, const int64_t *dims, const CuPtr *bufs, CuPtr slots,
              PcError *err);

#endif
