/* Renders kernel IR as C. Expressions are a table from op to a C template;
 * statements map one to one (loops to for, parallel loops to OpenMP,
 * vector loops to `omp simd` with the reductions they accumulate, sgemm to
 * cblas_sgemm). A scalar variable is declared at the start of the innermost
 * block that holds all its uses, so variables inside a parallel loop are
 * private to its threads. */
#include "backends/c/c_render.h"

#include "runtime/base/strmap.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  const KProgram *p;
  const KEntry *e;
  FILE *f;
  uint32_t *parent;   /* per block: the enclosing block (UINT32_MAX at the top) */
  uint32_t *owner;    /* per variable of the entry: the block that declares it */
  unsigned char *is_loop_var;
  /* while rendering a kernel function: canonical names */
  int in_kernel;
  uint32_t *buf_map;  /* entry buffer -> kernel parameter, or UINT32_MAX */
  uint32_t *var_map;  /* entry variable -> kernel name number */
  char *var_kind;     /* 'l' local, 'v' by value, 'r' by reference (copied in and out) */
  FILE *kernels;      /* kernel function definitions */
  StrMap seen;        /* kernel body text -> its number */
  uint32_t n_kernels;
} CR;

static void buf_name(CR *c, uint32_t b) {
  if (c->in_kernel) fprintf(c->f, "p%u", c->buf_map[b]);
  else fprintf(c->f, "b%u", b);
}

static void var_name(CR *c, uint32_t v) {
  if (c->in_kernel) fprintf(c->f, "%c%u", c->var_kind[v], c->var_map[v]);
  else fputs(c->e->vars.a[v].name, c->f);
}

/* ---- expressions ------------------------------------------------------------ */

/* C templates by op, for f32 and for i64 operands ("$0", "$1", "$2") */
static const struct {
  const char *f32, *i64;
} templ[KE_NUM] = {
    [KE_ADD] = {"($0 + $1)", "($0 + $1)"},      [KE_SUB] = {"($0 - $1)", "($0 - $1)"},
    [KE_MUL] = {"($0 * $1)", "($0 * $1)"},      [KE_DIV] = {"($0 / $1)", "($0 / $1)"},
    [KE_MIN] = {"fminf($0, $1)", "pc_min64($0, $1)"}, [KE_MAX] = {"fmaxf($0, $1)", "pc_max64($0, $1)"},
    [KE_NEG] = {"(-$0)", "(-$0)"},              [KE_REM] = {NULL, "($0 % $1)"},
    [KE_EXP] = {"expf($0)", NULL},              [KE_LOG] = {"logf($0)", NULL},
    [KE_SQRT] = {"sqrtf($0)", NULL},            [KE_TANH] = {"tanhf($0)", NULL},
    [KE_ERF] = {"erff($0)", NULL},              [KE_COS] = {"cosf($0)", NULL},
    [KE_SIN] = {"sinf($0)", NULL},              [KE_POW] = {"powf($0, $1)", NULL},
    [KE_LT] = {"($0 < $1)", "($0 < $1)"},       [KE_LE] = {"($0 <= $1)", "($0 <= $1)"},
    [KE_EQ] = {"($0 == $1)", "($0 == $1)"},     [KE_AND] = {"($0 && $1)", "($0 && $1)"},
    [KE_OR] = {"($0 || $1)", "($0 || $1)"},     [KE_SELECT] = {"($0 ? $1 : $2)", "($0 ? $1 : $2)"},
    [KE_ITOF] = {"((float)$0)", "((float)$0)"}, [KE_FTOI] = {"((int64_t)$0)", "((int64_t)$0)"},
};

static void expr(CR *c, uint32_t x);

/* A float literal that reads back exactly: 1.0f, 2.5e-05f, INFINITY. */
static void c_float(FILE *f, double v) {
  if (v == INFINITY) {
    fputs("INFINITY", f);
    return;
  }
  if (v == -INFINITY) {
    fputs("(-INFINITY)", f);
    return;
  }
  char buf[40];
  snprintf(buf, sizeof buf, "%.9g", (double)(float)v);
  fprintf(f, "%s%sf", buf, strpbrk(buf, ".en") ? "" : ".0");
}

