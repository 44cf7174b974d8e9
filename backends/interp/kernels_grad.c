/* The interpreter's kernels for the ops autodiff emits: gradients,
 * reductions and loop stacks. Operands end with the incoming gradient dy;
 * sums are accumulated in double. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/kernels.h"

static int64_t last(const Tensor *t) { return t->rank ? t->dim[t->rank - 1] : 1; }
static int64_t rows(const Tensor *t) { return tensor_numel(t) / (last(t) ? last(t) : 1); }

/* sum: x -> sum of all elements, f32[] */
static int k_sum(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  double s = 0;
  for (int64_t i = 0, e = tensor_numel(in[0]); i < e; i++) s += tensor_f32(in[0])[i];
  tensor_f32(out[0])[0] = (float)s;
  return 0;
}

/* sum_to: x [..] summed over the axes along which `like` broadcasts to it */
static int k_sum_to(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  const Tensor *x = in[0], *y = out[0];
  int off = x->rank - y->rank;
  int64_t stride[PC_MAX_RANK], idx[PC_MAX_RANK] = {0}, s = 1;
  for (int d = x->rank - 1; d >= 0; d--) { /* x index -> y index */
    int yd = d - off;
    stride[d] = yd < 0 || y->dim[yd] == 1 ? 0 : s;
    if (yd >= 0) s *= y->dim[yd];
  }
  int64_t ny = tensor_numel(y), nx = tensor_numel(x), iy = 0;
  double *acc = calloc((size_t)(ny ? ny : 1), sizeof *acc);
  for (int64_t i = 0; i < nx; i++) {
    acc[iy] += tensor_f32(x)[i];
    for (int d = x->rank - 1; d >= 0; d--) {
      idx[d]++;
      iy += stride[d];
      if (idx[d] < x->dim[d]) break;
      iy -= stride[d] * idx[d];
      idx[d] = 0;
    }
  }
  for (int64_t i = 0; i < ny; i++) tensor_f32(out[0])[i] = (float)acc[i];
  free(acc);
  return 0;
}

/* matmul_tn: a [N, M], b [N, K] -> a^T b [M, K] */
static int k_matmul_tn(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t M = last(in[0]), K = last(in[1]), N = rows(in[0]);
  if (M && K)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)K, (int)N, 1.0f, tensor_f32(in[0]), (int)M,
                tensor_f32(in[1]), (int)K, 0.0f, tensor_f32(out[0]), (int)K);
  return 0;
}

static int act_grad(Tensor *const *in, Tensor *const *out, double (*df)(double)) {
  const float *x = tensor_f32(in[0]), *dy = tensor_f32(in[1]);
  float *dx = tensor_f32(out[0]);
  for (int64_t i = 0, e = tensor_numel(in[0]); i < e; i++) dx[i] = (float)(dy[i] * df(x[i]));
  return 0;
}

/* d/dx of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
static double d_gelu_tanh(double x) {
  double c = sqrt(2.0 / M_PI), u = c * (x + 0.044715 * x * x * x), t = tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}
/* d/dx of x Phi(x) = Phi(x) + x phi(x) */
static double d_gelu(double x) { return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI); }
/* d/dx of x sigmoid(x) = s (1 + x (1 - s)) */
static double d_silu(double x) {
  double s = 1.0 / (1.0 + exp(-x));
  return s * (1.0 + x * (1.0 - s));
}

static int k_gelu_tanh_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  return act_grad(in, out, d_gelu_tanh);
}
static int k_gelu_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  return act_grad(in, out, d_gelu);
}
static int k_silu_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  return act_grad(in, out, d_silu);
}

/* softmax_grad: y = softmax(x) [N, V], dy -> dx = y (dy - sum(dy y)) */
static int k_softmax_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = last(in[0]), N = rows(in[0]);
  for (int64_t r = 0; r < N; r++) {
    const float *y = tensor_f32(in[0]) + r * V, *dy = tensor_f32(in[1]) + r * V;
    float *dx = tensor_f32(out[0]) + r * V;
    double dot = 0;
    for (int64_t i = 0; i < V; i++) dot += (double)dy[i] * y[i];
    for (int64_t i = 0; i < V; i++) dx[i] = (float)(y[i] * (dy[i] - dot));
  }
  return 0;
}

