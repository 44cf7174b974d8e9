/* Kernels of the fused vocabulary ops (DESIGN section 2): the vocabulary
 * is streamed in chunks of s->vocab_chunk rows, logits exist one chunk at a
 * time in scratch ([N, chunk]), matrix products are sgemm calls and the
 * per-row online softmax runs rows in parallel. With a scratch budget
 * (s->vocab_scratch, the CUDA schedule's) chunks grow when the call has
 * few rows: decoding takes the vocabulary in one chunk, one product and a
 * few launches, not V / vocab_chunk of each. */
#include <math.h>

#include "compiler/lower/lower_internal.h"

#define IN(k) ir_in(l->g, n, k)
#define OUT(k) (n->out + (k))


typedef struct {
  uint32_t N, C, V, Ci;
  uint32_t chunk;  /* vocabulary rows per chunk */
  uint32_t chunks; /* ceil(V / chunk) */
} Vocab;

/* the schedule's chunk, at most V */
static int64_t least_chunk(Lower *l, int64_t V) { return l->s->vocab_chunk < V ? l->s->vocab_chunk : V; }

/* with_mix: operand 2 is the mixture matrix (vocab_attention*), whose width is Ci */
static Vocab vocab(Lower *l, const IrNode *n, int with_mix) {
  const IrShape *h = L_shape(l, ir_in(l->g, n, 0));
  int64_t V = L_shape(l, ir_in(l->g, n, 1))->dim[0], ch = least_chunk(l, V);
  Vocab v = {L_ivar(l, L_rows(l, h)), L_ivar(l, L_last(l, h)), L_i(l, V),
             with_mix ? L_i(l, L_shape(l, ir_in(l->g, n, 2))->dim[1]) : 0, L_i(l, ch), L_i(l, (V + ch - 1) / ch)};
  if (l->s->vocab_scratch > 0 && ch < V) { /* chunk = clamp(budget / N, ch, V), on the host */
    uint32_t fit = L_div(l, L_i(l, l->s->vocab_scratch), L_op(l, KE_MAX, v.N, L_i(l, 1)));
    v.chunk = L_ivar(l, L_op(l, KE_MAX, L_i(l, ch), L_op(l, KE_MIN, v.V, fit)));
    v.chunks = L_ivar(l, L_div(l, L_add(l, v.V, L_sub(l, v.chunk, L_i(l, 1))), v.chunk));
  }
  return v;
}

/* Opens the chunk loop; v0 and nc get the chunk's first row and size. */
static uint32_t chunk_loop(Lower *l, const Vocab *v, uint32_t *v0, uint32_t *nc) {
  uint32_t saved, ci = L_loop(l, KL_SERIAL, L_i(l, 0), v->chunks, &saved);
  *v0 = L_ivar(l, L_mul(l, ci, v->chunk));
  *nc = L_ivar(l, L_op(l, KE_MIN, v->chunk, L_sub(l, v->V, *v0)));
  return saved;
}

/* Z [N, nc] = H W[v0 .. v0+nc)^T * scale */
static void chunk_logits(Lower *l, const Vocab *v, uint32_t H, uint32_t W, uint32_t v0, uint32_t nc, double scale,
                         uint32_t Z) {
  L_gemm(l, 0, 1, v->N, nc, v->C, (float)scale, H, L_i(l, 0), v->C, W, L_mul(l, v0, v->C), v->C, 0.0f, Z, L_i(l, 0), nc);
}

