/* Shape inference: one rule per row of ops.def. A rule reads the node's
 * operand types and attributes and writes its result types; its messages
 * carry no location (the builder or verifier adds "LOC: op: "). */
#include <string.h>

#include "ir/ir.h"

/* What a rule sees: the node, and its first operands' shapes as text for messages. */
typedef struct {
  const IrGraph *g;
  const IrNode *n;
  char shape[8][96]; /* of the first 8 operands, for messages */
} Rule;

typedef int (*ShapeRule)(const Rule *r, IrType *out, PcError *err);

static const IrType *in_type(const IrGraph *g, const IrNode *n, uint32_t k) {
  return ir_type(g, ir_in(g, n, k));
}


static int64_t last_dim(const IrType *t) { return t->shape.rank ? t->shape.dim[t->shape.rank - 1] : 1; }

static int need_dtype(const Rule *r, uint32_t k, PcDType want, const char *what,
                      PcError *err) {
  PcDType got = in_type(r->g, r->n, k)->dtype;
  if (got == want) return 0;
  return pc_errorf(err, "%s must be %s, got %s%s", what, pc_dtype_name(want), pc_dtype_name(got),
                   r->shape[k]);
}

static int need_rank(const Rule *r, uint32_t k, int lo, int hi, const char *what,
                     PcError *err) {
  int rank = in_type(r->g, r->n, k)->shape.rank;
  if (rank >= lo && rank <= hi) return 0;
  if (lo == hi) return pc_errorf(err, "%s must have rank %d, got %s", what, lo, r->shape[k]);
  return pc_errorf(err, "%s must have rank %d to %d, got %s", what, lo, hi, r->shape[k]);
}

static int rule_same(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "input", err) < 0) return -1;
  *out = *in_type(g, n, 0);
  return 0;
}

static int rule_softmax_topk(const Rule *r, IrType *out, PcError *err) {
  if (rule_same(r, out, err) < 0) return -1;
  int64_t v = out->shape.rank ? out->shape.dim[out->shape.rank - 1] : 1, k = r->n->attr[0].i;
  if (k < 1 || (!IR_IS_SYM(v) && k > v)) return pc_errorf(err, "k = %lld must be between 1 and %lld", (long long)k, (long long)v);
  return 0;
}

static int rule_broadcast(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  const IrType *a = in_type(g, n, 0), *b = in_type(g, n, 1);
  if (a->dtype != b->dtype)
    return pc_errorf(err, "operands differ in type: %s%s vs %s%s", pc_dtype_name(a->dtype), r->shape[0],
                     pc_dtype_name(b->dtype), r->shape[1]);
  const IrShape *big = a->shape.rank >= b->shape.rank ? &a->shape : &b->shape;
  const IrShape *small = big == &a->shape ? &b->shape : &a->shape;
  out->dtype = a->dtype;
  out->shape = *big;
  int off = big->rank - small->rank;
  for (int i = 0; i < small->rank; i++) {
    int64_t x = big->dim[off + i], y = small->dim[i];
    if (x == y || y == 1) continue;
    if (x == 1) {
      out->shape.dim[off + i] = y;
      continue;
    }
    return pc_errorf(err, "shapes %s and %s do not broadcast", r->shape[0], r->shape[1]);
  }
  return 0;
}

static int rule_positions(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_I32, "token ids", err) < 0 || need_rank(r, 0, 2, 2, "token ids", err) < 0)
    return -1;
  out->dtype = PC_I32;
  out->shape = (IrShape){1, {in_type(g, n, 0)->shape.dim[1]}};
  return 0;
}

