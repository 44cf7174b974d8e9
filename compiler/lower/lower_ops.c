/* Kernels of the graph ops that are not elementwise, one function per op,
 * each with the loops in a comment's pseudo-code where it helps. N is the
 * number of rows of an activation (all axes but the last), C its width.
 * Work is split over rows (parallel loops) where rows are independent,
 * inner loops over a row's elements are vector loops, and matrix products
 * are sgemm calls. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "compiler/lower/lower_internal.h"

#define IN(k) ir_in(l->g, n, k)
#define OUT(k) (n->out + (k))

static void acc_add(Lower *l, uint32_t acc, uint32_t x) { L_assign(l, acc, L_add(l, L_varx(l, acc), x)); }
static void acc_max(Lower *l, uint32_t acc, uint32_t x) { L_assign(l, acc, L_op(l, KE_MAX, L_varx(l, acc), x)); }

static void fill(Lower *l, uint32_t value, double x) {
  ks_fill(l->p, l->block, l->buf[value], L_i(l, 0), L_numel(l, L_shape(l, value)), L_f(l, x));
}

/* ---- sums over rows ------------------------------------------------------- */

/* out[t][j] = sum over g < G of term[t](g, j) (added to out[t][j] where
 * accumulate[t]), j < W, for each of n_sums
 * sums of the same rows, where the schedule asks for it (colsum_rows > 0):
 * a thread per (chunk of rows, column) sums its chunk into partial, then a
 * thread per column adds the chunks in order. No two threads write one
 * element, the order is fixed, and no thread's loop is long (a GPU would
 * otherwise walk 16k rows in one block); sums of the same rows (a norm's
 * weight and bias gradients) share both loops and their reads. */
typedef uint32_t (*TermFn)(Lower *l, const IrNode *n, uint32_t g, uint32_t j);
#define COLUMN_SUMS_MAX 2

static void column_sums(Lower *l, const IrNode *n, const uint32_t *out, const int *accumulate, const TermFn *term,
                        int n_sums, uint32_t G, uint32_t W, uint32_t partial) {
  uint32_t R0 = L_i(l, l->s->colsum_rows), saved, sr, acc[COLUMN_SUMS_MAX];
  uint32_t P = L_ivar(l, L_div(l, L_add(l, G, L_sub(l, R0, L_i(l, 1))), R0)), PW = L_ivar(l, L_mul(l, P, W));
  uint32_t pj = L_loop(l, KL_PARALLEL, L_i(l, 0), PW, &saved);
  uint32_t j = L_ivar(l, L_op(l, KE_REM, pj, W)), lo = L_ivar(l, L_mul(l, L_div(l, pj, W), R0));
  for (int t = 0; t < n_sums; t++) acc[t] = L_acc(l, K_F32, L_f(l, 0));
  uint32_t g = L_loop(l, KL_SERIAL, lo, L_op(l, KE_MIN, L_add(l, lo, R0), G), &sr);
  for (int t = 0; t < n_sums; t++) acc_add(l, acc[t], term[t](l, n, g, j));
  l->block = sr;
  for (int t = 0; t < n_sums; t++) L_stb(l, partial, L_add(l, L_mul(l, L_i(l, t), PW), pj), L_varx(l, acc[t]));
  l->block = saved;
  j = L_loop(l, KL_PARALLEL, L_i(l, 0), W, &saved);
  for (int t = 0; t < n_sums; t++) acc[t] = L_acc(l, K_F32, L_f(l, 0));
  uint32_t p = L_loop(l, KL_SERIAL, L_i(l, 0), P, &sr);
  for (int t = 0; t < n_sums; t++)
    acc_add(l, acc[t], L_ldb(l, partial, L_add(l, L_mul(l, L_i(l, t), PW), L_add(l, L_mul(l, p, W), j))));
  l->block = sr;
  for (int t = 0; t < n_sums; t++)
    L_stb(l, out[t], j, accumulate[t] ? L_add(l, L_ldb(l, out[t], j), L_varx(l, acc[t])) : L_varx(l, acc[t]));
  l->block = saved;
}

/* Elements of column_sums' partial sums at the maximum dims, for n_sums
 * sums of G x W: ceil(G / rows) W <= G W / rows + W each. */
static int64_t column_sum_scratch(Lower *l, int64_t GW, int64_t W, int n_sums) {
  return n_sums * (GW / l->s->colsum_rows + W);
}

/* Whether v only starts a loop's stack that every iteration sets at its
 * own index and nothing else in the body touches (autodiff's stacks of a
 * loop's activations): every slot is written before the loop ends, and
 * only what comes after the loop reads them, so v's values are never read. */
static int stack_filled_by_loop(Lower *l, uint32_t v) {
  const IrGraph *g = l->g;
  if (l->uses[v] != 1) return 0;
  const IrRegion *home = &g->regions.a[g->values.a[v].region];
  for (size_t i = 0; i < home->nodes.n; i++) {
    const IrNode *loop = ir_node(g, home->nodes.a[i]);
    if (loop->op != IR_LOOP) continue;
    for (uint32_t k = 0; k < loop->n_in; k++) {
      if (ir_in(g, loop, k) != v) continue;
      const IrRegion *body = &g->regions.a[loop->body];
      const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
      uint32_t arg = body->args.a[k + 1], set = g->values.a[ir_in(g, y, k)].def;
      if (set == IR_NONE || l->uses[arg] != 1 || l->uses[ir_in(g, y, k)] != 1) return 0;
      const IrNode *s = ir_node(g, set);
      return s->op == IR_STACK_SET && ir_in(g, s, 0) == arg && ir_in(g, s, 1) == body->args.a[0] &&
             L_shape(l, v)->dim[0] == loop->attr[0].i;
    }
  }
  return 0;
}

/* ---- sources --------------------------------------------------------------- */

static int lo_fill(Lower *l, const IrNode *n, PcError *err) {
  if (covering_chain(l, OUT(0))) return 0; /* its slices overwrite every element */
  if (stack_filled_by_loop(l, OUT(0))) return 0;
  KType t = ir_type(l->g, OUT(0))->dtype == PC_I32 ? K_I64 : K_F32;
  uint32_t v = t == K_I64 ? L_i(l, (int64_t)n->attr[0].f) : L_f(l, n->attr[0].f);
  ks_fill(l->p, l->block, l->buf[OUT(0)], L_i(l, 0), L_numel(l, L_shape(l, OUT(0))), v);
  return 0;
}

/* positions: t; positions_at: pos + t */
static int lo_positions(Lower *l, const IrNode *n, PcError *err) {
  uint32_t saved, t = L_loop(l, KL_SERIAL, L_i(l, 0), L_dimx(l, L_shape(l, OUT(0))->dim[0]), &saved);
  L_store(l, OUT(0), t, n->op == IR_POSITIONS_AT ? L_add(l, L_scalar(l, IN(1)), t) : t);
  l->block = saved;
  return 0;
}

/* ---- rows ------------------------------------------------------------------- */

/* softmax of row r of x into y (both with row width V) */
static void softmax_row(Lower *l, uint32_t x, uint32_t y, uint32_t base, uint32_t V) {
  uint32_t saved, m = L_acc(l, K_F32, L_f(l, -INFINITY)), s = L_acc(l, K_F32, L_f(l, 0));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &saved);
  acc_max(l, m, L_load(l, x, L_add(l, base, j)));
  l->block = saved;
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &saved);
  uint32_t e = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_load(l, x, L_add(l, base, j)), L_varx(l, m))));
  L_store(l, y, L_add(l, base, j), e);
  acc_add(l, s, e);
  l->block = saved;
  uint32_t inv = L_fvar(l, L_div(l, L_f(l, 1.0), L_varx(l, s)));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &saved);
  L_store(l, y, L_add(l, base, j), L_mul(l, L_load(l, y, L_add(l, base, j)), inv));
  l->block = saved;
}

static int lo_softmax(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t V = L_ivar(l, L_last(l, s)), saved, r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_rows(l, s), &saved);
  softmax_row(l, IN(0), OUT(0), L_ivar(l, L_mul(l, r, V)), V);
  l->block = saved;
  return 0;
}

/* softmax_topk: per row, k times pick the largest not yet picked (ties: the
 * lower index), then a softmax over the picked; the rest is zero. Only the
 * unfused path runs this, so it is simple rather than fast. */