static int scratch_chunk(Lower *l, const IrNode *n, int64_t *elems) {
  const IrShape *h = L_shape(l, ir_in(l->g, n, 0));
  int64_t last = h->rank ? h->dim[h->rank - 1] : 1, N = L_max_numel(l, h) / (last ? last : 1);
  int64_t V = L_shape(l, ir_in(l->g, n, 1))->dim[0], ch = least_chunk(l, V), budget = l->s->vocab_scratch;
  int64_t most = N * ch; /* a chunk's [N, chunk]: what vocab() chooses keeps N x chunk within the larger of this */
  if (budget > 0 && ch < V && budget > most) most = budget < N * V ? budget : N * V; /* and the budget */
  elems[0] = most; /* logits / probabilities of one chunk */
  elems[1] = N;      /* per row: running max (forward) or D (backward) */
  elems[2] = N;      /* per row: running sum */
  if (n->op == IR_VOCAB_ATTENTION_GRAD || n->op == IR_VOCAB_ATTENTION_GRAD_TIED || n->op == IR_LINEAR_CROSS_ENTROPY_GRAD)
    elems[3] = most; /* dZ */
  if (n->op == IR_LINEAR_CROSS_ENTROPY) elems[3] = N; /* per row: the target's logit */
  if (n->op == IR_VOCAB_ATTENTION_TOPK) {
    int64_t k = n->attr[1].i;
    elems[1] = N * k; /* the k best values so far */
    elems[2] = N * k; /* their ids */
    elems[3] = 0;
  }
  return 0;
}

/* vocab_attention(H, Wo, Wi) -> T = softmax(H Wo^T / tau) Wi, lse */
static int lo_vocab_attention(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 1);
  uint32_t Z = L_scratch(l, n, 0), M = L_scratch(l, n, 1), S = L_scratch(l, n, 2), T = l->buf[OUT(0)], v0, nc, sv, sr, sc;
  L_operand_only(l, Z); /* the weights, read by the product into T alone */
  ks_fill(l->p, l->block, T, L_i(l, 0), L_mul(l, v.N, v.Ci), L_f(l, 0));
  ks_fill(l->p, l->block, M, L_i(l, 0), v.N, L_f(l, -INFINITY));
  ks_fill(l->p, l->block, S, L_i(l, 0), v.N, L_f(l, 0));
  uint32_t saved = chunk_loop(l, &v, &v0, &nc);
  chunk_logits(l, &v, l->buf[IN(0)], l->buf[IN(1)], v0, nc, 1.0 / n->attr[0].f, Z);
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t base = L_ivar(l, L_mul(l, r, nc)), mx = L_acc(l, K_F32, L_ldb(l, M, r));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sv);
  L_assign(l, mx, L_op(l, KE_MAX, L_varx(l, mx), L_ldb(l, Z, L_add(l, base, j))));
  l->block = sv;
  uint32_t rescale = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, M, r), L_varx(l, mx))));
  uint32_t sum = L_acc(l, K_F32, L_f(l, 0));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sv);
  uint32_t e = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, Z, L_add(l, base, j)), L_varx(l, mx))));
  L_stb(l, Z, L_add(l, base, j), e);
  L_assign(l, sum, L_add(l, L_varx(l, sum), e));
  l->block = sv;
  L_stb(l, S, r, L_add(l, L_mul(l, L_ldb(l, S, r), rescale), L_varx(l, sum)));
  L_stb(l, M, r, L_varx(l, mx));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  uint32_t at = L_add(l, L_mul(l, r, v.Ci), c);
  L_stb(l, T, at, L_mul(l, L_ldb(l, T, at), rescale));
  l->block = sc;
  l->block = sr;
  /* T += weights [N, nc] Wi[v0 .. v0+nc) */
  L_gemm(l, 0, 0, v.N, v.Ci, nc, 1.0f, Z, L_i(l, 0), nc, l->buf[IN(2)], L_mul(l, v0, v.Ci), v.Ci, 1.0f, T, L_i(l, 0), v.Ci);
  l->block = saved;
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t inv = L_fvar(l, L_div(l, L_f(l, 1.0), L_ldb(l, S, r)));
  c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  at = L_add(l, L_mul(l, r, v.Ci), c);
  L_stb(l, T, at, L_mul(l, L_ldb(l, T, at), inv));
  l->block = sc;
  L_store(l, OUT(1), r, L_add(l, L_ldb(l, M, r), L_ex(l, KE_LOG, L_ldb(l, S, r))));
  l->block = sr;
  return 0;
}

/* The buffer of the mixture matrix's gradient: its own result, or for the
 * tied forms the head's (one matrix). */
static uint32_t mixture_grad(Lower *l, const IrNode *n) {
  int tied = n->op == IR_VOCAB_ATTENTION_GRAD_TIED || n->op == IR_VOCAB_ATTENTION_TOPK_GRAD_TIED;
  return l->buf[OUT(tied ? 1 : 2)];
}