/* layernorm_grad: x [N, C], w [C], dy [N, C] -> dx, dw = sum dy xhat, db = sum dy
 * with xhat = (x - mean) rstd and dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w */
static int k_layernorm_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t C = last(in[0]), N = rows(in[0]);
  const float *w = tensor_f32(in[1]);
  double *dw = calloc((size_t)C, sizeof *dw), *db = calloc((size_t)C, sizeof *db);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * C, *dy = tensor_f32(in[2]) + r * C;
    float *dx = tensor_f32(out[0]) + r * C;
    double mean = 0, var = 0, gm = 0, gxm = 0;
    for (int64_t i = 0; i < C; i++) mean += x[i];
    mean /= (double)C;
    for (int64_t i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    double rstd = 1.0 / sqrt(var / (double)C + n->attr[0].f);
    for (int64_t i = 0; i < C; i++) {
      double xhat = (x[i] - mean) * rstd, g = (double)dy[i] * w[i];
      gm += g;
      gxm += g * xhat;
      dw[i] += dy[i] * xhat;
      db[i] += dy[i];
    }
    gm /= (double)C;
    gxm /= (double)C;
    for (int64_t i = 0; i < C; i++) {
      double xhat = (x[i] - mean) * rstd;
      dx[i] = (float)(rstd * ((double)dy[i] * w[i] - gm - xhat * gxm));
    }
  }
  for (int64_t i = 0; i < C; i++) {
    tensor_f32(out[1])[i] = (float)dw[i];
    tensor_f32(out[2])[i] = (float)db[i];
  }
  free(dw);
  free(db);
  return 0;
}

/* rmsnorm_grad: x [N, C], w [C], dy -> dx = rstd (g - xhat mean(g xhat)), dw = sum dy xhat */
static int k_rmsnorm_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t C = last(in[0]), N = rows(in[0]);
  const float *w = tensor_f32(in[1]);
  double *dw = calloc((size_t)C, sizeof *dw);
  for (int64_t r = 0; r < N; r++) {
    const float *x = tensor_f32(in[0]) + r * C, *dy = tensor_f32(in[2]) + r * C;
    float *dx = tensor_f32(out[0]) + r * C;
    double ss = 0, gxm = 0;
    for (int64_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
    double rstd = 1.0 / sqrt(ss / (double)C + n->attr[0].f);
    for (int64_t i = 0; i < C; i++) {
      gxm += (double)dy[i] * w[i] * x[i] * rstd;
      dw[i] += dy[i] * x[i] * rstd;
    }
    gxm /= (double)C;
    for (int64_t i = 0; i < C; i++) dx[i] = (float)(rstd * ((double)dy[i] * w[i] - x[i] * rstd * gxm));
  }
  for (int64_t i = 0; i < C; i++) tensor_f32(out[1])[i] = (float)dw[i];
  free(dw);
  return 0;
}

/* embedding_grad: gradient so far [V, C], ids [N], dy [N, C] -> the rows of
 * dy added into the rows ids name (out[0] holds the gradient so far
 * already). Each touched row is summed in double, its ids' rows in order. */
static int k_embedding_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = out[0]->dim[0], C = out[0]->dim[1], N = tensor_numel(in[1]);
  const int32_t *ids = tensor_i32(in[1]);
  for (int64_t i = 0; i < N; i++)
    if (ids[i] < 0 || ids[i] >= V) return pc_errorf(err, "token id %d is outside the table's %lld rows", ids[i], (long long)V);
  /* positions grouped by id (a counting sort): first[id] .. first[id + 1] */
  int64_t *first = pc_xcalloc((size_t)V + 2, sizeof *first), *at = pc_xmalloc(sizeof *at * (size_t)(N + 1));
  for (int64_t i = 0; i < N; i++) first[ids[i] + 2]++;
  for (int64_t v = 0; v < V; v++) first[v + 2] += first[v + 1];
  for (int64_t i = 0; i < N; i++) at[first[ids[i] + 1]++] = i;
  double *row = pc_xmalloc(sizeof *row * (size_t)(C + 1));
  float *g = tensor_f32(out[0]);
  const float *dy = tensor_f32(in[2]);
  for (int64_t v = 0; v < V; v++) {
    if (first[v] == first[v + 1]) continue;
    for (int64_t c = 0; c < C; c++) row[c] = g[v * C + c];
    for (int64_t k = first[v]; k < first[v + 1]; k++)
      for (int64_t c = 0; c < C; c++) row[c] += dy[at[k] * C + c];
    for (int64_t c = 0; c < C; c++) g[v * C + c] = (float)row[c];
  }
  free(first);
  free(at);
  free(row);
  return 0;
}