static int norm_common(const Rule *r, uint32_t n_vec, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "input", err) < 0 || need_rank(r, 0, 1, PC_MAX_RANK, "input", err) < 0)
    return -1;
  int64_t c = last_dim(in_type(g, n, 0));
  const char *names[] = {"weight", "bias"};
  for (uint32_t k = 1; k <= n_vec; k++) {
    const IrType *w = in_type(g, n, k);
    if (w->dtype != PC_F32 || w->shape.rank != 1 || w->shape.dim[0] != c)
      return pc_errorf(err, "input %s vs %s %s", r->shape[0], names[k - 1], r->shape[k]);
  }
  if (n->attr[0].f <= 0) return pc_errorf(err, "eps must be positive, got %g", n->attr[0].f);
  *out = *in_type(g, n, 0);
  return 0;
}

static int rule_layernorm(const Rule *r, IrType *out, PcError *err) {
  return norm_common(r, 2, out, err);
}

static int rule_rmsnorm(const Rule *r, IrType *out, PcError *err) {
  return norm_common(r, 1, out, err);
}

/* linear: x [..., K] times w [N, K] transposed -> [..., N] (PyTorch's nn.Linear layout) */
static int rule_linear(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "input", err) < 0 || need_dtype(r, 1, PC_F32, "weight", err) < 0 ||
      need_rank(r, 0, 1, PC_MAX_RANK, "input", err) < 0 || need_rank(r, 1, 2, 2, "weight", err) < 0)
    return -1;
  const IrType *x = in_type(g, n, 0), *w = in_type(g, n, 1);
  if (last_dim(x) != w->shape.dim[1])
    return pc_errorf(err, "input %s vs weight %s: the weight is [out, in] and in must be the input's last dim",
                     r->shape[0], r->shape[1]);
  *out = *x;
  out->shape.dim[x->shape.rank - 1] = w->shape.dim[0];
  return 0;
}

/* matmul: x [..., N] times w [N, K] -> [..., K] */
static int rule_matmul(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "input", err) < 0 || need_dtype(r, 1, PC_F32, "weight", err) < 0 ||
      need_rank(r, 0, 1, PC_MAX_RANK, "input", err) < 0 || need_rank(r, 1, 2, 2, "weight", err) < 0)
    return -1;
  const IrType *x = in_type(g, n, 0), *w = in_type(g, n, 1);
  if (last_dim(x) != w->shape.dim[0])
    return pc_errorf(err, "input %s vs weight %s: inner dims differ", r->shape[0], r->shape[1]);
  *out = *x;
  out->shape.dim[x->shape.rank - 1] = w->shape.dim[1];
  return 0;
}

/* table [V,C] and ids [N...] -> [N...,C] */
static int rule_embedding(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "table", err) < 0 || need_rank(r, 0, 2, 2, "table", err) < 0 ||
      need_dtype(r, 1, PC_I32, "ids", err) < 0 || need_rank(r, 1, 0, PC_MAX_RANK - 1, "ids", err) < 0)
    return -1;
  const IrType *ids = in_type(g, n, 1);
  out->dtype = PC_F32;
  out->shape = ids->shape;
  out->shape.dim[out->shape.rank++] = in_type(g, n, 0)->shape.dim[1];
  return 0;
}

static int rule_slice(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  const IrType *x = in_type(g, n, 0);
  int64_t axis = n->attr[0].i, start = n->attr[1].i, size = n->attr[2].i;
  if (axis < 0 || axis >= x->shape.rank)
    return pc_errorf(err, "axis %lld is outside %s", (long long)axis, r->shape[0]);
  int64_t d = x->shape.dim[axis];
  if (IR_IS_SYM(d)) return pc_errorf(err, "axis %lld of %s is symbolic; slices need a static axis", (long long)axis, r->shape[0]);
  if (start < 0 || size < 0 || start + size > d)
    return pc_errorf(err, "[%lld, %lld) is outside axis %lld of %s", (long long)start, (long long)(start + size),
                     (long long)axis, r->shape[0]);
  *out = *x;
  out->shape.dim[axis] = size;
  return 0;
}