/* vocab_attention_grad(H, Wo, Wi, T, lse, dT, gWo, gWi) -> dH, gWo + dWo, gWi + dWi
 * (the results hold gWo and gWi already; tied: one matrix):
 *   D = rowsum(dT T);  per chunk: P = exp(H Wo_c^T / tau - lse);  dZ = P (dT Wi_c^T - D) / tau
 *   dH += dZ Wo_c;  dWo_c += dZ^T H;  dWi_c += P^T dT */
static int lo_vocab_attention_grad(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 1);
  double tau = n->attr[0].f;
  uint32_t P = L_scratch(l, n, 0), D = L_scratch(l, n, 1), dZ = L_scratch(l, n, 3), v0, nc, sr, sc;
  L_operand_only(l, P); /* P and dZ stored are read by the products alone */
  L_operand_only(l, dZ);
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t dot = L_acc(l, K_F32, L_f(l, 0));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  uint32_t at = L_add(l, L_mul(l, r, v.Ci), c);
  L_assign(l, dot, L_add(l, L_varx(l, dot), L_mul(l, L_load(l, IN(5), at), L_load(l, IN(3), at))));
  l->block = sc;
  L_stb(l, D, r, L_varx(l, dot));
  l->block = sr;
  ks_fill(l->p, l->block, l->buf[OUT(0)], L_i(l, 0), L_mul(l, v.N, v.C), L_f(l, 0));
  uint32_t saved = chunk_loop(l, &v, &v0, &nc);
  chunk_logits(l, &v, l->buf[IN(0)], l->buf[IN(1)], v0, nc, 1.0 / tau, P);
  L_gemm(l, 0, 1, v.N, nc, v.Ci, 1.0f, l->buf[IN(5)], L_i(l, 0), v.Ci, l->buf[IN(2)], L_mul(l, v0, v.Ci), v.Ci, 0.0f, dZ,
         L_i(l, 0), nc);
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t base = L_ivar(l, L_mul(l, r, nc)), lse = L_fvar(l, L_load(l, IN(4), r)), d = L_fvar(l, L_ldb(l, D, r));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sc);
  uint32_t p = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, P, L_add(l, base, j)), lse)));
  L_stb(l, P, L_add(l, base, j), p);
  L_stb(l, dZ, L_add(l, base, j), L_mul(l, L_mul(l, p, L_sub(l, L_ldb(l, dZ, L_add(l, base, j)), d)), L_f(l, 1.0 / tau)));
  l->block = sc;
  l->block = sr;
  L_gemm(l, 0, 0, v.N, v.C, nc, 1.0f, dZ, L_i(l, 0), nc, l->buf[IN(1)], L_mul(l, v0, v.C), v.C, 1.0f, l->buf[OUT(0)],
         L_i(l, 0), v.C);
  L_gemm(l, 1, 0, nc, v.C, v.N, 1.0f, dZ, L_i(l, 0), nc, l->buf[IN(0)], L_i(l, 0), v.C, 1.0f, l->buf[OUT(1)],
         L_mul(l, v0, v.C), v.C);
  L_gemm(l, 1, 0, nc, v.Ci, v.N, 1.0f, P, L_i(l, 0), nc, l->buf[IN(5)], L_i(l, 0), v.Ci, 1.0f, mixture_grad(l, n),
         L_mul(l, v0, v.Ci), v.Ci);
  l->block = saved;
  return 0;
}

/* vocab_attention_topk(H, Wo, Wi) -> T, ids [N, k], p [N, k]: per row the k
 * largest logits seen so far (an unordered set; the weakest is replaced when
 * a chunk brings a better one: a larger value, or an equal one with a lower
 * id, which the ascending scan never does), then a softmax over them. */
