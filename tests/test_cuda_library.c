/* The CUDA backend's hand-written kernels (backends/cuda/kernels/) on the
 * CPU emulator. Attention (attention.cu) against causal attention and its
 * gradient computed here in double precision from the textbook formulas. The shapes reach
 * what the models' tiny configs do not: several key and query tiles (the
 * online softmax's rescaling, partial tiles at the diagonal), grouped KV
 * heads, and each block shape (D <= 64: 64 rows a block; up to 128: 32).
 * A program of one call statement per op goes through the whole backend:
 * renderer, host executor, emulated launches. The runtime's kernels
 * (runtime.cu) against what they should compute, worked out here another
 * way; bf16 matrix products (the executor's operand conversion and the
 * emulator's product) against operands rounded here and multiplied in
 * double; attention reading q, k and v as views of one buffer, with
 * biases added as they load (what the lowering makes of a product split in
 * three); in bf16 precision, attention's forward on tensor cores (mma
 * through the emulator's fragments) within a bf16 bound; the device optimizer's (optim.cu) against the CPU's AdamW
 * (runtime/train/optim.c); attention over a KV cache (decoding) against
 * its own reference. Everything runs twice: blocks and threads in
 * order, then in reverse (a missing barrier or a race between blocks shows
 * as a difference). Skips without a C++ compiler.
 * `test_cuda_library gpu`: the same checks on the first GPU (PTX from
 * NVRTC, cuBLAS), where the tensor cores' fragment layouts meet the
 * hardware; skips without a driver, a GPU or NVRTC. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_library.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "runtime/cuda/cuda_runtime.h"
#include "runtime/train/optim.h"
#include "tests/check.h"

typedef struct {
  int64_t B, T, H, Hkv, D;
} Shape;

/* cp's kernels on d: the emulator compiles the source, a GPU loads PTX from NVRTC */
static int load_kernels(CudaDevice *d, const CudaProgram *cp, PcError *err) {
  if (!d->arch) return d->load(d, cp->source, NULL, cp->n_kernels, err);
  CudaNvrtc *nv;
  char *ptx = NULL;
  if (cuda_nvrtc_open(&nv, err) < 0) return -1;
  int rc = cuda_nvrtc_ptx(nv, cp->source, d->arch, 1, &ptx, NULL, err);
  cuda_nvrtc_close(nv);
  if (!rc) rc = d->load(d, cp->source, ptx, cp->n_kernels, err);
  free(ptx);
  return rc;
}

static float frand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) / (double)(1 << 24)) * 2.f - 1.f;
}

/* y, dq, dk, dv for the upstream gradient dy, and lse [B, H, T], in double */
static void reference(const Shape *s, const float *q, const float *k, const float *v, const float *dy, double *y,
                      double *dq, double *dk, double *dv, double *lse) {
  int64_t B = s->B, T = s->T, H = s->H, D = s->D, Cq = H * D, Ckv = s->Hkv * D, group = H / s->Hkv;
  double scale = 1.0 / sqrt((double)D), *p = malloc(sizeof(double) * T), *dp = malloc(sizeof(double) * T);
  memset(dq, 0, sizeof(double) * B * T * Cq);
  memset(dk, 0, sizeof(double) * B * T * Ckv);
  memset(dv, 0, sizeof(double) * B * T * Ckv);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < T; i++) {
        const float *qi = q + (b * T + i) * Cq + h * D, *dyi = dy + (b * T + i) * Cq + h * D;
        int64_t kv = (h / group) * D;
        double most = -INFINITY, sum = 0, pdp = 0;
        for (int64_t j = 0; j <= i; j++) {
          double x = 0;
          for (int64_t d = 0; d < D; d++) x += (double)qi[d] * k[(b * T + j) * Ckv + kv + d];
          p[j] = x * scale;
          most = fmax(most, p[j]);
        }
        for (int64_t j = 0; j <= i; j++) sum += p[j] = exp(p[j] - most);
        lse[(b * H + h) * T + i] = most + log(sum);
        for (int64_t d = 0; d < D; d++) y[(b * T + i) * Cq + h * D + d] = 0;
        for (int64_t j = 0; j <= i; j++) {
          p[j] /= sum;
          dp[j] = 0;
          for (int64_t d = 0; d < D; d++) {
            y[(b * T + i) * Cq + h * D + d] += p[j] * v[(b * T + j) * Ckv + kv + d];
            dp[j] += (double)dyi[d] * v[(b * T + j) * Ckv + kv + d];
          }
          pdp += p[j] * dp[j];
        }
        for (int64_t j = 0; j <= i; j++) {
          double ds = p[j] * (dp[j] - pdp) * scale;
          for (int64_t d = 0; d < D; d++) {
            dq[(b * T + i) * Cq + h * D + d] += ds * k[(b * T + j) * Ckv + kv + d];
            dk[(b * T + j) * Ckv + kv + d] += ds * qi[d];
            dv[(b * T + j) * Ckv + kv + d] += p[j] * dyi[d];
          }
        }
      }
  free(p);
  free(dp);
}

/* largest |got - want| over the largest |want| */
static double rel_err(const float *got, const double *want, int64_t n) {
  double diff = 0, most = 1e-30;
  for (int64_t i = 0; i < n; i++) {
    diff = fmax(diff, fabs(got[i] - want[i]));
    most = fmax(most, fabs(want[i]));
  }
  return diff / most;
}

enum { Q, K, V, DY, BIAS, Y, DQ, DK, DV, LSE, DELTA, NBUF };

/* The tensor-core forward rounds q scale, k, v and the probabilities to
 * bf16 (2^-9 relative each), and the tensor-core dq and dk/dv round q
 * scale, k, v, dy, the probabilities and dS too. Measured, both orders:
 * y 2.9e-3 to 4.5e-3, dq, dk, dv up to 6.0e-3 (5.1e-3 with the SIMT dq
 * and dk/dv; q is 3x the others, so the softmax is sharp). The bound is
 * about twice the worst. Read as views with biases (their sums have
 * other magnitudes): y up to 3.7e-3, dq, dk, dv up to 7.4e-3. Broken, it fails by far: O not rescaled when the
 * maximum grows, y 0.22 to 0.66; the mask dropping the diagonal or
 * letting one more key in, y 1.3 to 1.8; the halves of K's B fragment
 * swapped, y 1.1 to 1.6; the backward's mask dropping the diagonal, dq,
 * dk, dv 0.46 to 0.57; its delta term dropped, dq, dk 1.0 to 2.9. */
