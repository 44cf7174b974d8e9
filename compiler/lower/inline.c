/* Which values are computed where, decided before the memory plan:
 *  - an elementwise group's values inside its root's loop (or, for a bias
 *    add that only slices read, inside the slices);
 *  - a group next to a norm, a norm gradient or an elementwise op, inside
 *    that node's row loop (at_row);
 *  - a sum right after the op that makes one of its operands, by that op
 *    adding its result into the sum's buffer (at_row; the result is
 *    never stored);
 *  - q, k and v sliced from a product's output, by the attention kernels
 *    that read them, from the product's buffer and bias (a view); and
 *    their gradients by the attention gradient's kernels, in their
 *    columns of the product's gradient.
 * A value computed elsewhere needs no buffer of its own, or no loop of its
 * own; what it reads lives until it is computed (plan.c). */
#include <stdlib.h>

#include "compiler/lower/lower_internal.h"

int elementwise_op(IrOp op) {
  switch (op) {
  case IR_ADD: case IR_SUB: case IR_MUL: case IR_SCALE: case IR_GELU_TANH: case IR_GELU: case IR_SILU:
  case IR_GELU_TANH_GRAD: case IR_GELU_GRAD: case IR_SILU_GRAD:
    return 1;
  default: return 0;
  }
}

/* Elementwise values read only by slices along their last axis, in their
 * own region, that together read no more columns than the value has (q, k
 * and v of a biased product): each slice computes its columns, and the
 * value is never stored. */
static void inline_into_slices(Lower *l) {
  const IrGraph *g = l->g;
  uint32_t *slices = pc_xcalloc(g->values.n + 1, sizeof(uint32_t));
  int64_t *columns = pc_xcalloc(g->values.n + 1, sizeof(int64_t));
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op != IR_SLICE) continue;
    uint32_t v = ir_in(g, n, 0);
    if (n->attr[0].i == ir_type(g, v)->shape.rank - 1 && g->values.a[v].region == g->values.a[n->out].region) {
      slices[v]++;
      columns[v] += n->attr[2].i;
    }
  }
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->n_out != 1 || !elementwise_op(n->op)) continue;
    const IrShape *s = &ir_type(g, n->out)->shape;
    if (slices[n->out] && slices[n->out] == l->uses[n->out] && s->rank && columns[n->out] <= s->dim[s->rank - 1])
      l->inlined[n->out] = 1;
  }
  free(slices);
  free(columns);
}

/* The slice_grad node that takes v as its `into`, when that is v's only use; IR_NONE otherwise. */
static uint32_t next_slice_grad(Lower *l, uint32_t v) {
  if (l->uses[v] != 1) return IR_NONE;
  const IrRegion *r = &l->g->regions.a[l->g->values.a[v].region];
  for (size_t i = 0; i < r->nodes.n; i++) {
    const IrNode *n = ir_node(l->g, r->nodes.a[i]);
    if (n->op == IR_SLICE_GRAD && ir_in(l->g, n, 0) == v) return r->nodes.a[i];
  }
  return IR_NONE;
}

/* Whether v, zeros from a fill, starts a chain of slice gradients (each
 * result the next one's `into` and used by nothing else) along one static
 * axis whose slices cover it exactly once: then every element gets one
 * slice and none keeps the fill, so the fill is left out and each slice is
 * copied in rather than added (the gradient of a product's output split
 * into q, k and v). */
int covering_chain(Lower *l, uint32_t v) {
  uint32_t def = l->g->values.a[v].def;
  if (def == IR_NONE || ir_node(l->g, def)->op != IR_FILL || ir_node(l->g, def)->attr[0].f != 0) return 0;
  const IrShape *s = L_shape(l, v);
  int64_t axis = -1, D = 0, covered = 0;
  unsigned char *hit = NULL;
  int ok = 1;
  uint32_t id;
  for (uint32_t at = v; ok && (id = next_slice_grad(l, at)) != IR_NONE; at = ir_node(l->g, id)->out) {
    const IrNode *n = ir_node(l->g, id);
    if (axis < 0) {
      axis = n->attr[0].i;
      D = axis < s->rank ? s->dim[axis] : -1;
      if (D <= 0) break; /* symbolic: no proof */
      hit = pc_xcalloc((size_t)D, 1);
    }
    int64_t start = n->attr[1].i, size = n->attr[2].i;
    ok = n->attr[0].i == axis && start >= 0 && size >= 0 && start + size <= D;
    for (int64_t d = start; ok && d < start + size; d++) ok = !hit[d]++;
    covered += ok ? size : 0;
  }
  free(hit);
  return ok && D > 0 && covered == D;
}