static void expr_templ(CR *c, const KExpr *k) {
  /* comparisons and choices take the operands' type; the rest the result's */
  KType t = k->op == KE_SELECT ? c->p->exprs.a[k->a[1]].type : k->op >= KE_LT && k->op <= KE_OR ? c->p->exprs.a[k->a[0]].type : k->type;
  if (k->op == KE_ITOF || k->op == KE_FTOI) t = K_F32;
  const char *s = t == K_F32 ? templ[k->op].f32 : templ[k->op].i64;
  if (!s) PC_BUG("c renderer: no template for %s on %s", kop_info(k->op)->name, t == K_F32 ? "f32" : "i64");
  for (; *s; s++) {
    if (*s == '$') expr(c, k->a[*++s - '0']);
    else fputc(*s, c->f);
  }
}

static void expr(CR *c, uint32_t x) {
  const KExpr *k = &c->p->exprs.a[x];
  switch (k->op) {
  case KE_FCONST: c_float(c->f, k->f); return;
  case KE_ICONST: fprintf(c->f, "INT64_C(%" PRId64 ")", k->i); return;
  case KE_VAR: var_name(c, k->id); return;
  case KE_DIM: fprintf(c->f, "d%u", k->id); return;
  case KE_LOAD:
    buf_name(c, k->id);
    fputc('[', c->f);
    expr(c, k->a[0]);
    fputc(']', c->f);
    return;
  default: expr_templ(c, k);
  }
}

/* ---- where variables are declared ---------------------------------------------- */

static void note_use(CR *c, uint32_t var, uint32_t block) {
  if (c->owner[var] == UINT32_MAX) {
    c->owner[var] = block;
    return;
  }
  /* the innermost block enclosing both */
  for (uint32_t a = c->owner[var]; a != UINT32_MAX; a = c->parent[a])
    for (uint32_t b = block; b != UINT32_MAX; b = c->parent[b])
      if (a == b) {
        c->owner[var] = a;
        return;
      }
}

static void scan_expr(CR *c, uint32_t x, uint32_t block) {
  const KExpr *k = &c->p->exprs.a[x];
  if (k->op == KE_VAR) note_use(c, k->id, block);
  for (int i = 0; i < kop_info(k->op)->n; i++) scan_expr(c, k->a[i], block);
}

static void scan_block(CR *c, uint32_t block) {
  const VecU32 *b = &c->p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &c->p->stmts.a[b->a[i]];
    int n_exprs = s->kind == KS_FOR ? 2 : s->kind == KS_ASSIGN || s->kind == KS_IF || s->kind == KS_WHILE ? 1
                  : s->kind == KS_STORE ? 2 : s->kind == KS_GEMM ? 0 : 3;
    for (int k = 0; k < n_exprs; k++) scan_expr(c, s->e[k], block);
    if (s->kind == KS_ASSIGN) note_use(c, s->var, block);
    if (s->kind == KS_GEMM) {
      const KGemm *g = &c->p->gemms.a[s->gemm];
      uint32_t xs[] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
      for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) scan_expr(c, xs[k], block);
    }
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
      c->parent[s->body] = block;
      if (s->kind == KS_FOR) c->is_loop_var[s->var] = 1;
      scan_block(c, s->body);
    }
  }
}

/* ---- statements -------------------------------------------------------------- */

static void indent(CR *c, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", c->f);
}

static const char *ctype(KType t) { return t == K_F32 ? "float" : t == K_I32 ? "int32_t" : "int64_t"; }

/* a variable's name as text (for clauses) */
static const char *var_text(CR *c, uint32_t v, char *buf, size_t n) {
  if (c->in_kernel) snprintf(buf, n, "%c%u", c->var_kind[v], c->var_map[v]);
  else snprintf(buf, n, "%s", c->e->vars.a[v].name);
  return buf;
}

/* The `omp simd` clause of a vector loop: its reductions, or 0 when a
 * variable declared outside is assigned in a way simd cannot handle. */
static int simd_clause(CR *c, uint32_t body, char *out, size_t n) {
  const VecU32 *b = &c->p->blocks.a[body];
  size_t k = 0;
  out[0] = 0;
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &c->p->stmts.a[b->a[i]];
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) return 0;
    if (s->kind != KS_ASSIGN || c->owner[s->var] == body) continue;
    const KExpr *x = &c->p->exprs.a[s->e[0]];
    const KExpr *a = &c->p->exprs.a[x->a[0]];
    const char *op = x->op == KE_ADD ? "+" : x->op == KE_MAX ? "max" : NULL;
    if (!op || a->op != KE_VAR || a->id != s->var) return 0;
    char name[32];
    k += (size_t)snprintf(out + k, n - k, " reduction(%s:%s)", op, var_text(c, s->var, name, sizeof name));
  }
  return 1;
}