#define ATTN_BF16_TOL 1e-2

/* Where the call reads q, k and v and writes dq, dk and dv: their own
 * buffers (view 0), or views of one wider buffer each, as a product's
 * output split in three and that output's gradient: q, k, v in rows W
 * apart from columns 1, 1 + Cq and 1 + Cq + Ckv, q and v plus a bias as
 * they load, k without one; dv, dk, dq in rows W2 apart from columns 0,
 * Ckv and 2 Ckv (the last column never written). */
typedef struct {
  int64_t W, at[3], bias_at[3], W2, dat[3];
} Views;

static Views views(const Shape *s, int view) {
  int64_t Cq = s->H * s->D, Ckv = s->Hkv * s->D;
  if (!view) return (Views){0, {0, 0, 0}, {-1, -1, -1}, 0, {0, 0, 0}};
  return (Views){Cq + 2 * Ckv + 3, {1, 1 + Cq, 1 + Cq + Ckv}, {1, -1, 1 + Cq + Ckv}, Cq + 2 * Ckv + 1, {2 * Ckv, Ckv, 0}};
}

/* bf16: the executor in bf16 precision, so the tensor-core kernels
 * (pc_attn_fwd_tc, pc_attn_dq_tc, pc_attn_dkv_tc) where D is a multiple of
 * 16 (D = 8 keeps the SIMT kernels and their 1e-5). view: q, k and v as
 * views (Views); the reference reads them as the kernels should. */
static void check_shape(CudaDevice *d, const Shape *s, int bf16, int view) {
  int64_t nq = s->B * s->T * s->H * s->D, nkv = s->B * s->T * s->Hkv * s->D, nrow = s->B * s->H * s->T;
  int64_t Cq = s->H * s->D, Ckv = s->Hkv * s->D, width[3] = {Cq, Ckv, Ckv};
  Views w = views(s, view);
  int64_t numel[NBUF] = {view ? s->B * s->T * w.W : nq, nkv, nkv, nq, view ? w.W : 1, nq, view ? s->B * s->T * w.W2 : nq,
                         nkv, nkv, nrow, nrow};
  /* the program: inputs q (or the whole of q, k and v), k, v, dy and the
   * bias; outputs y, dq, dk, dv and lse (the forward's, which the gradient
   * reads); delta in the arena */
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "attention");
  static const char *names[NBUF] = {"q", "k", "v", "dy", "bias", "y", "dq", "dk", "dv", "lse", "delta"};
  for (int i = 0; i < NBUF; i++) {
    KBufKind kind = i < Y ? KB_INPUT : i <= LSE ? KB_OUTPUT : KB_ARENA;
    kbuf(e, names[i], K_F32, kind, (uint32_t)(i < Y ? i : i - Y), 0, (uint64_t)numel[i]);
  }
  e->arena_bytes = 4 * (uint64_t)nrow;
  uint32_t args[KCALL_MAX_ARGS] = {kx_i(p, s->B), kx_i(p, s->T), kx_i(p, s->H), kx_i(p, s->Hkv), kx_i(p, s->D),
                                   kx_f(p, 1.0 / sqrt((double)s->D))};
  for (int k = 0; k < 3; k++) {
    args[6 + 3 * k] = kx_i(p, w.at[k]);
    args[7 + 3 * k] = kx_i(p, view ? w.W : width[k]);
    args[8 + 3 * k] = kx_i(p, w.bias_at[k]);
    args[15 + 2 * k] = kx_i(p, w.dat[k]);
    args[16 + 2 * k] = kx_i(p, view ? w.W2 : width[k]);
  }
  uint32_t in[3] = {Q, view ? Q : K, view ? Q : V}, bias[3] = {BIAS, view ? Q : K, BIAS};
  uint32_t out[3] = {DQ, view ? DQ : DK, view ? DQ : DV};
  KCall fwd = {.op = KC_ATTENTION, .buf = {in[0], in[1], in[2], bias[0], bias[1], bias[2], Y, LSE}},
        grad = {.op = KC_ATTENTION_GRAD,
                .buf = {in[0], in[1], in[2], bias[0], bias[1], bias[2], Y, LSE, DY, out[0], out[1], out[2], DELTA}};
  memcpy(fwd.arg, args, sizeof args);
  memcpy(grad.arg, args, sizeof args);
  ks_call(p, e->body, &fwd);
  ks_call(p, e->body, &grad);

  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  char label[96];
  snprintf(label, sizeof label, "%s%s%sB %lld, T %lld, H %lld, Hkv %lld, D %lld", bf16 ? "bf16: " : "", view ? "views: " : "",
           strstr(d->name, "reverse") ? "reverse: " : "", (long long)s->B, (long long)s->T, (long long)s->H, (long long)s->Hkv, (long long)s->D);
  if (cuda_render(p, &o, &cp, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    kir_free(p);
    return;
  }
  unsigned want_kernels = 4 + 3 * (s->D % 16 == 0) + CR_NUM; /* both precisions' gradients start with pc_attn_delta */
  CHECKF(cp.n_kernels == want_kernels, "%s: %u kernels, not %u", label, cp.n_kernels, want_kernels);
  float *host[NBUF];
  uint64_t seed = (uint64_t)(s->T * 131 + s->D);
  CuPtr dev[NBUF], arena = 0, slots = 0;
  int rc = load_kernels(d, &cp, &err);
  for (int i = 0; i < NBUF; i++) {
    host[i] = malloc(sizeof(float) * (size_t)numel[i]);
    for (int64_t z = 0; z < numel[i]; z++) { /* q 3x the others: a sharp softmax */
      int is_q = i == Q && (!view || (z % w.W >= w.at[0] && z % w.W < w.at[0] + Cq));
      host[i][z] = i <= BIAS ? frand(&seed) * (is_q ? 3.f : 1.f) : NAN;
    }
    dev[i] = 0;
    if (!rc && i <= LSE) rc = d->alloc(d, 4 * (size_t)numel[i], &dev[i], &err);
    if (!rc && i <= LSE) rc = d->upload(d, dev[i], host[i], 4 * (size_t)numel[i], &err); /* outputs start as NaN */
  }
  /* what the kernels should read as q, k and v: rows of the views plus their biases */
  float *qkv[3] = {host[Q], host[K], host[V]};
  if (view)
    for (int k = 0; k < 3; k++) {
      int64_t rows = s->B * s->T;
      qkv[k] = malloc(sizeof(float) * (size_t)(rows * width[k]));
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width[k]; c++)
          qkv[k][r * width[k] + c] = host[Q][r * w.W + w.at[k] + c] + (w.bias_at[k] < 0 ? 0.f : host[BIAS][w.bias_at[k] + c]);
    }
  if (!rc) rc = d->alloc(d, e->arena_bytes, &arena, &err);
  if (!rc) rc = d->alloc(d, 8, &slots, &err);
  CuPtr bufs[NBUF];
  if (!rc) {
    cuda_buffer_addresses(e, NULL, dev, dev + Y, arena, bufs);
    CudaGemmCtx gc = {.precision = CUDA_BF16};
    rc = cuda_exec(&cp, d, 0, NULL, bufs, slots, bf16 ? &gc : NULL, NULL, &err);
    cuda_gemm_ctx_free(&gc, d);
  }
  for (int i = Y; !rc && i <= LSE; i++) rc = d->download(d, host[i], dev[i], 4 * (size_t)numel[i], &err);
  if (rc) {
    CHECKF(0, "%s: %s", label, err.msg);
  } else {
    enum { N_OUT = LSE - Y + 1 };
    double *want[N_OUT], worst[N_OUT];
    int64_t n_out[N_OUT] = {nq, nq, nkv, nkv, nrow};
    for (int i = 0; i < N_OUT; i++) want[i] = malloc(sizeof(double) * (size_t)n_out[i]);
    reference(s, qkv[0], qkv[1], qkv[2], host[DY], want[0], want[1], want[2], want[3], want[4]);
    float *got[N_OUT] = {host[Y], host[DQ], host[DK], host[DV], host[LSE]};
    if (view) /* dq, dk and dv out of their columns */
      for (int k = 0; k < 3; k++) {
        int64_t rows = s->B * s->T;
        got[1 + k] = malloc(sizeof(float) * (size_t)(rows * width[k]));
        for (int64_t r = 0; r < rows; r++)
          for (int64_t c = 0; c < width[k]; c++) got[1 + k][r * width[k] + c] = host[DQ][r * w.W2 + w.dat[k] + c];
      }
    for (int i = 0; i < N_OUT; i++) {
      worst[i] = rel_err(got[i], want[i], n_out[i]);
      double tol = bf16 ? ATTN_BF16_TOL : 1e-5;
      CHECKF(worst[i] < tol, "%s: %s differs by %.2e of its largest magnitude", label, names[Y + i], worst[i]);
    }
    printf("%-56s y %.1e, dq %.1e, dk %.1e, dv %.1e, lse %.1e\n", label, worst[0], worst[1], worst[2], worst[3], worst[4]);
    for (int i = 0; i < N_OUT; i++) free(want[i]);
    if (view)
      for (int k = 0; k < 3; k++) free(got[1 + k]);
  }
  if (view)
    for (int k = 0; k < 3; k++) free(qkv[k]);
  for (int i = 0; i < NBUF; i++) {
    if (dev[i]) d->release(d, dev[i]);
    free(host[i]);
  }
  if (arena) d->release(d, arena);
  if (slots) d->release(d, slots);
  cuda_program_free(&cp);
  kir_free(p);
}

