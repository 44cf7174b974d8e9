/* Renders kernel IR as CUDA C. Expressions are a table from op to a C
 * template, as in the C renderer. Kernels are the entry's parallel loops
 * (and host-level statements that touch memory, run by one thread), each a
 * `extern "C" __global__` function with canonical parameter names, so the
 * same nest in every layer and entry is one kernel.
 *
 * In a warp or block kernel every thread runs the row's scalar code (the
 * same values in every thread: uniform code); vector loops that can spread
 * go round-robin over the lanes, their reductions combined with warp
 * shuffles (and shared memory across the warps of a block); stores in
 * uniform code are made by lane 0, fills and copies spread. Between two
 * statements of uniform code where one writes memory the other reads or
 * writes, the threads meet at a barrier (__syncwarp / __syncthreads). */
#include "backends/cuda/cuda_internal.h"
#include "backends/cuda/cuda_library.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/strmap.h"

typedef struct {
  const KProgram *p;
  const CudaOptions *o;
  CudaProgram *out;
  FILE *kernels, *emu; /* kernel definitions; the emulator's launch trampolines */
  StrMap seen;         /* kernel text -> number */
  PcError *err;
  int failed;
  /* the entry */
  CudaScan a;
  const KEntry *e;
  uint32_t entry;
  /* the kernel being written */
  FILE *f;
  CudaMode mode;
  uint32_t root_body;        /* the kernel statement's block, UINT32_MAX if it has none */
  uint32_t *buf_map;         /* entry buffer -> parameter number, or UINT32_MAX */
  unsigned char *buf_written;
  unsigned char *mirror;     /* entry buffer -> its stores also write its bf16 mirror h<N> */
  uint32_t *var_map;         /* entry variable -> number within its kind */
  char *var_kind;            /* 'l' local, 'v' by value, 'r' assigned (value in, slot out) */
  uint32_t *part;            /* entry variable -> its reduction partial q<N> in a spread loop */
  VecU32 bufs, vars;         /* first-use order */
  uint32_t n_part;
  int used_shf, used_shi;    /* block reductions use the shared arrays */
  int used_library;          /* a call: the library's source goes in */
} CR;

/* ---- expressions ------------------------------------------------------------ */

static const struct {
  const char *f32, *i64;
} templ[KE_NUM] = {
    [KE_ADD] = {"($0 + $1)", "($0 + $1)"},
    [KE_SUB] = {"($0 - $1)", "($0 - $1)"},
    [KE_MUL] = {"($0 * $1)", "($0 * $1)"},
    [KE_DIV] = {"($0 / $1)", "($0 / $1)"},
    [KE_MIN] = {"fminf($0, $1)", "pc_min64($0, $1)"},
    [KE_MAX] = {"fmaxf($0, $1)", "pc_max64($0, $1)"},
    [KE_NEG] = {"(-$0)", "(-$0)"},
    [KE_REM] = {NULL, "($0 % $1)"},
    [KE_EXP] = {"expf($0)", NULL},
    [KE_LOG] = {"logf($0)", NULL},
    [KE_SQRT] = {"sqrtf($0)", NULL},
    [KE_TANH] = {"tanhf($0)", NULL},
    [KE_ERF] = {"erff($0)", NULL},
    [KE_COS] = {"cosf($0)", NULL},
    [KE_SIN] = {"sinf($0)", NULL},
    [KE_POW] = {"powf($0, $1)", NULL},
    [KE_LT] = {"($0 < $1)", "($0 < $1)"},
    [KE_LE] = {"($0 <= $1)", "($0 <= $1)"},
    [KE_EQ] = {"($0 == $1)", "($0 == $1)"},
    [KE_AND] = {"($0 && $1)", "($0 && $1)"},
    [KE_OR] = {"($0 || $1)", "($0 || $1)"},
    [KE_SELECT] = {"($0 ? $1 : $2)", "($0 ? $1 : $2)"},
    [KE_ITOF] = {"((float)$0)", "((float)$0)"},
    [KE_FTOI] = {"((i64)$0)", "((i64)$0)"},
};

static const char *ctype(KType t) { return t == K_F32 ? "float" : t == K_I32 ? "int" : "i64"; }

static void cu_float(FILE *f, double v) {
  if (isinf(v)) {
    fputs(v > 0 ? "PC_INF" : "(-PC_INF)", f);
    return;
  }
  if (isnan(v)) {
    fputs("__int_as_float(0x7fffffff)", f);
    return;
  }
  char buf[40];
  snprintf(buf, sizeof buf, "%.9g", (double)(float)v);
  fprintf(f, "%s%s%sf", v < 0 ? "(" : "", buf, strpbrk(buf, ".en") ? "" : ".0");
  if (v < 0) fputc(')', f);
}

static void cu_int(FILE *f, int64_t v) {
  if (v == INT64_MIN) fputs("(-9223372036854775807LL - 1)", f);
  else fprintf(f, v < 0 ? "(%" PRId64 "LL)" : "%" PRId64 "LL", v);
}

static void var_name(CR *c, uint32_t v) {
  if (c->part[v] != UINT32_MAX) fprintf(c->f, "q%u", c->part[v]);
  else fprintf(c->f, "%c%u", c->var_kind[v], c->var_map[v]);
}

