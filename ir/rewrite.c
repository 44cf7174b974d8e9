#include "ir/rewrite.h"

#include <stdlib.h>
#include <string.h>

struct IrRewrite {
  const IrGraph *src;
  IrGraph *dst;
  IrBuilder b;
  uint32_t *map; /* source value -> new value */
  IrRewriteHook hook;
  void *ctx;
  const unsigned char *dropped; /* per source value: a loop result whose carry goes; NULL: none */
  PcError *err;
};

static int dropped(const IrRewrite *rw, const IrNode *loop, uint32_t k) { return rw->dropped && rw->dropped[loop->out + k]; }

const IrGraph *ir_rewrite_src(const IrRewrite *rw) { return rw->src; }
IrBuilder *ir_rewrite_builder(IrRewrite *rw) { return &rw->b; }

uint32_t ir_rewrite_value(const IrRewrite *rw, uint32_t v) {
  if (rw->map[v] == IR_NONE) PC_BUG("rewrite: source value %u was not copied", v);
  return rw->map[v];
}

void ir_rewrite_map(IrRewrite *rw, uint32_t src_value, uint32_t new_value) { rw->map[src_value] = new_value; }

static void set_loc(IrRewrite *rw, const IrNode *n) {
  ir_set_loc(&rw->b, n->loc == IR_NONE ? NULL : ir_str(rw->src, n->loc));
}

/* Attributes with string handles re-interned in the new graph. */
static void copy_attrs(IrRewrite *rw, const IrNode *n, IrOp op, const IrAttr *from, IrAttr *to) {
  memcpy(to, from, sizeof(IrAttr) * IR_MAX_ATTRS);
  for (int k = 0; k < IR_MAX_ATTRS; k++)
    if (ir_op_info(op)->attr[k].kind == IR_ATTR_STR && to[k].s != IR_NONE) to[k].s = ir_intern(rw->dst, ir_str(rw->src, to[k].s));
}

uint32_t ir_rewrite_emit(IrRewrite *rw, const IrNode *src_node, IrOp op, const uint32_t *in, uint32_t n_in,
                         const IrAttr *attr) {
  set_loc(rw, src_node);
  PcError err;
  uint32_t v = ir_build(&rw->b, op, in, n_in, attr, NULL, &err);
  if (v == IR_NONE) PC_BUG("rewrite emitted an ill-typed node: %s", err.msg);
  return v;
}

static int copy_region(IrRewrite *rw, uint32_t r);

static int copy_node(IrRewrite *rw, const IrNode *n) {
  const IrGraph *g = rw->src;
  int handled = rw->hook ? rw->hook(rw, n, rw->ctx, rw->err) : 0;
  if (handled) return handled < 0 ? -1 : 0;
  if (n->op == IR_YIELD) return 0; /* the loop's copy ends its body itself */
  uint32_t *in = pc_xmalloc(sizeof *in * (n->n_in + 1));
  uint32_t n_in = 0;
  for (uint32_t k = 0; k < n->n_in; k++)
    if (n->op != IR_LOOP || !dropped(rw, n, k)) in[n_in++] = ir_rewrite_value(rw, ir_in(g, n, k));
  set_loc(rw, n);
  PcError err;
  int rc = 0;
  switch (n->op) {
  case IR_OUTPUT:
    if (ir_output(&rw->b, ir_str(g, n->attr[0].s), in[0], &err) < 0) PC_BUG("rewrite: %s", err.msg);
    break;
  case IR_LOOP: {
    const IrRegion *body = &g->regions.a[n->body];
    uint32_t *args = pc_xmalloc(sizeof *args * (body->args.n + 1));
    if (ir_loop_begin(&rw->b, n->attr[0].i, (int)n->attr[1].i, in, n_in, args, &err) == IR_NONE)
      PC_BUG("rewrite: %s", err.msg);
    rw->map[body->args.a[0]] = args[0]; /* the index */
    for (uint32_t k = 0, kept = 0; k < n->n_out; k++)
      if (!dropped(rw, n, k)) rw->map[body->args.a[k + 1]] = args[1 + kept++];
    free(args);
    if ((rc = copy_region(rw, n->body)) < 0) break;
    const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
    uint32_t *yield = pc_xmalloc(sizeof *yield * (y->n_in + 1)), n_yield = 0;
    for (uint32_t k = 0; k < y->n_in; k++)
      if (!dropped(rw, n, k)) yield[n_yield++] = ir_rewrite_value(rw, ir_in(g, y, k));
    set_loc(rw, n);
    uint32_t out = ir_loop_end(&rw->b, yield, n_yield, &err);
    free(yield);
    if (out == IR_NONE) PC_BUG("rewrite: %s", err.msg);
    for (uint32_t k = 0, kept = 0; k < n->n_out; k++)
      if (!dropped(rw, n, k)) rw->map[n->out + k] = out + kept++;
    break;
  }
  default: {
    IrAttr attr[IR_MAX_ATTRS];
    copy_attrs(rw, n, n->op, n->attr, attr);
    uint32_t v = ir_build(&rw->b, n->op, in, n->n_in, attr, n->op == IR_FILL ? ir_type(g, n->out) : NULL, &err);
    if (v == IR_NONE) PC_BUG("rewrite: %s", err.msg);
    for (uint32_t k = 0; k < n->n_out; k++) rw->map[n->out + k] = v + k;
  }
  }
  free(in);
  return rc;
}