/* ---- decoding over a KV cache ------------------------------------------------------ */

typedef struct {
  int64_t B, T, H, Hkv, D, L, slot, pos; /* T query rows at positions pos .., a cache of L positions, plane slot of 2 */
} Cached;

/* y of attention_cached in double: row t of batch b over the cache's keys and values 0 .. pos + t */
static void cached_reference(const Cached *s, const float *q, const float *cache, double *y) {
  int64_t Cq = s->H * s->D, Ckv = s->Hkv * s->D, plane = s->B * s->L * Ckv;
  const float *k = cache + 2 * plane * s->slot, *v = k + plane;
  double scale = 1.0 / sqrt((double)s->D), *p = malloc(sizeof(double) * (size_t)s->L);
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t t = 0; t < s->T; t++)
      for (int64_t h = 0; h < s->H; h++) {
        const float *qi = q + (b * s->T + t) * Cq + h * s->D;
        int64_t kv = (h / (s->H / s->Hkv)) * s->D, last = s->pos + t;
        double most = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= last; j++) {
          double x = 0;
          for (int64_t d = 0; d < s->D; d++) x += (double)qi[d] * k[(b * s->L + j) * Ckv + kv + d];
          most = fmax(most, p[j] = x * scale);
        }
        for (int64_t j = 0; j <= last; j++) sum += p[j] = exp(p[j] - most);
        for (int64_t d = 0; d < s->D; d++) {
          double acc = 0;
          for (int64_t j = 0; j <= last; j++) acc += p[j] / sum * v[(b * s->L + j) * Ckv + kv + d];
          y[(b * s->T + t) * Cq + h * s->D + d] = acc;
        }
      }
  free(p);
}

/* One attention_cached call, through the whole backend, against the
 * reference (y in fp32, within 1e-5). view: q read as a view, rows of
 * Cq + 3 from column 1, plus a bias that follows the rows in the same buffer. */