static int lo_vocab_attention_topk(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 1);
  int64_t k = n->attr[1].i;
  uint32_t Z = L_scratch(l, n, 0), BV = L_scratch(l, n, 1), BI = L_scratch(l, n, 2), K = L_i(l, k), v0, nc, sr, sj, sk;
  ks_fill(l->p, l->block, BV, L_i(l, 0), L_mul(l, v.N, K), L_f(l, -INFINITY));
  ks_fill(l->p, l->block, BI, L_i(l, 0), L_mul(l, v.N, K), L_f(l, (double)INT32_MAX)); /* ids as floats: exact below 2^24 */
  uint32_t saved = chunk_loop(l, &v, &v0, &nc);
  chunk_logits(l, &v, l->buf[IN(0)], l->buf[IN(1)], v0, nc, 1.0 / n->attr[0].f, Z);
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t rowk = L_ivar(l, L_mul(l, r, K)), base = L_ivar(l, L_mul(l, r, nc));
  /* the weakest kept entry: lowest value, then highest id */
  uint32_t weak = L_acc(l, K_I64, L_i(l, 0));
  uint32_t t = L_loop(l, KL_SERIAL, L_i(l, 1), K, &sk);
  uint32_t a = L_ldb(l, BV, L_add(l, rowk, t)), b = L_ldb(l, BV, L_add(l, rowk, L_varx(l, weak)));
  uint32_t weaker = kx_op(l->p, KE_OR, kx_op(l->p, KE_LT, a, b, 0),
                          kx_op(l->p, KE_AND, kx_op(l->p, KE_EQ, a, b, 0),
                                kx_op(l->p, KE_LT, L_ldb(l, BI, L_add(l, rowk, L_varx(l, weak))), L_ldb(l, BI, L_add(l, rowk, t)), 0), 0), 0);
  L_assign(l, weak, kx_op(l->p, KE_SELECT, weaker, t, L_varx(l, weak)));
  l->block = sk;
  uint32_t j = L_loop(l, KL_SERIAL, L_i(l, 0), nc, &sj);
  uint32_t z = L_fvar(l, L_ldb(l, Z, L_add(l, base, j)));
  uint32_t better = ks_if(l->p, l->block, kx_op(l->p, KE_LT, L_ldb(l, BV, L_add(l, rowk, L_varx(l, weak))), z, 0));
  uint32_t outer = l->block;
  l->block = better;
  L_stb(l, BV, L_add(l, rowk, L_varx(l, weak)), z);
  L_stb(l, BI, L_add(l, rowk, L_varx(l, weak)), L_ex(l, KE_ITOF, L_add(l, v0, j)));
  L_assign(l, weak, L_i(l, 0)); /* find the new weakest */
  t = L_loop(l, KL_SERIAL, L_i(l, 1), K, &sk);
  a = L_ldb(l, BV, L_add(l, rowk, t));
  b = L_ldb(l, BV, L_add(l, rowk, L_varx(l, weak)));
  weaker = kx_op(l->p, KE_OR, kx_op(l->p, KE_LT, a, b, 0),
                 kx_op(l->p, KE_AND, kx_op(l->p, KE_EQ, a, b, 0),
                       kx_op(l->p, KE_LT, L_ldb(l, BI, L_add(l, rowk, L_varx(l, weak))), L_ldb(l, BI, L_add(l, rowk, t)), 0), 0), 0);
  L_assign(l, weak, kx_op(l->p, KE_SELECT, weaker, t, L_varx(l, weak)));
  l->block = sk;
  l->block = outer;
  l->block = sj;
  l->block = sr;
  l->block = saved;
  /* softmax over the kept set, and the mixture */
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  rowk = L_ivar(l, L_mul(l, r, K));
  uint32_t mx = L_acc(l, K_F32, L_f(l, -INFINITY)), sum = L_acc(l, K_F32, L_f(l, 0));
  t = L_loop(l, KL_SERIAL, L_i(l, 0), K, &sk);
  L_assign(l, mx, L_op(l, KE_MAX, L_varx(l, mx), L_ldb(l, BV, L_add(l, rowk, t))));
  l->block = sk;
  t = L_loop(l, KL_SERIAL, L_i(l, 0), K, &sk);
  uint32_t e = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, BV, L_add(l, rowk, t)), L_varx(l, mx))));
  L_store(l, OUT(2), L_add(l, rowk, t), e);
  L_assign(l, sum, L_add(l, L_varx(l, sum), e));
  l->block = sk;
  uint32_t inv = L_fvar(l, L_div(l, L_f(l, 1.0), L_varx(l, sum)));
  uint32_t sc, c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  L_store(l, OUT(0), L_add(l, L_mul(l, r, v.Ci), c), L_f(l, 0));
  l->block = sc;
  t = L_loop(l, KL_SERIAL, L_i(l, 0), K, &sk);
  uint32_t id = L_ivar(l, L_ex(l, KE_FTOI, L_ldb(l, BI, L_add(l, rowk, t))));
  uint32_t p = L_fvar(l, L_mul(l, L_load(l, OUT(2), L_add(l, rowk, t)), inv));
  L_store(l, OUT(2), L_add(l, rowk, t), p);
  L_store(l, OUT(1), L_add(l, rowk, t), id);
  c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  uint32_t at = L_add(l, L_mul(l, r, v.Ci), c);
  L_store(l, OUT(0), at, L_add(l, L_load(l, OUT(0), at), L_mul(l, p, L_load(l, IN(2), L_add(l, L_mul(l, id, v.Ci), c)))));
  l->block = sc;
  l->block = sk;
  l->block = sr;
  return 0;
}

