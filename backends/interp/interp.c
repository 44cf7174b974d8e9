/* Walks the graph region by region. Each value's tensor is freed after its
 * last use in its own region; a use inside a loop body of a value from an
 * enclosing region counts as a use by the loop node, so it stays alive for
 * every iteration. */
#include "backends/interp/interp.h"

#include <stdlib.h>
#include <string.h>

#include "backends/interp/kernels.h"

typedef struct {
  const IrGraph *g;
  int64_t *sym;            /* bound symbolic dims, -1 = unbound */
  Tensor **env;            /* per value */
  unsigned char *borrowed; /* env[v] belongs to the caller (params, inputs) */
  int32_t *last_use;       /* per value: position of its last use in its region */
  PcError *err;
} Interp;

#define KEEP INT32_MAX /* never freed by the walker (graph outputs) */

/* ---- liveness ------------------------------------------------------------ */

typedef struct UseCtx {
  uint32_t region;
  int32_t pos;
  const struct UseCtx *up;
} UseCtx;

static void note_use(Interp *ip, uint32_t v, const UseCtx *ctx) {
  uint32_t home = ip->g->values.a[v].region;
  while (ctx->region != home && ctx->up) ctx = ctx->up;
  if (ip->last_use[v] < ctx->pos) ip->last_use[v] = ctx->pos;
}

static void compute_liveness(Interp *ip, uint32_t r, const UseCtx *up) {
  const IrRegion *reg = &ip->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    UseCtx ctx = {r, (int32_t)i, up};
    const IrNode *n = ir_node(ip->g, reg->nodes.a[i]);
    for (uint32_t k = 0; k < n->n_in; k++) note_use(ip, ir_in(ip->g, n, k), &ctx);
    if (n->body != IR_NONE) compute_liveness(ip, n->body, &ctx);
    if (n->op == IR_OUTPUT) ip->last_use[ir_in(ip->g, n, 0)] = KEEP;
  }
}

static void release(Interp *ip, uint32_t v) {
  if (!ip->borrowed[v]) tensor_free(ip->env[v]);
  ip->env[v] = NULL;
  ip->borrowed[v] = 0;
}

/* Frees the values of `region` that loop body r (at any depth) reads and
 * whose last use is therefore the loop node at pos. */
static void release_captured(Interp *ip, uint32_t r, int32_t pos, uint32_t region) {
  const IrRegion *reg = &ip->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(ip->g, reg->nodes.a[i]);
    for (uint32_t k = 0; k < n->n_in; k++) {
      uint32_t v = ir_in(ip->g, n, k);
      if (ip->env[v] && ip->g->values.a[v].region == region && ip->last_use[v] == pos) release(ip, v);
    }
    if (n->body != IR_NONE) release_captured(ip, n->body, pos, region);
  }
}

/* Whether loop body r (at any depth) reads v. */
static int body_reads(const IrGraph *g, uint32_t r, uint32_t v) {
  const IrRegion *reg = &g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(g, reg->nodes.a[i]);
    for (uint32_t k = 0; k < n->n_in; k++)
      if (ir_in(g, n, k) == v) return 1;
    if (n->body != IR_NONE && body_reads(g, n->body, v)) return 1;
  }
  return 0;
}

/* Frees the operands (and results) of the node at pos whose last use it was,
 * and for a loop the values its body captured. */
static void release_dead(Interp *ip, const IrNode *n, int32_t pos, uint32_t region) {
  for (uint32_t k = 0; k < n->n_in; k++) {
    uint32_t v = ir_in(ip->g, n, k);
    if (ip->env[v] && ip->g->values.a[v].region == region && ip->last_use[v] == pos) release(ip, v);
  }
  if (n->body != IR_NONE) release_captured(ip, n->body, pos, region);
  for (uint32_t k = 0; k < n->n_out; k++) /* results nothing uses */
    if (ip->env[n->out + k] && ip->last_use[n->out + k] < 0) release(ip, n->out + k);
}

/* ---- execution ----------------------------------------------------------- */