static void check_cached(CudaDevice *d, const Cached *s, int view) {
  int64_t Cq = s->H * s->D, rows = s->B * s->T, nq = rows * Cq, ncache = 2 * 2 * s->B * s->L * s->Hkv * s->D;
  int64_t W = view ? Cq + 3 : Cq, nin = view ? (rows + 1) * W : nq;
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "decode");
  uint32_t Q = kbuf(e, "q", K_F32, KB_INPUT, 0, 0, (uint64_t)nin), C = kbuf(e, "cache", K_F32, KB_INPUT, 1, 0, (uint64_t)ncache),
           Y = kbuf(e, "y", K_F32, KB_OUTPUT, 0, 0, (uint64_t)nq);
  KCall call = {.op = KC_ATTENTION_CACHED, .buf = {Q, Q, C, Y},
                .arg = {kx_i(p, s->B), kx_i(p, s->T), kx_i(p, s->H), kx_i(p, s->Hkv), kx_i(p, s->D),
                        kx_f(p, 1.0 / sqrt((double)s->D)), kx_i(p, view), kx_i(p, W), kx_i(p, view ? rows * W + 1 : -1),
                        kx_i(p, s->L), kx_i(p, s->slot), kx_i(p, s->pos)}};
  ks_call(p, e->body, &call);
  char label[96];
  snprintf(label, sizeof label, "%scached: %sB %lld, T %lld, H %lld, Hkv %lld, D %lld, pos %lld",
           strstr(d->name, "reverse") ? "reverse: " : "", view ? "view: " : "", (long long)s->B, (long long)s->T,
           (long long)s->H, (long long)s->Hkv, (long long)s->D, (long long)s->pos);
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  float *in = malloc(sizeof(float) * (size_t)nin), *q = malloc(sizeof(float) * (size_t)nq);
  float *cache = malloc(sizeof(float) * (size_t)ncache), *y = malloc(sizeof(float) * (size_t)nq);
  double *want = malloc(sizeof(double) * (size_t)nq);
  uint64_t seed = (uint64_t)(s->L * 7 + s->D);
  for (int64_t i = 0; i < nin; i++) in[i] = frand(&seed) * (view && i >= rows * W ? 1.f : 3.f);
  for (int64_t i = 0; i < ncache; i++) cache[i] = frand(&seed);
  for (int64_t r = 0; r < rows; r++) /* what the kernel should read as q */
    for (int64_t c = 0; c < Cq; c++) q[r * Cq + c] = view ? in[r * W + 1 + c] + in[rows * W + 1 + c] : in[r * Cq + c];
  CuPtr dev[3] = {0}, bufs[3];
  int rc = cuda_render(p, &o, &cp, &err);
  if (!rc) {
    rc = load_kernels(d, &cp, &err);
    if (!rc) rc = d->alloc(d, sizeof(float) * (size_t)nin, &dev[0], &err);
    if (!rc) rc = d->alloc(d, sizeof(float) * (size_t)ncache, &dev[1], &err);
    if (!rc) rc = d->alloc(d, sizeof(float) * (size_t)nq, &dev[2], &err);
    if (!rc) rc = d->upload(d, dev[0], in, sizeof(float) * (size_t)nin, &err);
    if (!rc) rc = d->upload(d, dev[1], cache, sizeof(float) * (size_t)ncache, &err);
    if (!rc) cuda_buffer_addresses(e, NULL, dev, dev + 2, 0, bufs);
    if (!rc) rc = cuda_exec(&cp, d, 0, NULL, bufs, 0, NULL, NULL, &err);
    if (!rc) rc = d->download(d, y, dev[2], sizeof(float) * (size_t)nq, &err);
    cuda_program_free(&cp);
  }
  if (rc) {
    CHECKF(0, "%s: %s", label, err.msg);
  } else {
    cached_reference(s, q, cache, want);
    double worst = rel_err(y, want, nq);
    CHECKF(worst < 1e-5, "%s: y differs by %.2e of its largest magnitude", label, worst);
    printf("%-48s y %.1e\n", label, worst);
  }
  for (int i = 0; i < 3; i++)
    if (dev[i]) d->release(d, dev[i]);
  free(in);
  free(q);
  free(cache);
  free(y);
  free(want);
  kir_free(p);
}

/* ---- the runtime's kernels ------------------------------------------------------- */

/* bf16 nearest to x (ties to the even one), from the two bf16 values
 * around it compared in double; past the largest finite one the next is
 * 2^128 (infinity) */
static uint16_t bf16_reference(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
  uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  if (lo == u) return (uint16_t)(lo >> 16);
  float flo, fhi;
  memcpy(&flo, &lo, 4);
  memcpy(&fhi, &hi, 4);
  double up = isinf(fhi) ? copysign(ldexp(1.0, 128), x) : fhi;
  double to_lo = fabs((double)x - flo), to_hi = fabs(up - x);
  if (to_lo != to_hi) return (uint16_t)((to_lo < to_hi ? lo : hi) >> 16);
  return (uint16_t)((((lo >> 16) & 1) ? hi : lo) >> 16);
}

/* Runs runtime kernel k of a program with no entries of its own. */
static int run_runtime(CudaDevice *d, CudaRuntimeKernel k, int64_t n, void *arg, PcError *err) {
  KProgram *p = kir_new();
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  int rc = cuda_render(p, &o, &cp, err);
  if (!rc) {
    rc = load_kernels(d, &cp, err);
    if (!rc) rc = cuda_runtime_launch(&cp, d, k, n, arg, err);
    cuda_program_free(&cp);
  }
  kir_free(p);
  return rc;
}

static void check_to_bf16(CudaDevice *d) {
  float special[] = {1.0f, 1.00390625f /* a tie: stays 1 */, 1.01171875f /* a tie: up to even */, 1.0039063f, -2.5f,
                     3.3895314e38f /* rounds to infinity */, INFINITY, -INFINITY, NAN, -0.0f, 1e-40f /* subnormal */};
  enum { N = 1000 };
  float x[N];
  uint16_t got[N];
  uint64_t seed = 7;
  for (int i = 0; i < N; i++) x[i] = i < (int)(sizeof special / sizeof *special) ? special[i] : frand(&seed) * 100.f;
  PcError err;
  CuPtr src = 0, dst = 0;
  int rc = d->alloc(d, sizeof x, &src, &err);
  if (!rc) rc = d->alloc(d, sizeof got, &dst, &err);
  if (!rc) rc = d->upload(d, src, x, sizeof x, &err);
  CudaToBf16Args a = {src, dst, N};
  if (!rc) rc = run_runtime(d, CR_TO_BF16, N, &a, &err);
  if (!rc) rc = d->download(d, got, dst, sizeof got, &err);
  CHECKF(!rc, "to_bf16: %s", rc ? err.msg : "");
  int wrong = 0;
  for (int i = 0; !rc && i < N; i++)
    if (got[i] != bf16_reference(x[i]) && wrong++ < 5) CHECKF(0, "to_bf16(%.9g) = 0x%04x, not 0x%04x", x[i], got[i], bf16_reference(x[i]));
  if (!rc) printf("to_bf16: %d of %d values as the reference rounds them\n", N - wrong, N);
  if (src) d->release(d, src);
  if (dst) d->release(d, dst);
}

/* ---- bf16 products ------------------------------------------------------------------- */

/* A product of a program: C[c_off..] = 1.5 op(A) op(B) + 0.5 C, row-major, m x n
 * with k, A the parameter W and B the input X (w_is_a) or the other way round;
 * before it, X[0 .. fill_x) = 0.25 (a write over the input). */
typedef struct {
  int ta, tb, w_is_a;
  int64_t m, n, k, a_off, lda, b_off, ldb, c_off, ldc, fill_x;
} Prod;

enum { NW = 64, NX = 70, NC = 401 };

