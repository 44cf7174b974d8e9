/* Reverse-mode autodiff: builds the training graph of a forward graph.
 *
 * 1. The forward graph is copied node by node ("cloned") into the new
 *    graph. A loop is cloned with extra carried stacks: one slot per
 *    iteration for each value its backward will need (the carried inputs
 *    and the fused vocabulary ops' results, or every body value in
 *    AD_LOOPS_SAVE mode).
 * 2. The backward pass walks the source graph's nodes in reverse and emits
 *    each node's gradient rule (vjp.c), summing contributions per value.
 *    A loop's backward is a loop running the other way, carrying the
 *    gradients of its carried values and accumulators for the values its
 *    body captured from outside; its body first rebuilds the forward values
 *    of that iteration (re-running the body from the stacked values, or
 *    reading the saved stacks), then runs the body's gradient rules.
 *
 * Source values map to new-graph values through scopes: one per region
 * being processed, looked up innermost first. Only "varied" values (those
 * that depend on a parameter) receive gradients. */
#include <stdlib.h>
#include <string.h>

#include "ir/autodiff_internal.h"

typedef struct Scope {
  uint32_t *fwd;  /* source value -> new value, for values this scope defined */
  uint32_t *grad; /* source value -> gradient (IR_NONE: none yet) */
  const struct Scope *up;
} Scope;

struct AdCtx {
  const IrGraph *src;
  IrGraph *dst;
  IrBuilder b;
  AdLoopMode mode;
  Scope *scope;
  unsigned char *varied; /* per source value */
  uint32_t loc;          /* location of the node being differentiated */
  PcError *err;
};

const IrGraph *ad_src(const AdCtx *c) { return c->src; }

static Scope *scope_push(AdCtx *c) {
  Scope *s = pc_xmalloc(sizeof *s);
  size_t n = c->src->values.n;
  s->fwd = pc_xmalloc(pc_mul_size(n + 1, sizeof(uint32_t)));
  s->grad = pc_xmalloc(pc_mul_size(n + 1, sizeof(uint32_t)));
  memset(s->fwd, 0xff, (n + 1) * sizeof(uint32_t)); /* IR_NONE */
  memset(s->grad, 0xff, (n + 1) * sizeof(uint32_t));
  s->up = c->scope;
  c->scope = s;
  return s;
}

static void scope_pop(AdCtx *c) {
  Scope *s = c->scope;
  c->scope = (Scope *)s->up;
  free(s->fwd);
  free(s->grad);
  free(s);
}

uint32_t ad_fwd(const AdCtx *c, uint32_t v) {
  for (const Scope *s = c->scope; s; s = s->up)
    if (s->fwd[v] != IR_NONE) return s->fwd[v];
  PC_BUG("autodiff: source value %u has no forward value", v);
}

static void set_loc(AdCtx *c, uint32_t src_loc) {
  ir_set_loc(&c->b, src_loc == IR_NONE ? NULL : ir_str(c->src, src_loc));
}

uint32_t ad_emit(AdCtx *c, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr) {
  PcError err;
  uint32_t v = ir_build(&c->b, op, in, n_in, attr, NULL, &err);
  if (v == IR_NONE) PC_BUG("autodiff emitted an ill-typed node: %s", err.msg);
  return v;
}

static uint32_t fill(AdCtx *c, const IrType *t, double value) {
  IrAttr attr[IR_MAX_ATTRS] = {{.f = value}};
  PcError err;
  uint32_t v = ir_build(&c->b, IR_FILL, NULL, 0, attr, t, &err);
  PC_ASSERT(v != IR_NONE);
  return v;
}

uint32_t ad_zeros(AdCtx *c, uint32_t src_value) { return fill(c, ir_type(c->src, src_value), 0.0); }

uint32_t ad_sum_to(AdCtx *c, uint32_t g, uint32_t src_x) {
  if (ir_type_eq(ir_type(c->dst, g), ir_type(c->src, src_x))) return g;
  uint32_t in[2] = {g, ad_fwd(c, src_x)};
  return ad_emit(c, IR_SUM_TO, in, 2, NULL);
}

void ad_acc(AdCtx *c, uint32_t v, uint32_t g) {
  if (!c->varied[v] || g == IR_NONE) return;
  uint32_t *slot = &c->scope->grad[v];
  if (*slot == IR_NONE) {
    *slot = g;
  } else {
    uint32_t in[2] = {*slot, g};
    *slot = ad_emit(c, IR_ADD, in, 2, NULL);
  }
}