static void block(CR *c, uint32_t blk, int depth);
static int kernel_call(CR *c, const KStmt *s, int depth);

/* buffer + offset */
static void at(CR *c, uint32_t buf, uint32_t off) {
  buf_name(c, buf);
  fputs(" + ", c->f);
  expr(c, off);
}

static void stmt(CR *c, const KStmt *s, int depth) {
  FILE *f = c->f;
  if (s->kind == KS_FOR && !c->in_kernel && kernel_call(c, s, depth)) return;
  switch (s->kind) {
  case KS_FOR: {
    char v[32], clause[512];
    var_text(c, s->var, v, sizeof v);
    if (s->loop == KL_PARALLEL) {
      indent(c, depth);
      fputs("#pragma omp parallel for schedule(static)\n", f);
    } else if (s->loop == KL_VECTOR && simd_clause(c, s->body, clause, sizeof clause)) {
      indent(c, depth);
      fprintf(f, "#pragma omp simd%s\n", clause);
    }
    indent(c, depth);
    fprintf(f, "for (int64_t %s = ", v);
    expr(c, s->e[0]);
    fprintf(f, "; %s < ", v);
    expr(c, s->e[1]);
    fprintf(f, "; %s++) {\n", v);
    block(c, s->body, depth + 1);
    indent(c, depth);
    fputs("}\n", f);
    return;
  }
  case KS_IF:
  case KS_WHILE:
    indent(c, depth);
    fputs(s->kind == KS_IF ? "if (" : "while (", f);
    expr(c, s->e[0]);
    fputs(") {\n", f);
    block(c, s->body, depth + 1);
    indent(c, depth);
    fputs("}\n", f);
    return;
  case KS_ASSIGN:
    indent(c, depth);
    var_name(c, s->var);
    fputs(" = ", f);
    expr(c, s->e[0]);
    fputs(";\n", f);
    return;
  case KS_STORE:
    indent(c, depth);
    buf_name(c, s->buf[0]);
    fputc('[', f);
    expr(c, s->e[0]);
    fprintf(f, "] = (%s)", ctype(c->e->bufs.a[s->buf[0]].elem));
    expr(c, s->e[1]);
    fputs(";\n", f);
    return;
  case KS_FILL:
    indent(c, depth);
    fprintf(f, "for (int64_t z = 0, z_n = ");
    expr(c, s->e[1]);
    fputs("; z < z_n; z++) ", f);
    buf_name(c, s->buf[0]);
    fputc('[', f);
    expr(c, s->e[0]);
    fprintf(f, " + z] = (%s)", ctype(c->e->bufs.a[s->buf[0]].elem));
    expr(c, s->e[2]);
    fputs(";\n", f);
    return;
  case KS_COPY:
    indent(c, depth);
    fputs("memmove(", f);
    at(c, s->buf[0], s->e[0]);
    fputs(", ", f);
    at(c, s->buf[1], s->e[1]);
    fputs(", sizeof(float) * (size_t)(", f);
    expr(c, s->e[2]);
    fputs("));\n", f);
    return;
  case KS_CALL: PC_BUG("c renderer: a call of another backend's kernels (KSchedule.attention_kernel is for CUDA)");
  case KS_GEMM: {
    const KGemm *g = &c->p->gemms.a[s->gemm];
    indent(c, depth);
    fprintf(f, "cblas_sgemm(101, %d, %d, (int)", g->ta ? 112 : 111, g->tb ? 112 : 111);
    expr(c, g->m);
    fputs(", (int)", f);
    expr(c, g->n);
    fputs(", (int)", f);
    expr(c, g->k);
    fputs(", ", f);
    c_float(f, g->alpha);
    fputs(", ", f);
    at(c, g->a, g->a_off);
    fputs(", (int)", f);
    expr(c, g->lda);
    fputs(", ", f);
    at(c, g->b, g->b_off);
    fputs(", (int)", f);
    expr(c, g->ldb);
    fputs(", ", f);
    c_float(f, g->beta);
    fputs(", ", f);
    at(c, g->c, g->c_off);
    fputs(", (int)", f);
    expr(c, g->ldc);
    fputs(");\n", f);
    return;
  }
  }
}

