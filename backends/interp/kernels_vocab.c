/* The fused vocabulary ops (DESIGN section 2), computed like FlashAttention
 * over chunks of the vocabulary: logits exist only CHUNK rows of the
 * matrix at a time, never as an [N, V] buffer. N is the number of rows of
 * H (all its leading axes), C its width. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/kernels.h"

enum { CHUNK = 1024 };

static int64_t last(const Tensor *t) { return t->rank ? t->dim[t->rank - 1] : 1; }
static int64_t rows(const Tensor *t) { return tensor_numel(t) / (last(t) ? last(t) : 1); }

/* Z [N, n] = H [N, C] W[v0 .. v0+n)^T * scale */
static void chunk_logits(const float *H, const float *W, int64_t N, int64_t C, int64_t v0, int64_t n, float scale,
                         float *Z) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n, (int)C, scale, H, (int)C, W + v0 * C, (int)C,
              0.0f, Z, (int)n);
}

/* vocab_attention: H [N, C], Wo [V, C], Wi [V, C'] -> T [N, C'] = softmax(H Wo^T / tau) Wi,
 * lse [N]. Per row: running max m, running sum l, running output; a new
 * maximum rescales what was summed so far. */
static int k_vocab_attention(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), V = in[1]->dim[0], Ci = in[2]->dim[1];
  float inv_tau = (float)(1.0 / n->attr[0].f);
  float *T = tensor_f32(out[0]), *lse = tensor_f32(out[1]);
  float *Z = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1));
  double *m = pc_xmalloc(sizeof(double) * (size_t)(N + 1)), *l = pc_xcalloc((size_t)N + 1, sizeof(double));
  for (int64_t r = 0; r < N; r++) m[r] = -INFINITY;
  memset(T, 0, sizeof(float) * (size_t)(N * Ci));
  for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
    int64_t nc = V - v0 < CHUNK ? V - v0 : CHUNK;
    chunk_logits(tensor_f32(in[0]), tensor_f32(in[1]), N, C, v0, nc, inv_tau, Z);
    for (int64_t r = 0; r < N; r++) {
      float *z = Z + r * nc;
      double mx = m[r];
      for (int64_t j = 0; j < nc; j++) mx = fmax(mx, z[j]);
      double rescale = exp(m[r] - mx), s = 0;
      for (int64_t j = 0; j < nc; j++) s += (z[j] = (float)exp(z[j] - mx)); /* z becomes the chunk's weights */
      l[r] = l[r] * rescale + s;
      m[r] = mx;
      if (rescale != 1.0)
        for (int64_t c = 0; c < Ci; c++) T[r * Ci + c] *= (float)rescale;
    }
    /* T += weights [N, nc] Wi[v0 .. v0+nc) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)Ci, (int)nc, 1.0f, Z, (int)nc,
                tensor_f32(in[2]) + v0 * Ci, (int)Ci, 1.0f, T, (int)Ci);
  }
  for (int64_t r = 0; r < N; r++) {
    for (int64_t c = 0; c < Ci; c++) T[r * Ci + c] = (float)(T[r * Ci + c] / l[r]);
    lse[r] = (float)(m[r] + log(l[r]));
  }
  free(Z);
  free(m);
  free(l);
  return 0;
}

/* The gradient of the mixture matrix Wi: its own result, or for the tied
 * forms the head's (one matrix). */
static float *mixture_grad(const IrNode *n, Tensor *const *out) {
  int tied = n->op == IR_VOCAB_ATTENTION_GRAD_TIED || n->op == IR_VOCAB_ATTENTION_TOPK_GRAD_TIED;
  return tensor_f32(out[tied ? 1 : 2]);
}

/* vocab_attention_grad: (H, Wo, Wi, T, lse, dT, gWo, gWi) -> dH, gWo + dWo,
 * gWi + dWi (out[1] and out[2] hold gWo and gWi already; tied: one matrix).
 * With the probabilities P recomputed chunk by chunk from lse and
 * D = rowsum(dT T):
 *   dP = dT Wi^T;  dZ = P (dP - D) / tau;  dH += dZ Wo;  dWo = dZ^T H;  dWi = P^T dT */