/* slice_grad: into, dy -> into with dy added at [start, start+size) of
 * axis (out holds into already: ir_accumulates) */
static int k_slice_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int axis = (int)n->attr[0].i;
  int64_t start = n->attr[1].i, size = n->attr[2].i, D = in[0]->dim[axis], outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= in[0]->dim[d];
  for (int d = axis + 1; d < in[0]->rank; d++) inner *= in[0]->dim[d];
  for (int64_t o = 0; o < outer; o++) {
    float *to = tensor_f32(out[0]) + (o * D + start) * inner;
    const float *dy = tensor_f32(in[1]) + o * size * inner;
    for (int64_t z = 0; z < size * inner; z++) to[z] += dy[z];
  }
  return 0;
}

/* attention_grad: q, k, v, y, lse, dy -> dq, dk, dv (the reference recomputes
 * p in double instead of reading y and lse). Per query row i, with p the
 * causal softmax of s_j = q.k_j / sqrt(D):
 *   dv_j += p_j dy;  dp_j = dy.v_j;  ds_j = p_j (dp_j - sum p dp);
 *   dq += ds_j k_j / sqrt(D);  dk_j += ds_j q / sqrt(D) */
static int k_attention_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t B = in[0]->dim[0], T = in[0]->dim[1], H = n->attr[0].i, Hkv = n->attr[1].i;
  int64_t D = in[0]->dim[2] / H, Cq = H * D, Ckv = Hkv * D;
  double scale = 1.0 / sqrt((double)D);
  const float *Q = tensor_f32(in[0]), *Kt = tensor_f32(in[1]), *Vt = tensor_f32(in[2]), *dY = tensor_f32(in[5]);
  double *p = malloc(sizeof(double) * (size_t)(T ? T : 1)), *dp = malloc(sizeof(double) * (size_t)(T ? T : 1));
  double *dq = calloc((size_t)tensor_numel(in[0]) + 1, sizeof *dq), *dk = calloc((size_t)tensor_numel(in[1]) + 1, sizeof *dk),
         *dv = calloc((size_t)tensor_numel(in[2]) + 1, sizeof *dv);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      int64_t hk = h / (H / Hkv);
      for (int64_t i = 0; i < T; i++) {
        const float *q = Q + (b * T + i) * Cq + h * D, *dy = dY + (b * T + i) * Cq + h * D;
        double m = -INFINITY, s = 0, pdp = 0;
        for (int64_t j = 0; j <= i; j++) {
          const float *k = Kt + (b * T + j) * Ckv + hk * D;
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)q[d] * k[d];
          p[j] = dot * scale;
          m = fmax(m, p[j]);
        }
        for (int64_t j = 0; j <= i; j++) s += (p[j] = exp(p[j] - m));
        for (int64_t j = 0; j <= i; j++) {
          const float *v = Vt + (b * T + j) * Ckv + hk * D;
          p[j] /= s;
          double dot = 0;
          for (int64_t d = 0; d < D; d++) {
            dot += (double)dy[d] * v[d];
            dv[(b * T + j) * Ckv + hk * D + d] += p[j] * dy[d];
          }
          dp[j] = dot;
          pdp += p[j] * dot;
        }
        for (int64_t j = 0; j <= i; j++) {
          double ds = p[j] * (dp[j] - pdp) * scale;
          const float *k = Kt + (b * T + j) * Ckv + hk * D;
          for (int64_t d = 0; d < D; d++) {
            dq[(b * T + i) * Cq + h * D + d] += ds * k[d];
            dk[(b * T + j) * Ckv + hk * D + d] += ds * q[d];
          }
        }
      }
    }
  for (int64_t i = 0; i < tensor_numel(in[0]); i++) tensor_f32(out[0])[i] = (float)dq[i];
  for (int64_t i = 0; i < tensor_numel(in[1]); i++) tensor_f32(out[1])[i] = (float)dk[i];
  for (int64_t i = 0; i < tensor_numel(in[2]); i++) tensor_f32(out[2])[i] = (float)dv[i];
  free(p);
  free(dp);
  free(dq);
  free(dk);
  free(dv);
  return 0;
}