static void block(CR *c, uint32_t blk, int depth) {
  for (size_t v = 0; v < c->e->vars.n; v++)
    if (c->owner[v] == blk && !c->is_loop_var[v]) {
      char name[32];
      indent(c, depth);
      fprintf(c->f, "%s %s;\n", ctype(c->e->vars.a[v].type), var_text(c, (uint32_t)v, name, sizeof name));
    }
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) stmt(c, &c->p->stmts.a[b->a[i]], depth);
}

/* ---- kernels: loop nests as functions, one per distinct body ------------------
 * A loop nest without sgemm calls becomes a call to a static function whose
 * parameters are the buffers, dims and outer variables it uses, all under
 * canonical names; nests that render to the same text (the same op in
 * every layer) share one function, which keeps the C small. */

typedef struct {
  VecU32 bufs, vars;     /* in first-use order */
  unsigned char *assigned, *inside;
  int has_gemm;
} Uses;

static void uses_expr(CR *c, uint32_t x, Uses *u) {
  const KExpr *k = &c->p->exprs.a[x];
  if (k->op == KE_VAR && c->var_map[k->id] == UINT32_MAX) {
    c->var_map[k->id] = 0;
    vec_push(&u->vars, k->id);
  }
  if (k->op == KE_LOAD && c->buf_map[k->id] == UINT32_MAX) {
    c->buf_map[k->id] = (uint32_t)u->bufs.n;
    vec_push(&u->bufs, k->id);
  }
  for (int i = 0; i < kop_info(k->op)->n; i++) uses_expr(c, k->a[i], u);
}

static void uses_buf(CR *c, uint32_t b, Uses *u) {
  if (c->buf_map[b] != UINT32_MAX) return;
  c->buf_map[b] = (uint32_t)u->bufs.n;
  vec_push(&u->bufs, b);
}

static void uses_stmt(CR *c, const KStmt *s, Uses *u);

static void uses_block(CR *c, uint32_t blk, Uses *u) {
  u->inside[blk] = 1;
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) uses_stmt(c, &c->p->stmts.a[b->a[i]], u);
}

static void uses_stmt(CR *c, const KStmt *s, Uses *u) {
  switch (s->kind) {
  case KS_FOR:
  case KS_ASSIGN:
    if (c->var_map[s->var] == UINT32_MAX) {
      c->var_map[s->var] = 0;
      vec_push(&u->vars, s->var);
    }
    if (s->kind == KS_ASSIGN) u->assigned[s->var] = 1;
    break;
  case KS_STORE:
  case KS_FILL: uses_buf(c, s->buf[0], u); break;
  case KS_COPY:
    uses_buf(c, s->buf[0], u);
    uses_buf(c, s->buf[1], u);
    break;
  case KS_GEMM: u->has_gemm = 1; return;
  default: break;
  }
  int n = s->kind == KS_FOR || s->kind == KS_STORE ? 2 : s->kind == KS_FILL || s->kind == KS_COPY ? 3 : 1;
  for (int k = 0; k < n; k++) uses_expr(c, s->e[k], u);
  if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) uses_block(c, s->body, u);
}