static int lo_softmax_topk(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t V = L_ivar(l, L_last(l, s)), saved, r = L_loop(l, KL_SERIAL, L_i(l, 0), L_rows(l, s), &saved);
  uint32_t base = L_ivar(l, L_mul(l, r, V)), picked = L_scratch(l, n, 0), sv, j;
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  L_stb(l, picked, j, L_f(l, 0));
  l->block = sv;
  uint32_t m = L_acc(l, K_F32, L_f(l, -INFINITY));
  uint32_t t = L_loop(l, KL_SERIAL, L_i(l, 0), L_i(l, n->attr[0].i), &sv);
  (void)t;
  uint32_t best = L_acc(l, K_I64, L_i(l, -1));
  uint32_t sj, jj = L_loop(l, KL_SERIAL, L_i(l, 0), V, &sj);
  uint32_t x = L_load(l, IN(0), L_add(l, base, jj));
  uint32_t better = kx_op(l->p, KE_AND, kx_op(l->p, KE_EQ, L_ldb(l, picked, jj), L_f(l, 0), 0),
                          kx_op(l->p, KE_OR, kx_op(l->p, KE_LT, L_varx(l, best), L_i(l, 0), 0),
                                kx_op(l->p, KE_LT, L_load(l, IN(0), L_add(l, base, L_varx(l, best))), x, 0), 0), 0);
  L_assign(l, best, kx_op(l->p, KE_SELECT, better, jj, L_varx(l, best)));
  l->block = sj;
  L_stb(l, picked, L_varx(l, best), L_f(l, 1));
  acc_max(l, m, L_load(l, IN(0), L_add(l, base, L_varx(l, best))));
  l->block = sv;
  uint32_t sum = L_acc(l, K_F32, L_f(l, 0));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  uint32_t e = L_fvar(l, L_mul(l, L_ldb(l, picked, j), L_ex(l, KE_EXP, L_sub(l, L_load(l, IN(0), L_add(l, base, j)), L_varx(l, m)))));
  L_store(l, OUT(0), L_add(l, base, j), e);
  acc_add(l, sum, e);
  l->block = sv;
  uint32_t inv = L_fvar(l, L_div(l, L_f(l, 1.0), L_varx(l, sum)));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  L_store(l, OUT(0), L_add(l, base, j), L_mul(l, L_load(l, OUT(0), L_add(l, base, j)), inv));
  l->block = sv;
  l->block = saved;
  return 0;
}

static int scratch_softmax_topk(Lower *l, const IrNode *n, int64_t *elems) {
  const IrShape *s = L_shape(l, ir_in(l->g, n, 0));
  elems[0] = s->rank ? (IR_IS_SYM(s->dim[s->rank - 1]) ? l->dim_max[IR_SYM_INDEX(s->dim[s->rank - 1])] : s->dim[s->rank - 1]) : 1;
  return 0;
}

/* softmax_grad(y, dy): dx = y (dy - sum(dy y)) per row */
static int lo_softmax_grad(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t V = L_ivar(l, L_last(l, s)), saved, r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_rows(l, s), &saved);
  uint32_t base = L_ivar(l, L_mul(l, r, V)), sv;
  uint32_t dot = L_acc(l, K_F32, L_f(l, 0));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  acc_add(l, dot, L_mul(l, L_load(l, IN(0), L_add(l, base, j)), L_load(l, IN(1), L_add(l, base, j))));
  l->block = sv;
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  uint32_t at = L_add(l, base, j);
  L_store(l, OUT(0), at, L_mul(l, L_load(l, IN(0), at), L_sub(l, L_load(l, IN(1), at), L_varx(l, dot))));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* mean and 1/sqrt(var + eps) of row `base` of x (width C), or with rms:
 * mean 0 and 1/sqrt(mean(x^2) + eps) */
static void row_stats(Lower *l, uint32_t x, uint32_t base, uint32_t C, double eps, int rms, uint32_t *mean,
                      uint32_t *rstd) {
  uint32_t sv, m = L_acc(l, K_F32, L_f(l, 0));
  uint32_t invC = L_fvar(l, L_div(l, L_f(l, 1.0), L_ex(l, KE_ITOF, C)));
  if (!rms) {
    uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
    acc_add(l, m, L_load(l, x, L_add(l, base, c)));
    l->block = sv;
    L_assign(l, m, L_mul(l, L_varx(l, m), invC));
  }
  uint32_t var = L_acc(l, K_F32, L_f(l, 0));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  uint32_t d = L_fvar(l, L_sub(l, L_load(l, x, L_add(l, base, c)), L_varx(l, m)));
  acc_add(l, var, L_mul(l, d, d));
  l->block = sv;
  *mean = L_varx(l, m);
  *rstd = L_fvar(l, L_div(l, L_f(l, 1.0), L_ex(l, KE_SQRT, L_add(l, L_mul(l, L_varx(l, var), invC), L_f(l, eps)))));
}

/* layernorm: y = (x - mean) rstd w + b;  rmsnorm: y = x rstd w. x's row
 * first, when x is the elementwise group right before (the residual sum):
 * one loop over the rows, x read back from cache, not a loop of its own. */
static int lo_norm(Lower *l, const IrNode *n, PcError *err) {
  int rms = n->op == IR_RMSNORM;
  const IrShape *s = L_shape(l, IN(0));
  uint32_t C = L_ivar(l, L_last(l, s)), saved, r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_rows(l, s), &saved);
  if (row_group_before(l, (uint32_t)(n - l->g->nodes.a)) != IR_NONE) lower_elementwise_row(l, IN(0), r);
  uint32_t base = L_ivar(l, L_mul(l, r, C)), mean, rstd, sv;
  row_stats(l, IN(0), base, C, n->attr[0].f, rms, &mean, &rstd);
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  uint32_t y = L_mul(l, L_mul(l, L_sub(l, L_load(l, IN(0), L_add(l, base, c)), mean), rstd), L_load(l, IN(1), c));
  if (!rms) y = L_add(l, y, L_load(l, IN(2), c));
  L_store(l, OUT(0), L_add(l, base, c), y);
  l->block = sv;
  l->block = saved;
  return 0;
}

/* layernorm_grad(x, w, dy) -> dx, dw, db; rmsnorm_grad -> dx, dw.
 * With xhat = (x - mean) rstd and g = dy w:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat))   (rms: no mean(g) term)
 *   dw = sum over rows of dy xhat;  db = sum of dy */
/* the weight and bias gradients of a norm as column sums: the row loop
 * keeps each row's mean and 1/std in scratch 0 ([2, N]) */
static uint32_t norm_weight_term(Lower *l, const IrNode *n, uint32_t r, uint32_t c) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t at = L_add(l, L_mul(l, r, L_last(l, s)), c), stats = L_scratch(l, n, 0);
  uint32_t mean = L_ldb(l, stats, r), rstd = L_ldb(l, stats, L_add(l, L_rows(l, s), r));
  return L_mul(l, L_load(l, IN(2), at), L_mul(l, L_sub(l, L_load(l, IN(0), at), mean), rstd));
}

static uint32_t norm_bias_term(Lower *l, const IrNode *n, uint32_t r, uint32_t c) {
  return L_load(l, IN(2), L_add(l, L_mul(l, r, L_last(l, L_shape(l, IN(0)))), c));
}

static int scratch_norm_grad(Lower *l, const IrNode *n, int64_t *elems) {
  if (l->s->colsum_rows <= 0) return 0;
  const IrShape *s = L_shape(l, IN(0));
  int64_t C = s->dim[s->rank - 1], N = L_max_numel(l, s) / C;
  elems[0] = 2 * N;
  elems[1] = column_sum_scratch(l, N * C, C, n->op == IR_RMSNORM_GRAD ? 1 : 2);
  return 0;
}