/* The value that the chain of slice gradients through n starts from: n's
 * `into`, back through slice gradients that only the next one reads. */
static uint32_t chain_head(Lower *l, const IrNode *n) {
  uint32_t v = ir_in(l->g, n, 0), def;
  while ((def = l->g->values.a[v].def) != IR_NONE && ir_node(l->g, def)->op == IR_SLICE_GRAD && l->uses[v] == 1)
    v = ir_in(l->g, ir_node(l->g, def), 0);
  return v;
}

int on_covering_chain(Lower *l, const IrNode *n) {
  uint32_t v = chain_head(l, n);
  return l->uses[v] == 1 && covering_chain(l, v);
}

int view_parts(Lower *l, uint32_t w, uint32_t *whole, uint32_t *bias) {
  const IrGraph *g = l->g;
  *whole = w;
  *bias = IR_NONE;
  if (!l->inlined[w]) return 1;
  const IrNode *d = ir_node(g, g->values.a[w].def);
  if (d->op != IR_ADD) return 0;
  const IrShape *s = &ir_type(g, w)->shape;
  for (uint32_t k = 0; k < 2; k++) {
    uint32_t m = ir_in(g, d, k), b = ir_in(g, d, 1 - k);
    const IrShape *bs = &ir_type(g, b)->shape;
    int row = bs->rank >= 1 && bs->dim[bs->rank - 1] == s->dim[s->rank - 1];
    for (int i = 0; i + 1 < bs->rank; i++) row &= bs->dim[i] == 1;
    if (!l->inlined[m] && !l->inlined[b] && ir_shape_eq(&ir_type(g, m)->shape, s) && row) {
      *whole = m;
      *bias = b;
      return 1;
    }
  }
  return 0;
}

/* Whether use k of node n reads q, k or v of an attention that the
 * backend's kernels run (they read views; so do the copies of a decoding
 * step's keys and values into its cache). */
static int attention_kernel_input(Lower *l, const IrNode *n, uint32_t k) {
  if ((n->op != IR_ATTENTION && n->op != IR_ATTENTION_GRAD && n->op != IR_ATTENTION_CACHED) || k > 2 ||
      !l->s->attention_kernel)
    return 0;
  const IrShape *q = &ir_type(l->g, ir_in(l->g, n, 0))->shape;
  if (n->op == IR_ATTENTION_CACHED && ir_type(l->g, ir_in(l->g, n, 3))->shape.dim[3] > KCALL_CACHED_KEYS) return 0;
  return q->dim[2] / n->attr[0].i <= 128; /* the head dims of the calls (attention_call, lo_attention_cached) */
}

/* Slices along the last axis of a product's output (view_parts; the
 * product split in q, k and v) that their readers read in place, in rows
 * of the whole width, adding the product's bias as they load where the
 * bias add was computed in the slices, so that the slice is not stored: a
 * slice read only by ropes (lo_rope; rotated next to the product, so the
 * product lives no longer for it), and slices read only as q, k or v by
 * attention kernels when every slice of their whole is such a one (else
 * the product would live as long as the attention gradient that reads
 * them, beside the slices stored, for less than it saves: Pythia's v
 * stays a slice of its own). */
static void slices_as_views(Lower *l) {
  const IrGraph *g = l->g;
  uint32_t *attention = pc_xcalloc(g->values.n + 1, sizeof *attention), *rope = pc_xcalloc(g->values.n + 1, sizeof *rope);
  uint32_t *viewed = pc_xcalloc(g->values.n + 1, sizeof *viewed);
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    for (uint32_t k = 0; k < n->n_in; k++) {
      attention[ir_in(g, n, k)] += attention_kernel_input(l, n, k);
      rope[ir_in(g, n, k)] += n->op == IR_ROPE && k == 0 && l->s->attention_kernel;
    }
  }
  for (int mark = 0; mark < 2; mark++) /* count the slices of each whole that attention reads, then mark the views */
    for (size_t i = 0; i < g->nodes.n; i++) {
      const IrNode *n = ir_node(g, (uint32_t)i);
      uint32_t w = n->op == IR_SLICE ? ir_in(g, n, 0) : IR_NONE, whole, bias;
      if (w == IR_NONE || n->attr[0].i != ir_type(g, w)->shape.rank - 1 || !view_parts(l, w, &whole, &bias)) continue;
      if (!mark) viewed[w] += attention[n->out] == l->uses[n->out];
      else if (rope[n->out] == l->uses[n->out] || (attention[n->out] == l->uses[n->out] && viewed[w] == l->uses[w]))
        l->inlined[n->out] = 1;
    }
  free(attention);
  free(rope);
  free(viewed);
}

