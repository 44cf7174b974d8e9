/* Hand-written CUDA kernels (backends/cuda/kernels/) that the generated
 * source carries: the kernel IR's calls (KS_CALL), where loop nests are not
 * good enough, instantiated per head dim; and the runtime's own kernels,
 * in every program. Each kernel takes one struct by value; the host fills
 * its mirror here. */
#ifndef PC_CUDA_LIBRARY_H
#define PC_CUDA_LIBRARY_H

#include "backends/cuda/cuda_device.h"

/* the sources of kernels/attention.cu and kernels/runtime.cu (NUL-terminated) */
extern const char cuda_library_attention[], cuda_library_runtime[];

/* ---- the runtime's kernels ------------------------------------------------------ */

/* CudaProgram.runtime_kernel[k] is kernel k's number in the program. */
typedef enum {
  CR_TO_BF16, /* PcToBf16: fp32 -> bf16, round to nearest even */
  CR_NUM
} CudaRuntimeKernel;
_Static_assert(CR_NUM <= CUDA_MAX_RUNTIME_KERNELS, "CudaProgram.runtime_kernel is too short");

typedef struct {
  const char *fn, *arg_type; /* the device function, its struct */
} CudaRuntimeInfo;
const CudaRuntimeInfo *cuda_runtime_info(CudaRuntimeKernel k);

/* mirrors of runtime.cu's structs */
typedef struct {
  CuPtr src, dst;
  int64_t n;
} CudaToBf16Args;

/* Launches runtime kernel k of cp over n elements (grid-stride; nothing for
 * n <= 0) with its argument struct. */
int cuda_runtime_launch(const CudaProgram *cp, CudaDevice *d, CudaRuntimeKernel k, int64_t n, void *arg, PcError *err);

/* ---- calls ------------------------------------------------------------------------ */

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
