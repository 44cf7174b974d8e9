/* The CUDA backend (docs/cuda-backend.md): kernel IR -> CUDA C kernels and a
 * launch plan. Every parallel loop of an entry becomes a kernel; host-level
 * statements that touch memory without a parallel loop or a matrix product
 * inside become one-thread kernels; the host walks the rest of the entry
 * (serial loops, scalar assignments), launches the kernels, calls cuBLAS for
 * gemm and the driver for fill and copy (cuda_exec.c, through a device table:
 * cuda_device.h). The source compiles with NVRTC (cuda_nvrtc.c). */
#ifndef PC_CUDA_BACKEND_H
#define PC_CUDA_BACKEND_H

#include <stdint.h>

#include "ir/kir.h"

/* How a kernel maps its loop onto threads. */
typedef enum {
  CM_SERIAL, /* a host-level statement, one thread */
  CM_THREAD, /* a parallel loop, one thread per iteration (grid-stride) */
  CM_WARP,   /* a parallel loop, one warp per iteration; its vector loops over the lanes */
  CM_BLOCK,  /* a parallel loop, one block per iteration; its vector loops over the threads */
  CM_GROUP,  /* a host-level statement, one block; its vector loops over the threads */
  CM_CALL,   /* a call (KS_CALL): the library's kernels for it (cuda_library.h), its args in launch order */
  CM_RUNTIME, /* not a launch's: the runtime's own kernels (bf16 conversion, the optimizer) */
  CM_NUM
} CudaMode;

/* One kernel parameter: a dim's value, a buffer's address, a variable's
 * value, or the address of a variable's result slot (a one-thread kernel
 * that assigns a host variable writes it there; the host reads it back),
 * or the address of a buffer's bf16 mirror (CudaMirror; 0: none). */
typedef enum { CA_DIM, CA_BUF, CA_VAR, CA_SLOT, CA_KERNEL, CA_MIRROR } CudaArgKind; /* CA_KERNEL: one of a call's kernels */

typedef struct {
  uint8_t kind; /* CudaArgKind */
  uint8_t type; /* CA_VAR: the variable's KType (f32 is 4 bytes, the rest 8) */
  uint32_t id;  /* the dim, buffer or variable of the entry; the kernel */
} CudaArg;

typedef struct {
  uint32_t entry, stmt, kernel; /* kernel: k<N> in the source */
  CudaMode mode;
  uint32_t threads;             /* threads per block */
  uint32_t arg0, n_args;        /* CudaProgram.args[arg0 ..] */
  uint32_t w0, n_w;             /* the buffers it writes: CudaProgram.writes[w0 ..] */
  uint32_t m0, n_m;             /* the rows it mirrors in bf16: CudaProgram.mirrors[m0 ..] */
} CudaLaunch;

/* Stores of a kernel that also write a bf16 copy of what they store (its
 * mirror), so that a matrix product reading the values in bf16 need not
 * convert them (cuda_mirror.c). Every store of the kernel to the arena
 * buffer `buf` writes whole rows: row r of the parallel loop (its bounds
 * are the launch's) writes elements [c + r w, c + r w + w), every one of
 * them, w and c known to the host at launch. */
typedef struct {
  uint32_t buf;
  uint32_t w;       /* an expression; UINT32_MAX: 1 */
  uint32_t c0, n_c; /* c, a sum of expressions: CudaProgram.mirror_terms[c0 ..] */
  uint32_t alone;   /* the mirror alone, no fp32 (given a mirror): nothing but products reads buf */
  uint32_t overwritten; /* a later kernel mirrors the same rows before a product reads them: the host passes no mirror */
} CudaMirror;

/* Threads per block by mode; the kernels read blockDim, so these are the
 * host's choice (an emulator runs smaller blocks of the same code). */
typedef struct {
  unsigned block_threads; /* CM_BLOCK, rows of 512 or more (shorter rows get half) */
  unsigned warp_threads;  /* CM_WARP: warps per block x 32 */
  unsigned thread_threads;/* CM_THREAD */
} CudaOptions;

CudaOptions cuda_options_default(void);

#define CUDA_MAX_RUNTIME_KERNELS 16

typedef struct {
  const KProgram *prog;      /* not owned */
  char *source;              /* the CUDA C of every kernel */
  uint32_t n_kernels;        /* distinct kernels (the same loop nest in every layer is one) */
  VEC(CudaLaunch) launches;
  VEC(CudaArg) args;
  VecU32 writes;             /* per launch, the entry's buffers it writes (what the executor's caches forget) */
  uint32_t *launch_of;       /* per statement of prog: its launch, or UINT32_MAX */
  VEC(CudaMirror) mirrors;
  VecU32 mirror_terms;
  uint64_t *mirror_span;     /* per entry, arena bytes [lo, hi) of the buffers with mirrors (lo = hi: none) */
  VEC(unsigned char) half;   /* per entry and buffer (from half0[entry]): it lives in its mirror alone, given one:
                                products write it in bf16 there, kernels load and store it there (cuda_mirror.c) */
  uint32_t *half0;
  uint32_t runtime_kernel[CUDA_MAX_RUNTIME_KERNELS]; /* the runtime's kernels' numbers (cuda_library.h) */
} CudaProgram;

