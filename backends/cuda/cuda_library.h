/* Hand-written CUDA kernels (backends/cuda/kernels/) that the generated
 * source carries: the kernel IR's calls (KS_CALL), where loop nests are not
 * good enough, instantiated per head dim; and the runtime's own kernels,
 * in every program. Each kernel takes one struct by value; the host fills
 * its copy here. */
#ifndef PC_CUDA_LIBRARY_H
#define PC_CUDA_LIBRARY_H

#include "backends/cuda/cuda_device.h"

/* the sources of kernels/attention.cu, runtime.cu and optim.cu (NUL-terminated) */
extern const char cuda_library_attention[], cuda_library_runtime[], cuda_library_optim[];

/* ---- the runtime's kernels ------------------------------------------------------ */

/* CudaProgram.runtime_kernel[k] is kernel k's number in the program. */
typedef enum {
  CR_TO_BF16, /* PcToBf16: fp32 -> bf16, round to nearest even */
  CR_OPT_ACCUM, CR_OPT_SUMSQ, CR_OPT_NORM, CR_OPT_ADAMW, /* PcOpt: the device optimizer (optim.cu, CudaOptim below) */
  CR_NUM
} CudaRuntimeKernel;
_Static_assert(CR_NUM <= CUDA_MAX_RUNTIME_KERNELS, "CudaProgram.runtime_kernel is too short");

typedef struct {
  const char *fn, *arg_type; /* the device function, its struct */
} CudaRuntimeInfo;
const CudaRuntimeInfo *cuda_runtime_info(CudaRuntimeKernel k);

/* the host's copies of runtime.cu's structs */
typedef struct {
  CuPtr src, dst;
  int64_t n;
} CudaToBf16Args;

/* the device optimizer's (optim.cu: PcOptTensor, PcAdamW, PcOpt) */
#define CUDA_OPT_CHUNK 16384
typedef struct {
  CuPtr w, g, m, v, src;
  int64_t n, chunk0;
  int32_t decays, pad;
} CudaOptTensor;
typedef struct { /* AdamWStep (runtime/cli/engine.h), field for field */
  float grad_scale, decay, neg_step, bc2_sqrt, eps, b2, one_minus_b1, one_minus_b2;
} CudaAdamW;
typedef struct {
  CuPtr t, partial, norm;
  int64_t n_tensors, n_chunks;
  float scale;
  int32_t first, last;
  CudaAdamW adamw;
} CudaOptArgs;

/* Launches runtime kernel k of cp over n elements (grid-stride; nothing for
 * n <= 0) with its argument struct. */
int cuda_runtime_launch(const CudaProgram *cp, CudaDevice *d, CudaRuntimeKernel k, int64_t n, void *arg, PcError *err);

/* ---- the device optimizer (optim.cu) ------------------------------------------- */

/* Its memory on the device: the table of tensors and the norm's sums. */
typedef struct {
  CuPtr table, partial, norm;
  CudaOptTensor *host; /* the table as uploaded */
  size_t n;
  int64_t n_chunks;
} CudaOptim;

/* Sets the tensors (w, g, m, v, src, n, decays; chunk0 is numbered here);
 * uploads the table only when it changed. */
int cuda_optim_tensors(CudaOptim *o, CudaDevice *d, const CudaOptTensor *t, size_t n, PcError *err);
/* g = src (first), g + src (otherwise), then g *= scale (last). */
int cuda_optim_accumulate(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, int first, int last, float scale,
                          PcError *err);
/* The global norm of the g's, into *norm (8 bytes come back); grid: the
 * first pass's blocks (0: one per chunk, capped), which changes no bit. */
int cuda_optim_norm(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, uint32_t grid, double *norm, PcError *err);
/* One AdamW update of every w, m, v from its g. */
int cuda_optim_adamw(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, const CudaAdamW *s, PcError *err);
void cuda_optim_free(CudaOptim *o, CudaDevice *d);

/* ---- calls ------------------------------------------------------------------------ */

/* The host's copy of struct PcAttn (kernels/attention.cu): pointers as
 * device addresses, the same layout on a 64-bit host and device. */
typedef struct {
  CuPtr q, k, v, dy, y, dq, dk, dv, lse, delta; /* attention_cached: k, v are the cache's planes */
  CuPtr yh, dqh, dkh, dvh; /* bf16 mirrors of y, or of dq, dk, dv: cuda_call_mirror_args sets them */
  int64_t B, T, H, Hkv;
  int64_t L, pos; /* attention_cached: the cache's positions, the first query row's */
  CuPtr qbias, kbias, vbias; /* added to q, k, v as they load, or 0 */
  int64_t qrs, krs, vrs;     /* row strides of q, k, v */
  int64_t dqrs, dkrs, dvrs;  /* of dq, dk, dv */
  float scale;
} CudaAttnArgs;

/* Whether the library has kernels for op at head dim D (1 .. 128). */
int cuda_call_supported(KCallOp op, int64_t head_dim);

#define CUDA_CALL_MAX_KERNELS 6

/* The device functions op's kernels wrap and the threads per block of
 * each; returns how many. Variants are listed too (the tensor-core forward,
 * dq and dk/dv for head dims of 16, 32, .., 128): the plan picks among them. */
int cuda_call_kernels(KCallOp op, int64_t head_dim, const char **fn, unsigned *threads);

/* The launches of a call for its argument values (kcall_info(op)->args
 * order), in order: which of cuda_call_kernels' kernels, its grid and
 * block; returns how many, 0 when there is nothing to run. tensor_cores:
 * the engine's products are bf16, so its attention forward may be too. */
int cuda_call_plan(KCallOp op, const int64_t *args, int tensor_cores, int *kernel, uint32_t *grid, uint32_t *block);

/* The argument struct of a call: its buffers' addresses, its scalars. */
void cuda_call_args(KCallOp op, const CuPtr *bufs, const int64_t *args, float scale, CudaAttnArgs *out);

/* The buffer of a call that its kernels can store with a bf16 mirror, for
 * its argument values (those not known: 0), and its elements from element
 * 0; -1 if none. The forward's y, every element of it; the gradient's dq,
 * dk and dv when they are one buffer whose rows their columns tile (the
 * gradient of a product that q, k and v were sliced from), else dv where
 * it is a buffer of its own. */
int cuda_call_mirror(KCallOp op, const int64_t *args, int64_t *elements);
/* Points the struct's mirrors (yh, or dqh, dkh, dvh) into the mirror of
 * cuda_call_mirror's buffer, which starts at `mirror`. */
void cuda_call_mirror_args(KCallOp op, const int64_t *args, CuPtr mirror, CudaAttnArgs *a);

#endif
