/* Dead code elimination: a node stays if an output needs it, directly or
 * through a live loop. A loop's carried value stays if its result is used
 * or the body uses its argument; the body then keeps what that carry's
 * yield operand needs. So a carry that nothing reads (a stack of saved
 * activations whose gradient rules never asked for them) goes, with its
 * initial value and everything that only fed it. */
#include <stdlib.h>

#include "ir/passes.h"
#include "ir/rewrite.h"

typedef struct {
  unsigned char *live_value, *live_node;
  unsigned char *live_carry; /* per loop result value */
} Dce;

static const IrNode *yield_of(const IrGraph *g, const IrNode *loop) {
  const IrRegion *body = &g->regions.a[loop->body];
  return ir_node(g, body->nodes.a[body->nodes.n - 1]);
}

static int node_live(const IrGraph *g, const Dce *d, uint32_t id) {
  const IrNode *n = ir_node(g, id);
  if (n->op == IR_OUTPUT) return 1;
  if (n->op == IR_YIELD) { /* lives with its loop */
    for (size_t r = 1; r < g->regions.n; r++) {
      const IrRegion *reg = &g->regions.a[r];
      if (reg->nodes.n && reg->nodes.a[reg->nodes.n - 1] == id) return d->live_node[reg->owner];
    }
    return 0;
  }
  for (uint32_t k = 0; k < n->n_out; k++)
    if (d->live_value[n->out + k]) return 1;
  return 0;
}

/* Marks the carries of a live loop that became live; returns whether any did. */
static int mark_carries(const IrGraph *g, Dce *d, const IrNode *n) {
  const IrRegion *body = &g->regions.a[n->body];
  const IrNode *y = yield_of(g, n);
  int changed = 0;
  for (uint32_t k = 0; k < n->n_out; k++) {
    if (d->live_carry[n->out + k] || !(d->live_value[n->out + k] || d->live_value[body->args.a[k + 1]])) continue;
    d->live_carry[n->out + k] = 1;
    d->live_value[ir_in(g, n, k)] = d->live_value[ir_in(g, y, k)] = 1;
    changed = 1;
  }
  return changed;
}

static void mark(const IrGraph *g, Dce *d) {
  for (int changed = 1; changed;) {
    changed = 0;
    for (size_t i = g->nodes.n; i-- > 0;) {
      const IrNode *n = ir_node(g, (uint32_t)i);
      if (d->live_node[i]) {
        if (n->op == IR_LOOP) changed |= mark_carries(g, d, n);
        continue;
      }
      if (!node_live(g, d, (uint32_t)i)) continue;
      d->live_node[i] = 1;
      changed = 1;
      if (n->op == IR_LOOP || n->op == IR_YIELD) continue; /* operands: by carry */
      for (uint32_t k = 0; k < n->n_in; k++) d->live_value[ir_in(g, n, k)] = 1;
    }
  }
}

static int dce_hook(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err) {
  const IrGraph *g = ir_rewrite_src(rw);
  const Dce *d = ctx;
  return !d->live_node[n - g->nodes.a]; /* dead: handled by emitting nothing */
}

int ir_dce(const IrGraph *g, IrGraph **out, PcError *err) {
  Dce d = {pc_xcalloc(g->values.n + 1, 1), pc_xcalloc(g->nodes.n + 1, 1), pc_xcalloc(g->values.n + 1, 1)};
  mark(g, &d);
  unsigned char *dropped = pc_xcalloc(g->values.n + 1, 1);
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op == IR_LOOP && d.live_node[i])
      for (uint32_t k = 0; k < n->n_out; k++) dropped[n->out + k] = !d.live_carry[n->out + k];
  }
  int rc = ir_rewrite_dropping(g, dce_hook, &d, dropped, out, err);
  free(dropped);
  free(d.live_value);
  free(d.live_node);
  free(d.live_carry);
  return rc;
}