static int rule_attention(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  const char *names[] = {"query", "key", "value"};
  for (uint32_t k = 0; k < 3; k++)
    if (need_dtype(r, k, PC_F32, names[k], err) < 0 || need_rank(r, k, 3, 3, names[k], err) < 0) return -1;
  const IrShape *q = &in_type(g, n, 0)->shape, *kk = &in_type(g, n, 1)->shape, *v = &in_type(g, n, 2)->shape;
  int64_t h = n->attr[0].i, hkv = n->attr[1].i;
  if (h <= 0 || hkv <= 0 || h % hkv)
    return pc_errorf(err, "n_head %lld must be a positive multiple of n_kv_head %lld", (long long)h, (long long)hkv);
  if (q->dim[0] != kk->dim[0] || q->dim[1] != kk->dim[1] || !ir_shape_eq(kk, v))
    return pc_errorf(err, "query %s, key %s and value %s disagree", r->shape[0], r->shape[1], r->shape[2]);
  int64_t cq = q->dim[2], ckv = kk->dim[2];
  if (cq % h || ckv % hkv || cq / h != ckv / hkv)
    return pc_errorf(err, "query %s with %lld heads and key %s with %lld heads need the same head size",
                     r->shape[0], (long long)h, r->shape[1], (long long)hkv);
  *out = *in_type(g, n, 0);
  return 0;
}

static IrType lse_of(const Rule *r) {
  const IrShape *q = &in_type(r->g, r->n, 0)->shape;
  return (IrType){PC_F32, {.rank = 3, .dim = {q->dim[0], r->n->attr[0].i, q->dim[1]}}};
}

/* (q, k, v) -> y, lse [B, heads, T] */
static int rule_attention_lse(const Rule *r, IrType *out, PcError *err) {
  if (rule_attention(r, out, err) < 0) return -1;
  out[1] = lse_of(r);
  return 0;
}

/* rope(x [B,T,heads*D], positions i32[T]) -> like x; x and positions are
 * operands xi and pi (rope_grad takes (positions, dy)) */
static int rope_check(const Rule *r, uint32_t xi, uint32_t pi, IrType *out, PcError *err) {
  if (need_dtype(r, xi, PC_F32, "input", err) < 0 || need_rank(r, xi, 3, 3, "input", err) < 0 ||
      need_dtype(r, pi, PC_I32, "positions", err) < 0 || need_rank(r, pi, 1, 1, "positions", err) < 0)
    return -1;
  const IrShape *x = &in_type(r->g, r->n, xi)->shape, *p = &in_type(r->g, r->n, pi)->shape;
  if (p->dim[0] != x->dim[1])
    return pc_errorf(err, "input %s vs positions %s: one position per step", r->shape[xi], r->shape[pi]);
  int64_t h = r->n->attr[0].i, rot = r->n->attr[1].i, c = x->dim[2];
  if (h <= 0 || IR_IS_SYM(c) || c % h)
    return pc_errorf(err, "n_head %lld does not divide the width of %s", (long long)h, r->shape[xi]);
  if (rot < 2 || rot % 2 || rot > c / h)
    return pc_errorf(err, "rotary_dims %lld must be even and between 2 and the head size %lld", (long long)rot,
                     (long long)(c / h));
  if (!(r->n->attr[2].f > 0)) return pc_errorf(err, "theta must be positive, got %g", r->n->attr[2].f);
  *out = *in_type(r->g, r->n, xi);
  return 0;
}

static int rule_rope(const Rule *r, IrType *out, PcError *err) { return rope_check(r, 0, 1, out, err); }

static int rule_cross_entropy(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  if (need_dtype(r, 0, PC_F32, "logits", err) < 0 || need_dtype(r, 1, PC_I32, "targets", err) < 0 ||
      need_rank(r, 0, 1, PC_MAX_RANK, "logits", err) < 0)
    return -1;
  const IrShape *l = &in_type(g, n, 0)->shape, *t = &in_type(g, n, 1)->shape;
  int ok = t->rank == l->rank - 1;
  for (int i = 0; ok && i < t->rank; i++) ok = t->dim[i] == l->dim[i];
  if (!ok) return pc_errorf(err, "logits %s vs targets %s", r->shape[0], r->shape[1]);
  *out = (IrType){PC_F32, {0}};
  return 0;
}

