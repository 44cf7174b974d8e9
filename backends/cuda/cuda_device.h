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
  /* cuBLAS, column-major: C = alpha op(A) op(B) + beta C, C fp32, A and B
   * fp32 or bf16 (g->precision), sums in fp32 */
  int (*gemm)(CudaDevice *d, const CudaGemm *g, PcError *err);
  int (*sync)(CudaDevice *d, PcError *err);
  void (*free)(CudaDevice *d);
  /* Timing (cuda_profile.h; NULL where a device cannot): stamp queues a
   * timestamp after the work before it; elapsed waits for the work, sets
   * ms[i] to the time from stamp i to stamp i + 1 of the n stamps since the
   * last elapsed (n must be their number), and forgets them. */
  int (*stamp)(CudaDevice *d, PcError *err);
  int (*elapsed)(CudaDevice *d, float *ms, size_t n, PcError *err);
};

/* How cuda_exec runs the matrix products, and the device memory of their
 * bf16 operands, which the caller keeps across calls (it grows as needed;
 * cuda_gemm_ctx_free releases it). In bf16 every operand is rounded
 * (CR_TO_BF16) into scratch with its layout: exactly the elements the
 * product reads.
 * - A parameter does not change during a call: each range of it is
 *   converted once, into a copy of the whole parameter that later products
 *   reuse (forward, backward, every pondering pass, and later calls: a
 *   decoding step converts none) until the caller says the parameter's
 *   device values changed (cuda_gemm_ctx_params_changed).
 * - An activation in the arena that kernels stored with its bf16 mirror
 *   (CudaMirror: the kernel rounds as CR_TO_BF16 does) is read from the
 *   mirror when every element the product reads was last written by such
 *   a store in this call (`fresh`: mirrored rows add to it; every other
 *   launch, product, fill and copy takes what it writes out). Where only
 *   products read a buffer (CudaMirror.alone), kernels store its rows in
 *   the mirror alone (`stale` holds them), so a product must not convert
 *   them: that is an error.
 * - Another activation goes into one of CUDA_ACT_SLOTS scratch buffers,
 *   which remember what they hold: the same range again, with nothing
 *   written over it since (every launch, product, fill and copy forgets the
 *   slots it writes over), is not converted again. So the hidden states
 *   that every chunk of a fused vocabulary op multiplies are rounded once. */
typedef struct {
  uint64_t lo, hi; /* [lo, hi) */
} CudaRange;
typedef VEC(CudaRange) CudaRanges; /* sorted, disjoint, none empty (cuda_ranges.c) */
void cuda_ranges_add(CudaRanges *r, uint64_t lo, uint64_t hi);
void cuda_ranges_remove(CudaRanges *r, uint64_t lo, uint64_t hi);
int cuda_ranges_cover(const CudaRanges *r, uint64_t lo, uint64_t hi); /* [lo, hi) lies in one range */
int cuda_ranges_meet(const CudaRanges *r, uint64_t lo, uint64_t hi);  /* [lo, hi) and a range share an element */
typedef struct {
  CuPtr bf16;          /* the parameter's layout in bf16 (0: none yet) */
  size_t bytes;
  CudaRanges done;      /* elements converted since the parameter last changed */
} CudaParamBf16;
#define CUDA_ACT_SLOTS 4
typedef struct {
  CuPtr bf16;
  size_t bytes;
  CuPtr src;      /* what it holds: n fp32 elements from src (held: 0 when nothing) */
  uint64_t n, used; /* used: when it was last read (the least recent one is reused) */
  int held;
} CudaActBf16;
typedef struct {
  CudaPrecision precision;
  int convert_only;     /* no mirrors: every activation converted at its product (tests compare) */
  int no_half;          /* buffers that could live in their mirrors stay fp32 (tests compare, cuda_mirror.c) */
  CudaActBf16 act[CUDA_ACT_SLOTS];
  uint64_t clock;
  CudaParamBf16 *param; /* by parameter index, n_param of them */
  size_t n_param;
  CuPtr mirror;         /* the arena's bf16 mirrors (CudaProgram.mirror_span) */
  size_t mirror_bytes;
  size_t mirror_refused; /* the device had no memory for this many bytes of mirrors: no mirrors since */
  CudaRanges fresh;     /* arena bytes whose mirror holds their value, in this call */
  CudaRanges stale;     /* of those, the ones stored in the mirror alone: their fp32 bytes are old */
  uint64_t converted;   /* elements rounded to bf16 for a product, over every call (tests, docs) */
  uint64_t converted_params; /* of those, parameters' */
  uint64_t mirrored;    /* operand elements a product read from a mirror */
} CudaGemmCtx;
void cuda_gemm_ctx_free(CudaGemmCtx *g, CudaDevice *d);
#define CUDA_ALL_PARAMS UINT32_MAX
void cuda_gemm_ctx_params_changed(CudaGemmCtx *g, uint32_t index); /* parameter index's device values (or every one's) */
size_t cuda_gemm_ctx_bytes(const CudaGemmCtx *g); /* the device memory it holds */

/* The value of expression id where the host knows it: dims, and vars but
 * those marked in unknown (NULL: none). 0 where it needs a load, an
 * unknown variable or an integer division by 0. */
int cuda_eval(const KProgram *p, const int64_t *dims, const CudaValue *vars, const unsigned char *unknown, uint32_t id,
              CudaValue *out);

/* Runs entry `entry` of cp on d: the host walks the entry's statements,
 * evaluating its own scalars, launching kernels and calling gemm, fill and
 * copy. bufs: every buffer's address (cuda_buffer_addresses); slots: 8
 * bytes per variable of the entry, where one-thread kernels leave the
 * values of host variables they assign; gc: the products' precision and
 * bf16 scratch (NULL: fp32); prof: where the call's device time goes
 * (cuda_profile.h; NULL: not timed), which waits for the device at the end. */
struct CudaProfile;
int cuda_exec(const CudaProgram *cp, CudaDevice *d, uint32_t entry, const int64_t *dims, const CuPtr *bufs, CuPtr slots,
              CudaGemmCtx *gc, struct CudaProfile *prof, PcError *err);

#endif
