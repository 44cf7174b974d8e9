/* What the CUDA renderer learns about an entry before rendering it: where
 * each variable lives, which statements touch device memory or hold
 * launches, which vector loops can spread over threads, how a parallel
 * loop maps onto the grid, and which buffers a statement reads and writes
 * (for the barriers between statements that threads share). */
#include "backends/cuda/cuda_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- declarations: the innermost block holding every use of a variable ---- */

static void note_use(CudaScan *a, uint32_t var, uint32_t block) {
  if (a->owner[var] == UINT32_MAX) {
    a->owner[var] = block;
    return;
  }
  for (uint32_t x = a->owner[var]; x != UINT32_MAX; x = a->parent[x])
    if (cuda_block_inside(a, block, x)) {
      a->owner[var] = x;
      return;
    }
  a->owner[var] = a->e->body;
}

/* in_par: inside a parallel loop (a load there is a kernel's; elsewhere the
 * host's or a one-thread kernel's) */
static void scan_expr(CudaScan *a, uint32_t x, uint32_t block, int in_par) {
  const KExpr *k = &a->p->exprs.a[x];
  if (k->op == KE_VAR) note_use(a, k->id, block);
  if (k->op == KE_LOAD) {
    a->loaded[k->id] = 1;
    if (!in_par) a->no_half[k->id] = 1;
  }
  for (int i = 0; i < kop_info(k->op)->n; i++) scan_expr(a, k->a[i], block, in_par);
}

static void gemm_exprs(const KGemm *g, uint32_t xs[9]) {
  uint32_t v[9] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
  memcpy(xs, v, sizeof v);
}

static void scan_block(CudaScan *a, uint32_t block, int in_par) {
  const VecU32 *b = &a->p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &a->p->stmts.a[b->a[i]];
    for (int k = 0; k < kstmt_n_exprs(s); k++) scan_expr(a, s->e[k], block, in_par);
    if (s->kind == KS_GEMM) {
      uint32_t xs[9];
      gemm_exprs(&a->p->gemms.a[s->gemm], xs);
      for (int k = 0; k < 9; k++) scan_expr(a, xs[k], block, in_par);
      const KGemm *g = &a->p->gemms.a[s->gemm];
      a->operand[g->a] = a->operand[g->b] = 1;
      if (g->beta != 0) a->loaded[g->c] = a->no_half[g->c] = 1;
      else a->product_out[g->c] = 1;
    }
    if (s->kind == KS_STORE && !in_par) a->no_half[s->buf[0]] = 1;
    if (s->kind == KS_FILL) a->no_half[s->buf[0]] = 1;
    if (s->kind == KS_COPY) a->loaded[s->buf[1]] = a->no_half[s->buf[0]] = a->no_half[s->buf[1]] = 1;
    if (s->kind == KS_CALL) {
      const KCall *c = &a->p->calls.a[s->call];
      for (int k = 0; k < kcall_info(c->op)->n_arg; k++) scan_expr(a, c->arg[k], block, in_par);
      for (int k = 0; k < kcall_info(c->op)->n_read; k++) a->loaded[c->buf[k]] = 1;
      for (int k = 0; k < kcall_info(c->op)->n_buf; k++) a->no_half[c->buf[k]] = 1;
    }
    if (s->kind == KS_ASSIGN) {
      note_use(a, s->var, block);
      if (a->n_assign[s->var]++ == 0) a->def[s->var] = s->e[0];
    }
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
      a->parent[s->body] = block;
      if (s->kind == KS_FOR) {
        a->loop_var[s->var] = 1;
        note_use(a, s->var, s->body);
      }
      scan_block(a, s->body, in_par || (s->kind == KS_FOR && s->loop == KL_PARALLEL));
    }
  }
}