static int lo_norm_grad(Lower *l, const IrNode *n, PcError *err) {
  int rms = n->op == IR_RMSNORM_GRAD;
  const IrShape *s = L_shape(l, IN(0));
  uint32_t C = L_ivar(l, L_last(l, s)), N = L_ivar(l, L_rows(l, s)), saved, sv;
  int acc_x;
  uint32_t dx_buf = L_result_buffer(l, n, 0, &acc_x); /* perhaps added into the residual's gradient */
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  uint32_t base = L_ivar(l, L_mul(l, r, C)), mean, rstd;
  row_stats(l, IN(0), base, C, n->attr[0].f, rms, &mean, &rstd);
  uint32_t invC = L_fvar(l, L_div(l, L_f(l, 1.0), L_ex(l, KE_ITOF, C)));
  uint32_t gm = L_acc(l, K_F32, L_f(l, 0)), gx = L_acc(l, K_F32, L_f(l, 0));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  uint32_t at = L_add(l, base, c);
  uint32_t g = L_fvar(l, L_mul(l, L_load(l, IN(2), at), L_load(l, IN(1), c)));
  acc_add(l, gm, g);
  acc_add(l, gx, L_mul(l, g, L_mul(l, L_sub(l, L_load(l, IN(0), at), mean), rstd)));
  l->block = sv;
  uint32_t mg = L_fvar(l, rms ? L_f(l, 0) : L_mul(l, L_varx(l, gm), invC)), mgx = L_fvar(l, L_mul(l, L_varx(l, gx), invC));
  c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  at = L_add(l, base, c);
  uint32_t xhat = L_mul(l, L_sub(l, L_load(l, IN(0), at), mean), rstd);
  uint32_t gg = L_mul(l, L_load(l, IN(2), at), L_load(l, IN(1), c));
  uint32_t dx = L_mul(l, rstd, L_sub(l, L_sub(l, gg, mg), L_mul(l, xhat, mgx)));
  L_stb(l, dx_buf, at, acc_x ? L_add(l, L_ldb(l, dx_buf, at), dx) : dx);
  l->block = sv;
  uint32_t after = row_group_after(l, (uint32_t)(n - l->g->nodes.a)); /* the residual gradient's sum, dx from cache */
  if (after != IR_NONE) lower_elementwise_row(l, after, r);
  if (l->s->colsum_rows > 0) {
    L_stb(l, L_scratch(l, n, 0), r, mean);
    L_stb(l, L_scratch(l, n, 0), L_add(l, N, r), rstd);
  }
  l->block = saved;
  /* dw and db, perhaps added into the sums after the node (their other operands put there first) */
  int acc_w, acc_b = 0;
  uint32_t dw = L_result_buffer(l, n, 1, &acc_w), db = rms ? 0 : L_result_buffer(l, n, 2, &acc_b);
  if (l->s->colsum_rows > 0) {
    const uint32_t out[2] = {dw, db};
    const int accumulate[2] = {acc_w, acc_b};
    const TermFn terms[2] = {norm_weight_term, norm_bias_term};
    column_sums(l, n, out, accumulate, terms, rms ? 1 : 2, N, C, L_scratch(l, n, 1));
    return 0;
  }
  /* dw (and db): sums over rows, row by row, so no two threads write one column */
  if (!acc_w) ks_fill(l->p, l->block, dw, L_i(l, 0), C, L_f(l, 0));
  if (!rms && !acc_b) ks_fill(l->p, l->block, db, L_i(l, 0), C, L_f(l, 0));
  r = L_loop(l, KL_SERIAL, L_i(l, 0), N, &saved);
  base = L_ivar(l, L_mul(l, r, C));
  row_stats(l, IN(0), base, C, n->attr[0].f, rms, &mean, &rstd);
  c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  at = L_add(l, base, c);
  uint32_t dy = L_fvar(l, L_load(l, IN(2), at));
  L_stb(l, dw, c, L_add(l, L_ldb(l, dw, c), L_mul(l, dy, L_mul(l, L_sub(l, L_load(l, IN(0), at), mean), rstd))));
  if (!rms) L_stb(l, db, c, L_add(l, L_ldb(l, db, c), dy));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* ---- products --------------------------------------------------------------- */

/* Product node n (linear, matmul, matmul_tn) into buffer c: c = n's
 * result, or with beta 1, c + n's result */
static void lower_product(Lower *l, const IrNode *n, uint32_t c, float beta) {
  const IrShape *x = L_shape(l, IN(0));
  uint32_t a = l->buf[IN(0)], b = l->buf[IN(1)], zero = L_i(l, 0);
  switch (n->op) {
  case IR_LINEAR: { /* y [N, M] = x [N, K] w [M, K]^T */
    uint32_t N = L_rows(l, x), K = L_last(l, x), M = L_dimx(l, L_shape(l, IN(1))->dim[0]);
    L_gemm(l, 0, 1, N, M, K, 1.0f, a, zero, K, b, zero, K, beta, c, zero, M);
    break;
  }
  case IR_MATMUL: { /* y [N, M] = x [N, K] w [K, M] */
    uint32_t N = L_rows(l, x), K = L_last(l, x), M = L_dimx(l, L_shape(l, IN(1))->dim[1]);
    L_gemm(l, 0, 0, N, M, K, 1.0f, a, zero, K, b, zero, M, beta, c, zero, M);
    break;
  }
  case IR_MATMUL_TN: { /* y [M, K] = a [N, M]^T b [N, K] */
    uint32_t N = L_rows(l, x), M = L_last(l, x), K = L_last(l, L_shape(l, IN(1)));
    L_gemm(l, 1, 0, M, K, N, 1.0f, a, zero, M, b, zero, K, beta, c, zero, K);
    break;
  }
  default: PC_BUG("not a product: %s", ir_op_info(n->op)->name);
  }
}

static int lo_product(Lower *l, const IrNode *n, PcError *err) {
  int accumulate;
  uint32_t c = L_result_buffer(l, n, 0, &accumulate);
  lower_product(l, n, c, accumulate ? 1.0f : 0.0f);
  return 0;
}

/* ---- indexing ---------------------------------------------------------------- */

/* embedding: y[r, :] = table[ids[r], :] */
static int lo_embedding(Lower *l, const IrNode *n, PcError *err) {
  uint32_t C = L_ivar(l, L_dimx(l, L_shape(l, IN(0))->dim[1])), saved, sv;
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_numel(l, L_shape(l, IN(1))), &saved);
  uint32_t row = L_ivar(l, L_mul(l, L_load(l, IN(1), r), C)), base = L_ivar(l, L_mul(l, r, C));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  L_store(l, OUT(0), L_add(l, base, c), L_load(l, IN(0), L_add(l, row, c)));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* The rows of embedding_grad that share an id, as chains, where the
 * schedule spreads sums over rows (colsum_rows > 0, a GPU): next[r] (the
 * next row with r's id, or N) and head[r] (no row before r has its id) in
 * scratch, as f32 (exact below 2^24 rows), then a block per chain's head
 * adds the chain's rows into the id's row of `into`, in row order: the
 * serial loop's sums in its order, every id at once.
 *   parfor r:            j = r + 1; while j < N and ids[j] != ids[r]: j++; next[r] = j; head[r] = 1
 *   parfor r:            if next[r] < N: head[next[r]] = 0
 *   parfor r (block):    if head[r]: j = r; while j < N: vfor c: into[ids[r] C + c] += dy[j C + c]; j = next[j] */
static void embedding_grad_chains(Lower *l, const IrNode *n, uint32_t C) {
  uint32_t N = L_ivar(l, L_numel(l, L_shape(l, IN(1)))), S = L_scratch(l, n, 0), saved, sw, sv;
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  uint32_t id = L_ivar(l, L_load(l, IN(1), r)), j = L_acc(l, K_I64, L_add(l, r, L_i(l, 1)));
  uint32_t at = L_op(l, KE_MIN, L_varx(l, j), L_sub(l, N, L_i(l, 1))); /* in bounds when j = N: no short circuit */
  uint32_t other = L_op(l, KE_OR, L_op(l, KE_LT, L_load(l, IN(1), at), id), L_op(l, KE_LT, id, L_load(l, IN(1), at)));
  sw = l->block;
  l->block = ks_while(l->p, l->block, L_op(l, KE_AND, L_op(l, KE_LT, L_varx(l, j), N), other));
  L_assign(l, j, L_add(l, L_varx(l, j), L_i(l, 1)));
  l->block = sw;
  L_stb(l, S, r, L_ex(l, KE_ITOF, L_varx(l, j)));
  L_stb(l, S, L_add(l, N, r), L_f(l, 1));
  l->block = saved;
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  uint32_t next = L_ivar(l, L_ex(l, KE_FTOI, L_ldb(l, S, r)));
  sw = l->block;
  l->block = ks_if(l->p, l->block, L_op(l, KE_LT, next, N));
  L_stb(l, S, L_add(l, N, next), L_f(l, 0));
  l->block = sw;
  l->block = saved;
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  sw = l->block;
  l->block = ks_if(l->p, l->block, L_op(l, KE_LT, L_f(l, 0), L_ldb(l, S, L_add(l, N, r))));
  uint32_t row = L_ivar(l, L_mul(l, L_load(l, IN(1), r), C));
  j = L_acc(l, K_I64, r);
  uint32_t sc = l->block;
  l->block = ks_while(l->p, l->block, L_op(l, KE_LT, L_varx(l, j), N));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  L_store(l, OUT(0), L_add(l, row, c),
          L_add(l, L_load(l, OUT(0), L_add(l, row, c)), L_load(l, IN(2), L_add(l, L_mul(l, L_varx(l, j), C), c))));
  l->block = sv;
  L_assign(l, j, L_ex(l, KE_FTOI, L_ldb(l, S, L_varx(l, j))));
  l->block = sc;
  l->block = sw;
  l->block = saved;
}

static int scratch_embedding_grad(Lower *l, const IrNode *n, int64_t *elems) {
  if (l->s->colsum_rows > 0) elems[0] = 2 * L_max_numel(l, L_shape(l, IN(1)));
  return 0;
}

/* embedding_grad(into, ids, dy): row by row, into[ids[r], :] += dy[r, :]
 * (the result holds `into` already) */
static int lo_embedding_grad(Lower *l, const IrNode *n, PcError *err) {
  uint32_t C = L_ivar(l, L_dimx(l, L_shape(l, IN(0))->dim[1])), saved, sv;
  if (l->s->colsum_rows > 0) {
    if (L_max_numel(l, L_shape(l, IN(1))) >= (int64_t)1 << 24)
      return pc_errorf(err, "embedding_grad: %" PRId64 " rows; a GPU's chains number them in f32, exact below 2^24",
                       L_max_numel(l, L_shape(l, IN(1))));
    embedding_grad_chains(l, n, C);
    return 0;
  }
  uint32_t r = L_loop(l, KL_SERIAL, L_i(l, 0), L_numel(l, L_shape(l, IN(1))), &saved);
  uint32_t row = L_ivar(l, L_mul(l, L_load(l, IN(1), r), C)), base = L_ivar(l, L_mul(l, r, C));
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), C, &sv);
  L_store(l, OUT(0), L_add(l, row, c), L_add(l, L_load(l, OUT(0), L_add(l, row, c)), L_load(l, IN(2), L_add(l, base, c))));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* The loop over the rows of the slice copied just before, when this one
 * copies the same rows of the same whole-width value (a slice) or buffer
 * (a gradient's, which values added into share) and nothing came between
 * (q, k and v of one product: one launch on a GPU, not three); UINT32_MAX
 * otherwise. */
static uint32_t slice_rows_joined(Lower *l, int grad, uint32_t whole, int axis, const IrShape *x) {
  const VecU32 *b = &l->p->blocks.a[l->block];
  if (l->slice_rows.stmt == UINT32_MAX || !b->n || b->a[b->n - 1] != l->slice_rows.stmt || l->slice_rows.grad != grad ||
      l->slice_rows.whole != whole || l->slice_rows.axis != axis || !ir_shape_eq(&l->slice_rows.x, x))
    return UINT32_MAX;
  return l->slice_rows.stmt;
}

/* slice [outer, D, inner] -> [outer, size, inner] at start; slice_grad the
 * other way, added into the result (which holds the gradient so far:
 * ir_accumulates). A slice of an inlined elementwise value (the last axis:
 * inner = 1) computes its columns instead of copying them. */
static int lo_slice(Lower *l, const IrNode *n, PcError *err) {
  int grad = n->op == IR_SLICE_GRAD;
  if (grad && l->inlined[IN(1)]) return 0; /* the attention gradient's kernels wrote it in (gradients_in_place) */
  const IrShape *x = L_shape(l, IN(0));
  int axis = (int)n->attr[0].i;
  uint32_t outer = L_i(l, 1), inner = L_i(l, 1);
  for (int d = 0; d < axis; d++) outer = L_mul(l, outer, L_dimx(l, x->dim[d]));
  for (int d = axis + 1; d < x->rank; d++) inner = L_mul(l, inner, L_dimx(l, x->dim[d]));
  uint32_t D = L_dimx(l, x->dim[axis]), size = L_i(l, n->attr[2].i), start = L_i(l, n->attr[1].i);
  int copies = !grad || on_covering_chain(l, n); /* every element of the result gets exactly one slice: no sums */
  uint32_t whole = grad ? l->buf[OUT(0)] : IN(0), span, saved = l->block, sv, o;
  uint32_t loop = copies ? slice_rows_joined(l, grad, whole, axis, x) : UINT32_MAX;
  if (loop != UINT32_MAX) {
    const KStmt *s = &l->p->stmts.a[loop];
    span = L_mul(l, size, inner);
    o = kx_var(l->p, L_entry(l), s->var);
    l->block = s->body;
  } else {
    span = L_ivar(l, L_mul(l, size, inner));
    o = L_loop(l, KL_PARALLEL, L_i(l, 0), outer, &saved);
    l->slice_rows.stmt = UINT32_MAX;
    if (copies) {
      const VecU32 *b = &l->p->blocks.a[saved];
      l->slice_rows.stmt = b->a[b->n - 1];
      l->slice_rows.whole = whole;
      l->slice_rows.axis = axis;
      l->slice_rows.grad = grad;
      l->slice_rows.x = *x;
    }
  }
  uint32_t wide = L_mul(l, L_add(l, L_mul(l, o, D), start), inner), narrow = L_mul(l, o, span);
  if (grad && copies) {
    ks_copy(l->p, l->block, l->buf[OUT(0)], wide, l->buf[IN(1)], narrow, span);
  } else if (grad) {
    wide = L_ivar(l, wide);
    narrow = L_ivar(l, narrow);
    uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), span, &sv), to = L_add(l, wide, j);
    L_store(l, OUT(0), to, L_add(l, L_load(l, OUT(0), to), L_load(l, IN(1), L_add(l, narrow, j))));
    l->block = sv;
  } else if (l->inlined[IN(0)]) {
    uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), span, &sv);
    L_store(l, OUT(0), L_add(l, narrow, c), elementwise_value_at(l, IN(0), x, o, L_add(l, start, c)));
    l->block = sv;
  } else {
    ks_copy(l->p, l->block, l->buf[OUT(0)], narrow, l->buf[IN(0)], wide, span);
  }
  l->block = saved;
  return 0;
}

