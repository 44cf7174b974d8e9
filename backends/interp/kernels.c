/* The interpreter's kernels, one per op, in ops.def order. Shapes in the
 * comments use N for the product of an activation's leading axes. Sums
 * are accumulated in double: this is the reference. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "backends/interp/kernels.h"

static int64_t last(const Tensor *t) { return t->rank ? t->dim[t->rank - 1] : 1; }
static int64_t rows(const Tensor *t) { return tensor_numel(t) / (last(t) ? last(t) : 1); }

/* fill: out[...] = value */
static int k_fill(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  for (int64_t i = 0, e = tensor_numel(out[0]); i < e; i++) {
    if (out[0]->dtype == PC_I32)
      tensor_i32(out[0])[i] = (int32_t)n->attr[0].f;
    else
      tensor_f32(out[0])[i] = (float)n->attr[0].f;
  }
  return 0;
}

/* positions: ids [B,T] -> [T] = 0, 1, ..., T-1 */
static int k_positions(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  for (int64_t t = 0; t < out[0]->dim[0]; t++) tensor_i32(out[0])[t] = (int32_t)t;
  return 0;
}

/* positions_at: ids [B,T], pos -> [T] = pos, pos+1, ... */
static int k_positions_at(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int32_t pos = tensor_i32(in[1])[0];
  for (int64_t t = 0; t < out[0]->dim[0]; t++) tensor_i32(out[0])[t] = pos + (int32_t)t;
  return 0;
}

/* Broadcasting binary op: output index -> operand index through strides that
 * are 0 on broadcast axes. */
static void broadcast_strides(const Tensor *x, const Tensor *out, int64_t *stride) {
  int off = out->rank - x->rank;
  int64_t s = 1;
  for (int d = out->rank - 1; d >= 0; d--) {
    int xd = d - off;
    if (xd < 0 || x->dim[xd] == 1) {
      stride[d] = 0;
    } else {
      stride[d] = s;
    }
    if (xd >= 0) s *= x->dim[xd];
  }
}

static int binary(const IrNode *n, Tensor *const *in, Tensor *out, float (*f)(float, float)) {
  const float *a = tensor_f32(in[0]), *b = tensor_f32(in[1]);
  float *y = tensor_f32(out);
  int64_t total = tensor_numel(out);
  if (tensor_same_shape(in[0], in[1])) {
    for (int64_t i = 0; i < total; i++) y[i] = f(a[i], b[i]);
    return 0;
  }
  int64_t sa[PC_MAX_RANK], sb[PC_MAX_RANK], idx[PC_MAX_RANK] = {0};
  broadcast_strides(in[0], out, sa);
  broadcast_strides(in[1], out, sb);
  int64_t ia = 0, ib = 0;
  for (int64_t i = 0; i < total; i++) {
    y[i] = f(a[ia], b[ib]);
    for (int d = out->rank - 1; d >= 0; d--) { /* odometer increment */
      idx[d]++;
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < out->dim[d]) break;
      ia -= sa[d] * idx[d];
      ib -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return 0;
}

static float f_add(float a, float b) { return a + b; }
static float f_sub(float a, float b) { return a - b; }
static float f_mul(float a, float b) { return a * b; }
static int k_add(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) { return binary(n, in, out[0], f_add); }
static int k_sub(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) { return binary(n, in, out[0], f_sub); }
static int k_mul(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) { return binary(n, in, out[0], f_mul); }

static int unary(Tensor *const *in, Tensor *out, double (*f)(double, double), double arg) {
  const float *x = tensor_f32(in[0]);
  float *y = tensor_f32(out);
  for (int64_t i = 0, e = tensor_numel(out); i < e; i++) y[i] = (float)f(x[i], arg);
  return 0;
}

static double f_scale(double x, double s) { return x * s; }
/* GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static double f_gelu_tanh(double x, double unused) {
  return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
/* exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
static double f_gelu(double x, double unused) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double f_silu(double x, double unused) { return x / (1.0 + exp(-x)); }

static int k_scale(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  return unary(in, out[0], f_scale, n->attr[0].f);
}
static int k_gelu_tanh(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  return unary(in, out[0], f_gelu_tanh, 0);
}
static int k_gelu(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) { return unary(in, out[0], f_gelu, 0); }
static int k_silu(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) { return unary(in, out[0], f_silu, 0); }

/* softmax over the last axis: [N, V] -> [N, V] */
static int k_softmax(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = last(in[0]), N = rows(in[0]);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * V;
    float *y = tensor_f32(out[0]) + r * V;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < V; i++) s += exp(x[i] - m);
    for (int64_t i = 0; i < V; i++) y[i] = (float)(exp(x[i] - m) / s);
  }
  return 0;
}

