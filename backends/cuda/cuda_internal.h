/* Inside the CUDA renderer: what it knows about an entry before it writes
 * a line (cuda_scan.c), shared with the text renderer (cuda_render.c). */
#ifndef PC_CUDA_INTERNAL_H
#define PC_CUDA_INTERNAL_H

#include "backends/cuda/cuda_backend.h"

typedef struct {
  const KProgram *p;
  const KEntry *e;
  uint32_t *parent;      /* per block of p: the enclosing block (UINT32_MAX: the entry's top) */
  uint32_t *owner;       /* per variable: the innermost block holding all its uses (its declaration) */
  unsigned char *loop_var;
  uint32_t *n_assign;    /* per variable: how many statements assign it */
  uint32_t *def;         /* per variable assigned once: its value */
  unsigned char *operand;/* per buffer: a matrix product reads it (as A or B) */
  unsigned char *loaded; /* per buffer: read otherwise (a load, a copy's source, a call's input, a product adding into it) */
  unsigned char *product_out; /* per buffer: a product writes it, beta 0 */
  unsigned char *no_half;     /* per buffer: touched other than by a product or a parallel loop's loads and stores */
  unsigned char *half;        /* per buffer: lives in its bf16 mirror alone, given one (cuda_half_find) */
} CudaScan;

void cuda_scan_init(CudaScan *a, const KProgram *p, const KEntry *e);
void cuda_scan_free(CudaScan *a);

int cuda_stmt_launches(const KProgram *p, const KStmt *s);    /* holds a parallel loop or a gemm */
int cuda_stmt_multiplies(const KProgram *p, const KStmt *s);  /* holds a gemm */
int cuda_stmt_touches(const KProgram *p, const KStmt *s);     /* reads or writes device memory */
int cuda_block_inside(const CudaScan *a, uint32_t blk, uint32_t outer); /* blk is outer or nested in it */

/* The value of x at the entry's maximum dims when it is known at compile
 * time (constants, dims, variables assigned once from such values). */
int cuda_estimate(const CudaScan *a, uint32_t x, int64_t *out);

/* A vector loop whose iterations can go to different threads: no nested
 * control flow, and variables of the outside assigned only as reductions
 * `a = a + x` / `a = max(a, x)` with `a` used nowhere else in the body (the
 * C renderer's `omp simd` rule). */
int cuda_vfor_spreads(const CudaScan *a, const KStmt *s);
/* For a reduction `a = op(a, x)`: KE_ADD or KE_MAX, else -1. */
int cuda_reduction_op(const CudaScan *a, const KStmt *assign);

/* Whether every store of parallel loop `parfor` to buffer buf writes
 * whole rows (cuda_mirror.c); if so, appends their CudaMirror records. */
int cuda_mirror_find(const CudaScan *a, const KStmt *parfor, uint32_t buf, CudaProgram *out);
/* The buffers that live in their bf16 mirror alone (CudaScan.half;
 * cuda_mirror.c): arena buffers that products write (beta 0) and that
 * otherwise only parallel loops touch, storing whole rows. */
void cuda_half_find(CudaScan *a);
/* Whether mirrored stores to buf may write the mirror alone (cuda_mirror.c). */
int cuda_mirror_alone(const CudaScan *a, uint32_t buf);
/* Marks the mirror records of the launches in block blk (and the host's
 * blocks in it) whose rows a later launch in the same block mirrors again
 * before any product could read them (CudaMirror.overwritten). */
void cuda_mirror_overwritten(const CudaScan *a, uint32_t blk, CudaProgram *out);

/* How a parallel loop maps onto threads, and its block size. */
CudaMode cuda_choose_mode(const CudaScan *a, const KStmt *parfor, const CudaOptions *o, uint32_t *threads);
/* A host-level statement: one thread (CM_SERIAL), or one block (CM_GROUP)
 * when it holds vector loops that spread. */
CudaMode cuda_choose_serial_mode(const CudaScan *a, const KStmt *s, const CudaOptions *o, uint32_t *threads);


#endif
