/* Dead code elimination: a node stays if an output needs it, directly or
 * through a live loop (whose body then keeps what its yield needs). */
#include <stdlib.h>

#include "ir/passes.h"
#include "ir/rewrite.h"

typedef struct {
  unsigned char *live_value, *live_node;
} Dce;

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

static void mark(const IrGraph *g, Dce *d) {
  for (int changed = 1; changed;) {
    changed = 0;
    for (size_t i = g->nodes.n; i-- > 0;) {
      if (d->live_node[i] || !node_live(g, d, (uint32_t)i)) continue;
      const IrNode *n = ir_node(g, (uint32_t)i);
      d->live_node[i] = 1;
      changed = 1;
      for (uint32_t k = 0; k < n->n_in; k++) d->live_value[ir_in(g, n, k)] = 1;
      if (n->op == IR_LOOP) /* a live loop keeps all its results (they are carried) */
        for (uint32_t k = 0; k < n->n_out; k++) d->live_value[n->out + k] = 1;
    }
  }
}

static int dce_hook(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err) {
  const IrGraph *g = ir_rewrite_src(rw);
  const Dce *d = ctx;
  return !d->live_node[n - g->nodes.a]; /* dead: handled by emitting nothing */
}

int ir_dce(const IrGraph *g, IrGraph **out, PcError *err) {
  Dce d = {pc_xcalloc(g->values.n + 1, 1), pc_xcalloc(g->nodes.n + 1, 1)};
  mark(g, &d);
  int rc = ir_rewrite(g, dce_hook, &d, out, err);
  free(d.live_value);
  free(d.live_node);
  return rc;
}