static void expr(CR *c, uint32_t x) {
  const KExpr *k = &c->p->exprs.a[x];
  switch (k->op) {
  case KE_FCONST: cu_float(c->f, k->f); return;
  case KE_ICONST: cu_int(c->f, k->i); return;
  case KE_VAR: var_name(c, k->id); return;
  case KE_DIM: fprintf(c->f, "d%u", k->id); return;
  case KE_LOAD:
    if (c->a.half[k->id]) { /* from the mirror when the host gave one: it lives there */
      uint32_t n = c->buf_map[k->id];
      fprintf(c->f, "(h%u ? pc_f32(h%u[", n, n);
      expr(c, k->a[0]);
      fprintf(c->f, "]) : p%u[", n);
      expr(c, k->a[0]);
      fputs("])", c->f);
      return;
    }
    fprintf(c->f, c->e->bufs.a[k->id].elem == K_I32 ? "((i64)p%u[" : "p%u[", c->buf_map[k->id]);
    expr(c, k->a[0]);
    fputs(c->e->bufs.a[k->id].elem == K_I32 ? "])" : "]", c->f);
    return;
  default: break;
  }
  /* comparisons and choices take their operands' type; the rest the result's */
  KType t = k->op == KE_SELECT ? c->p->exprs.a[k->a[1]].type
            : k->op >= KE_LT && k->op <= KE_OR ? c->p->exprs.a[k->a[0]].type : k->type;
  const char *s = t == K_F32 ? templ[k->op].f32 : templ[k->op].i64;
  if (!s) PC_BUG("cuda renderer: no template for %s", kop_info(k->op)->name);
  for (; *s; s++) {
    if (*s == '$') expr(c, k->a[*++s - '0']);
    else fputc(*s, c->f);
  }
}

/* ---- statements ----------------------------------------------------------------- */

static void indent(CR *c, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", c->f);
}

static void declare(CR *c, uint32_t blk, int depth) {
  for (size_t i = 0; i < c->vars.n; i++) {
    uint32_t v = c->vars.a[i];
    if (c->var_kind[v] == 'l' && c->a.owner[v] == blk && !c->a.loop_var[v]) {
      indent(c, depth);
      fprintf(c->f, "%s l%u;\n", ctype(c->e->vars.a[v].type), c->var_map[v]);
    }
  }
}

static void at(CR *c, uint32_t buf, uint32_t off) {
  fprintf(c->f, "p%u + ", c->buf_map[buf]);
  expr(c, off);
}

/* fill and copy go through helpers that spread over lane .. lanes */
static void fill_copy(CR *c, const KStmt *s, const char *lanes) {
  if (s->kind == KS_FILL) {
    fprintf(c->f, "pc_fill_%c(", c->e->bufs.a[s->buf[0]].elem == K_I32 ? 'i' : 'f');
    at(c, s->buf[0], s->e[0]);
    fputs(", ", c->f);
    expr(c, s->e[1]);
    fputs(", ", c->f);
    expr(c, s->e[2]);
  } else if (c->mirror[s->buf[0]]) { /* the copy, and the same elements of the mirror (if the host gave one) */
    uint32_t k = c->buf_map[s->buf[0]];
    fputs("pc_copy_mirror(", c->f);
    at(c, s->buf[0], s->e[0]);
    fprintf(c->f, ", h%u ? h%u + ", k, k);
    expr(c, s->e[0]);
    fputs(" : 0, ", c->f);
    at(c, s->buf[1], s->e[1]);
    fputs(", ", c->f);
    expr(c, s->e[2]);
    fprintf(c->f, ", %d", cuda_mirror_alone(&c->a, s->buf[0]));
  } else {
    fputs("pc_copy32(", c->f);
    at(c, s->buf[0], s->e[0]);
    fputs(", ", c->f);
    at(c, s->buf[1], s->e[1]);
    fputs(", ", c->f);
    expr(c, s->e[2]);
  }
  fprintf(c->f, ", %s);\n", lanes);
}

static void loop_head(CR *c, const KStmt *s, const char *start, const char *step) {
  fprintf(c->f, "for (i64 l%u = ", c->var_map[s->var]);
  expr(c, s->e[0]);
  fprintf(c->f, "%s; l%u < ", start, c->var_map[s->var]);
  expr(c, s->e[1]);
  fprintf(c->f, "; l%u += %s) {\n", c->var_map[s->var], step);
}

static void block_serial(CR *c, uint32_t blk, int depth);

/* Code that one thread runs on its own: a one-thread kernel, a row of a
 * thread kernel, an iteration of a spread vector loop. */
static void stmt_serial(CR *c, const KStmt *s, int depth) {
  indent(c, depth);
  switch (s->kind) {
  case KS_ASSIGN:
    var_name(c, s->var);
    fputs(" = ", c->f);
    expr(c, s->e[0]);
    fputs(";\n", c->f);
    return;
  case KS_STORE:
    if (c->mirror[s->buf[0]]) { /* the value, and the same element of the mirror (if the host gave one) */
      uint32_t k = c->buf_map[s->buf[0]];
      fputs("{ const float pc_v = ", c->f);
      expr(c, s->e[1]);
      if (cuda_mirror_alone(&c->a, s->buf[0])) { /* only products read it: the mirror alone, when there is one */
        fprintf(c->f, "; if (h%u) h%u[", k, k);
        expr(c, s->e[0]);
        fprintf(c->f, "] = pc_bf16(pc_v); else p%u[", k);
        expr(c, s->e[0]);
        fputs("] = pc_v; }\n", c->f);
        return;
      }
      fprintf(c->f, "; p%u[", k);
      expr(c, s->e[0]);
      fprintf(c->f, "] = pc_v; if (h%u) h%u[", k, k);
      expr(c, s->e[0]);
      fputs("] = pc_bf16(pc_v); }\n", c->f);
      return;
    }
    fprintf(c->f, "p%u[", c->buf_map[s->buf[0]]);
    expr(c, s->e[0]);
    fprintf(c->f, "] = (%s)", ctype(c->e->bufs.a[s->buf[0]].elem));
    expr(c, s->e[1]);
    fputs(";\n", c->f);
    return;
  case KS_FILL:
  case KS_COPY: fill_copy(c, s, "0, 1"); return;
  case KS_FOR: loop_head(c, s, "", "1"); break;
  case KS_IF:
  case KS_WHILE:
    fputs(s->kind == KS_IF ? "if (" : "while (", c->f);
    expr(c, s->e[0]);
    fputs(") {\n", c->f);
    break;
  case KS_GEMM:
  case KS_CALL: PC_BUG("cuda renderer: a gemm or call inside a kernel");
  }
  block_serial(c, s->body, depth + 1);
  indent(c, depth);
  fputs("}\n", c->f);
}