/* vocab_attention_topk_grad(H, Wo, Wi, ids, p, dT, gWo, gWi) -> dH, gWo + dWo,
 * gWi + dWi (held already; tied: one matrix) through the k kept logits of
 * each row; rows one at a time (they share vocabulary rows). */
static int lo_vocab_attention_topk_grad(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 1);
  int64_t k = L_shape(l, IN(3))->dim[L_shape(l, IN(3))->rank - 1];
  double tau = n->attr[0].f;
  uint32_t K = L_i(l, k), DP = L_scratch(l, n, 0), sr, st, sc;
  ks_fill(l->p, l->block, l->buf[OUT(0)], L_i(l, 0), L_numel(l, L_shape(l, OUT(0))), L_f(l, 0));
  uint32_t r = L_loop(l, KL_SERIAL, L_i(l, 0), v.N, &sr);
  uint32_t rowk = L_ivar(l, L_mul(l, r, K)), Dsum = L_acc(l, K_F32, L_f(l, 0));
  uint32_t t = L_loop(l, KL_SERIAL, L_i(l, 0), K, &st);
  uint32_t id = L_ivar(l, L_load(l, IN(3), L_add(l, rowk, t)));
  uint32_t dp = L_acc(l, K_F32, L_f(l, 0));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  L_assign(l, dp, L_add(l, L_varx(l, dp), L_mul(l, L_load(l, IN(5), L_add(l, L_mul(l, r, v.Ci), c)),
                                                 L_load(l, IN(2), L_add(l, L_mul(l, id, v.Ci), c)))));
  l->block = sc;
  L_stb(l, DP, t, L_varx(l, dp));
  L_assign(l, Dsum, L_add(l, L_varx(l, Dsum), L_mul(l, L_load(l, IN(4), L_add(l, rowk, t)), L_varx(l, dp))));
  l->block = st;
  t = L_loop(l, KL_SERIAL, L_i(l, 0), K, &st);
  id = L_ivar(l, L_load(l, IN(3), L_add(l, rowk, t)));
  uint32_t pj = L_fvar(l, L_load(l, IN(4), L_add(l, rowk, t)));
  uint32_t dz = L_fvar(l, L_mul(l, L_mul(l, pj, L_sub(l, L_ldb(l, DP, t), L_varx(l, Dsum))), L_f(l, 1.0 / tau)));
  c = L_loop(l, KL_VECTOR, L_i(l, 0), v.C, &sc);
  uint32_t hat = L_add(l, L_mul(l, r, v.C), c), wat = L_add(l, L_mul(l, id, v.C), c);
  L_store(l, OUT(0), hat, L_add(l, L_load(l, OUT(0), hat), L_mul(l, dz, L_load(l, IN(1), wat))));
  L_store(l, OUT(1), wat, L_add(l, L_load(l, OUT(1), wat), L_mul(l, dz, L_load(l, IN(0), hat))));
  l->block = sc;
  c = L_loop(l, KL_VECTOR, L_i(l, 0), v.Ci, &sc);
  uint32_t iat = L_add(l, L_mul(l, id, v.Ci), c);
  uint32_t gwi = mixture_grad(l, n);
  L_stb(l, gwi, iat, L_add(l, L_ldb(l, gwi, iat), L_mul(l, pj, L_load(l, IN(5), L_add(l, L_mul(l, r, v.Ci), c)))));
  l->block = sc;
  l->block = st;
  l->block = sr;
  return 0;
}

