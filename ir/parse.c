/* Reads the textual IR written by print.c (see the grammar there). Nodes
 * are rebuilt through the builder, so the parser re-infers every type and
 * rejects a text whose declared types disagree with the inferred ones. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/text.h"
#include "runtime/base/strmap.h"

typedef struct {
  const char *src, *p, *name;
  PcError *err;
  IrGraph *g;
  IrBuilder b;
  StrMap values; /* value name -> value */
} Parser;


/* An error at `at` in the text, as "name:line:col: message". */
static int vfail_at(Parser *ps, const char *at, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  int line = 1;
  const char *line_start = ps->src;
  for (const char *c = ps->src; c < at; c++)
    if (*c == '\n') {
      line++;
      line_start = c + 1;
    }
  return pc_errorf(ps->err, "%s:%d:%d: %s", ps->name, line, (int)(at - line_start) + 1, msg);
}

static int fail_at(Parser *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(Parser *ps, const char *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail_at(ps, at, fmt, ap);
  va_end(ap);
  return -1;
}

/* An error at the current position. */
static int fail(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Parser *ps, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail_at(ps, ps->p, fmt, ap);
  va_end(ap);
  return -1;
}

static void skip_space(Parser *ps) {
  for (;;) {
    while (*ps->p && isspace((unsigned char)*ps->p)) ps->p++;
    if (*ps->p != '#') return;
    while (*ps->p && *ps->p != '\n') ps->p++; /* comment to end of line */
  }
}

static int peek(Parser *ps, char c) {
  skip_space(ps);
  return *ps->p == c;
}

static int accept(Parser *ps, char c) {
  if (!peek(ps, c)) return 0;
  ps->p++;
  return 1;
}

static int expect(Parser *ps, char c, const char *where) {
  if (accept(ps, c)) return 0;
  return fail(ps, "expected '%c' %s", c, where);
}

/* A bare word: its start and length; 0 length if none. */
static size_t word(Parser *ps, const char **start) {
  skip_space(ps);
  *start = ps->p;
  while (ir_text_word_char((unsigned char)*ps->p)) ps->p++;
  return (size_t)(ps->p - *start);
}

static int keyword(Parser *ps, const char *kw) {
  const char *save = ps->p, *w;
  size_t n = word(ps, &w);
  if (n == strlen(kw) && !memcmp(w, kw, n)) return 1;
  ps->p = save;
  return 0;
}

/* A quoted string, unescaped into a malloc'ed buffer. */
static char *quoted(Parser *ps) {
  skip_space(ps);
  if (*ps->p != '"') {
    fail(ps, "expected a quoted string");
    return NULL;
  }
  ps->p++;
  VEC(char) s = {0};
  while (*ps->p != '"') {
    char c = *ps->p;
    if (!c || c == '\n') {
      free(s.a);
      fail(ps, "unterminated string");
      return NULL;
    }
    ps->p++;
    if (c == '\\') {
      char e = *ps->p++;
      if (e == 'n') c = '\n';
      else if (e == 't') c = '\t';
      else if (e == '"' || e == '\\') c = e;
      else if (e == 'x' && isxdigit((unsigned char)ps->p[0]) && isxdigit((unsigned char)ps->p[1])) {
        char hex[3] = {ps->p[0], ps->p[1], 0};
        c = (char)strtol(hex, NULL, 16);
        ps->p += 2;
      } else {
        free(s.a);
        fail(ps, "bad escape in string");
        return NULL;
      }
    }
    vec_push(&s, c);
  }
  ps->p++;
  vec_push(&s, '\0');
  return s.a;
}

/* %name or %"quoted name": writes the name (malloc'ed) to *out. */
static int value_name(Parser *ps, char **out) {
  if (!accept(ps, '%')) return fail(ps, "expected a value (%%name)");
  if (*ps->p == '"') return (*out = quoted(ps)) ? 0 : -1;
  const char *w = ps->p;
  while (ir_text_word_char((unsigned char)*ps->p)) ps->p++;
  if (ps->p == w) return fail(ps, "expected a value name after '%%'");
  *out = strndup(w, (size_t)(ps->p - w));
  return 0;
}

static int is_number(const char *s) {
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

static int use_value(Parser *ps, uint32_t *v) {
  char *name;
  skip_space(ps);
  const char *at = ps->p;
  if (value_name(ps, &name) < 0) return -1;
  int found = strmap_get(&ps->values, name, strlen(name), v);
  if (!found) {
    fail_at(ps, at, "value %%%s is used before it is defined", name);
  } else if (!ir_visible_from(ps->g, ps->g->values.a[*v].region, ps->b.region)) {
    fail_at(ps, at, "value %%%s is used outside the loop body that defines it", name);
    found = 0;
  }
  free(name);
  return found ? 0 : -1;
}

/* Binds a name to a value; named (non-numeric) names also become the
 * value's own name so that printing gives them back. */
static int define_value(Parser *ps, const char *name, uint32_t v) {
  uint32_t old;
  if (strmap_get(&ps->values, name, strlen(name), &old)) return fail(ps, "value %%%s is defined twice", name);
  strmap_put(&ps->values, name, strlen(name), v);
  if (!is_number(name)) ps->g->values.a[v].name = ir_intern(ps->g, name);
  return 0;
}

static int parse_type(Parser *ps, IrType *t) {
  const char *w;
  size_t n = word(ps, &w);
  int dt = pc_dtype_from_name(w, n);
  if (dt < 0) return fail(ps, "expected a type such as f32[B,T,768]");
  t->dtype = (PcDType)dt;
  t->shape.rank = 0;
  if (expect(ps, '[', "to open a shape") < 0) return -1;
  if (accept(ps, ']')) return 0;
  do {
    if (t->shape.rank == PC_MAX_RANK) return fail(ps, "rank above %d", PC_MAX_RANK);
    n = word(ps, &w);
    if (!n) return fail(ps, "expected a dimension");
    int64_t d;
    if (isdigit((unsigned char)w[0])) {
      char *end;
      errno = 0;
      d = strtoll(w, &end, 10);
      if (end != w + n || errno) return fail(ps, "bad dimension '%.*s'", (int)n, w);
    } else {
      char *name = strndup(w, n);
      uint32_t s = IR_NONE;
      for (size_t i = 0; i < ps->g->syms.n; i++)
        if (!strcmp(ps->g->syms.a[i], name)) s = (uint32_t)i;
      free(name);
      if (s == IR_NONE) return fail(ps, "unknown symbolic dimension '%.*s' (declare it after the graph name)", (int)n, w);
      d = IR_SYM(s);
    }
    t->shape.dim[t->shape.rank++] = d;
  } while (accept(ps, ','));
  return expect(ps, ']', "to close a shape");
}

/* Attributes after the operands; a missing one is reported at `op_at`. */
static int parse_attrs(Parser *ps, IrOp op, IrAttr *attr, const char *op_at) {
  const IrOpInfo *info = ir_op_info(op);
  int seen[IR_MAX_ATTRS] = {0};
  for (int k = 0; k < IR_MAX_ATTRS; k++) attr[k] = info->attr[k].kind == IR_ATTR_STR ? (IrAttr){.s = IR_NONE} : (IrAttr){0};
  if (accept(ps, '{')) {
    do {
      const char *w;
      size_t n = word(ps, &w);
      int k = ir_attr_index(op, w, n);
      if (k < 0) return fail(ps, "%s has no attribute '%.*s'", info->name, (int)n, w);
      if (expect(ps, '=', "after an attribute name") < 0) return -1;
      seen[k] = 1;
      if (info->attr[k].kind == IR_ATTR_STR) {
        char *s = quoted(ps);
        if (!s) return -1;
        attr[k].s = ir_intern(ps->g, s);
        free(s);
        continue;
      }
      skip_space(ps); /* a number, read as C reads it: 1e+04 too, which the printer writes */
      char *end;
      errno = 0;
      if (info->attr[k].kind == IR_ATTR_INT)
        attr[k].i = strtoll(ps->p, &end, 10);
      else
        attr[k].f = strtod(ps->p, &end);
      if (end == ps->p || errno || ir_text_word_char((unsigned char)*end))
        return fail(ps, "bad value for attribute %s", info->attr[k].name);
      ps->p = end;
    } while (accept(ps, ','));
    if (expect(ps, '}', "to close the attributes") < 0) return -1;
  }
  for (int k = 0; k < IR_MAX_ATTRS && info->attr[k].name; k++)
    if (!seen[k] && info->attr[k].kind != IR_ATTR_STR)
      return fail_at(ps, op_at, "%s needs attribute %s", info->name, info->attr[k].name);
  return 0;
}

static int parse_loc(Parser *ps) {
  ir_set_loc(&ps->b, NULL);
  if (!accept(ps, '@')) return 0;
  if (*ps->p == '"') {
    char *s = quoted(ps);
    if (!s) return -1;
    ir_set_loc(&ps->b, s);
    free(s);
    return 0;
  }
  const char *start = ps->p;
  while (*ps->p && !isspace((unsigned char)*ps->p) && *ps->p != '{' && *ps->p != '}' && *ps->p != '"') ps->p++;
  if (ps->p == start) return fail(ps, "expected a location after '@'");
  char *s = strndup(start, (size_t)(ps->p - start));
  ir_set_loc(&ps->b, s);
  free(s);
  return 0;
}

static int parse_region_body(Parser *ps, int in_loop);
static int parse_loop_body(Parser *ps, char **results, uint32_t n_results, const uint32_t *in, uint32_t n_in,
                           const IrAttr *attr, const IrType *types, uint32_t *args);

/* The part of a statement after "op(": operands, ')', attributes. */
static int parse_operands(Parser *ps, uint32_t **in, uint32_t *n_in) {
  VEC(uint32_t) ops = {0};
  if (!accept(ps, ')')) {
    do {
      uint32_t v;
      if (use_value(ps, &v) < 0) {
        free(ops.a);
        return -1;
      }
      vec_push(&ops, v);
    } while (accept(ps, ','));
    if (expect(ps, ')', "after the operands") < 0) {
      free(ops.a);
      return -1;
    }
  }
  *in = ops.a;
  *n_in = (uint32_t)ops.n;
  return 0;
}

static int parse_loop(Parser *ps, char **results, uint32_t n_results, const uint32_t *in, uint32_t n_in,
                      const IrAttr *attr, const IrType *types, uint32_t n_types) {
  if (n_results != n_in || n_types != n_in)
    return fail(ps, "a loop has one result and one type per carried value");
  uint32_t *args = pc_xmalloc(sizeof *args * (n_in + 1));
  int rc = parse_loop_body(ps, results, n_results, in, n_in, attr, types, args);
  free(args);
  return rc;
}

static int parse_loop_body(Parser *ps, char **results, uint32_t n_results, const uint32_t *in, uint32_t n_in,
                           const IrAttr *attr, const IrType *types, uint32_t *args) {
  uint32_t id = ir_loop_begin(&ps->b, attr[0].i, attr[1].i, in, n_in, args, ps->err);
  if (id == IR_NONE) return -1;
  if (expect(ps, '{', "to open the loop body") < 0 || expect(ps, '^', "to start the body's arguments") < 0 ||
      expect(ps, '(', "before the body's arguments") < 0)
    return -1;
  for (uint32_t i = 0; i <= n_in; i++) {
    if (i && expect(ps, ',', "between body arguments") < 0) return -1;
    char *name;
    IrType t;
    if (value_name(ps, &name) < 0) return -1;
    int rc = expect(ps, ':', "after a body argument") < 0 || parse_type(ps, &t) < 0 ? -1 : 0;
    if (!rc && !ir_type_eq(&t, ir_type(ps->g, args[i]))) rc = fail(ps, "body argument %%%s has the wrong type", name);
    if (!rc) rc = define_value(ps, name, args[i]);
    free(name);
    if (rc < 0) return -1;
  }
  if (expect(ps, ')', "after the body's arguments") < 0 || expect(ps, ':', "after the body's arguments") < 0) return -1;
  if (parse_region_body(ps, 1) < 0) return -1;
  uint32_t out = ps->g->nodes.a[id].out;
  for (uint32_t i = 0; i < n_results; i++) {
    if (!ir_type_eq(&types[i], ir_type(ps->g, out + i))) return fail(ps, "loop result %u has the wrong type", i);
    if (define_value(ps, results[i], out + i) < 0) return -1;
  }
  return 0;
}

/* One statement; sets *yielded when it was the yield that closes a loop body. */
static int parse_statement(Parser *ps, int in_loop, int *yielded) {
  VEC(char *) res = {0};
  VEC(IrType) typ = {0};
  uint32_t n_results = 0, *in = NULL, n_in = 0, n_types = 0;
  IrAttr attr[IR_MAX_ATTRS];
  int rc = -1;
  if (peek(ps, '%')) {
    do {
      char *name;
      if (value_name(ps, &name) < 0) goto done;
      vec_push(&res, name);
      n_results++;
    } while (accept(ps, ','));
    if (expect(ps, '=', "after the results") < 0) goto done;
  }
  const char *w;
  size_t n = word(ps, &w);
  int op = ir_op_from_name(w, n);
  if (op < 0) {
    fail_at(ps, w, n ? "unknown operation '%.*s'" : "expected an operation%.*s", (int)n, w);
    goto done;
  }
  const IrOpInfo *info = ir_op_info((IrOp)op);
  if (expect(ps, '(', "after the operation name") < 0 || parse_operands(ps, &in, &n_in) < 0 ||
      parse_attrs(ps, (IrOp)op, attr, w) < 0)
    goto done;
  const char *types_at = NULL;
  if (info->n_out != 0) {
    if (expect(ps, ':', "before the result types") < 0) goto done;
    skip_space(ps);
    types_at = ps->p;
    do {
      IrType t;
      if (parse_type(ps, &t) < 0) goto done;
      vec_push(&typ, t);
      n_types++;
    } while (accept(ps, ','));
  }
  if (info->n_out >= 0 && (n_results != (uint32_t)info->n_out || n_types != (uint32_t)info->n_out)) {
    fail(ps, "%s has %d result(s)", info->name, info->n_out);
    goto done;
  }
  if (parse_loc(ps) < 0) goto done;

  uint32_t v = IR_NONE;
  switch (op) {
  case IR_LOOP: rc = parse_loop(ps, res.a, n_results, in, n_in, attr, typ.a, n_types); goto done;
  case IR_YIELD:
    if (!in_loop) {
      fail(ps, "yield outside a loop body");
      goto done;
    }
    *yielded = 1;
    rc = ir_loop_end(&ps->b, in, n_in, ps->err) == IR_NONE ? -1 : 0;
    goto done;
  case IR_OUTPUT:
    if (ps->b.region != 0) {
      fail(ps, "output inside a loop body");
      goto done;
    }
    rc = ir_output(&ps->b, ir_str(ps->g, attr[0].s), in[0], ps->err);
    goto done;
  case IR_PARAM:
  case IR_INPUT:
    if (ps->b.region != 0 || is_number(res.a[0])) {
      fail(ps, "%s needs a name (%%name) and belongs at the top of the graph", info->name);
      goto done;
    }
    v = op == IR_PARAM ? ir_param(&ps->b, res.a[0], &typ.a[0], ir_str(ps->g, attr[0].s), attr[1].f,
                                  attr[2].s == IR_NONE ? NULL : ir_str(ps->g, attr[2].s), ps->err)
                       : ir_input(&ps->b, res.a[0], &typ.a[0], ps->err);
    break;
  default:
    v = ir_build(&ps->b, (IrOp)op, in, n_in, attr, op == IR_FILL ? &typ.a[0] : NULL, ps->err);
    for (uint32_t i = 0; v != IR_NONE && i < n_types; i++)
      if (!ir_type_eq(&typ.a[i], ir_type(ps->g, v + i))) {
        char a[128], c[128];
        fail_at(ps, types_at, "declared type %s but %s gives %s", ir_type_str(ps->g, &typ.a[i], a, sizeof a),
                info->name, ir_type_str(ps->g, ir_type(ps->g, v + i), c, sizeof c));
        goto done;
      }
  }
  if (v == IR_NONE) {
    if (ps->b.loc == IR_NONE) {
      char msg[sizeof ps->err->msg];
      memcpy(msg, ps->err->msg, sizeof msg);
      fail_at(ps, w, "%s", msg);
    }
    goto done;
  }
  if (op == IR_PARAM || op == IR_INPUT) {
    strmap_put(&ps->values, res.a[0], strlen(res.a[0]), v);
    rc = 0;
  } else {
    rc = 0;
    for (uint32_t i = 0; !rc && i < n_results; i++) rc = define_value(ps, res.a[i], v + i);
  }
done:
  for (uint32_t i = 0; i < n_results; i++) free(res.a[i]);
  vec_free(&res);
  vec_free(&typ);
  free(in);
  return rc;
}

/* Statements up to the closing '}' of the graph or of a loop body. */
static int parse_region_body(Parser *ps, int in_loop) {
  int yielded = 0;
  while (!accept(ps, '}')) {
    if (!*ps->p) return fail(ps, "unexpected end of input: missing '}'");
    if (yielded) return fail(ps, "statements after the yield that ends a loop body");
    if (parse_statement(ps, in_loop, &yielded) < 0) return -1;
  }
  if (in_loop && !yielded) return fail(ps, "a loop body must end with yield");
  return 0;
}

int ir_parse(const char *text, const char *src_name, IrGraph **out, PcError *err) {
  Parser ps = {.src = text, .p = text, .name = src_name, .err = err};
  *out = NULL;
  if (!keyword(&ps, "graph")) return fail(&ps, "expected 'graph'");
  char *name;
  if (peek(&ps, '"')) {
    if (!(name = quoted(&ps))) return -1;
  } else {
    const char *w;
    size_t n = word(&ps, &w);
    if (!n) return fail(&ps, "expected the graph's name");
    name = strndup(w, n);
  }
  ps.g = ir_graph_new(name);
  free(name);
  ps.b = ir_builder(ps.g);
  int rc = expect(&ps, '[', "before the symbolic dimensions");
  if (!rc && !accept(&ps, ']')) {
    do {
      const char *w;
      size_t n = word(&ps, &w);
      if (!n || isdigit((unsigned char)w[0])) {
        rc = fail(&ps, "expected a symbolic dimension name");
        break;
      }
      char *s = strndup(w, n);
      ir_sym(ps.g, s);
      free(s);
    } while (accept(&ps, ','));
    if (!rc) rc = expect(&ps, ']', "after the symbolic dimensions");
  }
  if (!rc) rc = expect(&ps, '{', "to open the graph");
  if (!rc) rc = parse_region_body(&ps, 0);
  if (!rc) {
    skip_space(&ps);
    if (*ps.p) rc = fail(&ps, "unexpected text after the graph");
  }
  strmap_free(&ps.values);
  if (rc < 0) {
    ir_graph_free(ps.g);
    return -1;
  }
  *out = ps.g;
  return 0;
}
