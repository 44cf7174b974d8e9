/* The kernel library's host side: which kernels a call launches and how.
 * The CUDA sources are embedded as they are (assembler .incbin), so that
 * they stay ordinary .cu files to read and edit. */
#include "backends/cuda/cuda_library.h"

#include <stdlib.h>
#include <string.h>

#define EMBED(sym, file)                                                                                             \
  __asm__(".section .rodata\n.globl " #sym "\n.hidden " #sym "\n" #sym ":\n.incbin \"" PONDER_CUDA_KERNELS_DIR "/" file \
          "\"\n.byte 0\n.previous\n")
EMBED(cuda_library_attention, "attention.cu");
EMBED(cuda_library_runtime, "runtime.cu");
EMBED(cuda_library_optim, "optim.cu");

/* ---- the runtime's kernels ------------------------------------------------------ */

static const CudaRuntimeInfo runtime_table[CR_NUM] = {
    [CR_TO_BF16] = {"pc_to_bf16", "PcToBf16"},
    [CR_OPT_ACCUM] = {"pc_opt_accum", "PcOpt"},
    [CR_OPT_SUMSQ] = {"pc_opt_sumsq", "PcOpt"},
    [CR_OPT_NORM] = {"pc_opt_norm", "PcOpt"},
    [CR_OPT_ADAMW] = {"pc_opt_adamw", "PcOpt"},
};

const CudaRuntimeInfo *cuda_runtime_info(CudaRuntimeKernel k) { return &runtime_table[k]; }

#define RUNTIME_THREADS 256 /* optim.cu's PC_OPT_THREADS: its sums' tree is that wide */

int cuda_runtime_launch(const CudaProgram *cp, CudaDevice *d, CudaRuntimeKernel k, int64_t n, void *arg, PcError *err) {
  if (n <= 0) return 0;
  int64_t blocks = (n + RUNTIME_THREADS - 1) / RUNTIME_THREADS;
  void *params[1] = {arg};
  return d->launch(d, cp->runtime_kernel[k], (uint32_t)(blocks < CUDA_MAX_GRID ? blocks : CUDA_MAX_GRID), RUNTIME_THREADS,
                   params, err);
}

/* ---- the device optimizer ---------------------------------------------------------- */

_Static_assert(sizeof(CudaOptTensor) == 64 && sizeof(CudaOptArgs) == 88, "the host's copies of optim.cu's structs");
_Static_assert(sizeof(CudaAttnArgs) == 240, "the host's copy of attention.cu's PcAttn");

int cuda_optim_tensors(CudaOptim *o, CudaDevice *d, const CudaOptTensor *t, size_t n, PcError *err) {
  CudaOptTensor *next = pc_xcalloc(n + 1, sizeof *next);
  int64_t chunks = 0;
  for (size_t i = 0; i < n; i++) {
    next[i] = t[i];
    next[i].chunk0 = chunks;
    next[i].pad = 0;
    chunks += (t[i].n + CUDA_OPT_CHUNK - 1) / CUDA_OPT_CHUNK;
  }
  if (o->host && o->n == n && !memcmp(o->host, next, n * sizeof *next)) {
    free(next);
    return 0;
  }
  int rc = 0;
  if (o->n != n) { /* sizes follow the tensors */
    if (o->table) d->release(d, o->table);
    o->table = 0;
    rc = d->alloc(d, (n ? n : 1) * sizeof *next, &o->table, err);
  }
  if (!rc && o->n_chunks != chunks) {
    if (o->partial) d->release(d, o->partial);
    o->partial = 0;
    rc = d->alloc(d, (size_t)(chunks ? chunks : 1) * sizeof(double), &o->partial, err);
  }
  if (!rc && !o->norm) rc = d->alloc(d, sizeof(double), &o->norm, err);
  if (!rc) rc = d->upload(d, o->table, next, n * sizeof *next, err);
  free(o->host);
  o->host = rc ? NULL : next;
  o->n = rc ? 0 : n;
  o->n_chunks = rc ? 0 : chunks;
  if (rc) free(next);
  return rc;
}

static CudaOptArgs optim_args(const CudaOptim *o) {
  return (CudaOptArgs){.t = o->table, .partial = o->partial, .norm = o->norm, .n_tensors = (int64_t)o->n,
                       .n_chunks = o->n_chunks};
}

/* a block per chunk, capped */
static int64_t optim_threads(const CudaOptim *o, uint32_t grid) {
  int64_t blocks = grid ? grid : o->n_chunks;
  return (blocks < CUDA_MAX_GRID ? blocks : CUDA_MAX_GRID) * RUNTIME_THREADS;
}

int cuda_optim_accumulate(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, int first, int last, float scale,
                          PcError *err) {
  CudaOptArgs a = optim_args(o);
  a.first = first;
  a.last = last;
  a.scale = scale;
  return cuda_runtime_launch(cp, d, CR_OPT_ACCUM, optim_threads(o, 0), &a, err);
}