static void block_serial(CR *c, uint32_t blk, int depth) {
  declare(c, blk, depth);
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) stmt_serial(c, &c->p->stmts.a[b->a[i]], depth);
}

static void block_uniform(CR *c, uint32_t blk, int depth, KEffects *pend);

static void barrier(CR *c, int depth) {
  indent(c, depth);
  fputs(c->mode == CM_WARP ? "__syncwarp();\n" : "__syncthreads();\n", c->f);
}

/* A vector loop over the lanes: each thread takes every lanes-th
 * iteration, accumulating its reductions in partials q<N> that are then
 * combined across the warp (or block) and into the variables. */
static void spread_loop(CR *c, const KStmt *s, int depth) {
  const VecU32 *b = &c->p->blocks.a[s->body];
  VecU32 red = {0};
  indent(c, depth);
  fputs("{\n", c->f);
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *t = &c->p->stmts.a[b->a[i]];
    if (t->kind != KS_ASSIGN || c->a.owner[t->var] == s->body || c->part[t->var] != UINT32_MAX) continue;
    int op = cuda_reduction_op(&c->a, t);
    KType ty = c->e->vars.a[t->var].type;
    indent(c, depth + 1);
    fprintf(c->f, "%s q%u = %s;\n", ctype(ty), c->n_part,
            op == KE_ADD ? (ty == K_F32 ? "0.0f" : "0LL") : (ty == K_F32 ? "-PC_INF" : "(-9223372036854775807LL - 1)"));
    c->part[t->var] = c->n_part++;
    vec_push(&red, b->a[i]);
  }
  indent(c, depth + 1);
  loop_head(c, s, " + pc_lane", "pc_lanes");
  block_serial(c, s->body, depth + 2);
  indent(c, depth + 1);
  fputs("}\n", c->f);
  for (size_t i = 0; i < red.n; i++) {
    const KStmt *t = &c->p->stmts.a[red.a[i]];
    int sum = cuda_reduction_op(&c->a, t) == KE_ADD, f32 = c->e->vars.a[t->var].type == K_F32;
    uint32_t q = c->part[t->var];
    c->part[t->var] = UINT32_MAX;
    indent(c, depth + 1);
    var_name(c, t->var);
    fprintf(c->f, " = %s", sum ? "" : f32 ? "fmaxf(" : "pc_max64(");
    var_name(c, t->var);
    fprintf(c->f, "%s", sum ? " + " : ", ");
    if (c->mode != CM_WARP) {
      fprintf(c->f, "pc_block_%s_%c(q%u, pc_sh%c)", sum ? "sum" : "max", f32 ? 'f' : 'i', q, f32 ? 'f' : 'i');
      *(f32 ? &c->used_shf : &c->used_shi) = 1;
    } else {
      fprintf(c->f, "pc_warp_%s_%c(q%u)", sum ? "sum" : "max", f32 ? 'f' : 'i', q);
    }
    fputs(sum ? ";\n" : ");\n", c->f);
  }
  indent(c, depth);
  fputs("}\n", c->f);
  vec_free(&red);
}

/* Uniform code: every thread of the row runs it. */
static void stmt_uniform(CR *c, const KStmt *s, int depth, const KEffects *eff) {
  switch (s->kind) {
  case KS_ASSIGN: stmt_serial(c, s, depth); return;
  case KS_STORE:
    indent(c, depth);
    fputs("if (pc_lane == 0) ", c->f);
    stmt_serial(c, s, 0);
    return;
  case KS_FILL:
  case KS_COPY:
    indent(c, depth);
    fill_copy(c, s, "pc_lane, pc_lanes");
    return;
  case KS_GEMM:
  case KS_CALL: PC_BUG("cuda renderer: a gemm or call inside a kernel");
  case KS_FOR:
    if (s->loop == KL_VECTOR && cuda_vfor_spreads(&c->a, s)) {
      spread_loop(c, s, depth);
      return;
    }
    indent(c, depth);
    loop_head(c, s, "", "1");
    break;
  case KS_IF:
  case KS_WHILE:
    indent(c, depth);
    fputs(s->kind == KS_IF ? "if (" : "while (", c->f);
    expr(c, s->e[0]);
    fputs(") {\n", c->f);
    break;
  }
  KEffects pend = {0};
  block_uniform(c, s->body, depth + 1, &pend);
  /* a loop's next iteration after this one's writes */
  if (s->kind != KS_IF && kir_effects_conflict(c->e, &pend, eff)) barrier(c, depth + 1);
  kir_effects_free(&pend);
  indent(c, depth);
  fputs("}\n", c->f);
}