static Tensor *alloc_result(Interp *ip, const IrType *t) {
  int64_t dim[PC_MAX_RANK];
  for (int d = 0; d < t->shape.rank; d++) {
    int64_t x = t->shape.dim[d];
    dim[d] = IR_IS_SYM(x) ? ip->sym[IR_SYM_INDEX(x)] : x;
    PC_ASSERT(dim[d] >= 0);
  }
  Tensor *out = tensor_new(t->dtype, t->shape.rank, dim);
  if (!out) {
    char buf[128];
    pc_errorf(ip->err, "out of memory for a %s tensor", ir_type_str(ip->g, t, buf, sizeof buf));
  }
  return out;
}

static Tensor *clone(Tensor *t) {
  Tensor *c = tensor_new(t->dtype, t->rank, t->dim);
  if (c) memcpy(c->data, t->data, tensor_bytes(t));
  return c;
}

static int run_region(Interp *ip, uint32_t r);

static int steal_dying(Interp *ip, const IrNode *n, uint32_t k, int32_t pos, uint32_t region);

static int run_loop(Interp *ip, const IrNode *n, int32_t pos, uint32_t region) {
  const IrGraph *g = ip->g;
  const IrRegion *body = &g->regions.a[n->body];
  uint32_t n_carried = n->n_in;
  Tensor **carried = pc_xcalloc(n_carried + 1, sizeof *carried);
  int rc = 0;
  for (uint32_t k = 0; k < n_carried && !rc; k++) {
    uint32_t v = ir_in(g, n, k);
    if (steal_dying(ip, n, k, pos, region) && !body_reads(g, n->body, v)) { /* its last use: carry it as it is */
      carried[k] = ip->env[v];
      ip->env[v] = NULL;
    } else if (!(carried[k] = clone(ip->env[v]))) {
      rc = pc_errorf(ip->err, "out of memory in a loop");
    }
  }
  int64_t trip = n->attr[0].i;
  for (int64_t it = 0; it < trip && !rc; it++) {
    int64_t none[1] = {0};
    Tensor *index = tensor_new(PC_I32, 0, none);
    tensor_i32(index)[0] = (int32_t)(n->attr[1].i ? trip - 1 - it : it);
    ip->env[body->args.a[0]] = index;
    for (uint32_t k = 0; k < n_carried; k++) { /* the body's arguments own them now */
      ip->env[body->args.a[k + 1]] = carried[k];
      carried[k] = NULL;
    }
    /* A block argument nothing uses dies at once. */
    for (size_t k = 0; k < body->args.n; k++)
      if (ip->last_use[body->args.a[k]] < 0) release(ip, body->args.a[k]);
    rc = run_region(ip, n->body);
    if (rc) break;
    /* The yield left its operands alive: they become the next carried values. */
    const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
    for (uint32_t k = 0; k < n_carried; k++) {
      uint32_t v = ir_in(g, y, k);
      int local = g->values.a[v].region == n->body;
      Tensor *t = ip->env[v];
      /* the same value yielded twice, or one from outside the body: copy */
      int taken = 0;
      for (uint32_t j = 0; j < k; j++) taken |= ir_in(g, y, j) == v;
      carried[k] = local && !taken ? t : clone(t);
    }
    for (uint32_t k = 0; k < n_carried; k++) {
      uint32_t v = ir_in(g, y, k);
      if (g->values.a[v].region == n->body) ip->env[v] = NULL;
    }
  }
  for (uint32_t k = 0; k < n_carried; k++) {
    if (rc)
      tensor_free(carried[k]);
    else
      ip->env[n->out + k] = carried[k];
  }
  free(carried);
  return rc;
}

/* Whether operand k of n dies at this node and may be taken over. */
static int steal_dying(Interp *ip, const IrNode *n, uint32_t k, int32_t pos, uint32_t region) {
  uint32_t v = ir_in(ip->g, n, k);
  if (ip->borrowed[v] || ip->g->values.a[v].region != region || ip->last_use[v] != pos) return 0;
  for (uint32_t j = 0; j < n->n_in; j++)
    if (j != k && ir_in(ip->g, n, j) == v) return 0;
  return 1;
}

/* An operand of an elementwise binary op that its result may overwrite:
 * one of the result's shape that dies here (the kernels read each element
 * before writing it); -1 if none. */
