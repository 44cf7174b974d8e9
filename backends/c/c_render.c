/* Renders kernel IR as C. Expressions are a table from op to a C template;
 * statements map one to one (loops to for, parallel loops to OpenMP,
 * vector loops to `omp simd` with the reductions they accumulate, sgemm to
 * cblas_sgemm). A scalar variable is declared at the start of the innermost
 * block that holds all its uses, so variables inside a parallel loop are
 * private to its threads. */
#include "backends/c/c_render.h"

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
} CR;

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
  case KE_VAR: fputs(c->e->vars.a[k->id].name, c->f); return;
  case KE_DIM: fprintf(c->f, "d%u", k->id); return;
  case KE_LOAD:
    fprintf(c->f, "b%u[", k->id);
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

/* The `omp simd` clause of a vector loop: its reductions, or NULL when a
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
    k += (size_t)snprintf(out + k, n - k, " reduction(%s:%s)", op, c->e->vars.a[s->var].name);
  }
  return 1;
}

static void block(CR *c, uint32_t blk, int depth);

static void stmt(CR *c, const KStmt *s, int depth) {
  FILE *f = c->f;
  switch (s->kind) {
  case KS_FOR: {
    const char *v = c->e->vars.a[s->var].name;
    char clause[512];
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
    fprintf(f, "%s = ", c->e->vars.a[s->var].name);
    expr(c, s->e[0]);
    fputs(";\n", f);
    return;
  case KS_STORE:
    indent(c, depth);
    fprintf(f, "b%u[", s->buf[0]);
    expr(c, s->e[0]);
    fprintf(f, "] = (%s)", ctype(c->e->bufs.a[s->buf[0]].elem));
    expr(c, s->e[1]);
    fputs(";\n", f);
    return;
  case KS_FILL:
    indent(c, depth);
    fprintf(f, "for (int64_t z = 0, z_n = ");
    expr(c, s->e[1]);
    fprintf(f, "; z < z_n; z++) b%u[", s->buf[0]);
    expr(c, s->e[0]);
    fprintf(f, " + z] = (%s)", ctype(c->e->bufs.a[s->buf[0]].elem));
    expr(c, s->e[2]);
    fputs(";\n", f);
    return;
  case KS_COPY:
    indent(c, depth);
    fprintf(f, "memmove(b%u + ", s->buf[0]);
    expr(c, s->e[0]);
    fprintf(f, ", b%u + ", s->buf[1]);
    expr(c, s->e[1]);
    fputs(", sizeof(float) * (size_t)(", f);
    expr(c, s->e[2]);
    fputs("));\n", f);
    return;
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
    fprintf(f, ", b%u + ", g->a);
    expr(c, g->a_off);
    fputs(", (int)", f);
    expr(c, g->lda);
    fprintf(f, ", b%u + ", g->b);
    expr(c, g->b_off);
    fputs(", (int)", f);
    expr(c, g->ldb);
    fputs(", ", f);
    c_float(f, g->beta);
    fprintf(f, ", b%u + ", g->c);
    expr(c, g->c_off);
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
      indent(c, depth);
      fprintf(c->f, "%s %s;\n", ctype(c->e->vars.a[v].type), c->e->vars.a[v].name);
    }
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) stmt(c, &c->p->stmts.a[b->a[i]], depth);
}

static void entry(CR *c, size_t index) {
  const KEntry *e = c->e;
  FILE *f = c->f;
  fprintf(f, "\n/* entry %zu: %s, arena %" PRIu64 " bytes */\nstatic void entry_%zu(const PonderCall *c) {\n", index,
          e->name, e->arena_bytes, index);
  for (size_t d = 0; d < e->dims.n; d++) fprintf(f, "  const int64_t d%zu = c->dims[%zu]; /* %s */\n", d, d, e->dims.a[d].name);
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
  memset(c->parent, 0xff, sizeof(uint32_t) * nb);
  memset(c->owner, 0xff, sizeof(uint32_t) * (e->vars.n + 1));
  scan_block(c, e->body);
  block(c, e->body, 1);
  fputs("}\n", f);
  free(c->parent);
  free(c->owner);
  free(c->is_loop_var);
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
  CR c = {.p = m->prog, .f = f};
  for (size_t i = 0; i < m->prog->entries.n; i++) {
    c.e = &m->prog->entries.a[i];
    entry(&c, i);
  }
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
    execlp(cc, cc, "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-w", "-fmax-errors=10", "-o", so_path, c_path,
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