int cuda_optim_norm(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, uint32_t grid, double *norm, PcError *err) {
  CudaOptArgs a = optim_args(o);
  *norm = 0;
  if (!o->n_chunks) return 0;
  int rc = cuda_runtime_launch(cp, d, CR_OPT_SUMSQ, optim_threads(o, grid), &a, err);
  if (!rc) rc = cuda_runtime_launch(cp, d, CR_OPT_NORM, RUNTIME_THREADS, &a, err);
  if (!rc) rc = d->download(d, norm, o->norm, sizeof *norm, err);
  return rc;
}

int cuda_optim_adamw(CudaOptim *o, const CudaProgram *cp, CudaDevice *d, const CudaAdamW *s, PcError *err) {
  CudaOptArgs a = optim_args(o);
  a.adamw = *s;
  return cuda_runtime_launch(cp, d, CR_OPT_ADAMW, optim_threads(o, 0), &a, err);
}

void cuda_optim_free(CudaOptim *o, CudaDevice *d) {
  if (o->table) d->release(d, o->table);
  if (o->partial) d->release(d, o->partial);
  if (o->norm) d->release(d, o->norm);
  free(o->host);
  *o = (CudaOptim){0};
}

/* ---- calls ------------------------------------------------------------------------ */

/* threads per block by head dim: PcAttnShape<D>::ROWS in attention.cu */
static unsigned attention_rows(int64_t D) { return D <= 64 ? 64 : 32; }
/* the tensor-core kernels (PcAttnTcShape, PcAttnTcBwdShape): 64 rows a
 * block (query rows; key rows for dk/dv), a warp per 16 */
#define TC_ROWS 64
#define TC_THREADS 128
static int has_tc(int64_t D) { return D % 16 == 0 && D >= 16 && D <= 128; }

int cuda_call_supported(KCallOp op, int64_t head_dim) {
  (void)op;
  return head_dim >= 1 && head_dim <= 128;
}

/* attention_cached: a block per (batch, query row, head) */
#define CACHED_THREADS 128

/* the gradient's first kernel: a thread per (row, head) */
#define DELTA_THREADS 256

/* forward: pc_attn_fwd [, pc_attn_fwd_tc]; gradient: pc_attn_delta,
 * pc_attn_dq, pc_attn_dkv [, pc_attn_delta, pc_attn_dq_tc, pc_attn_dkv_tc];
 * cached: pc_attn_cached */
int cuda_call_kernels(KCallOp op, int64_t head_dim, const char **fn, unsigned *threads) {
  if (op == KC_ATTENTION_CACHED) {
    fn[0] = "pc_attn_cached";
    threads[0] = CACHED_THREADS;
    return 1;
  }
  static const char *fwd[] = {"pc_attn_fwd"}, *grad[] = {"pc_attn_delta", "pc_attn_dq", "pc_attn_dkv"},
                    *fwd_tc[] = {"pc_attn_fwd_tc"}, *grad_tc[] = {"pc_attn_delta", "pc_attn_dq_tc", "pc_attn_dkv_tc"};
  const char **names = op == KC_ATTENTION ? fwd : grad, **tc = op == KC_ATTENTION ? fwd_tc : grad_tc;
  int n = op == KC_ATTENTION ? 1 : 3;
  for (int i = 0; i < n; i++) {
    fn[i] = names[i];
    threads[i] = names[i] == grad[0] ? DELTA_THREADS : attention_rows(head_dim);
  }
  if (has_tc(head_dim))
    for (int i = 0, m = n; i < m; i++) {
      fn[n] = tc[i];
      threads[n++] = tc[i] == grad_tc[0] ? DELTA_THREADS : TC_THREADS;
    }
  return n;
}

/* forward and dq: a block per (batch, head, block of query rows); dk, dv: a
 * block per (batch, kv head, block of key rows); delta: a thread per
 * (batch, row, head). In bf16 every kernel is the tensor-core one where there is
 * one (listed after the SIMT ones, in the same order). */
int cuda_call_plan(KCallOp op, const int64_t *args, int tensor_cores, int *kernel, uint32_t *grid, uint32_t *block) {
  int64_t B = args[0], T = args[1], H = args[2], Hkv = args[3], D = args[4];
  if (B <= 0 || T <= 0) return 0;
  if (op == KC_ATTENTION_CACHED) {
    kernel[0] = 0;
    grid[0] = (uint32_t)(B * T * H);
    block[0] = CACHED_THREADS;
    return 1;
  }
  int tc = tensor_cores && has_tc(D);
  unsigned rows = tc ? TC_ROWS : attention_rows(D);
  int64_t row_blocks = (T + rows - 1) / rows;
  int64_t per_head = B * H * row_blocks, per_kv_head = B * Hkv * row_blocks;
  int n = op == KC_ATTENTION ? 1 : 3;
  for (int i = 0; i < n; i++) {
    kernel[i] = tc ? n + i : i;
    grid[i] = (uint32_t)(i == 2 ? per_kv_head : per_head);
    block[i] = tc ? TC_THREADS : rows;
  }
  if (op == KC_ATTENTION_GRAD) {
    grid[0] = (uint32_t)((B * T * H + DELTA_THREADS - 1) / DELTA_THREADS);
    block[0] = DELTA_THREADS;
  }
  return n;
}