static double widened(float x) {
  uint32_t u = (uint32_t)bf16_reference(x) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* c (holding the C before) gets each product computed in double from bf16-rounded operands */
static void bf16_products(const Prod *ps, int n_prod, const float *w, const float *x0, const float *c0, double *c) {
  float x[NX];
  memcpy(x, x0, sizeof x);
  for (int i = 0; i < NC; i++) c[i] = c0[i];
  for (int q = 0; q < n_prod; q++) {
    const Prod *p = &ps[q];
    for (int64_t i = 0; i < p->fill_x; i++) x[i] = 0.25f;
    const float *a = p->w_is_a ? w : x, *b = p->w_is_a ? x : w;
    for (int64_t i = 0; i < p->m; i++)
      for (int64_t j = 0; j < p->n; j++) {
        double sum = 0;
        for (int64_t l = 0; l < p->k; l++)
          sum += widened(a[p->a_off + (p->ta ? l * p->lda + i : i * p->lda + l)]) *
                 widened(b[p->b_off + (p->tb ? j * p->ldb + l : l * p->ldb + j)]);
        double *y = &c[p->c_off + i * p->ldc + j];
        *y = 1.5 * sum + 0.5 * *y;
      }
  }
}

/* An entry of the products on W (parameter 0), X (input 0) and C (output 0),
 * run `calls` times against the reference, with a new W each time (a
 * training step's new weights, declared changed) or the first W every time
 * (decoding's); *converted gets the elements rounded to bf16 over the calls. */
static void check_products(CudaDevice *d, const char *label, const Prod *ps, int n_prod, int calls, int new_w,
                           uint64_t *converted) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "products");
  uint32_t W = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, NW), X = kbuf(e, "x", K_F32, KB_INPUT, 0, 0, NX),
           C = kbuf(e, "c", K_F32, KB_OUTPUT, 0, 0, NC);
  for (int q = 0; q < n_prod; q++) {
    const Prod *r = &ps[q];
    if (r->fill_x) ks_fill(p, e->body, X, kx_i(p, 0), kx_i(p, r->fill_x), kx_f(p, 0.25));
    KGemm g = {.ta = r->ta, .tb = r->tb, .m = kx_i(p, r->m), .n = kx_i(p, r->n), .k = kx_i(p, r->k), .alpha = 1.5f,
               .beta = 0.5f, .a = r->w_is_a ? W : X, .b = r->w_is_a ? X : W, .c = C, .a_off = kx_i(p, r->a_off),
               .b_off = kx_i(p, r->b_off), .c_off = kx_i(p, r->c_off), .lda = kx_i(p, r->lda), .ldb = kx_i(p, r->ldb),
               .ldc = kx_i(p, r->ldc)};
    ks_gemm(p, e->body, &g);
  }
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  CudaGemmCtx gc = {.precision = CUDA_BF16};
  float w[NW], x[NX], c0[NC], c[NC];
  double want[NC];
  uint64_t seed = 11;
  for (int i = 0; i < NX; i++) x[i] = frand(&seed) * 4.f;
  for (int i = 0; i < NC; i++) c0[i] = frand(&seed);
  CuPtr dev[3] = {0}, bufs[3];
  int rc = cuda_render(p, &o, &cp, &err);
  if (!rc) rc = load_kernels(d, &cp, &err);
  if (!rc) rc = d->alloc(d, sizeof w, &dev[0], &err);
  if (!rc) rc = d->alloc(d, sizeof x, &dev[1], &err);
  if (!rc) rc = d->alloc(d, sizeof c, &dev[2], &err);
  if (!rc) rc = d->upload(d, dev[1], x, sizeof x, &err);
  if (!rc) cuda_buffer_addresses(e, &dev[0], &dev[1], &dev[2], 0, bufs);
  double worst = 0;
  for (int call = 0; !rc && call < calls; call++) {
    if (call == 0 || new_w) {
      for (int i = 0; i < NW; i++) w[i] = frand(&seed) * 2.f;
      rc = d->upload(d, dev[0], w, sizeof w, &err);
      cuda_gemm_ctx_params_changed(&gc, CUDA_ALL_PARAMS);
    }
    if (!rc) rc = d->upload(d, dev[1], x, sizeof x, &err);
    if (!rc) rc = d->upload(d, dev[2], c0, sizeof c0, &err);
    if (!rc) rc = cuda_exec(&cp, d, 0, NULL, bufs, 0, &gc, NULL, &err);
    if (!rc) rc = d->download(d, c, dev[2], sizeof c, &err);
    if (rc) break;
    bf16_products(ps, n_prod, w, x, c0, want);
    double diff = 0, most = 0;
    for (int i = 0; i < NC; i++) {
      diff = fmax(diff, fabs(c[i] - want[i]));
      most = fmax(most, fabs(want[i]));
    }
    worst = fmax(worst, diff / most);
  }
  CHECKF(!rc, "%s: %s", label, rc ? err.msg : "");
  CHECKF(worst < 1e-5, "%s: differs from the bf16 reference by %.2e of its largest magnitude", label, worst);
  *converted = gc.converted;
  if (!rc) printf("%-44s within %.1e of the bf16 reference, %llu elements converted in %d calls\n", label, worst,
                  (unsigned long long)*converted, calls);
  for (int i = 0; i < 3; i++)
    if (dev[i]) d->release(d, dev[i]);
  cuda_gemm_ctx_free(&gc, d);
  cuda_program_free(&cp);
  kir_free(p);
}

/* elements a product reads of a rows x cols operand */
static uint64_t span(int64_t rows, int64_t cols, int64_t ld) { return (uint64_t)((rows - 1) * ld + cols); }