/* The slice gradient in v's region that adds v in as its piece, or NULL. */
static const IrNode *slice_grad_of(Lower *l, uint32_t v) {
  const IrRegion *r = &l->g->regions.a[l->g->values.a[v].region];
  for (size_t i = 0; i < r->nodes.n; i++) {
    const IrNode *n = ir_node(l->g, r->nodes.a[i]);
    if (n->op == IR_SLICE_GRAD && ir_in(l->g, n, 1) == v) return n;
  }
  return NULL;
}

/* Attention gradients whose dq, dk and dv are each copied, along the last
 * axis, into their columns of one covering chain of slice gradients (the
 * gradient of q, k and v sliced from one product): the kernels write them
 * there, in rows of the chain's width, and nothing copies them (the slice
 * gradients and the chain's fill make no statements; the plan gives the
 * chain one buffer from the attention gradient on). */
static void gradients_in_place(Lower *l) {
  const IrGraph *g = l->g;
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op != IR_ATTENTION_GRAD || !attention_kernel_input(l, n, 0)) continue;
    uint32_t head = IR_NONE;
    int ok = 1;
    for (uint32_t k = 0; k < 3 && ok; k++) {
      const IrNode *sg = l->uses[n->out + k] == 1 ? slice_grad_of(l, n->out + k) : NULL;
      ok = sg && sg->attr[0].i == ir_type(g, sg->out)->shape.rank - 1 && on_covering_chain(l, sg) &&
           (k == 0 || chain_head(l, sg) == head);
      if (ok) head = chain_head(l, sg);
    }
    for (uint32_t k = 0; k < 3 && ok; k++) l->inlined[n->out + k] = 1;
  }
}

void group_leaves(Lower *l, uint32_t v, VecU32 *out) {
  const IrNode *n = ir_node(l->g, l->g->values.a[v].def);
  for (uint32_t k = 0; k < n->n_in; k++) {
    uint32_t o = ir_in(l->g, n, k);
    if (l->inlined[o] && elementwise_op(ir_node(l->g, l->g->values.a[o].def)->op)) group_leaves(l, o, out);
    else vec_push(out, o); /* a result its op adds into this sum is not stored: no leaf to write over */
  }
}

/* Whether result k of node d may be added by its op into the buffer of a
 * sum of it (a product with beta = 1, a column sum's last stage adding to
 * what is there, a norm gradient's row loop adding dx): the products,
 * sum_to, and a norm's gradients. */
static int sums_itself(const IrNode *d, uint32_t k) {
  switch (d->op) {
  case IR_LINEAR: case IR_MATMUL: case IR_MATMUL_TN: case IR_SUM_TO: return k == 0;
  case IR_LAYERNORM_GRAD: return k <= 2;
  case IR_RMSNORM_GRAD: return k <= 1;
  default: return 0;
  }
}

/* Sums right after the op that makes one of their operands, its only
 * reader, of their shape, whose other operand was made before that op (a
 * parameter's gradient added into its sum over the pondering loop, a
 * residual's gradient): the op adds its result into the sum's buffer and
 * never stores it (at_row: the op computes the sum). Between the op and
 * the sum there may be only what the op computes too. */
