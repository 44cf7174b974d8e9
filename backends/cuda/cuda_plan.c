/* The launch plan's arithmetic, kept apart so that it is unit-tested
 * without a GPU (tests/test_cuda_plan.c): blocks and threads per launch,
 * where each buffer of an entry lives, kernel arguments as cuLaunchKernel
 * takes them, the row-major sgemm as cuBLAS's column-major call, and the
 * precisions' names. */
#include "backends/cuda/cuda_backend.h"

#include <string.h>

int cuda_launch_shape(const CudaLaunch *l, int64_t n, uint32_t *grid, uint32_t *block) {
  if (n <= 0) return 0;
  uint64_t rows_per_block = l->mode == CM_WARP ? l->threads / 32 : l->mode == CM_THREAD ? l->threads : 1;
  uint64_t blocks = l->mode == CM_SERIAL || l->mode == CM_GROUP ? 1 : ((uint64_t)n + rows_per_block - 1) / rows_per_block;
  *grid = blocks > CUDA_MAX_GRID ? CUDA_MAX_GRID : (uint32_t)blocks;
  *block = l->mode == CM_SERIAL ? 1 : l->threads;
  return 1;
}

void cuda_buffer_addresses(const KEntry *e, const CuPtr *params, const CuPtr *inputs, const CuPtr *outputs, CuPtr arena,
                           CuPtr *out) {
  for (size_t i = 0; i < e->bufs.n; i++) {
    const KBuf *b = &e->bufs.a[i];
    out[i] = b->kind == KB_PARAM ? params[b->index] : b->kind == KB_INPUT ? inputs[b->index]
           : b->kind == KB_OUTPUT ? outputs[b->index] : arena + b->offset;
  }
}

int cuda_buf_half(const CudaProgram *cp, uint32_t entry, uint32_t buf) { return cp->half.a[cp->half0[entry] + buf]; }

int cuda_launch_mirrors(const CudaProgram *cp, const CudaLaunch *l, uint32_t buf, int half) {
  if (cuda_buf_half(cp, l->entry, buf)) return half;
  for (uint32_t k = 0; k < l->n_m; k++)
    if (cp->mirrors.a[l->m0 + k].buf == buf && !cp->mirrors.a[l->m0 + k].overwritten) return 1;
  return 0;
}

void cuda_pack_args(const CudaProgram *cp, const CudaLaunch *l, const int64_t *dims, const CuPtr *bufs,
                    const CudaValue *vars, CuPtr slots, CuPtr mirror0, int half, uint64_t *values, void **params) {
  for (uint32_t i = 0; i < l->n_args; i++) {
    const CudaArg *a = &cp->args.a[l->arg0 + i];
    values[i] = 0;
    switch (a->kind) {
    case CA_DIM: memcpy(&values[i], &dims[a->id], 8); break;
    case CA_BUF: values[i] = bufs[a->id]; break;
    case CA_VAR:
      if (a->type == K_F32) memcpy(&values[i], &vars[a->id].f, 4);
      else memcpy(&values[i], &vars[a->id].i, 8);
      break;
    case CA_SLOT: values[i] = slots + 8 * (uint64_t)a->id; break;
    case CA_MIRROR:
      if (mirror0 && cuda_launch_mirrors(cp, l, a->id, half)) values[i] = mirror0 + cp->prog->entries.a[l->entry].bufs.a[a->id].offset / 2;
      break;
    case CA_KERNEL: PC_BUG("cuda: packing a call's kernels as arguments");
    }
    params[i] = &values[i];
  }
}

CudaGemm cuda_gemm_colmajor(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, CuPtr a, int64_t lda, CuPtr b,
                            int64_t ldb, float beta, CuPtr c, int64_t ldc) {
  return (CudaGemm){.transa = tb, .transb = ta, .m = (int)n, .n = (int)m, .k = (int)k, .alpha = alpha, .beta = beta,
                    .a = b, .lda = (int)ldb, .b = a, .ldb = (int)lda, .c = c, .ldc = (int)ldc};
}

static const char *const precision_names[CUDA_PRECISION_NUM] = {
    [CUDA_FP32] = "fp32", [CUDA_TF32] = "tf32", [CUDA_BF16] = "bf16"};

const char *cuda_precision_name(CudaPrecision p) { return precision_names[p]; }

int cuda_precision_from_name(const char *name, CudaPrecision *out) {
  for (int p = 0; p < CUDA_PRECISION_NUM; p++)
    if (!strcmp(name, precision_names[p])) {
      *out = (CudaPrecision)p;
      return 0;
    }
  return -1;
}

const char *cuda_mode_name(CudaMode m) {
  static const char *names[CM_NUM] = {"serial", "thread", "warp", "block", "group", "library", "runtime"};
  return m < CM_NUM ? names[m] : "?";
}

unsigned char *cuda_kernel_modes(const CudaProgram *cp) {
  unsigned char *mode = pc_xmalloc(cp->n_kernels + 1);
  memset(mode, CM_RUNTIME, cp->n_kernels + 1);
  for (size_t i = 0; i < cp->launches.n; i++) {
    const CudaLaunch *l = &cp->launches.a[i];
    if (l->mode != CM_CALL) mode[l->kernel] = (unsigned char)l->mode;
    for (uint32_t k = 0; l->mode == CM_CALL && k < l->n_args; k++) mode[cp->args.a[l->arg0 + k].id] = CM_CALL;
  }
  return mode;
}