static void check_bf16(CudaDevice *d) {
  /* every transposition, W as A and as B, strided submatrices (offsets, leading
   * dimensions wider than the rows), m, n, k all different */
  Prod ps[8];
  int n = 0;
  uint64_t converted;
  for (int w_is_a = 1; w_is_a >= 0; w_is_a--)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++, n++)
        ps[n] = (Prod){.ta = ta, .tb = tb, .w_is_a = w_is_a, .m = 5, .n = 7, .k = 6, .a_off = w_is_a ? 3 : 2,
                       .lda = w_is_a ? 9 : 10, .b_off = w_is_a ? 2 : 3, .ldb = w_is_a ? 10 : 9, .c_off = 1 + 50 * n, .ldc = 9};
  check_products(d, "bf16 products, every transposition", ps, n, 1, 1, &converted);
  /* the parameter's conversions: once for a range until it changes (the
   * first product's), none for the same range (the second's) or one inside
   * it (the third's and fourth's). The input's: once per range and call
   * (the first's; the second's is another; the third reads the first's
   * again), and again after a write over it (the fourth's, after a fill) */
  Prod cache[4] = {
      {.w_is_a = 1, .m = 5, .n = 7, .k = 6, .a_off = 3, .lda = 9, .b_off = 2, .ldb = 10, .c_off = 0, .ldc = 9},
      {.w_is_a = 1, .tb = 1, .m = 5, .n = 7, .k = 6, .a_off = 3, .lda = 9, .b_off = 2, .ldb = 10, .c_off = 50, .ldc = 9},
      {.w_is_a = 1, .m = 4, .n = 7, .k = 6, .a_off = 12, .lda = 9, .b_off = 2, .ldb = 10, .c_off = 100, .ldc = 9},
      {.w_is_a = 1, .m = 4, .n = 7, .k = 6, .a_off = 12, .lda = 9, .b_off = 2, .ldb = 10, .c_off = 150, .ldc = 9, .fill_x = 20},
  };
  uint64_t w_once = span(5, 6, 9), x_per_call = span(6, 7, 10) + span(7, 6, 10) + span(6, 7, 10);
  check_products(d, "bf16 products, conversions cached, new W", cache, 4, 3, 1, &converted);
  CHECKF(converted == 3 * (w_once + x_per_call),
         "%llu elements converted in 3 calls, not %llu (W once a call, X once per range and after the fill)",
         (unsigned long long)converted, (unsigned long long)(3 * (w_once + x_per_call)));
  check_products(d, "bf16 products, conversions cached, same W", cache, 4, 3, 0, &converted);
  CHECKF(converted == w_once + 3 * x_per_call,
         "%llu elements converted in 3 calls, not %llu (W in the first call only, X in every call)",
         (unsigned long long)converted, (unsigned long long)(w_once + 3 * x_per_call));
}

/* ---- the device optimizer (optim.cu) against runtime/train/optim.c ------------------ */

/* tensors of every kind: several chunks with a short last one, a bias, an
 * embedding table (no decay: decay_embeddings off), a norm weight, one
 * element */
static void optim_params(Params *p) {
  static const struct {
    const char *name;
    int rank;
    int64_t d0, d1;
    int embedding;
  } t[] = {{"w", 2, 200, 201, 0}, {"b", 1, 7, 0, 0}, {"wte", 2, 50, 64, 1}, {"ln.weight", 1, 64, 0, 0}, {"s", 1, 1, 0, 0}};
  PcError err;
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    ParamSpec s = {.name = (char *)t[i].name, .rank = t[i].rank, .dim = {t[i].d0, t[i].d1}, .init = PARAM_INIT_NORMAL,
                   .std = 0.5, .embedding = t[i].embedding};
    CHECK(params_add(p, &s, &err) == 0);
  }
  CHECK(params_init(p, 3, &err) == 0);
}

/* micro-batch k of step s's gradients for every parameter, larger in
 * some steps (then clipping acts) */
static void optim_grads(Tensor **g, size_t n, int step, int micro) {
  uint64_t seed = (uint64_t)(step * 7 + micro + 1);
  float size = step % 2 ? 0.2f : 0.003f;
  for (size_t i = 0; i < n; i++)
    for (int64_t k = 0; k < tensor_numel(g[i]); k++) tensor_f32(g[i])[k] = frand(&seed) * size;
}

static double optim_rel(const Tensor *a, const Tensor *b) {
  double diff = 0, most = 1e-30;
  for (int64_t k = 0; k < tensor_numel(a); k++) {
    diff = fmax(diff, fabs((double)tensor_f32(a)[k] - tensor_f32(b)[k]));
    most = fmax(most, fabs((double)tensor_f32(a)[k]));
  }
  return diff / most;
}

/* steps of accum micro-batches, AdamW with clip (0: none), on the CPU and
 * on the device from the same start: the same parameters and moments */