static void block_uniform(CR *c, uint32_t blk, int depth, KEffects *pend) {
  declare(c, blk, depth);
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &c->p->stmts.a[b->a[i]];
    KEffects eff = {0};
    kir_effects(c->p, s, &eff);
    if (kir_effects_conflict(c->e, pend, &eff)) {
      barrier(c, depth);
      kir_effects_clear(pend);
    }
    stmt_uniform(c, s, depth, &eff);
    for (size_t k = 0; k < eff.r.n; k++) vec_push(&pend->r, eff.r.a[k]);
    for (size_t k = 0; k < eff.w.n; k++) vec_push(&pend->w, eff.w.a[k]);
    kir_effects_free(&eff);
  }
}

/* ---- kernels ---------------------------------------------------------------- */

static void use_buf(CR *c, uint32_t b, int written) {
  if (c->buf_map[b] == UINT32_MAX) {
    c->buf_map[b] = (uint32_t)c->bufs.n;
    vec_push(&c->bufs, b);
  }
  if (written) c->buf_written[b] = 1;
}

static void use_var(CR *c, uint32_t v) {
  if (c->var_kind[v]) return;
  c->var_kind[v] = '?';
  vec_push(&c->vars, v);
}

static void uses_expr(CR *c, uint32_t x) {
  const KExpr *k = &c->p->exprs.a[x];
  if (k->op == KE_VAR) use_var(c, k->id);
  if (k->op == KE_LOAD) use_buf(c, k->id, 0);
  for (int i = 0; i < kop_info(k->op)->n; i++) uses_expr(c, k->a[i]);
}

static void uses_stmt(CR *c, const KStmt *s, unsigned char *assigned) {
  int n = s->kind == KS_FOR || s->kind == KS_STORE ? 2 : s->kind == KS_FILL || s->kind == KS_COPY ? 3 : 1;
  if (s->kind == KS_FOR || s->kind == KS_ASSIGN) use_var(c, s->var);
  if (s->kind == KS_ASSIGN) assigned[s->var] = 1;
  if (s->kind == KS_STORE || s->kind == KS_FILL || s->kind == KS_COPY) use_buf(c, s->buf[0], 1);
  if (s->kind == KS_COPY) use_buf(c, s->buf[1], 0);
  for (int k = 0; k < n; k++) uses_expr(c, s->e[k]);
  if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
    const VecU32 *b = &c->p->blocks.a[s->body];
    for (size_t i = 0; i < b->n; i++) uses_stmt(c, &c->p->stmts.a[b->a[i]], assigned);
  }
}

static int failf(CR *c, const char *what, const KStmt *s) {
  if (!c->failed) pc_errorf(c->err, "cuda: entry %s: %s (statement %td)", c->e->name, what, s - c->p->stmts.a);
  c->failed = 1;
  return -1;
}

/* The kernel's body, after its parameters are named. */
static void kernel_body(CR *c, const KStmt *s) {
  static const char *row_start[] = {
      [CM_THREAD] = " + (i64)blockIdx.x * blockDim.x + threadIdx.x",
      [CM_WARP] = " + (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)",
      [CM_BLOCK] = " + (i64)blockIdx.x"};
  static const char *row_step[] = {
      [CM_THREAD] = "(i64)gridDim.x * blockDim.x", [CM_WARP] = "(i64)gridDim.x * (blockDim.x >> 5)", [CM_BLOCK] = "(i64)gridDim.x"};
  if (c->mode == CM_WARP) fputs("  const int pc_lane = threadIdx.x & 31, pc_lanes = 32;\n", c->f);
  if (c->mode == CM_BLOCK || c->mode == CM_GROUP) fputs("  const int pc_lane = threadIdx.x, pc_lanes = blockDim.x;\n", c->f);
  if (c->mode == CM_SERIAL || c->mode == CM_GROUP) { /* a host statement: its variables in, and back out */
    for (size_t i = 0; i < c->vars.n; i++)
      if (c->var_kind[c->vars.a[i]] == 'r')
        fprintf(c->f, "  %s r%u = r%ui;\n", ctype(c->e->vars.a[c->vars.a[i]].type), c->var_map[c->vars.a[i]],
                c->var_map[c->vars.a[i]]);
    if (c->mode == CM_SERIAL) {
      stmt_serial(c, s, 1);
    } else {
      KEffects eff = {0};
      kir_effects(c->p, s, &eff);
      stmt_uniform(c, s, 1, &eff);
      kir_effects_free(&eff);
    }
    for (size_t i = 0; i < c->vars.n; i++)
      if (c->var_kind[c->vars.a[i]] == 'r')
        fprintf(c->f, "  %s*r%up = r%u;\n", c->mode == CM_GROUP ? "if (pc_lane == 0) " : "", c->var_map[c->vars.a[i]],
                c->var_map[c->vars.a[i]]);
    return;
  }
  indent(c, 1);
  loop_head(c, s, row_start[c->mode], row_step[c->mode]);
  if (c->mode == CM_THREAD) {
    block_serial(c, s->body, 2);
  } else {
    KEffects pend = {0};
    block_uniform(c, s->body, 2, &pend);
    kir_effects_free(&pend);
  }
  fputs("  }\n", c->f);
}

static char *mem_text(FILE *f, char **buf) {
  fclose(f);
  return *buf;
}

/* Appends launch l, with the buffers its statement writes. */
static void add_launch(CR *c, uint32_t stmt, CudaLaunch l) {
  KEffects fx = {0};
  kir_effects(c->p, &c->p->stmts.a[stmt], &fx);
  l.w0 = (uint32_t)c->out->writes.n;
  l.n_w = (uint32_t)fx.w.n;
  for (size_t i = 0; i < fx.w.n; i++) vec_push(&c->out->writes, fx.w.a[i]);
  kir_effects_free(&fx);
  c->out->launch_of[stmt] = (uint32_t)c->out->launches.n;
  vec_push(&c->out->launches, l);
}