static int scratch_topk_grad(Lower *l, const IrNode *n, int64_t *elems) {
  const IrShape *ids = L_shape(l, ir_in(l->g, n, 3));
  elems[0] = ids->dim[ids->rank - 1];
  return 0;
}

/* linear_cross_entropy(H, W, targets) -> loss (mean over targets >= 0), lse */
static int lo_linear_cross_entropy(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 0);
  uint32_t Z = L_scratch(l, n, 0), M = L_scratch(l, n, 1), S = L_scratch(l, n, 2), ZT = L_scratch(l, n, 3), v0, nc, sr, sv;
  ks_fill(l->p, l->block, M, L_i(l, 0), v.N, L_f(l, -INFINITY));
  ks_fill(l->p, l->block, S, L_i(l, 0), v.N, L_f(l, 0));
  uint32_t saved = chunk_loop(l, &v, &v0, &nc);
  chunk_logits(l, &v, l->buf[IN(0)], l->buf[IN(1)], v0, nc, 1.0, Z);
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t base = L_ivar(l, L_mul(l, r, nc)), mx = L_acc(l, K_F32, L_ldb(l, M, r));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sv);
  L_assign(l, mx, L_op(l, KE_MAX, L_varx(l, mx), L_ldb(l, Z, L_add(l, base, j))));
  l->block = sv;
  uint32_t sum = L_acc(l, K_F32, L_f(l, 0));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sv);
  L_assign(l, sum, L_add(l, L_varx(l, sum), L_ex(l, KE_EXP, L_sub(l, L_ldb(l, Z, L_add(l, base, j)), L_varx(l, mx)))));
  l->block = sv;
  L_stb(l, S, r, L_add(l, L_mul(l, L_ldb(l, S, r), L_ex(l, KE_EXP, L_sub(l, L_ldb(l, M, r), L_varx(l, mx)))), L_varx(l, sum)));
  L_stb(l, M, r, L_varx(l, mx));
  uint32_t t = L_ivar(l, L_load(l, IN(2), r));
  uint32_t here = ks_if(l->p, l->block, kx_op(l->p, KE_AND, kx_op(l->p, KE_LE, v0, t, 0),
                                              kx_op(l->p, KE_LT, t, L_add(l, v0, nc), 0), 0));
  uint32_t outer = l->block;
  l->block = here;
  L_stb(l, ZT, r, L_ldb(l, Z, L_add(l, base, L_sub(l, t, v0))));
  l->block = outer;
  l->block = sr;
  l->block = saved;
  uint32_t total = L_acc(l, K_F32, L_f(l, 0)), count = L_acc(l, K_F32, L_f(l, 0));
  r = L_loop(l, KL_VECTOR, L_i(l, 0), v.N, &sr); /* sums over rows: a GPU spreads them over a block */
  uint32_t lse = L_fvar(l, L_add(l, L_ldb(l, M, r), L_ex(l, KE_LOG, L_ldb(l, S, r))));
  L_store(l, OUT(1), r, lse);
  uint32_t valid = kx_op(l->p, KE_LE, L_i(l, 0), L_load(l, IN(2), r), 0);
  L_assign(l, total, L_add(l, L_varx(l, total), kx_op(l->p, KE_SELECT, valid, L_sub(l, lse, L_ldb(l, ZT, r)), L_f(l, 0))));
  L_assign(l, count, L_add(l, L_varx(l, count), kx_op(l->p, KE_SELECT, valid, L_f(l, 1), L_f(l, 0))));
  l->block = sr;
  L_store(l, OUT(0), L_i(l, 0), L_div(l, L_varx(l, total), L_varx(l, count)));
  return 0;
}