static void check_optim_run(CudaDevice *d, const CudaProgram *cp, double clip, int accum) {
  enum { STEPS = 6 };
  PcError err;
  Params cpu = {0}, dev = {0};
  optim_params(&cpu);
  optim_params(&dev);
  size_t n = cpu.spec.n;
  AdamW oc, od;
  CHECK(adamw_init(&oc, &cpu, &err) == 0 && adamw_init(&od, &dev, &err) == 0);
  oc.threads = 1;
  AdamWConfig cfg = {0.9, 0.95, 1e-8, 0.1, 0};
  Tensor **g = calloc(n, sizeof *g), **micro = calloc(n, sizeof *micro);
  for (size_t i = 0; i < n; i++) {
    g[i] = tensor_new(PC_F32, cpu.spec.a[i].rank, cpu.spec.a[i].dim);
    micro[i] = tensor_new(PC_F32, cpu.spec.a[i].rank, cpu.spec.a[i].dim);
  }
  /* the device: parameters, moments, accumulated gradients, the entry's outputs */
  CuPtr *buf = calloc(5 * n, sizeof *buf);
  CudaOptTensor *t = calloc(n, sizeof *t);
  CudaOptim o = {0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    size_t bytes = tensor_bytes(cpu.value[i]);
    for (int b = 0; b < 5 && !rc; b++) rc = d->alloc(d, bytes, &buf[5 * i + b], &err);
    if (!rc) rc = d->upload(d, buf[5 * i], tensor_f32(dev.value[i]), bytes, &err);
    if (!rc) rc = d->fill32(d, buf[5 * i + 2], 0, bytes / 4, &err);
    if (!rc) rc = d->fill32(d, buf[5 * i + 3], 0, bytes / 4, &err);
    t[i] = (CudaOptTensor){.w = buf[5 * i], .g = accum > 1 ? buf[5 * i + 1] : buf[5 * i + 4], .m = buf[5 * i + 2],
                           .v = buf[5 * i + 3], .src = buf[5 * i + 4], .n = tensor_numel(cpu.value[i]),
                           .decays = adamw_decays(&cfg, &cpu.spec.a[i])};
  }
  if (!rc) rc = cuda_optim_tensors(&o, d, t, n, &err);
  double worst_norm = 0;
  int clipped = 0;
  for (int step = 0; step < STEPS && !rc; step++) {
    for (int k = 0; k < accum && !rc; k++) { /* the trainer's accumulation, and the device's */
      optim_grads(micro, n, step, k);
      for (size_t i = 0; i < n; i++) {
        float *a = tensor_f32(g[i]), *b = tensor_f32(micro[i]);
        for (int64_t e = 0; e < tensor_numel(g[i]); e++) a[e] = k ? a[e] + b[e] : b[e];
      }
      for (size_t i = 0; i < n && !rc; i++) rc = d->upload(d, buf[5 * i + 4], tensor_f32(micro[i]), tensor_bytes(micro[i]), &err);
      if (!rc && accum > 1) rc = cuda_optim_accumulate(&o, cp, d, k == 0, k == accum - 1, (float)(1.0 / accum), &err);
    }
    if (accum > 1) grads_scale(g, n, (float)(1.0 / accum));
    double want = grads_global_norm(g, n, 1), got = 0, again[2] = {0, 0};
    if (!rc) rc = cuda_optim_norm(&o, cp, d, 0, &got, &err);
    if (!rc) rc = cuda_optim_norm(&o, cp, d, 1, &again[0], &err); /* one block takes every chunk */
    if (!rc) rc = cuda_optim_norm(&o, cp, d, 2, &again[1], &err);
    if (rc) break;
    CHECKF(!memcmp(&got, &again[0], 8) && !memcmp(&got, &again[1], 8), "optim: the norm depends on the grid: %.17g %.17g %.17g",
           got, again[0], again[1]);
    worst_norm = fmax(worst_norm, fabs(got - want) / want);
    float sc = clip > 0 && want > clip ? (float)(clip / want) : 1.0f, sd = clip > 0 && got > clip ? (float)(clip / got) : 1.0f;
    clipped += sc != 1.0f;
    double lr = 1e-2 * (step + 1);
    adamw_update(&oc, &cpu, g, sc, lr, &cfg);
    AdamWStep s;
    adamw_next(&od, lr, &cfg, sd, &s);
    CudaAdamW a = {s.grad_scale, s.decay, s.neg_step, s.bc2_sqrt, s.eps, s.b2, s.one_minus_b1, s.one_minus_b2};
    rc = cuda_optim_adamw(&o, cp, d, &a, &err);
  }
  for (size_t i = 0; i < n && !rc; i++) {
    size_t bytes = tensor_bytes(cpu.value[i]);
    rc = d->download(d, tensor_f32(dev.value[i]), buf[5 * i], bytes, &err);
    if (!rc) rc = d->download(d, tensor_f32(od.m[i]), buf[5 * i + 2], bytes, &err);
    if (!rc) rc = d->download(d, tensor_f32(od.v[i]), buf[5 * i + 3], bytes, &err);
  }
  char label[64];
  snprintf(label, sizeof label, "optim, clip %g, accum %d", clip, accum);
  CHECKF(!rc, "%s: %s", label, rc ? err.msg : "");
  if (!rc) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
      worst = fmax(worst, optim_rel(cpu.value[i], dev.value[i]));
      worst = fmax(worst, optim_rel(oc.m[i], od.m[i]));
      worst = fmax(worst, optim_rel(oc.v[i], od.v[i]));
    }
    CHECKF(worst <= 1e-6, "%s: parameters or moments differ by %.2e", label, worst);
    CHECKF(worst_norm <= 1e-12, "%s: the norm differs by %.2e", label, worst_norm);
    CHECKF(clip > 0 ? clipped > 0 && clipped < STEPS : clipped == 0, "%s: %d steps of %d clipped", label, clipped, STEPS);
    printf("%-36s %d steps (%d clipped): parameters and moments within %.1e, norm within %.1e\n", label, STEPS, clipped,
           worst, worst_norm);
  }
  for (size_t i = 0; i < 5 * n; i++)
    if (buf[i]) d->release(d, buf[i]);
  for (size_t i = 0; i < n; i++) {
    tensor_free(g[i]);
    tensor_free(micro[i]);
  }
  cuda_optim_free(&o, d);
  free(buf);
  free(t);
  free(g);
  free(micro);
  adamw_free(&oc);
  adamw_free(&od);
  params_free(&cpu);
  params_free(&dev);
}

static void check_optim(CudaDevice *d) {
  KProgram *p = kir_new();
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  int rc = cuda_render(p, &o, &cp, &err);
  if (!rc) {
    rc = load_kernels(d, &cp, &err);
    if (!rc) {
      check_optim_run(d, &cp, 0.5, 1);
      check_optim_run(d, &cp, 0, 1);
      check_optim_run(d, &cp, 0.5, 3);
    }
    cuda_program_free(&cp);
  }
  CHECKF(!rc, "optim: %s", rc ? err.msg : "");
  kir_free(p);
}

/* ---- attention plan ------------------------------------------------------------------ */