void cuda_scan_init(CudaScan *a, const KProgram *p, const KEntry *e) {
  size_t nv = e->vars.n + 1, nb = p->blocks.n;
  *a = (CudaScan){.p = p, .e = e};
  a->parent = pc_xmalloc(sizeof(uint32_t) * nb);
  a->owner = pc_xmalloc(sizeof(uint32_t) * nv);
  a->def = pc_xmalloc(sizeof(uint32_t) * nv);
  a->n_assign = pc_xcalloc(nv, sizeof(uint32_t));
  a->loop_var = pc_xcalloc(nv, 1);
  a->operand = pc_xcalloc(e->bufs.n + 1, 1);
  a->loaded = pc_xcalloc(e->bufs.n + 1, 1);
  a->product_out = pc_xcalloc(e->bufs.n + 1, 1);
  a->no_half = pc_xcalloc(e->bufs.n + 1, 1);
  a->half = pc_xcalloc(e->bufs.n + 1, 1);
  memset(a->parent, 0xff, sizeof(uint32_t) * nb);
  memset(a->owner, 0xff, sizeof(uint32_t) * nv);
  scan_block(a, e->body, 0);
}

void cuda_scan_free(CudaScan *a) {
  free(a->parent);
  free(a->owner);
  free(a->def);
  free(a->n_assign);
  free(a->loop_var);
  free(a->operand);
  free(a->loaded);
  free(a->product_out);
  free(a->no_half);
  free(a->half);
}

int cuda_block_inside(const CudaScan *a, uint32_t blk, uint32_t outer) {
  for (uint32_t x = blk; x != UINT32_MAX; x = a->parent[x])
    if (x == outer) return 1;
  return 0;
}

/* ---- what a statement holds ------------------------------------------------ */

static int block_any(const KProgram *p, uint32_t blk, int (*f)(const KProgram *, const KStmt *)) {
  const VecU32 *b = &p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++)
    if (f(p, &p->stmts.a[b->a[i]])) return 1;
  return 0;
}

int cuda_stmt_launches(const KProgram *p, const KStmt *s) {
  if (s->kind == KS_GEMM || s->kind == KS_CALL || (s->kind == KS_FOR && s->loop == KL_PARALLEL)) return 1;
  return (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && block_any(p, s->body, cuda_stmt_launches);
}

int cuda_stmt_multiplies(const KProgram *p, const KStmt *s) {
  if (s->kind == KS_GEMM) return 1;
  return (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && block_any(p, s->body, cuda_stmt_multiplies);
}

int cuda_stmt_touches(const KProgram *p, const KStmt *s) {
  if (s->kind == KS_STORE || s->kind == KS_FILL || s->kind == KS_COPY || s->kind == KS_GEMM || s->kind == KS_CALL) return 1;
  for (int k = 0; k < kstmt_n_exprs(s); k++)
    if (kexpr_loads(p, s->e[k])) return 1;
  return (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && block_any(p, s->body, cuda_stmt_touches);
}

/* ---- compile-time values ---------------------------------------------------- */

static int estimate(const CudaScan *a, uint32_t x, int64_t *out, int depth) {
  const KExpr *k = &a->p->exprs.a[x];
  int64_t v[3] = {0, 0, 0};
  if (depth > 64 || k->type != K_I64) return 0;
  switch (k->op) {
  case KE_ICONST: *out = k->i; return 1;
  case KE_DIM: *out = a->e->dims.a[k->id].max; return 1;
  case KE_VAR:
    return !a->loop_var[k->id] && a->n_assign[k->id] == 1 && estimate(a, a->def[k->id], out, depth + 1);
  case KE_ADD:
  case KE_SUB:
  case KE_MUL:
  case KE_DIV:
  case KE_MIN:
  case KE_MAX:
    for (int i = 0; i < 2; i++)
      if (!estimate(a, k->a[i], &v[i], depth + 1)) return 0;
    if (k->op == KE_DIV && v[1] == 0) return 0;
    *out = k->op == KE_ADD ? v[0] + v[1] : k->op == KE_SUB ? v[0] - v[1] : k->op == KE_MUL ? v[0] * v[1]
         : k->op == KE_DIV ? v[0] / v[1] : k->op == KE_MIN ? (v[0] < v[1] ? v[0] : v[1]) : (v[0] > v[1] ? v[0] : v[1]);
    return 1;
  default: return 0;
  }
}

int cuda_estimate(const CudaScan *a, uint32_t x, int64_t *out) { return estimate(a, x, out, 0); }

/* ---- vector loops ------------------------------------------------------------ */

int cuda_reduction_op(const CudaScan *a, const KStmt *s) {
  const KExpr *x = &a->p->exprs.a[s->e[0]];
  if (x->op != KE_ADD && x->op != KE_MAX) return -1;
  const KExpr *lhs = &a->p->exprs.a[x->a[0]];
  if (lhs->op != KE_VAR || lhs->id != s->var || kexpr_uses_var(a->p, x->a[1], s->var)) return -1;
  KType t = a->e->vars.a[s->var].type;
  return t == K_F32 || t == K_I64 ? (int)x->op : -1;
}

int cuda_vfor_spreads(const CudaScan *a, const KStmt *s) {
  const VecU32 *b = &a->p->blocks.a[s->body];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *t = &a->p->stmts.a[b->a[i]];
    if (t->kind == KS_FOR || t->kind == KS_IF || t->kind == KS_WHILE || t->kind == KS_GEMM) return 0;
    if (t->kind != KS_ASSIGN || a->owner[t->var] == s->body) continue;
    if (cuda_reduction_op(a, t) < 0) return 0;
    /* the accumulator appears in no other statement of the body */
    for (size_t j = 0; j < b->n; j++) {
      const KStmt *u = &a->p->stmts.a[b->a[j]];
      if (j == i) continue;
      if (u->kind == KS_ASSIGN && u->var == t->var) return 0;
      for (int k = 0; k < kstmt_n_exprs(u); k++)
        if (kexpr_uses_var(a->p, u->e[k], t->var)) return 0;
    }
  }
  return 1;
}

static int64_t longest_spread(const CudaScan *a, uint32_t blk);

/* The longest vector loop that spreads over threads in uniform code in s
 * (-1 if none; INT64_MAX if one's length is unknown). Fills and copies in
 * uniform code spread too. */
static int64_t spread_of(const CudaScan *a, const KStmt *s) {
  int64_t lo, hi;
  if (s->kind == KS_FOR && s->loop == KL_VECTOR && cuda_vfor_spreads(a, s))
    return cuda_estimate(a, s->e[0], &lo) && cuda_estimate(a, s->e[1], &hi) ? hi - lo : INT64_MAX;
  if (s->kind == KS_FILL || s->kind == KS_COPY)
    return cuda_estimate(a, s->e[s->kind == KS_FILL ? 1 : 2], &hi) ? hi : INT64_MAX;
  if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) return longest_spread(a, s->body);
  return -1;
}

static int64_t longest_spread(const CudaScan *a, uint32_t blk) {
  int64_t best = -1;
  const VecU32 *b = &a->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    int64_t n = spread_of(a, &a->p->stmts.a[b->a[i]]);
    if (n > best) best = n;
  }
  return best;
}

