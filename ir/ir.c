/* Graph construction, interning and small queries. */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

static const IrOpInfo op_table[IR_NUM_OPS] = {
#define A(n, k) {#n, IR_ATTR_##k},
#define OP(e, name, nin, nout, rule, attrs) [IR_##e] = {name, nin, nout, {attrs}},
#include "ir/ops.def"
#undef OP
#undef A
};

const IrOpInfo *ir_op_info(IrOp op) {
  PC_ASSERT(op < IR_NUM_OPS);
  return &op_table[op];
}

int ir_accumulates(IrOp op, uint32_t result) {
  switch (op) {
  case IR_STACK_SET:
  case IR_SLICE_GRAD:
  case IR_EMBEDDING_GRAD: return result == 0 ? 0 : -1;
  case IR_LINEAR_CROSS_ENTROPY_GRAD: return result == 1 ? 5 : -1;
  case IR_VOCAB_ATTENTION_GRAD:
  case IR_VOCAB_ATTENTION_TOPK_GRAD: return result == 1 ? 6 : result == 2 ? 7 : -1;
  case IR_VOCAB_ATTENTION_GRAD_TIED:
  case IR_VOCAB_ATTENTION_TOPK_GRAD_TIED: return result == 1 ? 6 : -1;
  default: return -1;
  }
}

int ir_op_from_name(const char *name, size_t len) {
  for (int i = 0; i < IR_NUM_OPS; i++)
    if (strlen(op_table[i].name) == len && !memcmp(op_table[i].name, name, len)) return i;
  return -1;
}

int ir_attr_index(IrOp op, const char *name, size_t len) {
  const IrOpInfo *info = ir_op_info(op);
  for (int k = 0; k < IR_MAX_ATTRS && info->attr[k].name; k++)
    if (strlen(info->attr[k].name) == len && !memcmp(info->attr[k].name, name, len)) return k;
  return -1;
}

IrGraph *ir_graph_new(const char *name) {
  IrGraph *g = pc_xcalloc(1, sizeof *g);
  g->name = pc_xstrdup(name);
  IrRegion top = {.owner = IR_NONE, .parent = IR_NONE};
  vec_push(&g->regions, top);
  return g;
}

void ir_graph_free(IrGraph *g) {
  if (!g) return;
  for (size_t i = 0; i < g->regions.n; i++) {
    vec_free(&g->regions.a[i].nodes);
    vec_free(&g->regions.a[i].args);
  }
  for (size_t i = 0; i < g->syms.n; i++) free(g->syms.a[i]);
  for (size_t i = 0; i < g->strings.n; i++) free(g->strings.a[i]);
  vec_free(&g->values);
  vec_free(&g->nodes);
  vec_free(&g->operands);
  vec_free(&g->regions);
  vec_free(&g->params);
  vec_free(&g->inputs);
  vec_free(&g->syms);
  vec_free(&g->strings);
  free(g->name);
  free(g);
}

uint32_t ir_intern_n(IrGraph *g, const char *s, size_t n) {
  /* Linear search: graphs hold a few hundred distinct strings at most. */
  for (size_t i = 0; i < g->strings.n; i++)
    if (strlen(g->strings.a[i]) == n && !memcmp(g->strings.a[i], s, n)) return (uint32_t)i;
  char *copy = pc_xmalloc(n + 1);
  memcpy(copy, s, n);
  copy[n] = 0;
  vec_push(&g->strings, copy);
  return (uint32_t)(g->strings.n - 1);
}

uint32_t ir_intern(IrGraph *g, const char *s) { return ir_intern_n(g, s, strlen(s)); }

uint32_t ir_sym(IrGraph *g, const char *name) {
  for (size_t i = 0; i < g->syms.n; i++)
    if (!strcmp(g->syms.a[i], name)) return (uint32_t)i;
  vec_push(&g->syms, pc_xstrdup(name));
  return (uint32_t)(g->syms.n - 1);
}

static uint32_t find_named(const IrGraph *g, const uint32_t *nodes, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++) {
    uint32_t v = g->nodes.a[nodes[i]].out;
    uint32_t s = g->values.a[v].name;
    if (s != IR_NONE && !strcmp(g->strings.a[s], name)) return v;
  }
  return IR_NONE;
}

uint32_t ir_find_param(const IrGraph *g, const char *name) {
  return find_named(g, g->params.a, g->params.n, name);
}

uint32_t ir_find_input(const IrGraph *g, const char *name) {
  return find_named(g, g->inputs.a, g->inputs.n, name);
}