/* cross_entropy_grad: logits [N, V], targets [N], dloss -> (softmax - onehot)
 * dloss / count on counted rows, zero on ignored ones */
static int k_cross_entropy_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t V = last(in[0]), N = rows(in[0]), count = 0;
  for (int64_t r = 0; r < N; r++) count += tensor_i32(in[1])[r] >= 0;
  double scale = count ? tensor_f32(in[2])[0] / (double)count : 0;
  for (int64_t r = 0; r < N; r++) {
    int32_t t = tensor_i32(in[1])[r];
    const float *x = tensor_f32(in[0]) + r * V;
    float *dx = tensor_f32(out[0]) + r * V;
    if (t < 0) {
      memset(dx, 0, sizeof(float) * (size_t)V);
      continue;
    }
    if (t >= V) return pc_errorf(err, "target id %d is outside the vocabulary of %lld", t, (long long)V);
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < V; i++) s += exp(x[i] - m);
    for (int64_t i = 0; i < V; i++) dx[i] = (float)((exp(x[i] - m) / s - (i == t)) * scale);
  }
  return 0;
}

/* rope_grad: positions [T], dy [B,T,H*D] -> dy turned back (the rotation's transpose) */
static int k_rope_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  interp_rope(n, in[1], in[0], out[0], 1);
  return 0;
}

static int check_slot(const Tensor *buf, const Tensor *index, int64_t *slot, PcError *err) {
  *slot = tensor_i32(index)[0];
  if (*slot < 0 || *slot >= buf->dim[0])
    return pc_errorf(err, "slot %lld is outside a stack of %lld", (long long)*slot, (long long)buf->dim[0]);
  return 0;
}

/* stack_set: buf [K, S], i, x [S] -> buf with slot i = x. out[0] holds buf
 * already (ir_accumulates). */
static int k_stack_set(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t slot;
  if (check_slot(in[0], in[1], &slot, err) < 0) return -1;
  size_t bytes = tensor_bytes(in[2]);
  memcpy((char *)out[0]->data + (size_t)slot * bytes, in[2]->data, bytes);
  return 0;
}

/* stack_get: buf [K, S], i -> slot i */
static int k_stack_get(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t slot;
  if (check_slot(in[0], in[1], &slot, err) < 0) return -1;
  size_t bytes = tensor_bytes(out[0]);
  memcpy(out[0]->data, (char *)in[0]->data + (size_t)slot * bytes, bytes);
  return 0;
}

const InterpKernel interp_grad_kernels[IR_NUM_OPS] = {
    [IR_SUM] = k_sum,
    [IR_SUM_TO] = k_sum_to,
    [IR_MATMUL_TN] = k_matmul_tn,
    [IR_GELU_TANH_GRAD] = k_gelu_tanh_grad,
    [IR_GELU_GRAD] = k_gelu_grad,
    [IR_SILU_GRAD] = k_silu_grad,
    [IR_SOFTMAX_GRAD] = k_softmax_grad,
    [IR_LAYERNORM_GRAD] = k_layernorm_grad,
    [IR_RMSNORM_GRAD] = k_rmsnorm_grad,
    [IR_EMBEDDING_GRAD] = k_embedding_grad,
    [IR_SLICE_GRAD] = k_slice_grad,
    [IR_ATTENTION_GRAD] = k_attention_grad,
    [IR_CROSS_ENTROPY_GRAD] = k_cross_entropy_grad,
    [IR_ROPE_GRAD] = k_rope_grad,
    [IR_STACK_SET] = k_stack_set,
    [IR_STACK_GET] = k_stack_get,
};