static int k_vocab_attention_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), V = in[1]->dim[0], Ci = in[2]->dim[1];
  double tau = n->attr[0].f;
  const float *H = tensor_f32(in[0]), *Wo = tensor_f32(in[1]), *Wi = tensor_f32(in[2]), *T = tensor_f32(in[3]),
              *lse = tensor_f32(in[4]), *dT = tensor_f32(in[5]);
  float *dH = tensor_f32(out[0]), *dWo = tensor_f32(out[1]), *dWi = mixture_grad(n, out);
  float *P = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1)), *dZ = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1));
  double *D = pc_xmalloc(sizeof(double) * (size_t)(N + 1));
  for (int64_t r = 0; r < N; r++) {
    D[r] = 0;
    for (int64_t c = 0; c < Ci; c++) D[r] += (double)dT[r * Ci + c] * T[r * Ci + c];
  }
  memset(dH, 0, sizeof(float) * (size_t)(N * C));
  for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
    int64_t nc = V - v0 < CHUNK ? V - v0 : CHUNK;
    chunk_logits(H, Wo, N, C, v0, nc, (float)(1.0 / tau), P);
    /* dP [N, nc] = dT Wi_c^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)nc, (int)Ci, 1.0f, dT, (int)Ci, Wi + v0 * Ci,
                (int)Ci, 0.0f, dZ, (int)nc);
    for (int64_t r = 0; r < N; r++)
      for (int64_t j = 0; j < nc; j++) {
        double p = exp((double)P[r * nc + j] - lse[r]);
        P[r * nc + j] = (float)p;
        dZ[r * nc + j] = (float)(p * (dZ[r * nc + j] - D[r]) / tau);
      }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)nc, 1.0f, dZ, (int)nc, Wo + v0 * C,
                (int)C, 1.0f, dH, (int)C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)C, (int)N, 1.0f, dZ, (int)nc, H, (int)C, 1.0f,
                dWo + v0 * C, (int)C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)Ci, (int)N, 1.0f, P, (int)nc, dT, (int)Ci,
                1.0f, dWi + v0 * Ci, (int)Ci);
  }
  free(P);
  free(dZ);
  free(D);
  return 0;
}

/* vocab_attention_topk: like vocab_attention over each row's k largest
 * logits: T [N, C'], their ids [N, k] and probabilities [N, k]. The top k
 * are kept across chunks (ties: the lower id). */
static int k_vocab_attention_topk(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), V = in[1]->dim[0], Ci = in[2]->dim[1], k = n->attr[1].i;
  float inv_tau = (float)(1.0 / n->attr[0].f);
  int32_t *ids = tensor_i32(out[1]);
  float *T = tensor_f32(out[0]), *prob = tensor_f32(out[2]);
  /* per row: candidates = the k best so far followed by this chunk */
  float *Z = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1));
  float *best = pc_xmalloc(sizeof(float) * (size_t)(N * k)), *cand = pc_xmalloc(sizeof(float) * (size_t)(k + CHUNK));
  int64_t *cand_id = pc_xmalloc(sizeof(int64_t) * (size_t)(k + CHUNK)), *pick = pc_xmalloc(sizeof(int64_t) * (size_t)k);
  int64_t *best_id = pc_xmalloc(sizeof(int64_t) * (size_t)(N * k));
  int64_t have = 0;
  for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
    int64_t nc = V - v0 < CHUNK ? V - v0 : CHUNK;
    chunk_logits(tensor_f32(in[0]), tensor_f32(in[1]), N, C, v0, nc, inv_tau, Z);
    for (int64_t r = 0; r < N; r++) {
      memcpy(cand, best + r * k, sizeof(float) * (size_t)have);
      memcpy(cand_id, best_id + r * k, sizeof(int64_t) * (size_t)have);
      memcpy(cand + have, Z + r * nc, sizeof(float) * (size_t)nc);
      for (int64_t j = 0; j < nc; j++) cand_id[have + j] = v0 + j;
      int64_t total = have + nc, keep = total < k ? total : k;
      /* interp_top_k breaks ties by position; candidates are in id order */
      interp_top_k(cand, total, keep, pick);
      for (int64_t j = 0; j < keep; j++) {
        best[r * k + j] = cand[pick[j]];
        best_id[r * k + j] = cand_id[pick[j]];
      }
      /* keep the kept entries in id order for the next round's ties */
      for (int64_t a = 1; a < keep; a++)
        for (int64_t b = a; b > 0 && best_id[r * k + b - 1] > best_id[r * k + b]; b--) {
          float tv = best[r * k + b];
          int64_t ti = best_id[r * k + b];
          best[r * k + b] = best[r * k + b - 1];
          best_id[r * k + b] = best_id[r * k + b - 1];
          best[r * k + b - 1] = tv;
          best_id[r * k + b - 1] = ti;
        }
    }
    have = have + nc < k ? have + nc : k;
  }
  for (int64_t r = 0; r < N; r++) {
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < k; j++) mx = fmax(mx, best[r * k + j]);
    for (int64_t j = 0; j < k; j++) s += exp(best[r * k + j] - mx);
    for (int64_t c = 0; c < Ci; c++) T[r * Ci + c] = 0;
    for (int64_t j = 0; j < k; j++) {
      double p = exp(best[r * k + j] - mx) / s;
      ids[r * k + j] = (int32_t)best_id[r * k + j];
      prob[r * k + j] = (float)p;
      const float *row = tensor_f32(in[2]) + best_id[r * k + j] * Ci;
      for (int64_t c = 0; c < Ci; c++) T[r * Ci + c] += (float)(p * row[c]);
    }
  }
  free(Z);
  free(best);
  free(best_id);
  free(cand);
  free(cand_id);
  free(pick);
  return 0;
}

