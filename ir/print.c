/* The textual form of the graph IR; parse.c reads exactly this back.
 *
 *   graph NAME [SYM, ...] {
 *     %name = param() {init="normal", std=0.02} : f32[96,32] @file.lua:12
 *     %ids = input() : i32[B,T]
 *     %3 = layernorm(%2, %w, %b) {eps=1e-05} : f32[B,T,32] @file.lua:20
 *     %7, %8 = loop(%5, %6) {trip=3} : f32[B,T,32], f32[] @file.lua:30 {
 *     ^(%9: i32[], %10: f32[B,T,32], %11: f32[]):
 *       ...
 *       yield(%a, %b)
 *     }
 *     output(%12) {name="logits"}
 *   }
 *
 * Values with a name (parameters, inputs) print as %name; the others are
 * numbered in order of definition. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/text.h"

typedef struct {
  const IrGraph *g;
  FILE *f;
  uint32_t *number; /* per value: print number, or IR_NONE while unseen */
  uint32_t next;
} Printer;

static void print_value(Printer *p, uint32_t v) {
  const IrValueInfo *vi = &p->g->values.a[v];
  if (vi->name != IR_NONE) {
    const char *s = ir_str(p->g, vi->name);
    fputc('%', p->f);
    if (ir_text_is_bare_word(s))
      fputs(s, p->f);
    else
      ir_text_print_quoted(p->f, s);
    return;
  }
  if (p->number[v] == IR_NONE) p->number[v] = p->next++;
  fprintf(p->f, "%%%u", p->number[v]);
}

static void print_type(Printer *p, const IrType *t) {
  char buf[160];
  fputs(ir_type_str(p->g, t, buf, sizeof buf), p->f);
}

static void print_attrs(Printer *p, const IrNode *n) {
  const IrOpInfo *info = ir_op_info(n->op);
  int first = 1;
  for (int k = 0; k < IR_MAX_ATTRS && info->attr[k].name; k++) {
    if (info->attr[k].kind == IR_ATTR_STR && n->attr[k].s == IR_NONE) continue; /* unset string */
    fprintf(p->f, "%s%s=", first ? " {" : ", ", info->attr[k].name);
    first = 0;
    switch (info->attr[k].kind) {
    case IR_ATTR_INT: fprintf(p->f, "%lld", (long long)n->attr[k].i); break;
    case IR_ATTR_FLOAT: ir_text_print_double(p->f, n->attr[k].f); break;
    case IR_ATTR_STR: ir_text_print_quoted(p->f, ir_str(p->g, n->attr[k].s)); break;
    case IR_ATTR_NONE: break;
    }
  }
  if (!first) fputc('}', p->f);
}

static void indent(Printer *p, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", p->f);
}

static void print_region(Printer *p, uint32_t r, int depth);

static void print_node(Printer *p, uint32_t id, int depth) {
  const IrGraph *g = p->g;
  const IrNode *n = ir_node(g, id);
  indent(p, depth);
  for (uint32_t i = 0; i < n->n_out; i++) {
    if (i) fputs(", ", p->f);
    print_value(p, n->out + i);
  }
  if (n->n_out) fputs(" = ", p->f);
  fprintf(p->f, "%s(", ir_op_info(n->op)->name);
  for (uint32_t i = 0; i < n->n_in; i++) {
    if (i) fputs(", ", p->f);
    print_value(p, ir_in(g, n, i));
  }
  fputc(')', p->f);
  print_attrs(p, n);
  if (n->n_out) {
    fputs(" : ", p->f);
    for (uint32_t i = 0; i < n->n_out; i++) {
      if (i) fputs(", ", p->f);
      print_type(p, ir_type(g, n->out + i));
    }
  }
  if (n->loc != IR_NONE) {
    fputs(" @", p->f);
    const char *loc = ir_str(g, n->loc);
    if (ir_text_is_bare_loc(loc))
      fputs(loc, p->f);
    else
      ir_text_print_quoted(p->f, loc);
  }
  if (n->body != IR_NONE) {
    fputs(" {\n", p->f);
    print_region(p, n->body, depth);
    indent(p, depth);
    fputc('}', p->f);
  }
  fputc('\n', p->f);
}

static void print_region(Printer *p, uint32_t r, int depth) {
  const IrRegion *reg = &p->g->regions.a[r];
  if (r != 0) {
    indent(p, depth);
    fputs("^(", p->f);
    for (size_t i = 0; i < reg->args.n; i++) {
      if (i) fputs(", ", p->f);
      print_value(p, reg->args.a[i]);
      fputs(": ", p->f);
      print_type(p, ir_type(p->g, reg->args.a[i]));
    }
    fputs("):\n", p->f);
  }
  for (size_t i = 0; i < reg->nodes.n; i++) print_node(p, reg->nodes.a[i], depth + 1);
}

void ir_print(const IrGraph *g, FILE *f) {
  Printer p = {g, f, pc_xmalloc(pc_mul_size(g->values.n + 1, sizeof(uint32_t))), 0};
  for (size_t i = 0; i < g->values.n; i++) p.number[i] = IR_NONE;
  fputs("graph ", f);
  if (ir_text_is_bare_word(g->name))
    fputs(g->name, f);
  else
    ir_text_print_quoted(f, g->name);
  fputs(" [", f);
  for (size_t i = 0; i < g->syms.n; i++) fprintf(f, "%s%s", i ? ", " : "", g->syms.a[i]);
  fputs("] {\n", f);
  for (size_t i = 0; i < g->params.n; i++) print_node(&p, g->params.a[i], 1);
  for (size_t i = 0; i < g->inputs.n; i++) print_node(&p, g->inputs.a[i], 1);
  print_region(&p, 0, 0);
  fputs("}\n", f);
  free(p.number);
}

char *ir_print_string(const IrGraph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) PC_BUG("open_memstream failed");
  ir_print(g, f);
  fclose(f);
  return buf;
}