/* stack_set(stack, i, x): the result holds the stack already (ir_accumulates) */
static int lo_stack_set(Lower *l, const IrNode *n, PcError *err) {
  uint32_t size = L_ivar(l, L_numel(l, L_shape(l, IN(2))));
  ks_copy(l->p, l->block, l->buf[OUT(0)], L_mul(l, L_scalar(l, IN(1)), size), l->buf[IN(2)], L_i(l, 0), size);
  return 0;
}

static int lo_stack_get(Lower *l, const IrNode *n, PcError *err) {
  uint32_t size = L_ivar(l, L_numel(l, L_shape(l, OUT(0))));
  ks_copy(l->p, l->block, l->buf[OUT(0)], L_i(l, 0), l->buf[IN(0)], L_mul(l, L_scalar(l, IN(1)), size), size);
  return 0;
}

/* ---- reductions ---------------------------------------------------------------- */

static int lo_sum(Lower *l, const IrNode *n, PcError *err) {
  uint32_t saved, s = L_acc(l, K_F32, L_f(l, 0));
  uint32_t i = L_loop(l, KL_VECTOR, L_i(l, 0), L_numel(l, L_shape(l, IN(0))), &saved);
  acc_add(l, s, L_load(l, IN(0), i));
  l->block = saved;
  L_store(l, OUT(0), L_i(l, 0), L_varx(l, s));
  return 0;
}

/* sum_to(x, like): y[broadcast index of i] += x[i], row by row */
/* Whether sum_to(x, like) sums columns: y's dims (leading 1s aside) are
 * x's last ones, so x is [G, W] summed into y [W]. */
static int sums_columns(Lower *l, const IrNode *n) {
  const IrShape *x = L_shape(l, IN(0)), *y = L_shape(l, OUT(0));
  int lead = 0;
  while (lead < y->rank && y->dim[lead] == 1) lead++;
  int m = y->rank - lead;
  if (m > x->rank) return 0;
  for (int k = 0; k < m; k++)
    if (y->dim[y->rank - 1 - k] != x->dim[x->rank - 1 - k]) return 0;
  return 1;
}

/* ... as a product, where the schedule asks for one (sums_as_products) and
 * y's size is fixed (a bias): y [1, W] = ones [1, G] x [G, W] */
int sum_to_as_product(Lower *l, const IrNode *n) {
  const IrShape *y = L_shape(l, OUT(0));
  int fixed = 1;
  for (int d = 0; d < y->rank; d++) fixed &= !IR_IS_SYM(y->dim[d]);
  return l->s->sums_as_products && fixed && sums_columns(l, n);
}

/* ... as column sums, where the schedule asks for them (colsum_rows > 0) */
static int sum_to_columns(Lower *l, const IrNode *n) { return l->s->colsum_rows > 0 && sums_columns(l, n); }

static uint32_t sum_to_term(Lower *l, const IrNode *n, uint32_t g, uint32_t j) {
  return L_load(l, IN(0), L_add(l, L_mul(l, g, L_numel(l, L_shape(l, OUT(0)))), j));
}

static int scratch_sum_to(Lower *l, const IrNode *n, int64_t *elems) {
  if (sum_to_columns(l, n) && !sum_to_as_product(l, n))
    elems[0] = column_sum_scratch(l, L_max_numel(l, L_shape(l, IN(0))), L_max_numel(l, L_shape(l, OUT(0))), 1);
  return 0;
}

/* The entry's ones (lower_entry_ones), read by products alone, so in bf16
 * the product reads both operands from mirrors: x's as its maker stored
 * it, with no fp32 pass over x. */
static void sum_to_product(Lower *l, const IrNode *n, uint32_t out, int accumulate) {
  uint32_t W = L_ivar(l, L_numel(l, L_shape(l, OUT(0)))), G = L_ivar(l, L_div(l, L_numel(l, L_shape(l, IN(0))), W));
  uint32_t ones = L_ones(l), zero = L_i(l, 0);
  L_gemm(l, 0, 0, L_i(l, 1), W, G, 1.0f, ones, zero, G, l->buf[IN(0)], zero, W, accumulate ? 1.0f : 0.0f, out, zero, W);
}