/* Makes (or finds) the kernel of statement s and records its launch. */
static void kernel(CR *c, uint32_t stmt, CudaMode mode, uint32_t threads) {
  const KStmt *s = &c->p->stmts.a[stmt];
  size_t nb = c->e->bufs.n + 1, nv = c->e->vars.n + 1;
  unsigned char *assigned = pc_xcalloc(nv, 1);
  c->buf_map = pc_xmalloc(sizeof(uint32_t) * nb);
  memset(c->buf_map, 0xff, sizeof(uint32_t) * nb);
  c->buf_written = pc_xcalloc(nb, 1);
  c->mirror = pc_xcalloc(nb, 1);
  c->var_map = pc_xcalloc(nv, sizeof(uint32_t));
  c->var_kind = pc_xcalloc(nv, 1);
  c->bufs.n = c->vars.n = 0;
  c->mode = mode;
  c->n_part = 0;
  c->used_shf = c->used_shi = 0;
  c->root_body = s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE ? s->body : UINT32_MAX;
  uses_stmt(c, s, assigned);
  /* the bf16 mirrors of what products read (a parallel loop's rows only) */
  uint32_t m0 = (uint32_t)c->out->mirrors.n;
  for (size_t i = 0; i < c->bufs.n && mode != CM_SERIAL && mode != CM_GROUP; i++) {
    uint32_t b = c->bufs.a[i];
    c->mirror[b] = c->buf_written[b] && (c->a.operand[b] || c->a.half[b]) && cuda_mirror_find(&c->a, s, b, c->out);
    PC_ASSERT(c->mirror[b] || !c->buf_written[b] || !c->a.half[b]); /* cuda_half_find saw the same rows */
  }
  uint32_t n_kind[128] = {0};
  for (size_t i = 0; i < c->vars.n; i++) {
    uint32_t v = c->vars.a[i];
    int local = c->root_body != UINT32_MAX && c->a.owner[v] != UINT32_MAX && cuda_block_inside(&c->a, c->a.owner[v], c->root_body);
    char k = local ? 'l' : assigned[v] ? 'r' : 'v';
    if (k == 'r' && mode != CM_SERIAL && mode != CM_GROUP) failf(c, "a parallel loop assigns a variable of the host", s);
    c->var_kind[v] = k;
    c->var_map[v] = n_kind[(int)k]++;
  }
  /* the body */
  char *body = NULL, *sig = NULL;
  size_t body_len = 0, sig_len = 0;
  c->f = open_memstream(&body, &body_len);
  kernel_body(c, s);
  mem_text(c->f, &body);
  /* the parameters: dims, buffers, variables by value, assigned variables */
  CudaLaunch l = {.entry = c->entry, .stmt = stmt, .mode = mode, .threads = threads, .arg0 = (uint32_t)c->out->args.n,
                  .m0 = m0, .n_m = (uint32_t)c->out->mirrors.n - m0};
  VEC(char *) types = {0};
  FILE *g = open_memstream(&sig, &sig_len);
  char t[64];
  for (uint32_t d = 0; d < c->e->dims.n; d++) {
    vec_push(&c->out->args, ((CudaArg){CA_DIM, K_I64, d}));
    vec_push(&types, pc_xstrdup("i64"));
    fprintf(g, "%si64 d%u", d ? ", " : "", d);
  }
  for (size_t i = 0; i < c->bufs.n; i++) {
    uint32_t b = c->bufs.a[i];
    snprintf(t, sizeof t, "%s%s *__restrict__", c->buf_written[b] ? "" : "const ", ctype(c->e->bufs.a[b].elem));
    vec_push(&c->out->args, ((CudaArg){CA_BUF, 0, b}));
    vec_push(&types, pc_xstrdup(t));
    fprintf(g, "%s%s p%zu", types.n > 1 ? ", " : "", t, i);
  }
  for (size_t i = 0; i < c->bufs.n; i++) { /* mirrors stored, and those of buffers living there (loaded) */
    if (!c->mirror[c->bufs.a[i]] && !c->a.half[c->bufs.a[i]]) continue;
    vec_push(&c->out->args, ((CudaArg){CA_MIRROR, 0, c->bufs.a[i]}));
    vec_push(&types, pc_xstrdup("unsigned short *__restrict__"));
    fprintf(g, ", unsigned short *__restrict__ h%zu", i);
  }
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < c->vars.n; i++) {
      uint32_t v = c->vars.a[i];
      KType ty = c->e->vars.a[v].type;
      if (c->var_kind[v] != (pass ? 'r' : 'v')) continue;
      vec_push(&c->out->args, ((CudaArg){CA_VAR, (uint8_t)ty, v}));
      vec_push(&types, pc_xstrdup(ctype(ty)));
      fprintf(g, "%s%s %c%u%s", types.n > 1 ? ", " : "", ctype(ty), pass ? 'r' : 'v', c->var_map[v], pass ? "i" : "");
      if (pass) {
        snprintf(t, sizeof t, "%s *", ctype(ty));
        vec_push(&c->out->args, ((CudaArg){CA_SLOT, (uint8_t)ty, v}));
        vec_push(&types, pc_xstrdup(t));
        fprintf(g, ", %sr%up", t, c->var_map[v]);
      }
    }
  mem_text(g, &sig);
  l.n_args = (uint32_t)(c->out->args.n - l.arg0);
  /* one kernel per distinct text */
  const char *shared = c->used_shf && c->used_shi ? "  __shared__ float pc_shf[32];\n  __shared__ i64 pc_shi[32];\n"
                       : c->used_shf ? "  __shared__ float pc_shf[32];\n" : c->used_shi ? "  __shared__ i64 pc_shi[32];\n" : "";
  size_t key_len = sig_len + strlen(shared) + body_len;
  char *key = pc_xmalloc(key_len + 1);
  snprintf(key, key_len + 1, "%s%s%s", sig, shared, body);
  if (!strmap_get(&c->seen, key, key_len, &l.kernel)) {
    l.kernel = c->out->n_kernels++;
    strmap_put(&c->seen, key, key_len, l.kernel);
    static const char *modes[] = {"one thread", "a thread per row", "a warp per row", "a block per row", "one block"};
    /* registers for the largest block any launch uses (ptxas otherwise assumes 1024 threads may not be asked for) */
    unsigned most = c->o->block_threads > c->o->warp_threads ? c->o->block_threads : c->o->warp_threads;
    if (c->o->thread_threads > most) most = c->o->thread_threads;
    fprintf(c->kernels, "\n/* %s */\nextern \"C\" __global__ void __launch_bounds__(%u) k%u(%s) {\n%s%s}\n", modes[mode], most,
            l.kernel, sig, shared, body);
    fprintf(c->emu, "extern \"C\" void pc_emu_k%u(void **a) { k%u(", l.kernel, l.kernel);
    for (size_t i = 0; i < types.n; i++) fprintf(c->emu, "%s*(%s *)a[%zu]", i ? ", " : "", types.a[i], i);
    fputs("); }\n", c->emu);
  }
  add_launch(c, stmt, l);
  for (size_t i = 0; i < types.n; i++) free(types.a[i]);
  vec_free(&types);
  free(key);
  free(sig);
  free(body);
  free(assigned);
  free(c->buf_map);
  free(c->buf_written);
  free(c->mirror);
  free(c->var_map);
  free(c->var_kind);
}