uint32_t ad_take(AdCtx *c, uint32_t v) {
  uint32_t *slot = &c->scope->grad[v], g = *slot;
  *slot = IR_NONE;
  return g != IR_NONE ? g : ad_zeros(c, v);
}

/* ---- which values vary with the parameters ---------------------------- */

static int vary_region(AdCtx *c, uint32_t r);

/* Marks node results varied; returns whether anything changed. */
static int vary_node(AdCtx *c, const IrNode *n) {
  const IrGraph *g = c->src;
  int changed = 0;
  if (n->op == IR_LOOP) {
    const IrRegion *body = &g->regions.a[n->body];
    const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
    for (int again = 1; again;) { /* to a fixed point over the carried values */
      again = 0;
      for (uint32_t k = 0; k < n->n_in; k++) {
        uint32_t arg = body->args.a[k + 1];
        int v = c->varied[ir_in(g, n, k)] || c->varied[ir_in(g, y, k)];
        if (v && !c->varied[arg]) c->varied[arg] = 1, again = 1;
      }
      again |= vary_region(c, n->body);
    }
    for (uint32_t k = 0; k < n->n_out; k++)
      if (c->varied[body->args.a[k + 1]] && !c->varied[n->out + k]) c->varied[n->out + k] = 1, changed = 1;
    return changed;
  }
  int any = 0;
  for (uint32_t k = 0; k < n->n_in; k++) any |= c->varied[ir_in(g, n, k)];
  for (uint32_t k = 0; k < n->n_out; k++) {
    int v = any && ir_type(g, n->out + k)->dtype == PC_F32;
    if (v && !c->varied[n->out + k]) c->varied[n->out + k] = 1, changed = 1;
  }
  return changed;
}

static int vary_region(AdCtx *c, uint32_t r) {
  const IrRegion *reg = &c->src->regions.a[r];
  int changed = 0;
  for (size_t i = 0; i < reg->nodes.n; i++) changed |= vary_node(c, ir_node(c->src, reg->nodes.a[i]));
  return changed;
}

/* ---- cloning the forward pass ------------------------------------------- */

/* Ops whose results a recomputing loop stacks rather than runs again: the
 * fused vocabulary ops cost O(rows x vocabulary x width) for results of
 * O(rows x width), which their gradients read (the mixture and its lse). */
static int stacked_when_recomputing(IrOp op) { return op == IR_VOCAB_ATTENTION || op == IR_VOCAB_ATTENTION_TOPK; }

/* The source values a loop stacks for its backward, in order. */
static void tape_values(AdCtx *c, const IrNode *loop, VecU32 *out) {
  const IrGraph *g = c->src;
  const IrRegion *body = &g->regions.a[loop->body];
  out->n = 0;
  for (size_t k = 1; k < body->args.n; k++) vec_push(out, body->args.a[k]);
  for (size_t i = 0; i + 1 < body->nodes.n; i++) {
    const IrNode *n = ir_node(g, body->nodes.a[i]);
    if (c->mode == AD_LOOPS_SAVE || stacked_when_recomputing(n->op))
      for (uint32_t k = 0; k < n->n_out; k++) vec_push(out, n->out + k);
  }
}

static IrType stack_type(const IrType *t, int64_t slots) {
  IrType s = {t->dtype, {t->shape.rank + 1, {slots}}};
  for (int d = 0; d < t->shape.rank; d++) s.shape.dim[d + 1] = t->shape.dim[d];
  return s;
}

static void clone_region(AdCtx *c, uint32_t r);

/* A loop cloned with one more carried stack per tape value; each stores
 * its value at slot i in every iteration. */