static int kernel_call(CR *c, const KStmt *s, int depth) {
  size_t nb = c->e->bufs.n, nv = c->e->vars.n, nblocks = c->p->blocks.n;
  Uses u = {.assigned = pc_xcalloc(nv + 1, 1), .inside = pc_xcalloc(nblocks + 1, 1)};
  c->buf_map = pc_xmalloc(sizeof(uint32_t) * (nb + 1));
  memset(c->buf_map, 0xff, sizeof(uint32_t) * (nb + 1));
  memset(c->var_map, 0xff, sizeof(uint32_t) * (nv + 1));
  uses_stmt(c, s, &u);
  int made = !u.has_gemm;
  if (made) {
    /* names: locals l0.., outer variables read v0.., outer variables written r0.. */
    uint32_t n_l = 0, n_v = 0, n_r = 0;
    for (size_t i = 0; i < u.vars.n; i++) {
      uint32_t v = u.vars.a[i];
      int local = c->is_loop_var[v] ? 1 : u.inside[c->owner[v]];
      c->var_kind[v] = local ? 'l' : u.assigned[v] ? 'r' : 'v';
      c->var_map[v] = local ? n_l++ : u.assigned[v] ? n_r++ : n_v++;
    }
    /* the body, with canonical names */
    char *body = NULL;
    size_t len = 0;
    FILE *saved = c->f;
    c->f = open_memstream(&body, &len);
    c->in_kernel = 1;
    fputs("{\n", c->f);
    for (size_t d = 0; d < c->e->dims.n; d++) fprintf(c->f, "  const int64_t d%zu = dims[%zu];\n  (void)d%zu;\n", d, d, d);
    for (size_t i = 0; i < u.vars.n; i++) /* written outer variables: a local copy, stored back */
      if (c->var_kind[u.vars.a[i]] == 'r')
        fprintf(c->f, "  %s r%u = *r%up;\n", ctype(c->e->vars.a[u.vars.a[i]].type), c->var_map[u.vars.a[i]],
                c->var_map[u.vars.a[i]]);
    stmt(c, s, 1);
    for (size_t i = 0; i < u.vars.n; i++)
      if (c->var_kind[u.vars.a[i]] == 'r') fprintf(c->f, "  *r%up = r%u;\n", c->var_map[u.vars.a[i]], c->var_map[u.vars.a[i]]);
    fputs("}\n", c->f);
    c->in_kernel = 0;
    fclose(c->f);
    c->f = saved;
    /* the signature: dims, buffers, outer variables */
    char *sig = NULL;
    size_t sig_len = 0;
    FILE *g = open_memstream(&sig, &sig_len);
    fputs("(const int64_t *restrict dims", g);
    for (size_t i = 0; i < u.bufs.n; i++)
      fprintf(g, ", %s *restrict p%zu", ctype(c->e->bufs.a[u.bufs.a[i]].elem), i);
    for (size_t i = 0; i < u.vars.n; i++) {
      uint32_t v = u.vars.a[i];
      if (c->var_kind[v] == 'v') fprintf(g, ", %s v%u", ctype(c->e->vars.a[v].type), c->var_map[v]);
      if (c->var_kind[v] == 'r') fprintf(g, ", %s *r%up", ctype(c->e->vars.a[v].type), c->var_map[v]);
    }
    fputs(")", g);
    fclose(g);
    /* dims are read from the array, so one kernel serves every entry */
    size_t full_len = sig_len + len;
    char *full = pc_xmalloc(full_len + 1);
    memcpy(full, sig, sig_len);
    memcpy(full + sig_len, body, len + 1);
    uint32_t id;
    if (!strmap_get(&c->seen, full, full_len, &id)) {
      id = c->n_kernels++;
      strmap_put(&c->seen, full, full_len, id);
      fprintf(c->kernels, "\nstatic void kern%u%s", id, sig);
      fputs(body, c->kernels);
    }
    free(full);
    free(sig);
    free(body);
    /* the call */
    indent(c, depth);
    fprintf(c->f, "kern%u(dims", id);
    for (size_t i = 0; i < u.bufs.n; i++) fprintf(c->f, ", b%u", u.bufs.a[i]);
    for (size_t i = 0; i < u.vars.n; i++) {
      uint32_t v = u.vars.a[i];
      if (c->var_kind[v] == 'v') fprintf(c->f, ", %s", c->e->vars.a[v].name);
      if (c->var_kind[v] == 'r') fprintf(c->f, ", &%s", c->e->vars.a[v].name);
    }
    fputs(");\n", c->f);
  }
  free(c->buf_map);
  c->buf_map = NULL;
  vec_free(&u.bufs);
  vec_free(&u.vars);
  free(u.assigned);
  free(u.inside);
  return made;
}