char *ir_shape_str(const IrGraph *g, const IrShape *s, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->rank && k < n; i++) {
    const char *sep = i ? "," : "";
    if (IR_IS_SYM(s->dim[i]))
      k += (size_t)snprintf(buf + k, n - k, "%s%s", sep, g->syms.a[IR_SYM_INDEX(s->dim[i])]);
    else
      k += (size_t)snprintf(buf + k, n - k, "%s%lld", sep, (long long)s->dim[i]);
  }
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

char *ir_type_str(const IrGraph *g, const IrType *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s", pc_dtype_name(t->dtype));
  if (k < n) ir_shape_str(g, &t->shape, buf + k, n - k);
  return buf;
}

int ir_shape_eq(const IrShape *a, const IrShape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

int ir_type_eq(const IrType *a, const IrType *b) {
  return a->dtype == b->dtype && ir_shape_eq(&a->shape, &b->shape);
}

int ir_visible_from(const IrGraph *g, uint32_t value_region, uint32_t use_region) {
  for (uint32_t r = use_region; r != IR_NONE; r = g->regions.a[r].parent)
    if (r == value_region) return 1;
  return 0;
}

/* ---- building ---------------------------------------------------------- */

IrBuilder ir_builder(IrGraph *g) { return (IrBuilder){g, 0, IR_NONE}; }

void ir_set_loc(IrBuilder *b, const char *file_line) {
  b->loc = file_line ? ir_intern(b->g, file_line) : IR_NONE;
}

static uint32_t new_value(IrGraph *g, const IrType *t, uint32_t def, uint32_t region) {
  IrValueInfo v = {.type = *t, .def = def, .region = region, .name = IR_NONE};
  vec_push(&g->values, v);
  return (uint32_t)(g->values.n - 1);
}

/* Appends a node without results; results are added by the caller. */
static uint32_t new_node(IrBuilder *b, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr) {
  IrGraph *g = b->g;
  IrNode n = {.op = op, .n_in = n_in, .in = (uint32_t)g->operands.n, .out = IR_NONE,
              .loc = b->loc, .body = IR_NONE};
  for (uint32_t i = 0; i < n_in; i++) vec_push(&g->operands, in[i]);
  for (int k = 0; k < IR_MAX_ATTRS; k++) {
    n.attr[k] = attr ? attr[k] : (IrAttr){0};
    if (!attr && ir_op_info(op)->attr[k].kind == IR_ATTR_STR) n.attr[k].s = IR_NONE;
  }
  vec_push(&g->nodes, n);
  return (uint32_t)(g->nodes.n - 1);
}

static int located(IrBuilder *b, PcError *err, IrOp op) {
  if (b->loc != IR_NONE) return pc_error_prefix(err, "%s: %s", ir_str(b->g, b->loc), ir_op_info(op)->name);
  return pc_error_prefix(err, "%s", ir_op_info(op)->name);
}

uint32_t ir_build(IrBuilder *b, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr,
                  const IrType *given, PcError *err) {
  IrGraph *g = b->g;
  const IrOpInfo *info = ir_op_info(op);
  PC_ASSERT(info->n_out >= 1 && info->n_out <= IR_MAX_FIXED_RESULTS);
  if (info->n_in >= 0 && (uint32_t)info->n_in != n_in) {
    pc_errorf(err, "takes %d operands, got %u", info->n_in, n_in);
    located(b, err, op);
    return IR_NONE;
  }
  for (uint32_t i = 0; i < n_in; i++) PC_ASSERT(in[i] < g->values.n);
  uint32_t id = new_node(b, op, in, n_in, attr);
  IrNode *n = ir_node(g, id);
  IrType t[IR_MAX_FIXED_RESULTS];
  if (given) {
    PC_ASSERT(info->n_out == 1);
    t[0] = *given;
  } else if (ir_infer(g, n, t, err) < 0) {
    located(b, err, op);
    g->operands.n -= n_in;
    g->nodes.n--;
    return IR_NONE;
  }
  uint32_t first = new_value(g, &t[0], id, b->region);
  for (int i = 1; i < info->n_out; i++) new_value(g, &t[i], id, b->region);
  n = ir_node(g, id);
  n->out = first;
  n->n_out = (uint32_t)info->n_out;
  vec_push(&g->regions.a[b->region].nodes, id);
  return first;
}

static uint32_t build_source(IrBuilder *b, IrOp op, const char *name, const IrType *t, const IrAttr *attr) {
  IrGraph *g = b->g;
  uint32_t id = new_node(b, op, NULL, 0, attr);
  IrNode *n = ir_node(g, id);
  n->out = new_value(g, t, id, 0);
  n->n_out = 1;
  g->values.a[n->out].name = ir_intern(g, name);
  if (op == IR_PARAM)
    vec_push(&g->params, id);
  else
    vec_push(&g->inputs, id);
  return n->out;
}

uint32_t ir_param(IrBuilder *b, const char *name, const IrType *t, const char *init, double std,
                  const char *layout, PcError *err) {
  if (ir_find_param(b->g, name) != IR_NONE || ir_find_input(b->g, name) != IR_NONE) {
    pc_errorf(err, "parameter '%s' is declared twice", name);
    located(b, err, IR_PARAM);
    return IR_NONE;
  }
  IrAttr attr[IR_MAX_ATTRS] = {{.s = ir_intern(b->g, init)}, {.f = std},
                               {.s = layout && *layout ? ir_intern(b->g, layout) : IR_NONE}};
  return build_source(b, IR_PARAM, name, t, attr);
}

uint32_t ir_input(IrBuilder *b, const char *name, const IrType *t, PcError *err) {
  if (ir_find_param(b->g, name) != IR_NONE || ir_find_input(b->g, name) != IR_NONE) {
    pc_errorf(err, "input '%s' is declared twice", name);
    located(b, err, IR_INPUT);
    return IR_NONE;
  }
  return build_source(b, IR_INPUT, name, t, NULL);
}

int ir_build_sink(IrBuilder *b, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr) {
  PC_ASSERT(ir_op_info(op)->n_out == 0);
  uint32_t id = new_node(b, op, in, n_in, attr);
  vec_push(&b->g->regions.a[b->region].nodes, id);
  return 0;
}

int ir_output(IrBuilder *b, const char *name, uint32_t v, PcError *err) {
  IrRegion *top = &b->g->regions.a[0];
  for (size_t i = 0; i < top->nodes.n; i++) {
    IrNode *n = ir_node(b->g, top->nodes.a[i]);
    if (n->op == IR_OUTPUT && !strcmp(ir_str(b->g, n->attr[0].s), name)) {
      pc_errorf(err, "output '%s' is declared twice", name);
      return located(b, err, IR_OUTPUT);
    }
  }
  IrAttr attr[IR_MAX_ATTRS] = {{.s = ir_intern(b->g, name)}};
  return ir_build_sink(b, IR_OUTPUT, &v, 1, attr);
}

uint32_t ir_loop_begin(IrBuilder *b, int64_t trip, int reverse, const uint32_t *init, uint32_t n_carried,
                       uint32_t *body_args, PcError *err) {
  IrGraph *g = b->g;
  if (trip < 0) {
    pc_errorf(err, "trip count %lld is negative", (long long)trip);
    located(b, err, IR_LOOP);
    return IR_NONE;
  }
  IrAttr attr[IR_MAX_ATTRS] = {{.i = trip}, {.i = reverse ? 1 : 0}};
  uint32_t id = new_node(b, IR_LOOP, init, n_carried, attr);
  vec_push(&g->regions.a[b->region].nodes, id);
  IrRegion body = {.owner = id, .parent = b->region};
  vec_push(&g->regions, body);
  uint32_t r = (uint32_t)(g->regions.n - 1);
  ir_node(g, id)->body = r;
  IrType index = {.dtype = PC_I32, .shape = {0}};
  body_args[0] = new_value(g, &index, IR_NONE, r);
  vec_push(&g->regions.a[r].args, body_args[0]);
  for (uint32_t i = 0; i < n_carried; i++) {
    body_args[i + 1] = new_value(g, ir_type(g, init[i]), IR_NONE, r);
    vec_push(&g->regions.a[r].args, body_args[i + 1]);
  }
  b->region = r;
  return id;
}

uint32_t ir_loop_end(IrBuilder *b, const uint32_t *yield, uint32_t n, PcError *err) {
  IrGraph *g = b->g;
  uint32_t r = b->region;
  uint32_t id = g->regions.a[r].owner;
  PC_ASSERT(id != IR_NONE);
  IrNode *loop = ir_node(g, id);
  if (n != loop->n_in) {
    pc_errorf(err, "the body yields %u values but the loop carries %u", n, loop->n_in);
    located(b, err, IR_LOOP);
    return IR_NONE;
  }
  for (uint32_t i = 0; i < n; i++) {
    const IrType *want = ir_type(g, ir_in(g, loop, i)), *got = ir_type(g, yield[i]);
    if (!ir_type_eq(want, got)) {
      char a[128], c[128];
      pc_errorf(err, "carried value %u enters as %s but the body yields %s", i,
                ir_type_str(g, want, a, sizeof a), ir_type_str(g, got, c, sizeof c));
      located(b, err, IR_LOOP);
      return IR_NONE;
    }
  }
  ir_build_sink(b, IR_YIELD, yield, n, NULL);
  b->region = g->regions.a[r].parent;
  loop = ir_node(g, id);
  loop->out = (uint32_t)g->values.n;
  loop->n_out = n;
  for (uint32_t i = 0; i < n; i++) new_value(g, ir_type(g, ir_in(g, loop, i)), id, b->region);
  return loop->out;
}