static void clone_loop(AdCtx *c, const IrNode *n) {
  const IrGraph *g = c->src;
  const IrRegion *body = &g->regions.a[n->body];
  VecU32 tape = {0}, init = {0};
  tape_values(c, n, &tape);
  for (uint32_t k = 0; k < n->n_in; k++) vec_push(&init, ad_fwd(c, ir_in(g, n, k)));
  for (size_t t = 0; t < tape.n; t++) {
    IrType st = stack_type(ir_type(g, tape.a[t]), n->attr[0].i);
    vec_push(&init, fill(c, &st, 0.0));
  }
  uint32_t *args = pc_xmalloc((init.n + 1) * sizeof *args);
  PcError err;
  set_loc(c, n->loc);
  if (ir_loop_begin(&c->b, n->attr[0].i, (int)n->attr[1].i, init.a, (uint32_t)init.n, args, &err) == IR_NONE)
    PC_BUG("autodiff: %s", err.msg);
  Scope *s = scope_push(c);
  for (size_t k = 0; k < body->args.n; k++) s->fwd[body->args.a[k]] = args[k];
  clone_region(c, n->body);
  /* yields: the body's, then each stack with this iteration's value set */
  const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
  VecU32 yield = {0};
  for (uint32_t k = 0; k < y->n_in; k++) vec_push(&yield, ad_fwd(c, ir_in(g, y, k)));
  for (size_t t = 0; t < tape.n; t++) {
    uint32_t in[3] = {args[1 + n->n_in + t], args[0], ad_fwd(c, tape.a[t])};
    vec_push(&yield, ad_emit(c, IR_STACK_SET, in, 3, NULL));
  }
  scope_pop(c);
  set_loc(c, n->loc);
  uint32_t out = ir_loop_end(&c->b, yield.a, (uint32_t)yield.n, &err);
  if (out == IR_NONE) PC_BUG("autodiff: %s", err.msg);
  for (uint32_t k = 0; k < n->n_out; k++) c->scope->fwd[n->out + k] = out + k;
  free(args);
  vec_free(&tape);
  vec_free(&init);
  vec_free(&yield);
}

static void clone_node(AdCtx *c, const IrNode *n) {
  const IrGraph *g = c->src;
  if (n->op == IR_LOOP) {
    clone_loop(c, n);
    return;
  }
  if (n->op == IR_YIELD) return; /* the loop adds its own */
  uint32_t in[IR_MAX_FIXED_RESULTS + 8];
  PC_ASSERT(n->n_in <= IR_MAX_FIXED_RESULTS + 8); /* loops are cloned above; other ops have few operands */
  for (uint32_t k = 0; k < n->n_in; k++) in[k] = ad_fwd(c, ir_in(g, n, k));
  set_loc(c, n->loc);
  PcError err;
  if (n->op == IR_OUTPUT) {
    if (ir_output(&c->b, ir_str(g, n->attr[0].s), in[0], &err) < 0) PC_BUG("autodiff: %s", err.msg);
    return;
  }
  IrAttr attr[IR_MAX_ATTRS];
  memcpy(attr, n->attr, sizeof attr);
  for (int k = 0; k < IR_MAX_ATTRS; k++) /* strings live in the new graph */
    if (ir_op_info(n->op)->attr[k].kind == IR_ATTR_STR && attr[k].s != IR_NONE)
      attr[k].s = ir_intern(c->dst, ir_str(g, attr[k].s));
  uint32_t v = ir_build(&c->b, n->op, in, n->n_in, attr, n->op == IR_FILL ? ir_type(g, n->out) : NULL, &err);
  if (v == IR_NONE) PC_BUG("autodiff: %s", err.msg);
  for (uint32_t k = 0; k < n->n_out; k++) c->scope->fwd[n->out + k] = v + k;
}

static void clone_region(AdCtx *c, uint32_t r) {
  const IrRegion *reg = &c->src->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) clone_node(c, ir_node(c->src, reg->nodes.a[i]));
}

/* ---- the backward pass ---------------------------------------------------- */

static int backward_region(AdCtx *c, uint32_t r);

/* Source values from outside the loop that its body (at any depth) uses
 * and that vary: the backward loop accumulates their gradients. */
static void captured(AdCtx *c, const IrNode *loop, uint32_t r, VecU32 *out) {
  const IrGraph *g = c->src;
  const IrRegion *reg = &g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(g, reg->nodes.a[i]);
    for (uint32_t k = 0; k < n->n_in; k++) {
      uint32_t v = ir_in(g, n, k);
      if (!c->varied[v] || ir_visible_from(g, loop->body, g->values.a[v].region)) continue;
      int seen = 0;
      for (size_t j = 0; j < out->n && !seen; j++) seen = out->a[j] == v;
      if (!seen) vec_push(out, v);
    }
    if (n->body != IR_NONE) captured(c, loop, n->body, out);
  }
}