static int lo_sum_to(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *x = L_shape(l, IN(0)), *y = L_shape(l, OUT(0));
  int accumulate;
  uint32_t out = L_result_buffer(l, n, 0, &accumulate);
  if (sum_to_as_product(l, n)) {
    sum_to_product(l, n, out, accumulate);
    return 0;
  }
  if (sum_to_columns(l, n)) {
    uint32_t W = L_ivar(l, L_numel(l, y));
    const TermFn terms[1] = {sum_to_term};
    column_sums(l, n, &out, &accumulate, terms, 1, L_ivar(l, L_div(l, L_numel(l, x), W)), W, L_scratch(l, n, 0));
    return 0;
  }
  if (!accumulate) ks_fill(l->p, l->block, out, L_i(l, 0), L_numel(l, y), L_f(l, 0));
  uint32_t saved, sv, r = L_loop(l, KL_SERIAL, L_i(l, 0), L_rows(l, x), &saved);
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), L_last(l, x), &sv);
  /* the output index of x's element (r, c): y broadcasts to x */
  int lead_y = y->rank ? y->rank - 1 : 0, lead_x = x->rank ? x->rank - 1 : 0;
  uint32_t row = L_i(l, 0), stride_x = L_i(l, 1), stride_y = L_i(l, 1);
  for (int d = lead_x - 1; d >= 0; d--) {
    int dy = d - (lead_x - lead_y);
    uint32_t idx = L_op(l, KE_REM, L_div(l, r, stride_x), L_dimx(l, x->dim[d]));
    if (dy >= 0 && y->dim[dy] != 1) row = L_add(l, row, L_mul(l, idx, stride_y));
    stride_x = L_mul(l, stride_x, L_dimx(l, x->dim[d]));
    if (dy >= 0) stride_y = L_mul(l, stride_y, L_dimx(l, y->dim[dy]));
  }
  int64_t yc = y->rank ? y->dim[y->rank - 1] : 1;
  uint32_t at = L_ivar(l, L_add(l, L_mul(l, row, L_i(l, yc)), yc == 1 ? L_i(l, 0) : c));
  L_stb(l, out, at, L_add(l, L_ldb(l, out, at), L_load(l, IN(0), L_add(l, L_mul(l, r, L_last(l, x)), c))));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* cross_entropy(logits, targets): mean over targets >= 0 of lse - z[t] */
static int lo_cross_entropy(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t V = L_ivar(l, L_last(l, s)), N = L_ivar(l, L_rows(l, s)), per_row = L_scratch(l, n, 0), saved, sv;
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  uint32_t base = L_ivar(l, L_mul(l, r, V)), t = L_ivar(l, L_load(l, IN(1), r));
  uint32_t m = L_acc(l, K_F32, L_f(l, -INFINITY)), sum = L_acc(l, K_F32, L_f(l, 0));
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  acc_max(l, m, L_load(l, IN(0), L_add(l, base, j)));
  l->block = sv;
  j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  acc_add(l, sum, L_ex(l, KE_EXP, L_sub(l, L_load(l, IN(0), L_add(l, base, j)), L_varx(l, m))));
  l->block = sv;
  uint32_t valid = kx_op(l->p, KE_LE, L_i(l, 0), t, 0);
  uint32_t safe_t = kx_op(l->p, KE_SELECT, valid, t, L_i(l, 0));
  uint32_t loss = L_sub(l, L_add(l, L_varx(l, m), L_ex(l, KE_LOG, L_varx(l, sum))), L_load(l, IN(0), L_add(l, base, safe_t)));
  L_stb(l, per_row, r, kx_op(l->p, KE_SELECT, valid, loss, L_f(l, 0)));
  l->block = saved;
  uint32_t total = L_acc(l, K_F32, L_f(l, 0)), count = L_acc(l, K_F32, L_f(l, 0));
  r = L_loop(l, KL_SERIAL, L_i(l, 0), N, &saved);
  acc_add(l, total, L_ldb(l, per_row, r));
  acc_add(l, count, kx_op(l->p, KE_SELECT, kx_op(l->p, KE_LE, L_i(l, 0), L_load(l, IN(1), r), 0), L_f(l, 1), L_f(l, 0)));
  l->block = saved;
  L_store(l, OUT(0), L_i(l, 0), L_div(l, L_varx(l, total), L_varx(l, count)));
  return 0;
}

static int scratch_rows(Lower *l, const IrNode *n, int64_t *elems) {
  const IrShape *s = L_shape(l, ir_in(l->g, n, 0));
  int64_t last = s->rank ? (IR_IS_SYM(s->dim[s->rank - 1]) ? l->dim_max[IR_SYM_INDEX(s->dim[s->rank - 1])] : s->dim[s->rank - 1]) : 1;
  elems[0] = L_max_numel(l, s) / (last ? last : 1);
  return 0;
}

/* cross_entropy_grad(logits, targets, dloss): (softmax - onehot) dloss / count */
static int lo_cross_entropy_grad(Lower *l, const IrNode *n, PcError *err) {
  const IrShape *s = L_shape(l, IN(0));
  uint32_t V = L_ivar(l, L_last(l, s)), N = L_ivar(l, L_rows(l, s)), saved, sv;
  uint32_t count = L_acc(l, K_F32, L_f(l, 0));
  uint32_t r = L_loop(l, KL_SERIAL, L_i(l, 0), N, &saved);
  acc_add(l, count, kx_op(l->p, KE_SELECT, kx_op(l->p, KE_LE, L_i(l, 0), L_load(l, IN(1), r), 0), L_f(l, 1), L_f(l, 0)));
  l->block = saved;
  uint32_t scale = L_fvar(l, L_div(l, L_load(l, IN(2), L_i(l, 0)), L_varx(l, count)));
  r = L_loop(l, KL_PARALLEL, L_i(l, 0), N, &saved);
  uint32_t base = L_ivar(l, L_mul(l, r, V)), t = L_ivar(l, L_load(l, IN(1), r));
  softmax_row(l, IN(0), OUT(0), base, V);
  uint32_t k = kx_op(l->p, KE_LE, L_i(l, 0), t, 0);
  uint32_t j = L_loop(l, KL_VECTOR, L_i(l, 0), V, &sv);
  uint32_t at = L_add(l, base, j);
  uint32_t hot = kx_op(l->p, KE_SELECT, kx_op(l->p, KE_EQ, j, t, 0), L_f(l, 1), L_f(l, 0));
  L_store(l, OUT(0), at, kx_op(l->p, KE_SELECT, k, L_mul(l, L_sub(l, L_load(l, OUT(0), at), hot), scale), L_f(l, 0)));
  l->block = sv;
  l->block = saved;
  return 0;
}

/* ---- attention ------------------------------------------------------------------ */

typedef struct {
  uint32_t B, T, H, Hkv, D, Cq, Ckv, group;
  double scale;
} Heads;

static Heads heads(Lower *l, const IrNode *n) {
  const IrShape *q = L_shape(l, ir_in(l->g, n, 0));
  int64_t H = n->attr[0].i, Hkv = n->attr[1].i, D = q->dim[2] / H;
  return (Heads){L_ivar(l, L_dimx(l, q->dim[0])), L_ivar(l, L_dimx(l, q->dim[1])), L_i(l, H), L_i(l, Hkv), L_i(l, D),
                 L_i(l, H * D), L_i(l, Hkv * D), L_i(l, H / Hkv), 1.0 / sqrt((double)D)};
}

/* Scores of query row q_at (from q) against key rows 0..last (from kbuf at
 * k_at(j) = kbase + j * Ckv), softmax into S[srow + j]; returns 1/sum. With
 * lse a buffer (not UINT32_MAX), the row's log-sum-exp goes to lse[lse_at]. */
