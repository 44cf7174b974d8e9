/* The verifier: every operand is defined before its use and visible from
 * the use's region; arities and attributes follow ops.def; every recorded
 * type is what shape inference gives; loops are well formed. Errors read
 * "LOC: op: message". Run between passes in debug builds. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

typedef struct {
  const IrGraph *g;
  unsigned char *defined; /* per value */
  PcError *err;
} Verifier;

static int node_error(Verifier *vf, const IrNode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int node_error(Verifier *vf, const IrNode *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pc_verrorf(vf->err, fmt, ap);
  va_end(ap);
  if (n->loc != IR_NONE) return pc_error_prefix(vf->err, "%s: %s", ir_str(vf->g, n->loc), ir_op_info(n->op)->name);
  return pc_error_prefix(vf->err, "%s", ir_op_info(n->op)->name);
}

static int check_types(Verifier *vf, const IrNode *n) {
  const IrGraph *g = vf->g;
  const IrOpInfo *info = ir_op_info(n->op);
  if (info->n_out == 0) return 0;
  IrType *want = pc_xmalloc(pc_mul_size(n->n_out, sizeof *want));
  int rc = ir_infer(g, n, want, vf->err);
  if (rc < 0) {
    free(want);
    return node_error(vf, n, "%s", vf->err->msg);
  }
  for (uint32_t i = 0; i < n->n_out && !rc; i++) {
    if (ir_type_eq(&want[i], ir_type(g, n->out + i))) continue;
    char a[128], b[128];
    rc = node_error(vf, n, "result %u is recorded as %s but infers as %s", i,
                    ir_type_str(g, ir_type(g, n->out + i), a, sizeof a), ir_type_str(g, &want[i], b, sizeof b));
  }
  free(want);
  return rc;
}

static int verify_region(Verifier *vf, uint32_t r);

static int verify_node(Verifier *vf, uint32_t id, uint32_t r, int last) {
  const IrGraph *g = vf->g;
  const IrNode *n = ir_node(g, id);
  const IrOpInfo *info = ir_op_info(n->op);
  if (info->n_in >= 0 && n->n_in != (uint32_t)info->n_in)
    return node_error(vf, n, "has %u operands, needs %d", n->n_in, info->n_in);
  if (info->n_out >= 0 && n->n_out != (uint32_t)info->n_out)
    return node_error(vf, n, "has %u results, needs %d", n->n_out, info->n_out);
  for (uint32_t i = 0; i < n->n_in; i++) {
    uint32_t v = ir_in(g, n, i);
    if (v >= g->values.n) return node_error(vf, n, "operand %u is not a value", i);
    if (!vf->defined[v] || !ir_visible_from(g, g->values.a[v].region, r))
      return node_error(vf, n, "operand %u is used where it is not defined", i);
  }
  for (int k = 0; k < IR_MAX_ATTRS && info->attr[k].name; k++)
    if (info->attr[k].kind == IR_ATTR_STR && n->attr[k].s != IR_NONE && n->attr[k].s >= g->strings.n)
      return node_error(vf, n, "attribute %s is not a string", info->attr[k].name);
  if (n->op == IR_YIELD && (r == 0 || !last)) return node_error(vf, n, "must end a loop body");
  if (n->op == IR_OUTPUT && r != 0) return node_error(vf, n, "must be at the top level of the graph");
  if ((n->op == IR_PARAM || n->op == IR_INPUT)) return node_error(vf, n, "must be declared at the top of the graph");
  if (n->op == IR_LOOP) {
    if (n->attr[0].i < 0) return node_error(vf, n, "trip count %lld is negative", (long long)n->attr[0].i);
    if (n->attr[1].i != 0 && n->attr[1].i != 1) return node_error(vf, n, "reverse must be 0 or 1");
    const IrRegion *body = n->body < g->regions.n ? &g->regions.a[n->body] : NULL;
    if (!body || body->owner != id || body->parent != r) return node_error(vf, n, "has no body region");
    if (body->args.n != n->n_in + 1) return node_error(vf, n, "body takes %zu arguments, needs %u", body->args.n, n->n_in + 1);
    const IrType *index = ir_type(g, body->args.a[0]);
    if (index->dtype != PC_I32 || index->shape.rank != 0) return node_error(vf, n, "the iteration index must be i32[]");
    for (uint32_t i = 0; i < n->n_in; i++)
      if (!ir_type_eq(ir_type(g, body->args.a[i + 1]), ir_type(g, ir_in(g, n, i))))
        return node_error(vf, n, "body argument %u differs in type from carried value %u", i + 1, i);
    if (!body->nodes.n || ir_node(g, body->nodes.a[body->nodes.n - 1])->op != IR_YIELD)
      return node_error(vf, n, "body does not end with yield");
    const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
    if (y->n_in != n->n_in) return node_error(vf, n, "body yields %u values, carries %u", y->n_in, n->n_in);
    for (size_t i = 0; i < body->args.n; i++) vf->defined[body->args.a[i]] = 1;
    if (verify_region(vf, n->body) < 0) return -1;
    for (uint32_t i = 0; i < n->n_in; i++)
      if (!ir_type_eq(ir_type(g, ir_in(g, y, i)), ir_type(g, ir_in(g, n, i))))
        return node_error(vf, n, "body yields value %u with a type other than it carries", i);
  }
  if (check_types(vf, n) < 0) return -1;
  for (uint32_t i = 0; i < n->n_out; i++) vf->defined[n->out + i] = 1;
  return 0;
}

static int verify_region(Verifier *vf, uint32_t r) {
  const IrRegion *reg = &vf->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++)
    if (verify_node(vf, reg->nodes.a[i], r, i + 1 == reg->nodes.n) < 0) return -1;
  return 0;
}

static int verify_sources(Verifier *vf, const VecU32 *list, IrOp op) {
  const IrGraph *g = vf->g;
  for (size_t i = 0; i < list->n; i++) {
    const IrNode *n = ir_node(g, list->a[i]);
    if (n->op != op || n->n_out != 1) return node_error(vf, n, "misplaced in the graph's %s list", ir_op_info(op)->name);
    uint32_t name = g->values.a[n->out].name;
    if (name == IR_NONE) return node_error(vf, n, "has no name");
    for (size_t j = 0; j < i; j++)
      if (g->values.a[ir_node(g, list->a[j])->out].name == name)
        return node_error(vf, n, "'%s' is declared twice", ir_str(g, name));
    vf->defined[n->out] = 1;
  }
  return 0;
}

int ir_verify(const IrGraph *g, PcError *err) {
  Verifier vf = {g, pc_xcalloc(g->values.n + 1, 1), err};
  int rc = verify_sources(&vf, &g->params, IR_PARAM);
  if (!rc) rc = verify_sources(&vf, &g->inputs, IR_INPUT);
  if (!rc) rc = verify_region(&vf, 0);
  free(vf.defined);
  return rc;
}