/* vocab_attention_topk_grad: (H, Wo, Wi, ids, p, dT, gWo, gWi) -> dH,
 * gWo + dWo, gWi + dWi (held in out[1], out[2] already; tied: one matrix),
 * only through the k chosen logits of each row (the choice itself has no
 * gradient). */
static int k_vocab_attention_topk_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), Ci = in[2]->dim[1], k = last(in[3]);
  double tau = n->attr[0].f;
  const float *H = tensor_f32(in[0]), *Wo = tensor_f32(in[1]), *Wi = tensor_f32(in[2]), *p = tensor_f32(in[4]),
              *dT = tensor_f32(in[5]);
  const int32_t *ids = tensor_i32(in[3]);
  float *dH = tensor_f32(out[0]), *dWo = tensor_f32(out[1]), *dWi = mixture_grad(n, out);
  memset(dH, 0, tensor_bytes(out[0]));
  double *dp = pc_xmalloc(sizeof(double) * (size_t)k);
  for (int64_t r = 0; r < N; r++) {
    const float *dt = dT + r * Ci, *h = H + r * C;
    double D = 0;
    for (int64_t j = 0; j < k; j++) {
      const float *wi = Wi + (int64_t)ids[r * k + j] * Ci;
      dp[j] = 0;
      for (int64_t c = 0; c < Ci; c++) dp[j] += (double)dt[c] * wi[c];
      D += p[r * k + j] * dp[j];
    }
    for (int64_t j = 0; j < k; j++) {
      int64_t v = ids[r * k + j];
      double pj = p[r * k + j], dz = pj * (dp[j] - D) / tau;
      for (int64_t c = 0; c < C; c++) {
        dH[r * C + c] += (float)(dz * Wo[v * C + c]);
        dWo[v * C + c] += (float)(dz * h[c]);
      }
      for (int64_t c = 0; c < Ci; c++) dWi[v * Ci + c] += (float)(pj * dt[c]);
    }
  }
  free(dp);
  return 0;
}

/* linear_cross_entropy: H [N, C], W [V, C], targets [N] -> loss = mean over
 * targets >= 0 of lse - z[target] (z = H W^T), and lse [N] */