/* Whether columns [at[k], at[k] + w[k]) for k < 3 tile [0, rs) */
static int tiles(const int64_t at[3], const int64_t w[3], int64_t rs) {
  int64_t total = 0;
  for (int k = 0; k < 3; k++) {
    if (at[k] < 0 || at[k] + w[k] > rs) return 0;
    for (int j = 0; j < k; j++)
      if (at[j] < at[k] + w[k] && at[k] < at[j] + w[j]) return 0;
    total += w[k];
  }
  return total == rs;
}

int cuda_call_mirror(KCallOp op, const int64_t *args, int64_t *elements) {
  if (op == KC_ATTENTION_GRAD) { /* dq, dk, dv: bufs 9 to 11, each at args[15 + 2 k] in rows args[16 + 2 k] apart */
    int64_t w[3] = {args[2] * args[4], args[3] * args[4], args[3] * args[4]}, at[3] = {args[15], args[17], args[19]};
    int64_t rs = args[16];
    if (args[18] == rs && args[20] == rs && tiles(at, w, rs)) { /* columns of one buffer: its whole rows */
      *elements = args[0] * args[1] * rs;
      return 9;
    }
    if (at[2] != 0 || args[20] != w[2]) return -1;
    *elements = args[0] * args[1] * w[2]; /* dv in a buffer of its own (LLaMA's: dq and dk are rotated back first) */
    return 11;
  }
  *elements = args[0] * args[1] * args[2] * args[4]; /* y: B T H D */
  return op == KC_ATTENTION ? 6 : 3;
}

void cuda_call_mirror_args(KCallOp op, const int64_t *args, CuPtr mirror, CudaAttnArgs *a) {
  int64_t elements;
  switch (cuda_call_mirror(op, args, &elements)) {
  case 9:
    a->dqh = mirror + 2 * (uint64_t)args[15];
    a->dkh = mirror + 2 * (uint64_t)args[17];
    a->dvh = mirror + 2 * (uint64_t)args[19];
    break;
  case 11: a->dvh = mirror; break;
  default: a->yh = mirror; break;
  }
}

void cuda_call_args(KCallOp op, const CuPtr *bufs, const int64_t *args, float scale, CudaAttnArgs *out) {
  memset(out, 0, sizeof *out);
  int64_t Ckv = args[3] * args[4];
  if (op == KC_ATTENTION_CACHED) { /* q (perhaps a view), its bias, the cache, y; the slot's keys, then its values, each [B, L, Hkv x D] */
    uint64_t plane = (uint64_t)(args[0] * args[9] * Ckv);
    out->q = bufs[0] + 4 * (uint64_t)args[6];
    out->qrs = args[7];
    out->qbias = args[8] < 0 ? 0 : bufs[1] + 4 * (uint64_t)args[8];
    out->k = bufs[2] + 4 * 2 * plane * (uint64_t)args[10];
    out->v = out->k + 4 * plane;
    out->y = bufs[3];
    out->L = args[9];
    out->pos = args[11];
    out->krs = out->vrs = Ckv;
  } else { /* kcall_info's order: q, k, v, their biases, y and lse, then the gradient's dy, dq, dk, dv and delta */
    CuPtr *in[3] = {&out->q, &out->k, &out->v}, *bias[3] = {&out->qbias, &out->kbias, &out->vbias};
    int64_t *rs[3] = {&out->qrs, &out->krs, &out->vrs};
    for (int k = 0; k < 3; k++) { /* views: from their first element, in rows of the whole */
      *in[k] = bufs[k] + 4 * (uint64_t)args[6 + 3 * k];
      *rs[k] = args[7 + 3 * k];
      *bias[k] = args[8 + 3 * k] < 0 ? 0 : bufs[3 + k] + 4 * (uint64_t)args[8 + 3 * k];
    }
    out->y = bufs[6];
    out->lse = bufs[7];
    if (op == KC_ATTENTION_GRAD) { /* dq, dk and dv from their first elements, in rows dq_rs .. apart */
      CuPtr *grad[3] = {&out->dq, &out->dk, &out->dv};
      int64_t *grs[3] = {&out->dqrs, &out->dkrs, &out->dvrs};
      out->dy = bufs[8];
      for (int k = 0; k < 3; k++) {
        *grad[k] = bufs[9 + k] + 4 * (uint64_t)args[15 + 2 * k];
        *grs[k] = args[16 + 2 * k];
      }
      out->delta = bufs[12];
    }
  }
  out->B = args[0];
  out->T = args[1];
  out->H = args[2];
  out->Hkv = args[3];
  out->scale = scale;
}