static uint32_t attention_row(Lower *l, uint32_t q, uint32_t q_at, uint32_t kbuf, uint32_t kbase, uint32_t kstride,
                              uint32_t last, uint32_t S, uint32_t srow, uint32_t lse, uint32_t lse_at, const Heads *hd) {
  uint32_t sv, sd, m = L_acc(l, K_F32, L_f(l, -INFINITY));
  uint32_t j = L_loop(l, KL_SERIAL, L_i(l, 0), L_add(l, last, L_i(l, 1)), &sv);
  uint32_t kat = L_ivar(l, L_add(l, kbase, L_mul(l, j, kstride)));
  uint32_t dot = L_acc(l, K_F32, L_f(l, 0));
  uint32_t d = L_loop(l, KL_VECTOR, L_i(l, 0), hd->D, &sd);
  acc_add(l, dot, L_mul(l, L_load(l, q, L_add(l, q_at, d)), L_ldb(l, kbuf, L_add(l, kat, d))));
  l->block = sd;
  uint32_t s = L_fvar(l, L_mul(l, L_varx(l, dot), L_f(l, hd->scale)));
  L_stb(l, S, L_add(l, srow, j), s);
  acc_max(l, m, s);
  l->block = sv;
  uint32_t sum = L_acc(l, K_F32, L_f(l, 0));
  j = L_loop(l, KL_VECTOR, L_i(l, 0), L_add(l, last, L_i(l, 1)), &sv);
  uint32_t e = L_fvar(l, L_ex(l, KE_EXP, L_sub(l, L_ldb(l, S, L_add(l, srow, j)), L_varx(l, m))));
  L_stb(l, S, L_add(l, srow, j), e);
  acc_add(l, sum, e);
  l->block = sv;
  if (lse != UINT32_MAX) L_stb(l, lse, lse_at, L_add(l, L_varx(l, m), L_ex(l, KE_LOG, L_varx(l, sum))));
  return L_fvar(l, L_div(l, L_f(l, 1.0), L_varx(l, sum)));
}

/* y[i] = sum over j <= last of p_j v[j] (p_j = S[srow + j] inv) */
static void attention_mix(Lower *l, uint32_t y, uint32_t y_at, uint32_t vbuf, uint32_t vbase, uint32_t vstride,
                          uint32_t last, uint32_t S, uint32_t srow, uint32_t inv, const Heads *hd) {
  uint32_t sv, sd, d = L_loop(l, KL_VECTOR, L_i(l, 0), hd->D, &sd);
  L_stb(l, y, L_add(l, y_at, d), L_f(l, 0));
  l->block = sd;
  uint32_t j = L_loop(l, KL_SERIAL, L_i(l, 0), L_add(l, last, L_i(l, 1)), &sv);
  uint32_t p = L_fvar(l, L_mul(l, L_ldb(l, S, L_add(l, srow, j)), inv));
  uint32_t vat = L_ivar(l, L_add(l, vbase, L_mul(l, j, vstride)));
  d = L_loop(l, KL_VECTOR, L_i(l, 0), hd->D, &sd);
  L_stb(l, y, L_add(l, y_at, d), L_add(l, L_ldb(l, y, L_add(l, y_at, d)), L_mul(l, p, L_ldb(l, vbuf, L_add(l, vat, d)))));
  l->block = sd;
  l->block = sv;
}

/* How a value is read: from its own buffer, or for a view (slices_as_views)
 * from its whole's, from the slice's first column on, plus the bias. */
typedef struct {
  uint32_t whole, bias; /* values: what is read, its bias (IR_NONE: none) */
  int64_t start;        /* the first column */
  uint32_t rs;          /* the row stride (an expr) */
} View;

/* Where v is read: itself, or for a view (slices_as_views) its whole from
 * the slice's first column, in rows of the whole's width, and its bias. */
static View view_of(Lower *l, uint32_t v) {
  View w = {v, IR_NONE, 0, L_last(l, L_shape(l, v))};
  const IrNode *d = l->inlined[v] ? ir_node(l->g, l->g->values.a[v].def) : NULL;
  if (d && d->op == IR_SLICE) {
    if (!view_parts(l, ir_in(l->g, d, 0), &w.whole, &w.bias)) PC_BUG("lowering: a view of a value that is no product's output");
    w.start = d->attr[1].i;
    w.rs = L_last(l, L_shape(l, ir_in(l->g, d, 0)));
  }
  return w;
}

/* Element `at` of w's whole, which is column col of the value it stands
 * for, with its bias where w has one */
static uint32_t view_load(Lower *l, const View *w, uint32_t at, uint32_t col) {
  uint32_t x = L_load(l, w->whole, at);
  return w->bias == IR_NONE ? x : L_add(l, x, L_load(l, w->bias, L_add(l, L_i(l, w->start), col)));
}

/* Input v of a call as it reads it: buffer buf[b], bias buffer buf[bias_b]
 * (its own when none), and arg[a], [a + 1], [a + 2]: its first element, row
 * stride and its bias's first element (-1: none). */
static void call_input(Lower *l, uint32_t v, KCall *c, int b, int bias_b, int a) {
  View w = view_of(l, v);
  c->buf[b] = l->buf[w.whole];
  c->buf[bias_b] = l->buf[w.bias != IR_NONE ? w.bias : w.whole];
  c->arg[a] = L_i(l, w.start);
  c->arg[a + 1] = w.rs;
  c->arg[a + 2] = L_i(l, w.bias != IR_NONE ? w.start : -1);
}

/* dst[at + c] = row `row` of v, c < width: a copy, or where v is a view of a
 * biased product, a loop adding the bias */
static void copy_row(Lower *l, uint32_t dst, uint32_t at, uint32_t v, uint32_t row, uint32_t width) {
  View w = view_of(l, v);
  uint32_t from = L_ivar(l, L_add(l, L_mul(l, row, w.rs), L_i(l, w.start))), sv;
  if (w.bias == IR_NONE) {
    ks_copy(l->p, l->block, dst, at, l->buf[w.whole], from, width);
    return;
  }
  uint32_t c = L_loop(l, KL_VECTOR, L_i(l, 0), width, &sv);
  L_stb(l, dst, L_add(l, at, c), view_load(l, &w, L_add(l, from, c), c));
  l->block = sv;
}

/* Output k (dq, dk or dv) of attention gradient n as its call writes it:
 * buffer, first element and row stride; into the columns of the slice
 * gradient that adds it in, where the lowering left it to the kernels
 * (gradients_in_place). */
static void attention_output(Lower *l, const IrNode *n, uint32_t k, KCall *c) {
  uint32_t v = OUT(k), start = 0, rs = L_last(l, L_shape(l, v));
  if (l->inlined[v]) {
    const IrRegion *r = &l->g->regions.a[l->g->values.a[v].region];
    for (size_t i = 0; i < r->nodes.n; i++) {
      const IrNode *sg = ir_node(l->g, r->nodes.a[i]);
      if (sg->op != IR_SLICE_GRAD || ir_in(l->g, sg, 1) != v) continue;
      c->buf[9 + k] = l->buf[sg->out];
      start = (uint32_t)sg->attr[1].i;
      rs = L_last(l, L_shape(l, sg->out));
    }
  }
  c->arg[15 + 2 * k] = L_i(l, start);
  c->arg[16 + 2 * k] = rs;
}

/* attention and its gradient as one call of the backend's kernels, where
 * the schedule asks for them (head dims up to 128, what the CUDA library
 * has); returns 0 when it made none. attention_cached has its own. */
static int attention_call(Lower *l, const IrNode *n, const Heads *hd) {
  const IrShape *q = L_shape(l, ir_in(l->g, n, 0));
  int64_t D = q->dim[2] / n->attr[0].i;
  if (!l->s->attention_kernel || D > 128) return 0;
  KCall c = {.op = n->op == IR_ATTENTION ? KC_ATTENTION : KC_ATTENTION_GRAD,
             .arg = {hd->B, hd->T, hd->H, hd->Hkv, hd->D, L_f(l, hd->scale)}};
  int n_in = n->op == IR_ATTENTION ? 3 : 6, n_out = n->op == IR_ATTENTION ? 2 : 3; /* kcall_info's order */
  for (int k = 0; k < 3; k++) call_input(l, IN(k), &c, k, 3 + k, 6 + 3 * k);
  for (int k = 3; k < n_in; k++) c.buf[3 + k] = l->buf[IN(k)]; /* after the three biases */
  for (int k = 0; k < n_out; k++) c.buf[3 + n_in + k] = l->buf[OUT(k)];
  if (n->op == IR_ATTENTION_GRAD) {
    c.buf[12] = L_scratch(l, n, 0); /* delta */
    for (uint32_t k = 0; k < 3; k++) attention_output(l, n, k, &c);
  }
  ks_call(l->p, l->block, &c);
  return 1;
}

/* attention(q, k, v): per (batch, head) in parallel, per query i, causal */
static int lo_attention(Lower *l, const IrNode *n, PcError *err) {
  Heads hd = heads(l, n);
  if (attention_call(l, n, &hd)) return 0;
  uint32_t S = L_scratch(l, n, 0), saved, si;
  uint32_t bh = L_loop(l, KL_PARALLEL, L_i(l, 0), L_mul(l, hd.B, hd.H), &saved);
  uint32_t b = L_ivar(l, L_div(l, bh, hd.H)), h = L_ivar(l, L_op(l, KE_REM, bh, hd.H));
  uint32_t hk = L_ivar(l, L_div(l, h, hd.group)), srow = L_ivar(l, L_mul(l, bh, hd.T));
  uint32_t kbase = L_ivar(l, L_add(l, L_mul(l, L_mul(l, b, hd.T), hd.Ckv), L_mul(l, hk, hd.D)));
  uint32_t i = L_loop(l, KL_SERIAL, L_i(l, 0), hd.T, &si);
  uint32_t q_at = L_ivar(l, L_add(l, L_mul(l, L_add(l, L_mul(l, b, hd.T), i), hd.Cq), L_mul(l, h, hd.D)));
  uint32_t inv = attention_row(l, IN(0), q_at, l->buf[IN(1)], kbase, hd.Ckv, i, S, srow, l->buf[OUT(1)],
                               L_add(l, srow, i), &hd);
  attention_mix(l, l->buf[OUT(0)], q_at, l->buf[IN(2)], kbase, hd.Ckv, i, S, srow, inv, &hd);
  l->block = si;
  l->block = saved;
  return 0;
}

