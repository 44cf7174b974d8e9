#include "compiler/params_from_graph.h"

#include "runtime/hf_import.h"

/* Whether some embedding op (at any depth) reads v as its table. */
static int is_table(const IrGraph *g, uint32_t v) {
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op == IR_EMBEDDING && ir_in(g, n, 0) == v) return 1;
  }
  return 0;
}

int pc_params_from_graph(const IrGraph *g, Params *out, PcError *err) {
  for (size_t i = 0; i < g->params.n; i++) {
    const IrNode *n = ir_node(g, g->params.a[i]);
    const IrType *t = ir_type(g, n->out);
    ParamSpec s = {.name = (char *)ir_str(g, g->values.a[n->out].name), .rank = t->shape.rank, .std = n->attr[1].f,
                   .embedding = is_table(g, n->out)};
    for (int d = 0; d < t->shape.rank; d++) {
      if (IR_IS_SYM(t->shape.dim[d])) return pc_errorf(err, "parameter '%s' has a symbolic dim", s.name);
      s.dim[d] = t->shape.dim[d];
    }
    const char *init = ir_str(g, n->attr[0].s);
    if (params_init_kind(init, &s.init) < 0) return pc_errorf(err, "parameter '%s': unknown init '%s'", s.name, init);
    if (n->attr[2].s != IR_NONE) {
      s.hf_layout = (char *)ir_str(g, n->attr[2].s);
      const char *why = hf_layout_check(&s);
      if (why)
        return pc_errorf(err, "%s: parameter '%s': layout '%s' does not fit: %s (layouts: %s)",
                         n->loc != IR_NONE ? ir_str(g, n->loc) : "?", s.name, s.hf_layout, why, hf_layout_names());
    }
    if (params_add(out, &s, err) < 0) return -1;
  }
  return 0;
}