static int in_place_operand(Interp *ip, const IrNode *n, int32_t pos, uint32_t region) {
  if (n->op != IR_ADD && n->op != IR_SUB && n->op != IR_MUL) return -1;
  for (uint32_t k = 0; k < 2; k++)
    if (ir_type_eq(ir_type(ip->g, ir_in(ip->g, n, k)), ir_type(ip->g, n->out)) && steal_dying(ip, n, k, pos, region))
      return (int)k;
  return -1;
}

static int run_node(Interp *ip, uint32_t id, int32_t pos, uint32_t region) {
  const IrGraph *g = ip->g;
  const IrNode *n = ir_node(g, id);
  switch (n->op) {
  case IR_OUTPUT:
  case IR_YIELD: return 0;
  case IR_LOOP: return run_loop(ip, n, pos, region);
  default: break;
  }
  InterpKernel k = interp_kernel(n->op);
  if (!k) PC_BUG("interp has no kernel for %s", ir_op_info(n->op)->name);
  Tensor *in[8], *out[IR_MAX_FIXED_RESULTS] = {0};
  PC_ASSERT(n->n_in <= 8 && n->n_out <= IR_MAX_FIXED_RESULTS);
  for (uint32_t i = 0; i < n->n_in; i++) {
    in[i] = ip->env[ir_in(g, n, i)];
    PC_ASSERT(in[i]);
  }
  int rc = 0;
  for (uint32_t i = 0; i < n->n_out && !rc; i++) {
    int from = ir_accumulates(n->op, i);
    if (from < 0 && i == 0) from = in_place_operand(ip, n, pos, region);
    if (from >= 0 && steal_dying(ip, n, (uint32_t)from, pos, region)) {
      out[i] = in[from]; /* its last use: the result is written over it */
      ip->env[ir_in(g, n, (uint32_t)from)] = NULL;
    } else if (ir_accumulates(n->op, i) >= 0) {
      if (!(out[i] = clone(in[from]))) rc = pc_errorf(ip->err, "out of memory");
    } else if (!(out[i] = alloc_result(ip, ir_type(g, n->out + i)))) {
      rc = -1;
    }
  }
  if (!rc && k(n, in, out, ip->err) < 0) {
    rc = -1;
    if (n->loc != IR_NONE)
      pc_error_prefix(ip->err, "%s: %s", ir_str(g, n->loc), ir_op_info(n->op)->name);
    else
      pc_error_prefix(ip->err, "%s", ir_op_info(n->op)->name);
  }
  for (uint32_t i = 0; i < n->n_out; i++) {
    if (rc)
      tensor_free(out[i]);
    else
      ip->env[n->out + i] = out[i];
  }
  return rc;
}

static int run_region(Interp *ip, uint32_t r) {
  const IrRegion *reg = &ip->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(ip->g, reg->nodes.a[i]);
    if (run_node(ip, reg->nodes.a[i], (int32_t)i, r) < 0) return -1;
    if (n->op == IR_YIELD) break; /* its operands are handed to the loop */
    release_dead(ip, n, (int32_t)i, r);
  }
  return 0;
}

/* ---- binding inputs -------------------------------------------------------- */

static int bind_input(Interp *ip, uint32_t v, const char *name, Tensor *t) {
  const IrType *want = ir_type(ip->g, v);
  char a[128], b[96];
  if (t->dtype != want->dtype || t->rank != want->shape.rank)
    return pc_errorf(ip->err, "input '%s': expected %s, got %s%s", name, ir_type_str(ip->g, want, a, sizeof a),
                     pc_dtype_name(t->dtype), tensor_shape_str(t, b, sizeof b));
  for (int d = 0; d < t->rank; d++) {
    int64_t x = want->shape.dim[d];
    int64_t *bound = IR_IS_SYM(x) ? &ip->sym[IR_SYM_INDEX(x)] : NULL;
    if (bound && *bound < 0) *bound = t->dim[d];
    if ((bound ? *bound : x) != t->dim[d])
      return pc_errorf(ip->err, "input '%s': expected %s, got %s (symbolic dims bound earlier must agree)", name,
                       ir_type_str(ip->g, want, a, sizeof a), tensor_shape_str(t, b, sizeof b));
  }
  ip->env[v] = t;
  ip->borrowed[v] = 1;
  return 0;
}