static int rule_sum(const Rule *r, IrType *out, PcError *err) {
  if (need_dtype(r, 0, PC_F32, "input", err) < 0) return -1;
  *out = (IrType){PC_F32, {0}};
  return 0;
}

/* sum_to(x, like): x summed over the axes along which like broadcasts to it */
static int rule_sum_to(const Rule *r, IrType *out, PcError *err) {
  const IrShape *x = &in_type(r->g, r->n, 0)->shape, *like = &in_type(r->g, r->n, 1)->shape;
  if (need_dtype(r, 0, PC_F32, "input", err) < 0 || need_dtype(r, 1, PC_F32, "target", err) < 0) return -1;
  int off = x->rank - like->rank, ok = off >= 0;
  for (int i = 0; ok && i < like->rank; i++) ok = like->dim[i] == x->dim[off + i] || like->dim[i] == 1;
  if (!ok) return pc_errorf(err, "%s does not broadcast to %s", r->shape[1], r->shape[0]);
  *out = *in_type(r->g, r->n, 1);
  return 0;
}

/* matmul_tn(a, b): a [N..., M] transposed times b [N..., K] -> [M, K] */
static int rule_matmul_tn(const Rule *r, IrType *out, PcError *err) {
  if (need_dtype(r, 0, PC_F32, "left", err) < 0 || need_dtype(r, 1, PC_F32, "right", err) < 0 ||
      need_rank(r, 0, 1, PC_MAX_RANK, "left", err) < 0 || need_rank(r, 1, 1, PC_MAX_RANK, "right", err) < 0)
    return -1;
  const IrShape *a = &in_type(r->g, r->n, 0)->shape, *b = &in_type(r->g, r->n, 1)->shape;
  int ok = a->rank == b->rank;
  for (int i = 0; ok && i < a->rank - 1; i++) ok = a->dim[i] == b->dim[i];
  if (!ok) return pc_errorf(err, "left %s and right %s differ in their leading axes", r->shape[0], r->shape[1]);
  *out = (IrType){PC_F32, {2, {a->dim[a->rank - 1], b->dim[b->rank - 1]}}};
  return 0;
}

/* (x, dy) -> dx shaped like x */
static int rule_like_dy(const Rule *r, IrType *out, PcError *err) {
  if (need_dtype(r, 0, PC_F32, "input", err) < 0) return -1;
  if (!ir_type_eq(in_type(r->g, r->n, 0), in_type(r->g, r->n, 1)))
    return pc_errorf(err, "input %s vs gradient %s", r->shape[0], r->shape[1]);
  *out = *in_type(r->g, r->n, 0);
  return 0;
}

static int norm_grad(const Rule *r, int n_out, IrType *out, PcError *err) {
  if (need_dtype(r, 0, PC_F32, "input", err) < 0 || need_rank(r, 0, 1, PC_MAX_RANK, "input", err) < 0) return -1;
  const IrType *x = in_type(r->g, r->n, 0), *w = in_type(r->g, r->n, 1);
  if (w->dtype != PC_F32 || w->shape.rank != 1 || w->shape.dim[0] != last_dim(x))
    return pc_errorf(err, "input %s vs weight %s", r->shape[0], r->shape[1]);
  if (!ir_type_eq(x, in_type(r->g, r->n, 2))) return pc_errorf(err, "input %s vs gradient %s", r->shape[0], r->shape[2]);
  out[0] = *x;
  for (int i = 1; i < n_out; i++) out[i] = *w;
  return 0;
}

static int rule_layernorm_grad(const Rule *r, IrType *out, PcError *err) { return norm_grad(r, 3, out, err); }
static int rule_rmsnorm_grad(const Rule *r, IrType *out, PcError *err) { return norm_grad(r, 2, out, err); }