/* ---- the host's part of an entry --------------------------------------------- */

/* a gemm or a call: what only the host can start */
static int has_host_call(const KProgram *p, uint32_t blk) {
  const VecU32 *b = &p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    if (s->kind == KS_GEMM || s->kind == KS_CALL ||
        ((s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && has_host_call(p, s->body)))
      return 1;
  }
  return 0;
}

/* A call: the library's kernels for its op, each instantiated once per head
 * dim (a wrapper taking the op's struct), listed in the launch's args. */
static void library_call(CR *c, uint32_t stmt) {
  const KStmt *s = &c->p->stmts.a[stmt];
  const KCall *call = &c->p->calls.a[s->call];
  const KCallInfo *ci = kcall_info(call->op);
  int loads = 0;
  for (int k = 0; k < ci->n_arg; k++) loads |= kexpr_loads(c->p, call->arg[k]);
  if (loads) failf(c, "a call's arguments are read from device memory", s);
  const KExpr *dx = &c->p->exprs.a[call->arg[4]];
  if (dx->op != KE_ICONST || !cuda_call_supported(call->op, dx->i)) failf(c, "a call without library kernels for its head dim", s);
  if (c->failed) return;
  const char *fn[CUDA_CALL_MAX_KERNELS];
  unsigned threads[CUDA_CALL_MAX_KERNELS];
  int n = cuda_call_kernels(call->op, dx->i, fn, threads);
  CudaLaunch l = {.entry = c->entry, .stmt = stmt, .mode = CM_CALL, .arg0 = (uint32_t)c->out->args.n, .n_args = (uint32_t)n,
                  .m0 = (uint32_t)c->out->mirrors.n};
  int64_t known[KCALL_MAX_ARGS] = {0}, elements; /* the arguments' constants (the mirror's layout is one) */
  for (int k = 0; k < ci->n_arg; k++) {
    const KExpr *x = &c->p->exprs.a[call->arg[k]];
    if (x->op == KE_ICONST) known[k] = x->i;
  }
  int mb = cuda_call_mirror(call->op, known, &elements);
  if (mb == 9 && (call->buf[9] != call->buf[10] || call->buf[10] != call->buf[11])) mb = -1; /* columns of one buffer */
  const KBuf *y = mb < 0 ? NULL : &c->e->bufs.a[call->buf[mb]];
  if (y && y->kind == KB_ARENA && y->elem == K_F32 && c->a.operand[call->buf[mb]]) { /* its kernels know the rows */
    vec_push(&c->out->mirrors, ((CudaMirror){.buf = call->buf[mb], .w = UINT32_MAX})); /* in fp32 too */
    l.n_m = 1;
  }
  for (int i = 0; i < n; i++) {
    char key[64];
    int key_len = snprintf(key, sizeof key, "%s<%" PRId64 ">", fn[i], dx->i);
    uint32_t k;
    if (!strmap_get(&c->seen, key, (size_t)key_len, &k)) {
      k = c->out->n_kernels++;
      strmap_put(&c->seen, key, (size_t)key_len, k);
      fprintf(c->kernels, "\n/* %s, library */\nextern \"C\" __global__ void __launch_bounds__(%u) k%u(PcAttn a) {\n  %s(a);\n}\n",
              ci->name, threads[i], k, key);
      fprintf(c->emu, "extern \"C\" void pc_emu_k%u(void **a) { k%u(*(PcAttn *)a[0]); }\n", k, k);
    }
    vec_push(&c->out->args, ((CudaArg){CA_KERNEL, 0, k}));
  }
  c->used_library = 1;
  add_launch(c, stmt, l);
}

