/* Loop unrolling: a loop of at most max_trip iterations becomes its body
 * copied once per iteration, the index a constant and each copy's carried
 * inputs the previous copy's yields. Autodiff of the result needs no stacks:
 * every iteration's activations are values of their own, which the memory
 * plan keeps exactly as long as the backward reads them (the pipeline does
 * this for saved loop activations). */
#include <stdlib.h>

#include "ir/passes.h"
#include "ir/rewrite.h"

typedef struct {
  int64_t max_trip;
} Unroll;

static int unroll_hook(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err) {
  const Unroll *u = ctx;
  if (n->op != IR_LOOP || n->attr[0].i > u->max_trip) return 0;
  const IrGraph *g = ir_rewrite_src(rw);
  const IrRegion *body = &g->regions.a[n->body];
  const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
  int64_t trip = n->attr[0].i;
  uint32_t *carried = pc_xmalloc(sizeof *carried * (n->n_in + 1));
  for (uint32_t k = 0; k < n->n_in; k++) carried[k] = ir_rewrite_value(rw, ir_in(g, n, k));
  IrType index_type = {PC_I32, {0, {0}}};
  for (int64_t it = 0; it < trip; it++) {
    IrAttr at[IR_MAX_ATTRS] = {{.f = (double)(n->attr[1].i ? trip - 1 - it : it)}};
    PcError e;
    ir_set_loc(ir_rewrite_builder(rw), n->loc == IR_NONE ? NULL : ir_str(g, n->loc));
    uint32_t index = ir_build(ir_rewrite_builder(rw), IR_FILL, NULL, 0, at, &index_type, &e);
    if (index == IR_NONE) PC_BUG("unroll: %s", e.msg);
    ir_rewrite_map(rw, body->args.a[0], index);
    for (uint32_t k = 0; k < n->n_in; k++) ir_rewrite_map(rw, body->args.a[k + 1], carried[k]);
    if (ir_rewrite_region(rw, n->body) < 0) {
      free(carried);
      return -1;
    }
    for (uint32_t k = 0; k < y->n_in; k++) carried[k] = ir_rewrite_value(rw, ir_in(g, y, k));
  }
  for (uint32_t k = 0; k < n->n_out; k++) ir_rewrite_map(rw, n->out + k, carried[k]);
  free(carried);
  (void)err;
  return 1;
}

int ir_unroll(const IrGraph *g, int64_t max_trip, IrGraph **out, PcError *err) {
  Unroll u = {max_trip};
  return ir_rewrite(g, unroll_hook, &u, out, err);
}