/* (table [V,C], ids [N...], dy [N...,C]) -> dtable [V,C] */
static int rule_embedding_grad(const Rule *r, IrType *out, PcError *err) {
  IrType want;
  if (rule_embedding(r, &want, err) < 0) return -1;
  if (!ir_type_eq(&want, in_type(r->g, r->n, 2)))
    return pc_errorf(err, "gradient %s does not match the lookup's result", r->shape[2]);
  *out = *in_type(r->g, r->n, 0);
  return 0;
}

/* (into, dy) -> into with dy added at [start, start+size) of axis */
static int rule_slice_grad(const Rule *r, IrType *out, PcError *err) {
  IrType want;
  if (rule_slice(r, &want, err) < 0) return -1;
  if (!ir_type_eq(&want, in_type(r->g, r->n, 1)))
    return pc_errorf(err, "gradient %s does not match the slice of %s", r->shape[1], r->shape[0]);
  *out = *in_type(r->g, r->n, 0);
  return 0;
}

/* (q, k, v, y, lse, dy) -> dq, dk, dv */
static int rule_attention_grad(const Rule *r, IrType *out, PcError *err) {
  IrType y, lse;
  if (rule_attention(r, &y, err) < 0) return -1;
  lse = lse_of(r);
  if (!ir_type_eq(&y, in_type(r->g, r->n, 3))) return pc_errorf(err, "output %s does not match the query %s", r->shape[3], r->shape[0]);
  if (!ir_type_eq(&lse, in_type(r->g, r->n, 4))) return pc_errorf(err, "lse %s is not f32[batch, heads, seq]", r->shape[4]);
  if (!ir_type_eq(&y, in_type(r->g, r->n, 5)))
    return pc_errorf(err, "gradient %s does not match the output %s", r->shape[5], r->shape[0]);
  for (int i = 0; i < 3; i++) out[i] = *in_type(r->g, r->n, (uint32_t)i);
  return 0;
}

/* (logits, targets, dloss) -> dlogits */
static int rule_cross_entropy_grad(const Rule *r, IrType *out, PcError *err) {
  IrType loss;
  if (rule_cross_entropy(r, &loss, err) < 0) return -1;
  if (!ir_type_eq(&loss, in_type(r->g, r->n, 2))) return pc_errorf(err, "the loss gradient must be f32[], got %s", r->shape[2]);
  *out = *in_type(r->g, r->n, 0);
  return 0;
}

/* (positions, dy) -> dx shaped like dy */
static int rule_rope_grad(const Rule *r, IrType *out, PcError *err) { return rope_check(r, 1, 0, out, err); }

/* stack_set(buf [K,S...], i, x [S...]) -> buf with slot i = x */
static int rule_stack_set(const Rule *r, IrType *out, PcError *err) {
  const IrType *buf = in_type(r->g, r->n, 0), *i = in_type(r->g, r->n, 1), *x = in_type(r->g, r->n, 2);
  if (i->dtype != PC_I32 || i->shape.rank != 0) return pc_errorf(err, "the index must be i32[], got %s", r->shape[1]);
  int ok = buf->dtype == x->dtype && buf->shape.rank == x->shape.rank + 1;
  for (int d = 0; ok && d < x->shape.rank; d++) ok = buf->shape.dim[d + 1] == x->shape.dim[d];
  if (!ok) return pc_errorf(err, "stack %s cannot hold %s", r->shape[0], r->shape[2]);
  *out = *buf;
  return 0;
}

/* stack_get(buf [K,S...], i) -> [S...] */
static int rule_stack_get(const Rule *r, IrType *out, PcError *err) {
  const IrType *buf = in_type(r->g, r->n, 0), *i = in_type(r->g, r->n, 1);
  if (i->dtype != PC_I32 || i->shape.rank != 0) return pc_errorf(err, "the index must be i32[], got %s", r->shape[1]);
  if (need_rank(r, 0, 1, PC_MAX_RANK, "stack", err) < 0) return -1;
  out->dtype = buf->dtype;
  out->shape.rank = buf->shape.rank - 1;
  for (int d = 0; d < out->shape.rank; d++) out->shape.dim[d] = buf->shape.dim[d + 1];
  return 0;
}