static int copy_region(IrRewrite *rw, uint32_t r) {
  const IrRegion *reg = &rw->src->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++)
    if (copy_node(rw, ir_node(rw->src, reg->nodes.a[i])) < 0) return -1;
  return 0;
}

int ir_rewrite_region(IrRewrite *rw, uint32_t r) { return copy_region(rw, r); }

int ir_rewrite(const IrGraph *src, IrRewriteHook hook, void *ctx, IrGraph **out, PcError *err) {
  return ir_rewrite_dropping(src, hook, ctx, NULL, out, err);
}

int ir_rewrite_dropping(const IrGraph *src, IrRewriteHook hook, void *ctx, const unsigned char *dropped, IrGraph **out,
                        PcError *err) {
  *out = NULL;
  IrRewrite rw = {.src = src, .dst = ir_graph_new(src->name), .hook = hook, .ctx = ctx, .dropped = dropped, .err = err};
  rw.b = ir_builder(rw.dst);
  rw.map = pc_xmalloc(pc_mul_size(src->values.n + 1, sizeof *rw.map));
  memset(rw.map, 0xff, (src->values.n + 1) * sizeof *rw.map);
  for (size_t i = 0; i < src->syms.n; i++) ir_sym(rw.dst, src->syms.a[i]);
  for (size_t i = 0; i < src->params.n; i++) {
    const IrNode *n = ir_node(src, src->params.a[i]);
    set_loc(&rw, n);
    rw.map[n->out] = ir_param(&rw.b, ir_str(src, src->values.a[n->out].name), ir_type(src, n->out),
                              ir_str(src, n->attr[0].s), n->attr[1].f,
                              n->attr[2].s == IR_NONE ? NULL : ir_str(src, n->attr[2].s), err);
  }
  for (size_t i = 0; i < src->inputs.n; i++) {
    const IrNode *n = ir_node(src, src->inputs.a[i]);
    set_loc(&rw, n);
    rw.map[n->out] = ir_input(&rw.b, ir_str(src, src->values.a[n->out].name), ir_type(src, n->out), err);
  }
  int rc = copy_region(&rw, 0);
  free(rw.map);
  if (!rc) rc = ir_verify(rw.dst, err);
  if (rc) {
    ir_graph_free(rw.dst);
    return -1;
  }
  *out = rw.dst;
  return 0;
}

uint32_t *ir_use_counts(const IrGraph *g) {
  uint32_t *uses = pc_xcalloc(g->values.n + 1, sizeof *uses);
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    for (uint32_t k = 0; k < n->n_in; k++) uses[ir_in(g, n, k)]++;
  }
  return uses;
}