/* The forward values of one iteration inside the backward loop's body. */
static void rebuild_iteration(AdCtx *c, const IrNode *n, uint32_t dst_loop_first_out, uint32_t index) {
  const IrGraph *g = c->src;
  const IrRegion *body = &g->regions.a[n->body];
  VecU32 tape = {0};
  tape_values(c, n, &tape);
  c->scope->fwd[body->args.a[0]] = index;
  for (size_t t = 0; t < tape.n; t++) { /* stacks follow the loop's own results */
    uint32_t in[2] = {dst_loop_first_out + n->n_out + (uint32_t)t, index};
    c->scope->fwd[tape.a[t]] = ad_emit(c, IR_STACK_GET, in, 2, NULL);
  }
  if (c->mode == AD_LOOPS_SAVE) { /* nested loops are re-run for their own stacks */
    for (size_t i = 0; i + 1 < body->nodes.n; i++) {
      const IrNode *m = ir_node(g, body->nodes.a[i]);
      if (m->op == IR_LOOP) clone_loop(c, m);
    }
  } else { /* the body again, but for what came off the stacks */
    for (size_t i = 0; i < body->nodes.n; i++) {
      const IrNode *m = ir_node(g, body->nodes.a[i]);
      if (!stacked_when_recomputing(m->op)) clone_node(c, m);
    }
  }
  vec_free(&tape);
}

static int backward_loop(AdCtx *c, const IrNode *n, const uint32_t *dy) {
  const IrGraph *g = c->src;
  const IrRegion *body = &g->regions.a[n->body];
  const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
  uint32_t dst_out = ad_fwd(c, n->out);
  VecU32 carried = {0}, caps = {0}, init = {0}, yield = {0};
  for (uint32_t k = 0; k < n->n_in; k++)
    if (c->varied[body->args.a[k + 1]]) vec_push(&carried, k);
  captured(c, n, n->body, &caps);
  if (!carried.n && !caps.n) return 0;
  for (size_t j = 0; j < carried.n; j++) {
    uint32_t k = carried.a[j];
    vec_push(&init, dy[k] != IR_NONE ? dy[k] : ad_zeros(c, n->out + k));
  }
  /* A captured value's accumulator starts from its gradient so far, and
   * the body adds into it: one buffer of that size, not two. */
  for (size_t j = 0; j < caps.n; j++) vec_push(&init, ad_take(c, caps.a[j]));
  uint32_t *args = pc_xmalloc((init.n + 1) * sizeof *args);
  PcError err;
  set_loc(c, n->loc);
  if (ir_loop_begin(&c->b, n->attr[0].i, !n->attr[1].i, init.a, (uint32_t)init.n, args, &err) == IR_NONE)
    PC_BUG("autodiff: %s", err.msg);
  Scope *s = scope_push(c);
  rebuild_iteration(c, n, dst_out, args[0]);
  /* the carried gradients flow into what the body yielded */
  for (size_t j = 0; j < carried.n; j++) ad_acc(c, ir_in(g, y, carried.a[j]), args[1 + j]);
  for (size_t j = 0; j < caps.n; j++) s->grad[caps.a[j]] = args[1 + carried.n + j];
  int rc = backward_region(c, n->body);
  for (size_t j = 0; !rc && j < carried.n; j++) {
    uint32_t arg = body->args.a[carried.a[j] + 1];
    vec_push(&yield, s->grad[arg] != IR_NONE ? s->grad[arg] : ad_zeros(c, arg));
  }
  for (size_t j = 0; !rc && j < caps.n; j++) vec_push(&yield, s->grad[caps.a[j]]);
  scope_pop(c);
  if (!rc) {
    set_loc(c, n->loc);
    uint32_t out = ir_loop_end(&c->b, yield.a, (uint32_t)yield.n, &err);
    if (out == IR_NONE) PC_BUG("autodiff: %s", err.msg);
    for (size_t j = 0; j < carried.n; j++) ad_acc(c, ir_in(g, n, carried.a[j]), out + (uint32_t)j);
    for (size_t j = 0; j < caps.n; j++) ad_acc(c, caps.a[j], out + (uint32_t)(carried.n + j));
  }
  free(args);
  vec_free(&carried);
  vec_free(&caps);
  vec_free(&init);
  vec_free(&yield);
  return rc;
}