/* H [N...,C] against a [V,C] matrix: the shared checks of the vocabulary ops */
static int vocab_check(const Rule *r, uint32_t h, uint32_t w, const char *wname, PcError *err) {
  if (need_dtype(r, h, PC_F32, "hidden states", err) < 0 || need_rank(r, h, 1, PC_MAX_RANK, "hidden states", err) < 0 ||
      need_dtype(r, w, PC_F32, wname, err) < 0 || need_rank(r, w, 2, 2, wname, err) < 0)
    return -1;
  if (in_type(r->g, r->n, w)->shape.dim[1] != last_dim(in_type(r->g, r->n, h)))
    return pc_errorf(err, "hidden states %s vs %s %s", r->shape[h], wname, r->shape[w]);
  return 0;
}

/* [N...] and [N...,k] from H [N...,C] */
static IrShape rows_of(const IrType *h, int64_t last) {
  IrShape s = h->shape;
  if (last < 0)
    s.rank--;
  else
    s.dim[s.rank - 1] = last;
  return s;
}

static int rule_vocab_attention(const Rule *r, IrType *out, PcError *err) {
  if (vocab_check(r, 0, 1, "head", err) < 0 || need_dtype(r, 2, PC_F32, "mixture", err) < 0 ||
      need_rank(r, 2, 2, 2, "mixture", err) < 0)
    return -1;
  const IrType *h = in_type(r->g, r->n, 0), *wi = in_type(r->g, r->n, 2);
  if (wi->shape.dim[0] != in_type(r->g, r->n, 1)->shape.dim[0])
    return pc_errorf(err, "head %s and mixture %s differ in vocabulary", r->shape[1], r->shape[2]);
  if (!(r->n->attr[0].f > 0)) return pc_errorf(err, "tau must be positive");
  out[0] = (IrType){PC_F32, rows_of(h, wi->shape.dim[1])};
  out[1] = (IrType){PC_F32, rows_of(h, -1)};
  return 0;
}

static int rule_vocab_attention_topk(const Rule *r, IrType *out, PcError *err) {
  if (rule_vocab_attention(r, out, err) < 0) return -1;
  const IrType *h = in_type(r->g, r->n, 0);
  int64_t k = r->n->attr[1].i, v = in_type(r->g, r->n, 1)->shape.dim[0];
  if (k < 1 || k > v) return pc_errorf(err, "k = %lld must be between 1 and %lld", (long long)k, (long long)v);
  out[1] = (IrType){PC_I32, rows_of(h, k)};
  out[2] = (IrType){PC_F32, rows_of(h, k)};
  return 0;
}

static int rule_linear_cross_entropy(const Rule *r, IrType *out, PcError *err) {
  if (vocab_check(r, 0, 1, "head", err) < 0 || need_dtype(r, 2, PC_I32, "targets", err) < 0) return -1;
  IrShape rows = rows_of(in_type(r->g, r->n, 0), -1);
  if (!ir_shape_eq(&rows, &in_type(r->g, r->n, 2)->shape))
    return pc_errorf(err, "hidden states %s vs targets %s", r->shape[0], r->shape[2]);
  out[0] = (IrType){PC_F32, {0}};
  out[1] = (IrType){PC_F32, rows};
  return 0;
}

/* A gradient accumulated into: operand `into` must have the type of the
 * matrix operand `like`. */
static int need_like(const Rule *r, uint32_t into, uint32_t like, PcError *err) {
  if (!ir_type_eq(in_type(r->g, r->n, into), in_type(r->g, r->n, like)))
    return pc_errorf(err, "the gradient so far %s does not match the matrix %s", r->shape[into], r->shape[like]);
  return 0;
}