static void entry(CR *c, size_t index) {
  const KEntry *e = c->e;
  FILE *f = c->f;
  fprintf(f, "\n/* entry %zu: %s, arena %" PRIu64 " bytes */\nstatic void entry_%zu(const PonderCall *c) {\n", index,
          e->name, e->arena_bytes, index);
  fprintf(f, "  const int64_t *restrict dims = c->dims;\n");
  for (size_t d = 0; d < e->dims.n; d++) fprintf(f, "  const int64_t d%zu = dims[%zu]; /* %s */\n", d, d, e->dims.a[d].name);
  static const char *from[] = {"c->params", "c->inputs", "c->outputs"};
  for (size_t k = 0; k < e->bufs.n; k++) {
    const KBuf *b = &e->bufs.a[k];
    const char *t = ctype(b->elem);
    if (b->kind == KB_ARENA)
      fprintf(f, "  %s *restrict b%zu = (%s *)((char *)c->arena + %" PRIu64 "); /* %s */\n", t, k, t, b->offset, b->name);
    else
      fprintf(f, "  %s *restrict b%zu = (%s *)%s[%u]; /* %s */\n", t, k, t, from[b->kind], b->index, b->name);
  }
  for (size_t k = 0; k < e->bufs.n; k++) fprintf(f, "  (void)b%zu;\n", k);
  size_t nb = c->p->blocks.n;
  c->parent = pc_xmalloc(sizeof(uint32_t) * nb);
  c->owner = pc_xmalloc(sizeof(uint32_t) * (e->vars.n + 1));
  c->is_loop_var = pc_xcalloc(e->vars.n + 1, 1);
  c->var_map = pc_xmalloc(sizeof(uint32_t) * (e->vars.n + 1));
  c->var_kind = pc_xcalloc(e->vars.n + 1, 1);
  memset(c->parent, 0xff, sizeof(uint32_t) * nb);
  memset(c->owner, 0xff, sizeof(uint32_t) * (e->vars.n + 1));
  scan_block(c, e->body);
  block(c, e->body, 1);
  fputs("}\n", f);
  free(c->parent);
  free(c->owner);
  free(c->is_loop_var);
  free(c->var_map);
  free(c->var_kind);
}

static void c_string(FILE *f, const char *s) {
  fputc('"', f);
  for (size_t col = 0; *s; s++, col++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
    if (col > 100 && *s == ',') { /* split long lines */
      fputs("\"\n  \"", f);
      col = 0;
    }
  }
  fputc('"', f);
}

int c_render(const PcModule *m, FILE *f, PcError *err) {
  fputs("/* Generated by pondercc (backend c). The model ABI: runtime/include/ponder_abi.h. */\n"
        "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n"
        "typedef struct PonderCall {\n  float *const *params;\n  void *const *inputs;\n  void *const *outputs;\n"
        "  void *arena;\n  const int64_t *dims;\n} PonderCall;\n\n"
        "void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,\n"
        "                 const float *b, int ldb, float beta, float *c, int ldc);\n"
        "static inline int64_t pc_min64(int64_t a, int64_t b) { return a < b ? a : b; }\n"
        "static inline int64_t pc_max64(int64_t a, int64_t b) { return a > b ? a : b; }\n",
        f);
  char *kernels = NULL, *entries = NULL;
  size_t kn = 0, en = 0;
  CR c = {.p = m->prog, .kernels = open_memstream(&kernels, &kn), .f = open_memstream(&entries, &en)};
  for (size_t i = 0; i < m->prog->entries.n; i++) {
    c.e = &m->prog->entries.a[i];
    entry(&c, i);
  }
  fclose(c.kernels);
  fclose(c.f);
  strmap_free(&c.seen);
  fprintf(f, "\n/* %u kernels */\n", c.n_kernels);
  fputs(kernels, f);
  fputs(entries, f);
  free(kernels);
  free(entries);
  fprintf(f, "\nint ponder_abi_version(void) { return %d; }\n\nconst char *ponder_model_info(void) {\n  return ", 1);
  c_string(f, m->info_json);
  fputs(";\n}\n\nint ponder_run(int entry, const PonderCall *c) {\n  switch (entry) {\n", f);
  for (size_t i = 0; i < m->prog->entries.n; i++) fprintf(f, "  case %zu: entry_%zu(c); return 0;\n", i, i);
  fputs("  default: return -1;\n  }\n}\n", f);
  if (ferror(f)) return pc_errorf(err, "cannot write the C source");
  return 0;
}

int c_build_shared(const char *c_path, const char *so_path, PcError *err) {
  const char *cc = getenv("CC");
  if (!cc || !*cc) cc = "cc";
  pid_t pid = fork();
  if (pid < 0) return pc_errorf(err, "cannot start %s: %s", cc, strerror(errno));
  if (pid == 0) {
    execlp(cc, cc, "-O3", "-g", "-march=native", "-fopenmp", "-fPIC", "-shared", "-w", "-fmax-errors=10", "-o", so_path, c_path,
           "-lopenblas", "-lm",
           (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return pc_errorf(err, "%s: %s", cc, strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return pc_errorf(err, "%s failed on %s (exit %d)", cc, c_path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