/* the arena bytes that the entry's mirrors cover */
static void mirror_span(CR *c) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t i = 0; i < c->out->launches.n; i++) {
    const CudaLaunch *l = &c->out->launches.a[i];
    for (uint32_t k = 0; l->entry == c->entry && k < l->n_m; k++) {
      const KBuf *b = &c->e->bufs.a[c->out->mirrors.a[l->m0 + k].buf];
      if (b->offset < lo) lo = b->offset;
      if (b->offset + 4 * b->numel > hi) hi = b->offset + 4 * b->numel;
    }
  }
  for (uint32_t i = 0; i < c->e->bufs.n; i++) {
    const KBuf *b = &c->e->bufs.a[i];
    if (!c->a.half[i]) continue;
    if (b->offset < lo) lo = b->offset;
    if (b->offset + 4 * b->numel > hi) hi = b->offset + 4 * b->numel;
  }
  c->out->mirror_span[2 * c->entry] = lo < hi ? lo : 0;
  c->out->mirror_span[2 * c->entry + 1] = lo < hi ? hi : 0;
}

static void host_block(CR *c, uint32_t blk) {
  const VecU32 *b = &c->p->blocks.a[blk];
  for (size_t i = 0; i < b->n && !c->failed; i++) {
    uint32_t id = b->a[i];
    const KStmt *s = &c->p->stmts.a[id];
    if (s->kind == KS_FOR && s->loop == KL_PARALLEL) {
      if (kexpr_loads(c->p, s->e[0]) || kexpr_loads(c->p, s->e[1]))
        failf(c, "a parallel loop's bounds are read from device memory", s);
      if (has_host_call(c->p, s->body)) failf(c, "a gemm or call inside a parallel loop", s);
      uint32_t threads;
      CudaMode mode = cuda_choose_mode(&c->a, s, c->o, &threads);
      if (!c->failed) kernel(c, id, mode, threads);
    } else if (s->kind == KS_CALL) {
      library_call(c, id);
    } else if (cuda_stmt_launches(c->p, s)) { /* the host runs it: its own expressions must not read memory */
      int loads = 0;
      for (int k = 0; k < (s->kind == KS_FOR ? 2 : s->kind == KS_GEMM ? 0 : 1); k++) loads |= kexpr_loads(c->p, s->e[k]);
      if (s->kind == KS_GEMM) {
        const KGemm *g = &c->p->gemms.a[s->gemm];
        uint32_t xs[] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
        for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) loads |= kexpr_loads(c->p, xs[k]);
      }
      if (loads) failf(c, "a loop bound, condition or matrix size is read from device memory", s);
      else if (s->kind != KS_GEMM) host_block(c, s->body);
    } else if (cuda_stmt_touches(c->p, s)) {
      int host_op = (s->kind == KS_FILL || s->kind == KS_COPY) && !kexpr_loads(c->p, s->e[0]) &&
                    !kexpr_loads(c->p, s->e[1]) && !kexpr_loads(c->p, s->e[2]);
      uint32_t threads;
      CudaMode mode = cuda_choose_serial_mode(&c->a, s, c->o, &threads);
      if (!host_op) kernel(c, id, mode, threads);
    }
  }
}

static const char prelude[] =
    "/* Generated by pondercc (backend cuda): NVRTC compiles it to PTX. */\n"
    "typedef long long i64;\n"
    "#define PC_INF __int_as_float(0x7f800000)\n"
    "static __device__ __forceinline__ i64 pc_min64(i64 a, i64 b) { return a < b ? a : b; }\n"
    "static __device__ __forceinline__ i64 pc_max64(i64 a, i64 b) { return a > b ? a : b; }\n"
    "/* reductions over a warp (every lane gets the result) */\n"
    "static __device__ __forceinline__ float pc_warp_sum_f(float v) {\n"
    "  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);\n  return v;\n}\n"
    "static __device__ __forceinline__ float pc_warp_max_f(float v) {\n"
    "  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));\n  return v;\n}\n"
    "static __device__ __forceinline__ i64 pc_warp_sum_i(i64 v) {\n"
    "  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);\n  return v;\n}\n"
    "static __device__ __forceinline__ i64 pc_warp_max_i(i64 v) {\n"
    "  for (int m = 16; m > 0; m >>= 1) v = pc_max64(v, __shfl_xor_sync(0xffffffffu, v, m));\n  return v;\n}\n"
    "/* over a block: each warp's result through shared memory, then every warp\n"
    " * reduces those; the second barrier keeps sh free for the next call */\n"
    "#define PC_BLOCK_REDUCE(name, T, warp, identity) \\\n"
    "  static __device__ T name(T v, T *sh) { \\\n"
    "    v = warp(v); \\\n"
    "    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v; \\\n"
    "    __syncthreads(); \\\n"
    "    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : (identity); \\\n"
    "    v = warp(v); \\\n"
    "    __syncthreads(); \\\n"
    "    return v; \\\n"
    "  }\n"
    "PC_BLOCK_REDUCE(pc_block_sum_f, float, pc_warp_sum_f, 0.0f)\n"
    "PC_BLOCK_REDUCE(pc_block_max_f, float, pc_warp_max_f, -PC_INF)\n"
    "PC_BLOCK_REDUCE(pc_block_sum_i, i64, pc_warp_sum_i, 0LL)\n"
    "PC_BLOCK_REDUCE(pc_block_max_i, i64, pc_warp_max_i, (-9223372036854775807LL - 1))\n"
    "/* fill and copy, spread over lanes lane, lane + lanes, ...; an overlapping\n"
    " * copy runs on one lane in memmove's order */\n"
    "static __device__ void pc_fill_f(float *d, i64 n, float v, int lane, int lanes) {\n"
    "  for (i64 z = lane; z < n; z += lanes) d[z] = v;\n}\n"
    "static __device__ void pc_fill_i(int *d, i64 n, i64 v, int lane, int lanes) {\n"
    "  for (i64 z = lane; z < n; z += lanes) d[z] = (int)v;\n}\n"
    "static __device__ void pc_copy32(void *dv, const void *sv, i64 n, int lane, int lanes) {\n"
    "  unsigned *d = (unsigned *)dv;\n  const unsigned *s = (const unsigned *)sv;\n"
    "  if (d < s + n && s < d + n) {\n"
    "    if (lane == 0 && d < s) for (i64 z = 0; z < n; z++) d[z] = s[z];\n"
    "    if (lane == 0 && d > s) for (i64 z = n - 1; z >= 0; z--) d[z] = s[z];\n"
    "  } else {\n"
    "    for (i64 z = lane; z < n; z += lanes) d[z] = s[z];\n  }\n}\n"
    "/* a copy from another buffer that also writes its bf16 mirror h (when\n"
    " * the host gave one); alone: the mirror alone (cuda_mirror.c) */\n"
    "static __device__ __forceinline__ unsigned short pc_bf16(float v);\n"
    "static __device__ __forceinline__ float pc_f32(unsigned short h);\n"
    "static __device__ void pc_copy_mirror(float *d, unsigned short *h, const float *s, i64 n, int alone, int lane,\n"
    "                                      int lanes) {\n"
    "  for (i64 z = lane; z < n; z += lanes) {\n"
    "    const float v = s[z];\n"
    "    if (h) h[z] = pc_bf16(v);\n"
    "    if (!h || !alone) d[z] = v;\n  }\n}\n";