static void sums_into_ops(Lower *l) {
  const IrGraph *g = l->g;
  uint32_t *index = pc_xcalloc(g->nodes.n + 1, sizeof *index); /* a node's place in its region, from 1 (0: params, inputs) */
  for (size_t r = 0; r < g->regions.n; r++)
    for (size_t i = 0; i < g->regions.a[r].nodes.n; i++) index[g->regions.a[r].nodes.a[i]] = (uint32_t)i + 1;
  for (size_t r = 0; r < g->regions.n; r++) {
    const IrRegion *reg = &g->regions.a[r];
    for (size_t i = 1; i < reg->nodes.n; i++) {
      const IrNode *n = ir_node(g, reg->nodes.a[i]);
      if (n->op != IR_ADD || l->inlined[n->out] || l->at_row[n->out] != IR_NONE || ir_in(g, n, 0) == ir_in(g, n, 1))
        continue;
      for (uint32_t k = 0; k < 2; k++) {
        uint32_t v = ir_in(g, n, k), o = ir_in(g, n, 1 - k), d = g->values.a[v].def;
        if (d == IR_NONE || g->values.a[v].region != r || !sums_itself(ir_node(g, d), v - ir_node(g, d)->out) ||
            l->uses[v] != 1 || l->inlined[v] || !ir_shape_eq(&ir_type(g, v)->shape, &ir_type(g, n->out)->shape) ||
            !ir_shape_eq(&ir_type(g, o)->shape, &ir_type(g, n->out)->shape))
          continue;
        const IrValueInfo *oi = &g->values.a[o];
        if (oi->region == r && oi->def != IR_NONE && index[oi->def] >= index[d]) continue; /* not made yet */
        int between = 1;
        for (size_t j = index[d]; j < i && between; j++) { /* the nodes after d's place, index[d] - 1 */
          const IrNode *m = ir_node(g, reg->nodes.a[j]);
          between = m->n_out == 1 && l->at_row[m->out] == d;
        }
        if (!between) continue;
        l->inlined[v] = 1;
        l->at_row[n->out] = d;
        break;
      }
    }
  }
  free(index);
}

uint32_t summed_into(Lower *l, uint32_t v, uint32_t *other) {
  const IrGraph *g = l->g;
  uint32_t d = g->values.a[v].def;
  if (!l->inlined[v] || d == IR_NONE || elementwise_op(ir_node(g, d)->op)) return IR_NONE;
  const IrRegion *reg = &g->regions.a[g->values.a[v].region];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(g, reg->nodes.a[i]);
    if (n->op != IR_ADD || l->at_row[n->out] != d) continue;
    for (uint32_t k = 0; k < 2; k++)
      if (ir_in(g, n, k) == v) {
        *other = ir_in(g, n, 1 - k);
        return n->out;
      }
  }
  PC_BUG("lowering: no sum of a result summed into one");
}

/* Whether only elementwise ops come between nodes a and b (a before b) of
 * region r. */
static int only_elementwise_between(const IrGraph *g, uint32_t r, uint32_t a, uint32_t b) {
  const IrRegion *reg = &g->regions.a[r];
  size_t i = 0;
  while (i < reg->nodes.n && reg->nodes.a[i] != a) i++;
  for (i++; i < reg->nodes.n && reg->nodes.a[i] != b; i++)
    if (!elementwise_op(ir_node(g, reg->nodes.a[i])->op)) return 0;
  return 1;
}

/* The operands of v's group (group_leaves) of v's own size */
static int full_size_leaves(Lower *l, uint32_t v) {
  VecU32 leaves = {0};
  group_leaves(l, v, &leaves);
  int full = 0;
  for (size_t k = 0; k < leaves.n; k++) full += ir_shape_eq(&ir_type(l->g, leaves.a[k])->shape, &ir_type(l->g, v)->shape);
  vec_free(&leaves);
  return full;
}

int uses_all(Lower *l, uint32_t v, int (*ok)(Lower *l, const IrNode *n, uint32_t k)) {
  const IrGraph *g = l->g;
  int n_uses = 0;
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    for (uint32_t k = 0; k < n->n_in; k++) {
      if (ir_in(g, n, k) != v) continue;
      if (!ok(l, n, k)) return -1;
      n_uses++;
    }
  }
  return n_uses;
}

/* Whether v may be computed inside a consumer far from it (only elementwise
 * ops between them, or its group reads at most one operand of its size):
 * the operands it reads then live until the consumer, and two or more of
 * v's size cost more than v would (a sum of gradients that arrive apart, a
 * parameter's from each unrolled pass, is added as each arrives, not all at
 * the end with every part kept until then); one with a bias does not. */
static int may_defer(Lower *l, uint32_t v, uint32_t consumer) {
  const IrGraph *g = l->g;
  return only_elementwise_between(g, g->values.a[v].region, g->values.a[v].def, consumer) || full_size_leaves(l, v) <= 1;
}