static int k_linear_cross_entropy(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), V = in[1]->dim[0], count = 0;
  const int32_t *t = tensor_i32(in[2]);
  for (int64_t r = 0; r < N; r++) {
    if (t[r] >= V) return pc_errorf(err, "target id %d is outside the vocabulary of %lld", t[r], (long long)V);
    count += t[r] >= 0;
  }
  float *Z = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1));
  double *m = pc_xmalloc(sizeof(double) * (size_t)(N + 1)), *l = pc_xcalloc((size_t)N + 1, sizeof(double)),
         *zt = pc_xcalloc((size_t)N + 1, sizeof(double));
  for (int64_t r = 0; r < N; r++) m[r] = -INFINITY;
  for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
    int64_t nc = V - v0 < CHUNK ? V - v0 : CHUNK;
    chunk_logits(tensor_f32(in[0]), tensor_f32(in[1]), N, C, v0, nc, 1.0f, Z);
    for (int64_t r = 0; r < N; r++) {
      const float *z = Z + r * nc;
      double mx = m[r], s = 0;
      for (int64_t j = 0; j < nc; j++) mx = fmax(mx, z[j]);
      for (int64_t j = 0; j < nc; j++) s += exp(z[j] - mx);
      l[r] = l[r] * exp(m[r] - mx) + s;
      m[r] = mx;
      if (t[r] >= v0 && t[r] < v0 + nc) zt[r] = z[t[r] - v0];
    }
  }
  double total = 0;
  for (int64_t r = 0; r < N; r++) {
    double lse = m[r] + log(l[r]);
    tensor_f32(out[1])[r] = (float)lse;
    if (t[r] >= 0) total += lse - zt[r];
  }
  tensor_f32(out[0])[0] = count ? (float)(total / (double)count) : NAN;
  free(Z);
  free(m);
  free(l);
  free(zt);
  return 0;
}

/* linear_cross_entropy_grad: (H, W, targets, lse, dloss, gW) -> dH, gW + dW
 * (out[1] holds gW already), with dZ = (softmax(Z) - onehot(target)) dloss /
 * count chunk by chunk */
static int k_linear_cross_entropy_grad(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err) {
  int64_t N = rows(in[0]), C = last(in[0]), V = in[1]->dim[0], count = 0;
  const float *H = tensor_f32(in[0]), *W = tensor_f32(in[1]), *lse = tensor_f32(in[3]);
  const int32_t *t = tensor_i32(in[2]);
  for (int64_t r = 0; r < N; r++) count += t[r] >= 0;
  double scale = count ? tensor_f32(in[4])[0] / (double)count : 0;
  float *dZ = pc_xmalloc(sizeof(float) * (size_t)(N * CHUNK + 1)), *dH = tensor_f32(out[0]), *dW = tensor_f32(out[1]);
  memset(dH, 0, tensor_bytes(out[0]));
  for (int64_t v0 = 0; v0 < V; v0 += CHUNK) {
    int64_t nc = V - v0 < CHUNK ? V - v0 : CHUNK;
    chunk_logits(H, W, N, C, v0, nc, 1.0f, dZ);
    for (int64_t r = 0; r < N; r++)
      for (int64_t j = 0; j < nc; j++) {
        float *z = &dZ[r * nc + j];
        *z = t[r] < 0 ? 0.0f : (float)((exp((double)*z - lse[r]) - (t[r] == v0 + j)) * scale);
      }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)nc, 1.0f, dZ, (int)nc, W + v0 * C,
                (int)C, 1.0f, dH, (int)C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)C, (int)N, 1.0f, dZ, (int)nc, H, (int)C, 1.0f,
                dW + v0 * C, (int)C);
  }
  free(dZ);
  return 0;
}

const InterpKernel interp_vocab_kernels[IR_NUM_OPS] = {
    [IR_VOCAB_ATTENTION] = k_vocab_attention,
    [IR_VOCAB_ATTENTION_GRAD] = k_vocab_attention_grad,
    [IR_VOCAB_ATTENTION_TOPK] = k_vocab_attention_topk,
    [IR_VOCAB_ATTENTION_TOPK_GRAD] = k_vocab_attention_topk_grad,
    [IR_VOCAB_ATTENTION_GRAD_TIED] = k_vocab_attention_grad,
    [IR_VOCAB_ATTENTION_TOPK_GRAD_TIED] = k_vocab_attention_topk_grad,
    [IR_LINEAR_CROSS_ENTROPY] = k_linear_cross_entropy,
    [IR_LINEAR_CROSS_ENTROPY_GRAD] = k_linear_cross_entropy_grad,
};