CudaOptions cuda_options_default(void) { return (CudaOptions){.block_threads = 256, .warp_threads = 128, .thread_threads = 128}; }

int cuda_render(const KProgram *p, const CudaOptions *o, CudaProgram *out, PcError *err) {
  *out = (CudaProgram){.prog = p};
  out->launch_of = pc_xmalloc(sizeof(uint32_t) * (p->stmts.n + 1));
  out->mirror_span = pc_xcalloc(2 * p->entries.n + 1, sizeof(uint64_t));
  out->half0 = pc_xcalloc(p->entries.n + 1, sizeof(uint32_t));
  for (size_t i = 0; i < p->entries.n; i++) {
    out->half0[i] = (uint32_t)out->half.n;
    for (size_t b = 0; b < p->entries.a[i].bufs.n; b++) vec_push(&out->half, 0);
  }
  memset(out->launch_of, 0xff, sizeof(uint32_t) * (p->stmts.n + 1));
  char *kernels = NULL, *emu = NULL;
  size_t kn = 0, en = 0;
  CR c = {.p = p, .o = o, .out = out, .err = err, .kernels = open_memstream(&kernels, &kn), .emu = open_memstream(&emu, &en)};
  for (size_t i = 0; i < p->entries.n && !c.failed; i++) {
    c.e = &p->entries.a[i];
    c.entry = (uint32_t)i;
    cuda_scan_init(&c.a, p, c.e);
    cuda_half_find(&c.a);
    if (c.e->bufs.n) memcpy(out->half.a + out->half0[i], c.a.half, c.e->bufs.n);
    c.part = pc_xmalloc(sizeof(uint32_t) * (c.e->vars.n + 1));
    memset(c.part, 0xff, sizeof(uint32_t) * (c.e->vars.n + 1));
    host_block(&c, c.e->body);
    if (!c.failed) cuda_mirror_overwritten(&c.a, c.e->body, out);
    mirror_span(&c);
    free(c.part);
    cuda_scan_free(&c.a);
  }
  for (int k = 0; k < CR_NUM && !c.failed; k++) { /* the runtime's, after the program's own */
    const CudaRuntimeInfo *ri = cuda_runtime_info((CudaRuntimeKernel)k);
    uint32_t n = out->runtime_kernel[k] = out->n_kernels++;
    fprintf(c.kernels, "\n/* runtime */\nextern \"C\" __global__ void __launch_bounds__(256) k%u(%s a) {\n  %s(a);\n}\n", n,
            ri->arg_type, ri->fn);
    fprintf(c.emu, "extern \"C\" void pc_emu_k%u(void **a) { k%u(*(%s *)a[0]); }\n", n, n, ri->arg_type);
  }
  mem_text(c.kernels, &kernels);
  mem_text(c.emu, &emu);
  strmap_free(&c.seen);
  vec_free(&c.bufs);
  vec_free(&c.vars);
  if (!c.failed) {
    char *src = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&src, &n);
    fprintf(f, "%s\n%s\n%s\n%s/* %u kernels */\n%s\n#ifdef PONDER_CUDA_EMU\n%s#endif\n", prelude, cuda_library_runtime,
            cuda_library_optim, c.used_library ? cuda_library_attention : "", out->n_kernels, kernels, emu);
    out->source = mem_text(f, &src);
  }
  free(kernels);
  free(emu);
  if (c.failed) {
    cuda_program_free(out);
    return -1;
  }
  return 0;
}

void cuda_program_free(CudaProgram *cp) {
  free(cp->source);
  free(cp->launch_of);
  vec_free(&cp->launches);
  vec_free(&cp->args);
  vec_free(&cp->writes);
  vec_free(&cp->mirrors);
  vec_free(&cp->mirror_terms);
  free(cp->mirror_span);
  vec_free(&cp->half);
  free(cp->half0);
  *cp = (CudaProgram){0};
}