static int is_norm_grad(IrOp op) { return op == IR_LAYERNORM_GRAD || op == IR_RMSNORM_GRAD; }

/* Whether elementwise group v may be computed in the row loop of norm
 * gradient d, right before it: it reads d's dx and none of the weight
 * gradients, which d sums after that loop. */
static int after_norm_grad_ok(Lower *l, const IrNode *d, uint32_t v) {
  const IrGraph *g = l->g;
  const IrNode *n = ir_node(g, g->values.a[v].def);
  int reads_dx = 0;
  for (uint32_t k = 0; k < n->n_in; k++) reads_dx |= ir_in(g, n, k) == d->out;
  if (!reads_dx || !ir_shape_eq(&ir_type(g, v)->shape, &ir_type(g, d->out)->shape)) return 0;
  VecU32 leaves = {0};
  group_leaves(l, v, &leaves);
  int ok = 1;
  for (size_t k = 0; k < leaves.n; k++) ok &= leaves.a[k] <= d->out || leaves.a[k] >= d->out + d->n_out;
  vec_free(&leaves);
  return ok;
}

/* Whether n, right after elementwise group d, may compute d in its row
 * loop: a norm of d, or an elementwise op of d's shape that reads it and
 * has a loop of its own (d, stored for its other readers, is then read
 * back from cache). */
static int before_row_op_ok(Lower *l, const IrNode *n, const IrNode *d) {
  const IrGraph *g = l->g;
  if (!elementwise_op(d->op) || d->n_out != 1 || l->inlined[d->out]) return 0;
  if (n->op == IR_LAYERNORM || n->op == IR_RMSNORM) return ir_in(g, n, 0) == d->out;
  if (!elementwise_op(n->op) || n->n_out != 1 || l->inlined[n->out] ||
      !ir_shape_eq(&ir_type(g, n->out)->shape, &ir_type(g, d->out)->shape))
    return 0;
  int reads = 0;
  for (uint32_t k = 0; k < n->n_in; k++) reads |= ir_in(g, n, k) == d->out;
  return reads;
}

/* Whether node i of region reg, right after norm gradient d, adds d's dx,
 * read nowhere else, to a value of its shape that an op made and that
 * dies there (the region's nodes before it read it, nothing else):
 * sums_into_ops makes d add dx into the sum, which the plan puts in that
 * value's buffer (where the value lived on, it would be copied there
 * first, and the row group that reads both costs less). */
static int dx_summed(Lower *l, const IrRegion *reg, size_t i, const IrNode *d) {
  const IrGraph *g = l->g;
  const IrNode *n = ir_node(g, reg->nodes.a[i]);
  if (n->op != IR_ADD || l->uses[d->out] != 1 || ir_in(g, n, 0) == ir_in(g, n, 1)) return 0;
  const IrShape *s = &ir_type(g, n->out)->shape;
  for (uint32_t k = 0; k < 2; k++) {
    uint32_t o = ir_in(g, n, 1 - k), before = 0;
    const IrValueInfo *oi = &g->values.a[o];
    if (ir_in(g, n, k) != d->out) continue;
    if (!ir_shape_eq(&ir_type(g, o)->shape, s) || !ir_shape_eq(&ir_type(g, d->out)->shape, s) || l->inlined[o] || oi->def == IR_NONE ||
        ir_node(g, oi->def)->op == IR_PARAM || ir_node(g, oi->def)->op == IR_INPUT)
      return 0;
    for (size_t j = 0; j < i; j++) {
      const IrNode *m = ir_node(g, reg->nodes.a[j]);
      for (uint32_t q = 0; q < m->n_in; q++) before += ir_in(g, m, q) == o;
    }
    return before + 1 == l->uses[o];
  }
  return 0;
}

/* Elementwise groups that the node next to them computes in its row loop,
 * storing each row beside its own: the group right before a norm that
 * reads it (the residual sum) or before an elementwise op that reads it
 * (a bias add that the activation after it and the backward both read),
 * and the group right after a norm gradient that reads its dx (the sum of
 * the residual's gradients), unless that group is dx plus another value
 * and nothing else reads dx: the norm gradient then adds dx into the sum
 * itself and never stores it (sums_into_ops). */