/* The k largest of x[0..V) (ties: the lower index wins), into idx[0..k)
 * in no particular order. A min-heap whose root is the weakest kept entry. */
static int weaker(const float *x, int64_t a, int64_t b) { return x[a] < x[b] || (x[a] == x[b] && a > b); }

static void heap_swap(int64_t *h, int64_t a, int64_t b) {
  int64_t t = h[a];
  h[a] = h[b];
  h[b] = t;
}

void interp_top_k(const float *x, int64_t V, int64_t k, int64_t *idx) {
  for (int64_t i = 0; i < V; i++) {
    if (i < k) { /* grow the heap, sift up */
      idx[i] = i;
      for (int64_t at = i; at > 0 && weaker(x, idx[at], idx[(at - 1) / 2]); at = (at - 1) / 2)
        heap_swap(idx, at, (at - 1) / 2);
      continue;
    }
    if (!weaker(x, idx[0], i)) continue;
    idx[0] = i; /* replace the weakest, sift down */
    for (int64_t at = 0;;) {
      int64_t l = 2 * at + 1, r = l + 1, w = at;
      if (l < k && weaker(x, idx[l], idx[w])) w = l;
      if (r < k && weaker(x, idx[r], idx[w])) w = r;
      if (w == at) break;
      heap_swap(idx, at, w);
      at = w;
    }
  }
}

/* softmax_topk: [N, V] -> softmax over each row's k largest, zero elsewhere */
static int k_softmax_topk(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = last(in[0]), N = rows(in[0]), k = n->attr[0].i;
  int64_t *idx = pc_xmalloc(sizeof(int64_t) * (size_t)k);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * V;
    float *y = tensor_f32(out[0]) + r * V;
    interp_top_k(x, V, k, idx);
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < k; j++) m = fmax(m, x[idx[j]]);
    for (int64_t j = 0; j < k; j++) s += exp(x[idx[j]] - m);
    memset(y, 0, sizeof(float) * (size_t)V);
    for (int64_t j = 0; j < k; j++) y[idx[j]] = (float)(exp(x[idx[j]] - m) / s);
  }
  free(idx);
  return 0;
}

/* layernorm: x [N, C], w [C], b [C] -> (x - mean) / sqrt(var + eps) * w + b */
static int k_layernorm(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t C = last(in[0]), N = rows(in[0]);
  const float *w = tensor_f32(in[1]), *b = tensor_f32(in[2]);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * C;
    float *y = tensor_f32(out[0]) + r * C;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < C; i++) mean += x[i];
    mean /= (double)C;
    for (int64_t i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    double rstd = 1.0 / sqrt(var / (double)C + n->attr[0].f);
    for (int64_t i = 0; i < C; i++) y[i] = (float)((x[i] - mean) * rstd * w[i] + b[i]);
  }
  return 0;
}

/* rmsnorm: x [N, C], w [C] -> x / sqrt(mean(x^2) + eps) * w */
static int k_rmsnorm(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t C = last(in[0]), N = rows(in[0]);
  const float *w = tensor_f32(in[1]);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * C;
    float *y = tensor_f32(out[0]) + r * C;
    double ss = 0;
    for (int64_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
    double rstd = 1.0 / sqrt(ss / (double)C + n->attr[0].f);
    for (int64_t i = 0; i < C; i++) y[i] = (float)(x[i] * rstd * w[i]);
  }
  return 0;
}

/* linear: x [N, K], w [M, K] -> x w^T [N, M] */
static int k_linear(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t K = last(in[0]), N = rows(in[0]), M = in[1]->dim[0];
  if (N && M)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)M, (int)K, 1.0f, tensor_f32(in[0]), (int)K,
                tensor_f32(in[1]), (int)K, 0.0f, tensor_f32(out[0]), (int)M);
  return 0;
}

/* matmul: x [N, K], w [K, M] -> x w [N, M] */
static int k_matmul(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t K = last(in[0]), N = rows(in[0]), M = in[1]->dim[1];
  if (N && M)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)M, (int)K, 1.0f, tensor_f32(in[0]), (int)K,
                tensor_f32(in[1]), (int)M, 0.0f, tensor_f32(out[0]), (int)M);
  return 0;
}

/* embedding: table [V, C], ids [N] -> [N, C] */
static int k_embedding(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = in[0]->dim[0], C = in[0]->dim[1], N = tensor_numel(in[1]);
  for (int64_t i = 0; i < N; i++) {
    int32_t id = tensor_i32(in[1])[i];
    if (id < 0 || id >= V) return pc_errorf(err, "token id %d is outside the table's %lld rows", id, (long long)V);
    memcpy(tensor_f32(out[0]) + i * C, tensor_f32(in[0]) + (int64_t)id * C, sizeof(float) * (size_t)C);
  }
  return 0;
}