/* Renders every entry of p. Errors: a construct the host cannot run (a loop
 * bound read from device memory, a parallel loop that assigns a variable
 * of the host). */
int cuda_render(const KProgram *p, const CudaOptions *o, CudaProgram *out, PcError *err);
void cuda_program_free(CudaProgram *cp);

/* Which inputs of e its statements write (decode's KV caches): out[i] = 1
 * for input i. */
void cuda_written_inputs(const KProgram *p, const KEntry *e, unsigned char *out);

/* ---- the launch plan (cuda_plan.c) ----------------------------------------- */

/* "serial", "thread", "warp", "block", "group", "library", "runtime" */
const char *cuda_mode_name(CudaMode m);
/* Each kernel's mode (malloc'ed, cp->n_kernels of them): a call's kernels
 * CM_CALL, the runtime's CM_RUNTIME. */
unsigned char *cuda_kernel_modes(const CudaProgram *cp);

/* Blocks and threads for a launch over n iterations (CM_SERIAL: one
 * thread); 0 when there is nothing to run (n <= 0). */
int cuda_launch_shape(const CudaLaunch *l, int64_t n, uint32_t *grid, uint32_t *block);
#define CUDA_MAX_GRID (1u << 20) /* larger loops stride over the grid */

typedef uint64_t CuPtr; /* a device address */

/* Where an entry's buffers are: parameters, inputs and outputs by their
 * index, the arena's base plus the planned offset. */
void cuda_buffer_addresses(const KEntry *e, const CuPtr *params, const CuPtr *inputs, const CuPtr *outputs, CuPtr arena,
                           CuPtr *out);

/* A scalar of the host: f32 or i64 (bool as 0/1). */
typedef union {
  float f;
  int64_t i;
} CudaValue;

/* Whether buffer buf of entry e lives in its mirror alone (CudaProgram.half). */
int cuda_buf_half(const CudaProgram *cp, uint32_t entry, uint32_t buf);
/* Whether launch l gets buf's mirror's address: buf lives there and the
 * run keeps such buffers there (half), or l stores buf's mirror (a record
 * of it, not overwritten) and buf does not live there. */
int cuda_launch_mirrors(const CudaProgram *cp, const CudaLaunch *l, uint32_t buf, int half);

/* The argument values of a launch, 8 bytes each (an f32 in the first 4),
 * and kernelParams pointing at them, as cuLaunchKernel takes them.
 * mirror0: where the mirror of arena byte 0 would be (an arena buffer's
 * mirror is at mirror0 + offset / 2), 0 for no mirrors; half: buffers
 * that can live in their mirrors do (cuda_launch_mirrors). */
void cuda_pack_args(const CudaProgram *cp, const CudaLaunch *l, const int64_t *dims, const CuPtr *bufs,
                    const CudaValue *vars, CuPtr slots, CuPtr mirror0, int half, uint64_t *values, void **params);

/* What matrix products compute in (--precision; docs/cuda-backend.md):
 * bf16 tensor cores (operands rounded to bf16, products and sums in fp32),
 * TF32 tensor cores (fp32 operands, 10-bit mantissas in the products), or
 * fp32. Everything else (master weights, activations, kernels) is fp32. */
typedef enum { CUDA_FP32, CUDA_TF32, CUDA_BF16, CUDA_PRECISION_NUM } CudaPrecision; /* 0: fp32 */
const char *cuda_precision_name(CudaPrecision p);           /* "bf16", "tf32", "fp32" */
int cuda_precision_from_name(const char *name, CudaPrecision *out); /* -1 if none */

/* A row-major sgemm (the kernel IR's) as cuBLAS's column-major call:
 * C^T = op(B)^T op(A)^T, so the operands and m, n swap. Addresses in bytes;
 * a and b hold bf16 when precision is CUDA_BF16, c fp32 unless c_bf16 (a
 * buffer living in its mirror, beta 0). */
typedef struct {
  CudaPrecision precision;
  int c_bf16;
  int transa, transb; /* 0: N, 1: T */
  int m, n, k;
  float alpha, beta;
  CuPtr a, b, c;
  int lda, ldb, ldc;
} CudaGemm;
CudaGemm cuda_gemm_colmajor(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, CuPtr a, int64_t lda, CuPtr b,
                            int64_t ldb, float beta, CuPtr c, int64_t ldc);

#endif
