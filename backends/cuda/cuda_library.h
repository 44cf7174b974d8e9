/* Hand-written CUDA kernels (backends/cuda/kernels/) that the generated
 * source carries where loop nests are not good enough: the kernel IR's calls
 * (KS_CALL), instantiated per head dim. Each kernel takes one struct by
 * value; the host fills its mirror here and launches the call's kernels in
 * order with the shapes cuda_call_plan gives. */
#ifndef PC_CUDA_LIBRARY_H
#define PC_CUDA_LIBRARY_H

#include "backends/cuda/cuda_backend.h"

/* the source of kernels/attention.cu (NUL-terminated) */
extern const char cuda_library_attention[];

/* The host's mirror of struct PcAttn (kernels/attention.cu): pointers as
 * device addresses, the same layout on a 64-bit host and device. */
typedef struct {
  CuPtr q, k, v, dy, y, dq, dk, dv, lse, delta;
  int64_t B, T, H, Hkv;
  float scale;
} CudaAttnArgs;

/* Whether the library has kernels for op at head dim D (1 .. 128). */
int cuda_call_supported(KCallOp op, int64_t head_dim);

#define CUDA_CALL_MAX_KERNELS 3

/* The device functions op's kernels wrap, in launch order, and the
 * threads per block of each; returns how many. */
int cuda_call_kernels(KCallOp op, int64_t head_dim, const char **fn, unsigned *threads);

/* Grid and block of each of op's kernels for the call's argument values
 * (kcall_info(op)->args order); returns how many, 0 when there is nothing
 * to run. */
int cuda_call_plan(KCallOp op, const int64_t *args, uint32_t *grid, uint32_t *block);

/* The argument struct of a call: its buffers' addresses, its scalars. */
void cuda_call_args(KCallOp op, const CuPtr *bufs, const int64_t *args, float scale, CudaAttnArgs *out);

#endif