/* (H, Wo, Wi, saved..., dT, gWo[, gWi]) -> dH, gWo + dWo, gWi + dWi (tied: one
 * matrix, gW + dWo + dWi) */
static int rule_vocab_grad(const Rule *r, IrType *out, PcError *err) {
  int tied = r->n->op == IR_VOCAB_ATTENTION_GRAD_TIED || r->n->op == IR_VOCAB_ATTENTION_TOPK_GRAD_TIED;
  IrShape t = rows_of(in_type(r->g, r->n, 0), in_type(r->g, r->n, 2)->shape.dim[1]);
  if (!ir_shape_eq(&in_type(r->g, r->n, 5)->shape, &t)) return pc_errorf(err, "the gradient does not match the output");
  if (tied && ir_in(r->g, r->n, 1) != ir_in(r->g, r->n, 2)) return pc_errorf(err, "the tied form needs one matrix twice");
  if (need_like(r, 6, 1, err) < 0 || (!tied && need_like(r, 7, 2, err) < 0)) return -1;
  for (uint32_t k = 0; k < (tied ? 2u : 3u); k++) out[k] = *in_type(r->g, r->n, k);
  return 0;
}

/* (H, W, targets, lse, dloss, gW) -> dH, gW + dW */
static int rule_linear_ce_grad(const Rule *r, IrType *out, PcError *err) {
  if (need_like(r, 5, 1, err) < 0) return -1;
  out[0] = *in_type(r->g, r->n, 0);
  out[1] = *in_type(r->g, r->n, 1);
  return 0;
}

static int rule_positions_at(const Rule *r, IrType *out, PcError *err) {
  const IrType *pos = in_type(r->g, r->n, 1);
  if (pos->dtype != PC_I32 || pos->shape.rank != 0) return pc_errorf(err, "pos must be i32[], got %s", r->shape[1]);
  return rule_positions(r, out, err);
}

/* (q, k, v, cache [S,2,B,L,width], slot i32[], pos i32[]) -> like q */
static int rule_attention_cached(const Rule *r, IrType *out, PcError *err) {
  if (rule_attention(r, out, err) < 0) return -1;
  const IrType *k = in_type(r->g, r->n, 1), *cache = in_type(r->g, r->n, 3);
  const IrShape *c = &cache->shape;
  if (cache->dtype != PC_F32 || c->rank != 5 || c->dim[1] != 2 || c->dim[2] != k->shape.dim[0] ||
      c->dim[4] != k->shape.dim[2])
    return pc_errorf(err, "cache %s does not fit keys %s (want [slots,2,B,positions,width])", r->shape[3], r->shape[1]);
  for (uint32_t i = 4; i < 6; i++) {
    const IrType *t = in_type(r->g, r->n, i);
    if (t->dtype != PC_I32 || t->shape.rank != 0) return pc_errorf(err, "%s must be i32[]", i == 4 ? "slot" : "pos");
  }
  return 0;
}

static int rule_loop(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  for (uint32_t i = 0; i < n->n_in; i++) out[i] = *in_type(g, n, i);
  return 0;
}

static int rule_given(const Rule *r, IrType *out, PcError *err) {
  const IrGraph *g = r->g;
  const IrNode *n = r->n;
  *out = *ir_type(g, n->out);
  return 0;
}

static int rule_none(const Rule *r, IrType *out, PcError *err) { return 0; }

static const ShapeRule rules[IR_NUM_OPS] = {
#define OP(e, name, nin, nout, rule, attrs) [IR_##e] = rule_##rule,
#include "ir/ops.def"
#undef OP
};

int ir_infer(const IrGraph *g, const IrNode *n, IrType *out, PcError *err) {
  Rule r = {g, n, {{0}}};
  for (uint32_t k = 0; k < n->n_in && k < 8; k++)
    ir_shape_str(g, &in_type(g, n, k)->shape, r.shape[k], sizeof r.shape[k]);
  return rules[n->op](&r, out, err);
}