static int scratch_attention(Lower *l, const IrNode *n, int64_t *elems) {
  const IrShape *q = L_shape(l, ir_in(l->g, n, 0));
  int64_t B = IR_IS_SYM(q->dim[0]) ? l->dim_max[IR_SYM_INDEX(q->dim[0])] : q->dim[0];
  int64_t T = IR_IS_SYM(q->dim[1]) ? l->dim_max[IR_SYM_INDEX(q->dim[1])] : q->dim[1];
  if (n->op == IR_ATTENTION_CACHED) T = L_shape(l, ir_in(l->g, n, 3))->dim[3];
  elems[0] = B * n->attr[0].i * T;
  if (n->op == IR_ATTENTION_GRAD) elems[1] = elems[0];
  return 0;
}

/* attention_cached(q, k, v, cache, slot, pos): k, v go to positions pos.. of
 * cache[slot] ([2, B, L, Ckv]: keys then values), then attention over it */
static int lo_attention_cached(Lower *l, const IrNode *n, PcError *err) {
  Heads hd = heads(l, n);
  uint32_t cache = l->buf[IN(3)], S = L_scratch(l, n, 0), saved, si;
  uint32_t L = L_i(l, L_shape(l, IN(3))->dim[3]), pos = L_ivar(l, L_scalar(l, IN(5)));
  uint32_t plane = L_ivar(l, L_mul(l, L_mul(l, hd.B, L), hd.Ckv));
  uint32_t slot = L_ivar(l, L_scalar(l, IN(4))), kbase0 = L_ivar(l, L_mul(l, L_mul(l, slot, L_i(l, 2)), plane));
  uint32_t vbase0 = L_ivar(l, L_add(l, kbase0, plane));
  uint32_t bt = L_loop(l, KL_PARALLEL, L_i(l, 0), L_mul(l, hd.B, hd.T), &saved); /* rows go to their own positions */
  uint32_t b = L_ivar(l, L_div(l, bt, hd.T)), t = L_ivar(l, L_op(l, KE_REM, bt, hd.T));
  uint32_t row = L_ivar(l, L_mul(l, L_add(l, L_mul(l, b, L), L_add(l, pos, t)), hd.Ckv));
  copy_row(l, cache, L_add(l, kbase0, row), IN(1), bt, hd.Ckv);
  copy_row(l, cache, L_add(l, vbase0, row), IN(2), bt, hd.Ckv);
  l->block = saved;
  int64_t D = L_shape(l, IN(0))->dim[2] / n->attr[0].i, Lmax = L_shape(l, IN(3))->dim[3];
  if (l->s->attention_kernel && D <= 128 && Lmax <= KCALL_CACHED_KEYS) { /* the backend's decoding kernel */
    KCall c = {.op = KC_ATTENTION_CACHED, .buf = {0, 0, cache, l->buf[OUT(0)]},
               .arg = {hd.B, hd.T, hd.H, hd.Hkv, hd.D, L_f(l, hd.scale), 0, 0, 0, L, slot, pos}};
    call_input(l, IN(0), &c, 0, 1, 6);
    ks_call(l->p, l->block, &c);
    return 0;
  }
  uint32_t bh = L_loop(l, KL_PARALLEL, L_i(l, 0), L_mul(l, hd.B, hd.H), &saved);
  b = L_ivar(l, L_div(l, bh, hd.H));
  uint32_t h = L_ivar(l, L_op(l, KE_REM, bh, hd.H)), hk = L_ivar(l, L_div(l, h, hd.group));
  uint32_t srow = L_ivar(l, L_mul(l, bh, L));
  uint32_t off = L_ivar(l, L_add(l, L_mul(l, L_mul(l, b, L), hd.Ckv), L_mul(l, hk, hd.D)));
  uint32_t i = L_loop(l, KL_SERIAL, L_i(l, 0), hd.T, &si);
  uint32_t q_at = L_ivar(l, L_add(l, L_mul(l, L_add(l, L_mul(l, b, hd.T), i), hd.Cq), L_mul(l, h, hd.D)));
  uint32_t last = L_ivar(l, L_add(l, pos, i));
  uint32_t inv = attention_row(l, IN(0), q_at, cache, L_add(l, kbase0, off), hd.Ckv, last, S, srow, UINT32_MAX, 0, &hd);
  attention_mix(l, l->buf[OUT(0)], q_at, cache, L_add(l, vbase0, off), hd.Ckv, last, S, srow, inv, &hd);
  l->block = si;
  l->block = saved;
  return 0;
}

/* attention_grad(q, k, v, y, lse, dy) -> dq, dk, dv. Per (batch, kv head) in
 * parallel (its query heads write only its own dk, dv), per query i:
 *   p = softmax row (recomputed: the loops read neither y nor lse);
 *   dp_j = dy . v_j;  ds_j = p_j (dp_j - sum p dp) scale
 *   dq_i += ds_j k_j;  dk_j += ds_j q_i;  dv_j += p_j dy_i */
static int lo_attention_grad(Lower *l, const IrNode *n, PcError *err) {
  Heads hd = heads(l, n);
  if (attention_call(l, n, &hd)) return 0;
  uint32_t S = L_scratch(l, n, 0), DP = L_scratch(l, n, 1), saved, sh, si, sj, sd;
  fill(l, OUT(0), 0);
  fill(l, OUT(1), 0);
  fill(l, OUT(2), 0);
  uint32_t bg = L_loop(l, KL_PARALLEL, L_i(l, 0), L_mul(l, hd.B, hd.Hkv), &saved);
  uint32_t b = L_ivar(l, L_div(l, bg, hd.Hkv)), hk = L_ivar(l, L_op(l, KE_REM, bg, hd.Hkv));
  uint32_t srow = L_ivar(l, L_mul(l, L_mul(l, bg, hd.group), hd.T));
  uint32_t kbase = L_ivar(l, L_add(l, L_mul(l, L_mul(l, b, hd.T), hd.Ckv), L_mul(l, hk, hd.D)));
  uint32_t hh = L_loop(l, KL_SERIAL, L_i(l, 0), hd.group, &sh);
  uint32_t h = L_ivar(l, L_add(l, L_mul(l, hk, hd.group), hh));
  uint32_t i = L_loop(l, KL_SERIAL, L_i(l, 0), hd.T, &si);
  uint32_t q_at = L_ivar(l, L_add(l, L_mul(l, L_add(l, L_mul(l, b, hd.T), i), hd.Cq), L_mul(l, h, hd.D)));
  uint32_t inv = attention_row(l, IN(0), q_at, l->buf[IN(1)], kbase, hd.Ckv, i, S, srow, UINT32_MAX, 0, &hd);
  uint32_t pdp = L_acc(l, K_F32, L_f(l, 0));
  uint32_t j = L_loop(l, KL_SERIAL, L_i(l, 0), L_add(l, i, L_i(l, 1)), &sj);
  uint32_t vat = L_ivar(l, L_add(l, kbase, L_mul(l, j, hd.Ckv)));
  uint32_t p = L_fvar(l, L_mul(l, L_ldb(l, S, L_add(l, srow, j)), inv));
  L_stb(l, S, L_add(l, srow, j), p);
  uint32_t dp = L_acc(l, K_F32, L_f(l, 0));
  uint32_t d = L_loop(l, KL_VECTOR, L_i(l, 0), hd.D, &sd);
  acc_add(l, dp, L_mul(l, L_load(l, IN(5), L_add(l, q_at, d)), L_load(l, IN(2), L_add(l, vat, d))));
  l->block = sd;
  L_stb(l, DP, L_add(l, srow, j), L_varx(l, dp));
  acc_add(l, pdp, L_mul(l, p, L_varx(l, dp)));
  l->block = sj;
  j = L_loop(l, KL_SERIAL, L_i(l, 0), L_add(l, i, L_i(l, 1)), &sj);
  uint32_t at = L_ivar(l, L_add(l, kbase, L_mul(l, j, hd.Ckv)));
  uint32_t pj = L_fvar(l, L_ldb(l, S, L_add(l, srow, j)));
  uint32_t ds = L_fvar(l, L_mul(l, L_mul(l, pj, L_sub(l, L_ldb(l, DP, L_add(l, srow, j)), L_varx(l, pdp))), L_f(l, hd.scale)));
  d = L_loop(l, KL_VECTOR, L_i(l, 0), hd.D, &sd);
  uint32_t qd = L_add(l, q_at, d), kd = L_add(l, at, d);
  L_store(l, OUT(0), qd, L_add(l, L_load(l, OUT(0), qd), L_mul(l, ds, L_load(l, IN(1), kd))));
  L_store(l, OUT(1), kd, L_add(l, L_load(l, OUT(1), kd), L_mul(l, ds, L_load(l, IN(0), qd))));
  L_store(l, OUT(2), kd, L_add(l, L_load(l, OUT(2), kd), L_mul(l, pj, L_load(l, IN(5), qd))));
  l->block = sd;
  l->block = sj;
  l->block = si;
  l->block = sh;
  l->block = saved;
  return 0;
}