/* threads for a block whose longest spread is n */
static uint32_t block_threads(const CudaOptions *o, int64_t n) {
  uint32_t t = n >= 512 ? o->block_threads : o->block_threads / 2;
  return t < 32 ? 32 : t;
}

CudaMode cuda_choose_mode(const CudaScan *a, const KStmt *parfor, const CudaOptions *o, uint32_t *threads) {
  int64_t n = longest_spread(a, parfor->body);
  if (n < 0) { /* rows of scalar code: a thread each */
    *threads = o->thread_threads;
    return CM_THREAD;
  }
  if (n <= 128 || n == INT64_MAX) { /* short rows (head dims, tiny models), or rows whose length varies */
    *threads = o->warp_threads;
    return CM_WARP;
  }
  *threads = block_threads(o, n);
  return CM_BLOCK;
}

CudaMode cuda_choose_serial_mode(const CudaScan *a, const KStmt *s, const CudaOptions *o, uint32_t *threads) {
  int64_t n = spread_of(a, s);
  *threads = n < 0 ? 1 : block_threads(o, n == INT64_MAX ? 512 : n);
  return n < 0 ? CM_SERIAL : CM_GROUP;
}

void cuda_written_inputs(const KProgram *p, const KEntry *e, unsigned char *out) {
  KEffects eff = {0};
  const VecU32 *body = &p->blocks.a[e->body];
  for (size_t i = 0; i < body->n; i++) kir_effects(p, &p->stmts.a[body->a[i]], &eff);
  for (size_t i = 0; i < eff.w.n; i++)
    if (e->bufs.a[eff.w.a[i]].kind == KB_INPUT) out[e->bufs.a[eff.w.a[i]].index] = 1;
  kir_effects_free(&eff);
}