static int bind(Interp *ip, const Params *params, const NamedTensor *inputs, size_t n_inputs) {
  const IrGraph *g = ip->g;
  for (size_t i = 0; i < g->inputs.n; i++) {
    uint32_t v = ir_node(g, g->inputs.a[i])->out;
    const char *name = ir_str(g, g->values.a[v].name);
    size_t k = 0;
    while (k < n_inputs && strcmp(inputs[k].name, name)) k++;
    if (k == n_inputs) return pc_errorf(ip->err, "input '%s' was not given", name);
    if (bind_input(ip, v, name, inputs[k].tensor) < 0) return -1;
  }
  for (size_t i = 0; i < g->params.n; i++) {
    uint32_t v = ir_node(g, g->params.a[i])->out;
    const char *name = ir_str(g, g->values.a[v].name);
    int k = params_find(params, name);
    if (k < 0 || !params->value[k]) return pc_errorf(ip->err, "parameter '%s' has no value", name);
    Tensor *t = params->value[k];
    const IrType *want = ir_type(g, v);
    int64_t dim[PC_MAX_RANK];
    for (int d = 0; d < want->shape.rank; d++) dim[d] = want->shape.dim[d];
    Tensor shape = {.dtype = PC_F32, .rank = want->shape.rank};
    memcpy(shape.dim, dim, sizeof dim);
    if (!tensor_same_shape(t, &shape)) {
      char a[96], b[96];
      return pc_errorf(ip->err, "parameter '%s' is %s but the graph needs %s", name, tensor_shape_str(t, a, sizeof a),
                       tensor_shape_str(&shape, b, sizeof b));
    }
    ip->env[v] = t;
    ip->borrowed[v] = 1;
  }
  return 0;
}

int interp_run(const IrGraph *g, const Params *params, const NamedTensor *inputs, size_t n_inputs,
               NamedTensor *outputs, size_t max_outputs, size_t *n_out, PcError *err) {
  size_t nv = g->values.n + 1;
  Interp ip = {g, pc_xmalloc(sizeof(int64_t) * (g->syms.n + 1)), pc_xcalloc(nv, sizeof(Tensor *)),
               pc_xcalloc(nv, 1), pc_xmalloc(sizeof(int32_t) * nv), err};
  for (size_t i = 0; i < g->syms.n; i++) ip.sym[i] = -1;
  for (size_t i = 0; i < nv; i++) ip.last_use[i] = -1;
  compute_liveness(&ip, 0, NULL);
  *n_out = 0;
  int rc = bind(&ip, params, inputs, n_inputs);
  if (!rc) rc = run_region(&ip, 0);
  if (!rc) {
    const IrRegion *top = &g->regions.a[0];
    for (size_t i = 0; i < top->nodes.n; i++) {
      const IrNode *n = ir_node(g, top->nodes.a[i]);
      if (n->op != IR_OUTPUT) continue;
      if (*n_out == max_outputs) PC_BUG("more outputs than room for them");
      uint32_t v = ir_in(g, n, 0);
      Tensor *t = NULL;
      for (size_t j = 0; j < i; j++) { /* the same value output twice */
        const IrNode *o = ir_node(g, top->nodes.a[j]);
        for (size_t k = 0; !t && k < *n_out; k++)
          if (o->op == IR_OUTPUT && ir_in(g, o, 0) == v && outputs[k].name == ir_str(g, o->attr[0].s))
            t = clone(outputs[k].tensor);
      }
      if (!t && ip.borrowed[v]) t = clone(ip.env[v]);
      if (!t) {
        t = ip.env[v]; /* handed to the caller */
        ip.env[v] = NULL;
      }
      outputs[(*n_out)++] = (NamedTensor){ir_str(g, n->attr[0].s), t};
    }
  }
  for (size_t v = 0; v < g->values.n; v++)
    if (ip.env[v]) release(&ip, (uint32_t)v);
  free(ip.sym);
  free(ip.env);
  free(ip.borrowed);
  free(ip.last_use);
  return rc;
}