/* rope(x, positions) and rope_grad(positions, dy): per head, the first
 * rotary_dims dims rotate in pairs (i, i + half) by pos / theta^(2i/R)
 * (HF's rotate_half pairing); rope_grad rotates back. */
typedef struct {
  const IrNode *n;
  View x;                 /* read in place where it is q or k sliced from a product */
  uint32_t pos, from, to; /* the row's position (f32), its first element in x's whole and in the output */
  int64_t R, half;
} Rope;

/* cos and sin of pair i's angle (sin negated for rope_grad: the rotation back) */
static void rope_angle(Lower *l, const Rope *r, uint32_t i, uint32_t *c, uint32_t *sn) {
  const IrNode *n = r->n;
  uint32_t inv = L_div(l, L_f(l, 1.0), kx_op(l->p, KE_POW, L_f(l, n->attr[2].f),
                                                L_div(l, L_ex(l, KE_ITOF, L_mul(l, L_i(l, 2), i)), L_f(l, (double)r->R)), 0));
  uint32_t angle = L_fvar(l, L_mul(l, r->pos, inv));
  *c = L_fvar(l, L_ex(l, KE_COS, angle));
  *sn = L_fvar(l, L_ex(l, KE_SIN, angle));
  if (n->op == IR_ROPE_GRAD) *sn = L_fvar(l, L_ex(l, KE_NEG, *sn));
}

static uint32_t rope_load(Lower *l, const Rope *r, uint32_t col) {
  return L_fvar(l, view_load(l, &r->x, L_add(l, r->from, col), col));
}

/* head by head: columns col and col + half, rotated by the angle of pair i */
static void rope_pair(Lower *l, const Rope *r, uint32_t col, uint32_t i) {
  const IrNode *n = r->n;
  uint32_t c, sn, col2 = L_ivar(l, L_add(l, col, L_i(l, r->half)));
  rope_angle(l, r, i, &c, &sn);
  uint32_t lo = rope_load(l, r, col), hi = rope_load(l, r, col2);
  L_store(l, OUT(0), L_add(l, r->to, col), L_sub(l, L_mul(l, lo, c), L_mul(l, hi, sn)));
  L_store(l, OUT(0), L_add(l, r->to, col2), L_add(l, L_mul(l, hi, c), L_mul(l, lo, sn)));
}

/* the whole row at once: column col (d in its head) from itself and its
 * pair's other column, or as it is past the rotary dims; stores along the
 * row, so a product reading the result finds it with its bf16 mirror */
static void rope_column(Lower *l, const Rope *r, uint32_t col, int64_t D) {
  const IrNode *n = r->n;
  uint32_t d = L_ivar(l, L_op(l, KE_REM, col, L_i(l, D))), c, sn;
  uint32_t first = kx_op(l->p, KE_LT, d, L_i(l, r->half), 0);
  rope_angle(l, r, L_ivar(l, L_op(l, KE_REM, d, L_i(l, r->half))), &c, &sn);
  uint32_t other = L_ivar(l, kx_op(l->p, KE_SELECT, first, L_add(l, col, L_i(l, r->half)), L_sub(l, col, L_i(l, r->half))));
  uint32_t x = rope_load(l, r, col), y = rope_load(l, r, other);
  uint32_t turned = L_add(l, L_mul(l, x, c), L_mul(l, kx_op(l->p, KE_SELECT, first, L_ex(l, KE_NEG, sn), sn), y));
  L_store(l, OUT(0), L_add(l, r->to, col), kx_op(l->p, KE_SELECT, kx_op(l->p, KE_LT, d, L_i(l, r->R), 0), turned, x));
}

static int lo_rope(Lower *l, const IrNode *n, PcError *err) {
  int grad = n->op == IR_ROPE_GRAD;
  uint32_t x = grad ? IN(1) : IN(0), positions = grad ? IN(0) : IN(1);
  const IrShape *s = L_shape(l, x);
  int64_t H = n->attr[0].i, R = n->attr[1].i, C = s->dim[2], D = C / H;
  Rope r = {.n = n, .x = view_of(l, x), .R = R, .half = R / 2};
  uint32_t T = L_ivar(l, L_dimx(l, s->dim[1])), saved, sv;
  uint32_t bt = L_loop(l, KL_PARALLEL, L_i(l, 0), L_mul(l, L_dimx(l, s->dim[0]), T), &saved);
  r.pos = L_fvar(l, L_ex(l, KE_ITOF, L_load(l, positions, L_op(l, KE_REM, bt, T))));
  r.from = L_ivar(l, L_add(l, L_mul(l, bt, r.x.rs), L_i(l, r.x.start)));
  r.to = L_ivar(l, L_mul(l, bt, L_i(l, C)));
  if (l->s->wide_rows) {
    rope_column(l, &r, L_loop(l, KL_VECTOR, L_i(l, 0), L_i(l, C), &sv), D);
    l->block = sv;
  } else { /* head by head: each head's pairs, then its unrotated columns */
    uint32_t h = L_loop(l, KL_SERIAL, L_i(l, 0), L_i(l, H), &sv), si;
    uint32_t hD = L_ivar(l, L_mul(l, h, L_i(l, D)));
    uint32_t i = L_loop(l, KL_VECTOR, L_i(l, 0), L_i(l, r.half), &si);
    rope_pair(l, &r, L_ivar(l, L_add(l, hD, i)), i);
    l->block = si;
    if (R < D) {
      i = L_loop(l, KL_VECTOR, L_i(l, R), L_i(l, D), &si);
      uint32_t col = L_ivar(l, L_add(l, hD, i));
      L_store(l, OUT(0), L_add(l, r.to, col), rope_load(l, &r, col));
      l->block = si;
    }
    l->block = sv;
  }
  l->block = saved;
  return 0;
}

static const OpLowering table[IR_NUM_OPS] = {
    [IR_ROPE] = {lo_rope, NULL},
    [IR_ROPE_GRAD] = {lo_rope, NULL},
    [IR_FILL] = {lo_fill, NULL},
    [IR_POSITIONS] = {lo_positions, NULL},
    [IR_POSITIONS_AT] = {lo_positions, NULL},
    [IR_SOFTMAX] = {lo_softmax, NULL},
    [IR_SOFTMAX_TOPK] = {lo_softmax_topk, scratch_softmax_topk},
    [IR_LAYERNORM] = {lo_norm, NULL},
    [IR_RMSNORM] = {lo_norm, NULL},
    [IR_LINEAR] = {lo_product, NULL},
    [IR_MATMUL] = {lo_product, NULL},
    [IR_EMBEDDING] = {lo_embedding, NULL},
    [IR_SLICE] = {lo_slice, NULL},
    [IR_ATTENTION] = {lo_attention, scratch_attention},
    [IR_ATTENTION_CACHED] = {lo_attention_cached, scratch_attention},
    [IR_CROSS_ENTROPY] = {lo_cross_entropy, scratch_rows},
    [IR_SUM] = {lo_sum, NULL},
    [IR_SUM_TO] = {lo_sum_to, scratch_sum_to},
    [IR_MATMUL_TN] = {lo_product, NULL},
    [IR_SOFTMAX_GRAD] = {lo_softmax_grad, NULL},
    [IR_LAYERNORM_GRAD] = {lo_norm_grad, scratch_norm_grad},
    [IR_RMSNORM_GRAD] = {lo_norm_grad, scratch_norm_grad},
    [IR_EMBEDDING_GRAD] = {lo_embedding_grad, scratch_embedding_grad},
    [IR_SLICE_GRAD] = {lo_slice, NULL},
    [IR_ATTENTION_GRAD] = {lo_attention_grad, scratch_attention},
    [IR_CROSS_ENTROPY_GRAD] = {lo_cross_entropy_grad, NULL},
    [IR_STACK_SET] = {lo_stack_set, NULL},
    [IR_STACK_GET] = {lo_stack_get, NULL},
};

const OpLowering *lower_op(IrOp op) {
  const OpLowering *ol = &table[op];
  return ol->lower ? ol : lower_vocab_op(op);
}