static void check_plan(void) {
  int64_t args[] = {2, 100, 4, 2, 64};
  int kernel[CUDA_CALL_MAX_KERNELS];
  uint32_t grid[CUDA_CALL_MAX_KERNELS], block[CUDA_CALL_MAX_KERNELS];
  CHECK(cuda_call_plan(KC_ATTENTION, args, 0, kernel, grid, block) == 1 && kernel[0] == 0 && grid[0] == 2 * 4 * 2 &&
        block[0] == 64);
  /* the gradient: delta, a thread per (batch, row, head); dq; dk, dv */
  CHECK(cuda_call_plan(KC_ATTENTION_GRAD, args, 0, kernel, grid, block) == 3 && grid[0] == 4 && block[0] == 256 &&
        grid[1] == 16 && grid[2] == 2 * 2 * 2 && block[2] == 64 && kernel[2] == 2);
  /* bf16: the tensor-core kernels, listed after the SIMT ones, 64 rows a block of 128 threads */
  CHECK(cuda_call_plan(KC_ATTENTION, args, 1, kernel, grid, block) == 1 && kernel[0] == 1 && grid[0] == 2 * 4 * 2 &&
        block[0] == 128);
  CHECK(cuda_call_plan(KC_ATTENTION_GRAD, args, 1, kernel, grid, block) == 3 && kernel[0] == 3 && kernel[1] == 4 &&
        kernel[2] == 5 && block[0] == 256 && block[1] == 128 && block[2] == 128 && grid[0] == 4 &&
        grid[1] == 2 * 4 * 2 && grid[2] == 2 * 2 * 2);
  const char *fn[CUDA_CALL_MAX_KERNELS];
  unsigned threads[CUDA_CALL_MAX_KERNELS];
  CHECK(cuda_call_kernels(KC_ATTENTION_GRAD, 64, fn, threads) == 6 && !strcmp(fn[0], "pc_attn_delta") &&
        !strcmp(fn[3], "pc_attn_delta") && !strcmp(fn[4], "pc_attn_dq_tc") && !strcmp(fn[5], "pc_attn_dkv_tc") &&
        threads[0] == 256 && threads[3] == 256 && threads[4] == 128 && threads[5] == 128);
  CHECK(cuda_call_kernels(KC_ATTENTION, 24, fn, threads) == 1); /* not a multiple of 16: SIMT only */
  args[4] = 24;
  CHECK(cuda_call_plan(KC_ATTENTION, args, 1, kernel, grid, block) == 1 && kernel[0] == 0 && block[0] == 64);
  args[4] = 128;
  CHECK(cuda_call_plan(KC_ATTENTION_GRAD, args, 0, kernel, grid, block) == 3 && grid[1] == 2 * 4 * 4 && block[1] == 32);
  CHECK(cuda_call_plan(KC_ATTENTION_GRAD, args, 1, kernel, grid, block) == 3 && grid[1] == 2 * 4 * 2 && block[1] == 128);
  args[1] = 0;
  CHECK(cuda_call_plan(KC_ATTENTION, args, 1, kernel, grid, block) == 0);
  CHECK(cuda_call_supported(KC_ATTENTION, 128) && !cuda_call_supported(KC_ATTENTION, 256));
  /* mirrors: the forward's y; the gradient's dq, dk, dv where their columns tile one buffer's rows, else dv alone */
  int64_t m[KCALL_MAX_ARGS] = {2, 100, 4, 2, 64}, elements = 0;
  CHECK(cuda_call_mirror(KC_ATTENTION, m, &elements) == 6 && elements == 2 * 100 * 4 * 64);
  int64_t tiled[6] = {128, 512, 0, 512, 384, 512}; /* dq at 128 (256 wide), dk at 0, dv at 384 (128 each), rows of 512 */
  memcpy(m + 15, tiled, sizeof tiled);
  CHECK(cuda_call_mirror(KC_ATTENTION_GRAD, m, &elements) == 9 && elements == 2 * 100 * 512);
  m[19] = 256; /* dv over dq's columns */
  CHECK(cuda_call_mirror(KC_ATTENTION_GRAD, m, &elements) == -1);
  m[19] = 384;
  m[20] = 128; /* dv in its own rows */
  CHECK(cuda_call_mirror(KC_ATTENTION_GRAD, m, &elements) == -1);
  m[16] = m[18] = m[20] = 513; /* a column left over */
  CHECK(cuda_call_mirror(KC_ATTENTION_GRAD, m, &elements) == -1);
  int64_t own[6] = {0, 256, 0, 128, 0, 128}; /* dq, dk and dv each in rows of their own width: dv's mirror alone */
  memcpy(m + 15, own, sizeof own);
  CudaAttnArgs a = {0};
  CHECK(cuda_call_mirror(KC_ATTENTION_GRAD, m, &elements) == 11 && elements == 2 * 100 * 128);
  cuda_call_mirror_args(KC_ATTENTION_GRAD, m, 0x1000, &a);
  CHECK(a.dvh == 0x1000 && !a.dqh && !a.dkh && !a.yh);
  int64_t cached[KCALL_MAX_ARGS] = {2, 3, 4, 2, 64, 0, 0, 256, -1, 40, 1, 7};
  CHECK(cuda_call_mirror(KC_ATTENTION_CACHED, cached, &elements) == 3 && elements == 2 * 3 * 4 * 64);
}

/* The checks on one device */
static void check_device(CudaDevice *d) {
  static const Shape shapes[] = {
      {2, 75, 4, 2, 16},  /* three key tiles, two query blocks, two query heads per kv head */
      {1, 130, 2, 1, 64}, /* 124M's head dim; five key tiles, a partial last block */
      {1, 40, 3, 3, 96},  /* 32-row blocks, 16-key tiles */
      {1, 33, 2, 1, 128}, /* the largest head dim the library takes */
      {1, 150, 4, 2, 128}, /* and several key tiles of the tensor-core forward (64 keys), grouped */
      {3, 1, 2, 2, 8},    /* one token */
  };
  for (int view = 0; view < 2; view++)
    for (int bf16 = 0; bf16 < 2; bf16++)
      for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) check_shape(d, &shapes[i], bf16, view);
  static const Cached cached[] = {
      {1, 1, 12, 12, 64, 300, 1, 260},  /* a token at 260 of 300: two passes of 128 keys and a part */
      {2, 5, 4, 2, 16, 40, 0, 0},       /* a prompt of 5 from 0, two query heads per kv head, 8 groups of 16 */
      {3, 2, 2, 1, 128, 64, 1, 61},     /* the cache's last positions, one group */
      {1, 1, 3, 3, 96, 20, 0, 7},       /* 96 columns: one group, 32 threads idle */
  };
  for (int view = 0; view < 2; view++)
    for (size_t i = 0; i < sizeof cached / sizeof *cached; i++) check_cached(d, &cached[i], view);
  check_to_bf16(d);
  check_bf16(d);
  check_optim(d);
}

/* gpu: the first GPU; skips (77) without it or NVRTC */
static int on_gpu(void) {
  CudaDevice *d;
  CudaNvrtc *nv;
  PcError err;
  if (cuda_driver_open(&d, &err) < 0) {
    printf("SKIP: %s\n", err.msg);
    return check_exit() ? 1 : 77;
  }
  if (cuda_nvrtc_open(&nv, &err) < 0) {
    printf("SKIP: %s\n", err.msg);
    d->free(d);
    return check_exit() ? 1 : 77;
  }
  cuda_nvrtc_close(nv);
  printf("GPU: %s (sm_%d)\n", d->name, d->arch);
  check_device(d);
  d->free(d);
  return check_exit();
}

int main(int argc, char **argv) {
  check_plan();
  if (argc > 1 && !strcmp(argv[1], "gpu")) return on_gpu();
  if (argc > 1 && strcmp(argv[1], "emu")) {
    fprintf(stderr, "usage: test_cuda_library [emu|gpu]\n");
    return 2;
  }
  const char *cxx = getenv("CXX");
  char cmd[256];
  snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", cxx && *cxx ? cxx : "c++");
  if (system(cmd) != 0) {
    printf("SKIP: no C++ compiler ($CXX or c++) to build the emulated kernels\n");
    return check_exit() ? 1 : 77;
  }
  static const char *orders[] = {"1", "reverse"}; /* blocks and threads first to last, then last to first */
  for (int o = 0; o < 2; o++) {
    CudaDevice *d;
    PcError err;
    setenv("PONDER_CUDA_EMULATE", orders[o], 1);
    if (cuda_emulator_open(&d, &err) < 0) {
      CHECKF(0, "emulator: %s", err.msg);
      break;
    }
    check_device(d);
    d->free(d);
  }
  return check_exit();
}