/* slice: [outer, D, inner] -> [outer, size, inner] from offset start */
static int k_slice(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int axis = (int)n->attr[0].i;
  int64_t start = n->attr[1].i, size = n->attr[2].i, D = in[0]->dim[axis], outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= in[0]->dim[d];
  for (int d = axis + 1; d < in[0]->rank; d++) inner *= in[0]->dim[d];
  size_t elem = pc_dtype_size(in[0]->dtype);
  const char *x = in[0]->data;
  char *y = out[0]->data;
  for (int64_t o = 0; o < outer; o++)
    memcpy(y + (size_t)(o * size * inner) * elem, x + (size_t)((o * D + start) * inner) * elem,
           (size_t)(size * inner) * elem);
  return 0;
}

/* attention: q [B,T,H*D], k, v [B,T,Hkv*D] -> y [B,T,H*D], lse [B,H,T]; causal, scaled by
 * 1/sqrt(D); query head h reads key/value head h / (H / Hkv). */
static int k_attention(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t B = in[0]->dim[0], T = in[0]->dim[1], H = n->attr[0].i, Hkv = n->attr[1].i;
  int64_t D = in[0]->dim[2] / H, Cq = H * D, Ckv = Hkv * D;
  double scale = 1.0 / sqrt((double)D);
  double *p = pc_xmalloc(sizeof(double) * (size_t)(T ? T : 1));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      int64_t hk = h / (H / Hkv);
      for (int64_t i = 0; i < T; i++) {
        const float *q = tensor_f32(in[0]) + (b * T + i) * Cq + h * D;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j <= i; j++) {
          const float *k = tensor_f32(in[1]) + (b * T + j) * Ckv + hk * D;
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)q[d] * k[d];
          p[j] = dot * scale;
          m = fmax(m, p[j]);
        }
        for (int64_t j = 0; j <= i; j++) s += (p[j] = exp(p[j] - m));
        tensor_f32(out[1])[(b * H + h) * T + i] = (float)(m + log(s));
        float *y = tensor_f32(out[0]) + (b * T + i) * Cq + h * D;
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t j = 0; j <= i; j++) acc += p[j] * tensor_f32(in[2])[(b * T + j) * Ckv + hk * D + d];
          y[d] = (float)(acc / s);
        }
      }
    }
  free(p);
  return 0;
}

/* attention_cached: q [B,T,H*D], k, v [B,T,Hkv*D], cache [S,2,B,L,Hkv*D],
 * slot, pos. Writes k and v at positions pos..pos+T-1 of cache[slot], then
 * query i (position pos+i) attends over cache[slot] positions 0..pos+i. */
static int k_attention_cached(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  const Tensor *cache = in[3];
  int64_t B = in[0]->dim[0], T = in[0]->dim[1], H = n->attr[0].i, Hkv = n->attr[1].i;
  int64_t D = in[0]->dim[2] / H, Cq = H * D, Ckv = Hkv * D, S = cache->dim[0], L = cache->dim[3];
  int64_t slot = tensor_i32(in[4])[0], pos = tensor_i32(in[5])[0];
  if (slot < 0 || slot >= S) return pc_errorf(err, "cache slot %lld is outside %lld slots", (long long)slot, (long long)S);
  if (pos < 0 || pos + T > L)
    return pc_errorf(err, "positions %lld..%lld do not fit a cache of %lld positions", (long long)pos,
                     (long long)(pos + T - 1), (long long)L);
  float *K = tensor_f32(cache) + slot * 2 * B * L * Ckv, *Vc = K + B * L * Ckv;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      memcpy(K + (b * L + pos + t) * Ckv, tensor_f32(in[1]) + (b * T + t) * Ckv, sizeof(float) * (size_t)Ckv);
      memcpy(Vc + (b * L + pos + t) * Ckv, tensor_f32(in[2]) + (b * T + t) * Ckv, sizeof(float) * (size_t)Ckv);
    }
  double scale = 1.0 / sqrt((double)D);
  double *p = pc_xmalloc(sizeof(double) * (size_t)(pos + T));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      int64_t hk = h / (H / Hkv);
      for (int64_t i = 0; i < T; i++) {
        const float *q = tensor_f32(in[0]) + (b * T + i) * Cq + h * D;
        int64_t last = pos + i;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j <= last; j++) {
          const float *k = K + (b * L + j) * Ckv + hk * D;
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)q[d] * k[d];
          p[j] = dot * scale;
          m = fmax(m, p[j]);
        }
        for (int64_t j = 0; j <= last; j++) s += (p[j] = exp(p[j] - m));
        float *y = tensor_f32(out[0]) + (b * T + i) * Cq + h * D;
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t j = 0; j <= last; j++) acc += p[j] * Vc[(b * L + j) * Ckv + hk * D + d];
          y[d] = (float)(acc / s);
        }
      }
    }
  free(p);
  return 0;
}