static void fuse_into_row_loops(Lower *l) {
  const IrGraph *g = l->g;
  for (size_t r = 0; r < g->regions.n; r++) {
    const IrRegion *reg = &g->regions.a[r];
    for (size_t i = 1; i < reg->nodes.n; i++) {
      const IrNode *n = ir_node(g, reg->nodes.a[i]), *d = ir_node(g, reg->nodes.a[i - 1]);
      if (before_row_op_ok(l, n, d))
        l->at_row[d->out] = reg->nodes.a[i];
      else if (is_norm_grad(d->op) && elementwise_op(n->op) && n->n_out == 1 && !l->inlined[n->out] &&
               after_norm_grad_ok(l, d, n->out) && !dx_summed(l, reg, i, d))
        l->at_row[n->out] = reg->nodes.a[i - 1];
    }
  }
}

/* The group that node `id` computes in its row loop from the neighbour
 * `step` nodes from it (-1: before, 1: after), or IR_NONE. */
static uint32_t row_group(Lower *l, uint32_t id, int step) {
  const IrGraph *g = l->g;
  const IrNode *n = ir_node(g, id);
  const IrRegion *reg = &g->regions.a[g->values.a[n->out].region];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    if (reg->nodes.a[i] != id) continue;
    if ((step < 0 && i == 0) || (step > 0 && i + 1 == reg->nodes.n)) return IR_NONE;
    const IrNode *m = ir_node(g, reg->nodes.a[step < 0 ? i - 1 : i + 1]);
    if (m->n_out != 1 || l->at_row[m->out] != id) return IR_NONE;
    for (uint32_t k = 0; k < m->n_in; k++) /* a sum that the node's op adds into, not a row group */
      if (l->inlined[ir_in(g, m, k)] && !elementwise_op(ir_node(g, g->values.a[ir_in(g, m, k)].def)->op)) return IR_NONE;
    return m->out;
  }
  return IR_NONE;
}

uint32_t row_group_before(Lower *l, uint32_t node) { return row_group(l, node, -1); }
uint32_t row_group_after(Lower *l, uint32_t node) { return row_group(l, node, 1); }

/* n, an elementwise op of its operand k's shape in its region, could compute it */
static int elementwise_reader(Lower *l, const IrNode *n, uint32_t k) {
  const IrGraph *g = l->g;
  uint32_t v = ir_in(g, n, k);
  return elementwise_op(n->op) && n->n_out == 1 && g->values.a[n->out].region == g->values.a[v].region &&
         ir_shape_eq(&ir_type(g, n->out)->shape, &ir_type(g, v)->shape);
}

/* Elementwise values that several elementwise ops of their shape read, in
 * their region, and that read at most one operand of their size (a bias
 * add of a product's result): each reader computes the value again from
 * that operand, which lives instead of the value, and the value is never
 * stored (KSchedule.recompute_shared; the GPU's choice: an activation's
 * pre-activation, read by the activation and by its gradient, costs no
 * store, 4 bytes an element). */
static void recompute_shared(Lower *l) {
  const IrGraph *g = l->g;
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *d = ir_node(g, (uint32_t)i);
    uint32_t v = d->out;
    if (!elementwise_op(d->op) || d->n_out != 1 || l->inlined[v] || l->uses[v] < 2) continue;
    if (uses_all(l, v, elementwise_reader) >= 2 && full_size_leaves(l, v) <= 1) l->inlined[v] = 1;
  }
}

void plan_inline(Lower *l) {
  const IrGraph *g = l->g;
  inline_into_slices(l);
  slices_as_views(l);
  gradients_in_place(l);
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (!elementwise_op(n->op)) continue;
    for (uint32_t k = 0; k < n->n_in; k++) { /* an operand made by an elementwise op used only here */
      uint32_t v = ir_in(g, n, k);
      const IrValueInfo *vi = &g->values.a[v];
      if (vi->def == IR_NONE || l->uses[v] != 1 || vi->region != g->values.a[n->out].region) continue;
      const IrNode *d = ir_node(g, vi->def);
      if (elementwise_op(d->op) && ir_shape_eq(&ir_type(g, v)->shape, &ir_type(g, n->out)->shape) &&
          may_defer(l, v, (uint32_t)i))
        l->inlined[v] = 1;
    }
  }
  if (l->s->recompute_shared) recompute_shared(l);
  fuse_into_row_loops(l);
  sums_into_ops(l);
}