/* linear_cross_entropy_grad(H, W, targets, lse, dloss, gW) -> dH, gW + dW (the
 * result holds gW already) with dZ = (exp(Z - lse) - onehot(target)) dloss /
 * count per chunk */
static int lo_linear_cross_entropy_grad(Lower *l, const IrNode *n, PcError *err) {
  Vocab v = vocab(l, n, 0);
  uint32_t dZ = L_scratch(l, n, 3), v0, nc, sr, sv;
  L_operand_only(l, dZ); /* dZ stored is read by the two products alone */
  uint32_t count = L_acc(l, K_F32, L_f(l, 0));
  uint32_t r = L_loop(l, KL_VECTOR, L_i(l, 0), v.N, &sr);
  L_assign(l, count, L_add(l, L_varx(l, count), kx_op(l->p, KE_SELECT, kx_op(l->p, KE_LE, L_i(l, 0), L_load(l, IN(2), r), 0),
                                                       L_f(l, 1), L_f(l, 0))));
  l->block = sr;
  uint32_t scale = L_fvar(l, L_div(l, L_load(l, IN(4), L_i(l, 0)), L_varx(l, count)));
  ks_fill(l->p, l->block, l->buf[OUT(0)], L_i(l, 0), L_mul(l, v.N, v.C), L_f(l, 0));
  uint32_t saved = chunk_loop(l, &v, &v0, &nc);
  chunk_logits(l, &v, l->buf[IN(0)], l->buf[IN(1)], v0, nc, 1.0, dZ);
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), v.N, &sr);
  uint32_t base = L_ivar(l, L_mul(l, r, nc)), t = L_ivar(l, L_load(l, IN(2), r)), lse = L_fvar(l, L_load(l, IN(3), r));
  uint32_t valid = kx_op(l->p, KE_LE, L_i(l, 0), t, 0);
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), nc, &sv);
  uint32_t hot = kx_op(l->p, KE_SELECT, kx_op(l->p, KE_EQ, L_add(l, v0, j), t, 0), L_f(l, 1), L_f(l, 0));
  uint32_t g = L_mul(l, L_sub(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, dZ, L_add(l, base, j)), lse)), hot), scale);
  L_stb(l, dZ, L_add(l, base, j), kx_op(l->p, KE_SELECT, valid, g, L_f(l, 0)));
  l->block = sv;
  l->block = sr;
  L_gemm(l, 0, 0, v.N, v.C, nc, 1.0f, dZ, L_i(l, 0), nc, l->buf[IN(1)], L_mul(l, v0, v.C), v.C, 1.0f, l->buf[OUT(0)],
         L_i(l, 0), v.C);
  L_gemm(l, 1, 0, nc, v.C, v.N, 1.0f, dZ, L_i(l, 0), nc, l->buf[IN(0)], L_i(l, 0), v.C, 1.0f, l->buf[OUT(1)],
         L_mul(l, v0, v.C), v.C);
  l->block = saved;
  return 0;
}

static const OpLowering table[IR_NUM_OPS] = {
    [IR_VOCAB_ATTENTION] = {lo_vocab_attention, scratch_chunk},
    [IR_VOCAB_ATTENTION_GRAD] = {lo_vocab_attention_grad, scratch_chunk},
    [IR_VOCAB_ATTENTION_TOPK] = {lo_vocab_attention_topk, scratch_chunk},
    [IR_VOCAB_ATTENTION_TOPK_GRAD] = {lo_vocab_attention_topk_grad, scratch_topk_grad},
    [IR_VOCAB_ATTENTION_GRAD_TIED] = {lo_vocab_attention_grad, scratch_chunk},
    [IR_VOCAB_ATTENTION_TOPK_GRAD_TIED] = {lo_vocab_attention_topk_grad, scratch_topk_grad},
    [IR_LINEAR_CROSS_ENTROPY] = {lo_linear_cross_entropy, scratch_chunk},
    [IR_LINEAR_CROSS_ENTROPY_GRAD] = {lo_linear_cross_entropy_grad, scratch_chunk},
};

const OpLowering *lower_vocab_op(IrOp op) { return table[op].lower ? &table[op] : NULL; }