/* The rotation rope and rope_grad share: x [B,T,H*D], positions [T] -> y.
 * In each head, dims i and i + R/2 (i < R/2, R = rotary_dims) turn by the
 * angle pos * theta^(-2i/R) (inverse = 1: by minus that angle, the
 * transpose); dims from R on pass through. The frequencies and angles are
 * rounded to float32 as Hugging Face computes them (inv_freq, then
 * position * inv_freq, then cos and sin), so long positions agree too. */
void interp_rope(const IrNode *n, const Tensor *x, const Tensor *positions, Tensor *y, int inverse) {
  int64_t B = x->dim[0], T = x->dim[1], C = x->dim[2], H = n->attr[0].i, R = n->attr[1].i, D = C / H, half = R / 2;
  float *cs = pc_xmalloc(sizeof(float) * 2 * (size_t)(half ? half : 1));
  const float *xs = tensor_f32(x);
  float *ys = tensor_f32(y);
  for (int64_t t = 0; t < T; t++) {
    float pos = (float)tensor_i32(positions)[t];
    for (int64_t i = 0; i < half; i++) {
      float inv = 1.0f / powf((float)n->attr[2].f, (float)(2 * i) / (float)R), angle = pos * inv;
      cs[2 * i] = (float)cos(angle);
      cs[2 * i + 1] = inverse ? -(float)sin(angle) : (float)sin(angle);
    }
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++) {
        const float *a = xs + (b * T + t) * C + h * D;
        float *o = ys + (b * T + t) * C + h * D;
        for (int64_t i = 0; i < half; i++) {
          double c = cs[2 * i], s = cs[2 * i + 1], lo = a[i], hi = a[i + half];
          o[i] = (float)(lo * c - hi * s);
          o[i + half] = (float)(hi * c + lo * s);
        }
        for (int64_t i = R; i < D; i++) o[i] = a[i];
      }
  }
  free(cs);
}

/* rope: x [B,T,H*D], positions [T] -> x with rotary positions */
static int k_rope(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  interp_rope(n, in[0], in[1], out[0], 0);
  return 0;
}

/* cross_entropy: logits [N, V], targets [N] -> mean over targets >= 0 of
 * logsumexp(logits) - logits[target] (NaN when no target counts, as in PyTorch) */
static int k_cross_entropy(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = last(in[0]), N = rows(in[0]), count = 0;
  double total = 0;
  for (int64_t r = 0; r < N; r++) {
    int32_t t = tensor_i32(in[1])[r];
    if (t < 0) continue;
    if (t >= V) return pc_errorf(err, "target id %d is outside the vocabulary of %lld", t, (long long)V);
    const float *x = tensor_f32(in[0]) + r * V;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < V; i++) s += exp(x[i] - m);
    total += m + log(s) - x[t];
    count++;
  }
  tensor_f32(out[0])[0] = count ? (float)(total / (double)count) : NAN;
  return 0;
}

static const InterpKernel kernels[IR_NUM_OPS] = {
    [IR_FILL] = k_fill,
    [IR_POSITIONS] = k_positions,
    [IR_POSITIONS_AT] = k_positions_at,
    [IR_ADD] = k_add,
    [IR_SUB] = k_sub,
    [IR_MUL] = k_mul,
    [IR_SCALE] = k_scale,
    [IR_GELU_TANH] = k_gelu_tanh,
    [IR_GELU] = k_gelu,
    [IR_SILU] = k_silu,
    [IR_SOFTMAX] = k_softmax,
    [IR_SOFTMAX_TOPK] = k_softmax_topk,
    [IR_LAYERNORM] = k_layernorm,
    [IR_RMSNORM] = k_rmsnorm,
    [IR_LINEAR] = k_linear,
    [IR_MATMUL] = k_matmul,
    [IR_EMBEDDING] = k_embedding,
    [IR_SLICE] = k_slice,
    [IR_ATTENTION] = k_attention,
    [IR_ATTENTION_CACHED] = k_attention_cached,
    [IR_ROPE] = k_rope,
    [IR_CROSS_ENTROPY] = k_cross_entropy,
};

InterpKernel interp_kernel(IrOp op) {
  return kernels[op] ? kernels[op] : interp_grad_kernels[op] ? interp_grad_kernels[op] : interp_vocab_kernels[op];
}

void interp_set_threads(int n) { openblas_set_num_threads(n); }