static int backward_node(AdCtx *c, const IrNode *n) {
  const IrGraph *g = c->src;
  uint32_t dy[IR_MAX_FIXED_RESULTS], *dyv = dy;
  int any = 0;
  if (n->n_out > IR_MAX_FIXED_RESULTS) dyv = pc_xmalloc(n->n_out * sizeof *dyv);
  for (uint32_t k = 0; k < n->n_out; k++) any |= (dyv[k] = c->scope->grad[n->out + k]) != IR_NONE;
  int rc = 0;
  if (any) {
    int varied_in = 0;
    for (uint32_t k = 0; k < n->n_in; k++) varied_in |= c->varied[ir_in(g, n, k)];
    set_loc(c, n->loc);
    if (n->op == IR_LOOP) {
      rc = backward_loop(c, n, dyv);
    } else if (varied_in) {
      AdRule rule = ad_rule(n->op);
      if (!rule)
        rc = pc_errorf(c->err, "%s%s%s: autodiff has no gradient rule for this op", n->loc != IR_NONE ? ir_str(g, n->loc) : "",
                       n->loc != IR_NONE ? ": " : "", ir_op_info(n->op)->name);
      else
        rc = rule(c, n, dyv, c->err);
    }
  }
  if (dyv != dy) free(dyv);
  return rc;
}

static int backward_region(AdCtx *c, uint32_t r) {
  const IrRegion *reg = &c->src->regions.a[r];
  for (size_t i = reg->nodes.n; i-- > 0;)
    if (backward_node(c, ir_node(c->src, reg->nodes.a[i])) < 0) return -1;
  return 0;
}

/* ---- the pass ------------------------------------------------------------- */

static uint32_t find_output(const IrGraph *g, const char *name) {
  const IrRegion *top = &g->regions.a[0];
  for (size_t i = 0; i < top->nodes.n; i++) {
    const IrNode *n = ir_node(g, top->nodes.a[i]);
    if (n->op == IR_OUTPUT && !strcmp(ir_str(g, n->attr[0].s), name)) return ir_in(g, n, 0);
  }
  return IR_NONE;
}

int ir_autodiff(const IrGraph *fwd, const char *loss_name, AdLoopMode mode, IrGraph **out, PcError *err) {
  *out = NULL;
  uint32_t loss = find_output(fwd, loss_name);
  if (loss == IR_NONE) return pc_errorf(err, "autodiff: the graph has no output '%s'", loss_name);
  const IrType *lt = ir_type(fwd, loss);
  if (lt->dtype != PC_F32 || lt->shape.rank != 0) return pc_errorf(err, "autodiff: output '%s' is not a scalar", loss_name);

  AdCtx c = {.src = fwd, .dst = ir_graph_new(fwd->name), .mode = mode, .err = err};
  c.b = ir_builder(c.dst);
  c.varied = pc_xcalloc(fwd->values.n + 1, 1);
  for (size_t i = 0; i < fwd->syms.n; i++) ir_sym(c.dst, fwd->syms.a[i]);
  scope_push(&c);
  for (size_t i = 0; i < fwd->params.n; i++) {
    const IrNode *n = ir_node(fwd, fwd->params.a[i]);
    set_loc(&c, n->loc);
    uint32_t v = ir_param(&c.b, ir_str(fwd, fwd->values.a[n->out].name), ir_type(fwd, n->out), ir_str(fwd, n->attr[0].s),
                          n->attr[1].f, n->attr[2].s == IR_NONE ? NULL : ir_str(fwd, n->attr[2].s), err);
    PC_ASSERT(v != IR_NONE);
    c.scope->fwd[n->out] = v;
    c.varied[n->out] = 1;
  }
  for (size_t i = 0; i < fwd->inputs.n; i++) {
    const IrNode *n = ir_node(fwd, fwd->inputs.a[i]);
    c.scope->fwd[n->out] = ir_input(&c.b, ir_str(fwd, fwd->values.a[n->out].name), ir_type(fwd, n->out), err);
  }
  while (vary_region(&c, 0)) {
  }
  clone_region(&c, 0);

  ir_set_loc(&c.b, NULL);
  int rc = 0;
  if (c.varied[loss]) {
    c.scope->grad[loss] = fill(&c, lt, 1.0);
    rc = backward_region(&c, 0);
  }
  for (size_t i = 0; !rc && i < fwd->params.n; i++) {
    uint32_t p = ir_node(fwd, fwd->params.a[i])->out, g = c.scope->grad[p];
    char name[512];
    snprintf(name, sizeof name, "grad:%s", ir_str(fwd, fwd->values.a[p].name));
    ir_set_loc(&c.b, NULL);
    if (g == IR_NONE) g = ad_zeros(&c, p); /* the loss does not depend on it */
    rc = ir_output(&c.b, name, g, err);
  }
  scope_pop(&c);
  free(c.varied);
  if (!rc) rc = ir_verify(c.dst, err);
  if (rc) {
    ir_graph_free(c.dst);
    return -1;
  }
  *out = c.dst;
  return 0;
}
