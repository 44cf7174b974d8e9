/* Sibling row loops as one (KSchedule.merge_rows, the GPU's choice: each
 * parallel loop at host level is a kernel launch). Two parallel loops one
 * after the other in a host-level block, over the same range, that share
 * no memory either of them writes (kir_effects_conflict, arena bytes
 * included) and hold no serial loops, become one: each iteration runs
 * the first's body, then the second's reading the first's loop variable
 * for its own. A rope of q and one
 * of k, or a rope and the slice beside it, are then one kernel. Host
 * assignments between the two that load nothing (the dims a loop's bounds
 * come from) move in front of the first, which does not read them. */
#include <stdlib.h>
#include <string.h>

#include "compiler/lower/lower_internal.h"

typedef struct {
  KProgram *p;
  uint32_t entry;
  uint32_t *value; /* per variable: its value where the entry assigns it once, from values that load nothing */
} Merge;

/* n[v]: how often block assigns v (a loop's variable: twice, it has no one value) */
static void count_assigns(const KProgram *p, uint32_t block, uint32_t *n, uint32_t *value) {
  const VecU32 *b = &p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    if (s->kind == KS_ASSIGN && n[s->var]++ == 0 && !kexpr_loads(p, s->e[0])) value[s->var] = s->e[0];
    if (s->kind == KS_FOR) n[s->var] += 2;
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) count_assigns(p, s->body, n, value);
  }
}

/* Whether statement s (a row loop, with everything nested: no products or
 * calls, which run on the host) reads variable var */
static int stmt_reads(const KProgram *p, const KStmt *s, uint32_t var) {
  for (int k = 0; k < kstmt_n_exprs(s); k++)
    if (kexpr_uses_var(p, s->e[k], var)) return 1;
  if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
    const VecU32 *b = &p->blocks.a[s->body];
    for (size_t i = 0; i < b->n; i++)
      if (stmt_reads(p, &p->stmts.a[b->a[i]], var)) return 1;
  }
  return 0;
}

static int is_parfor(const KStmt *s) { return s->kind == KS_FOR && s->loop == KL_PARALLEL; }

/* Whether block holds a serial loop: a chain of steps for each row, which
 * a GPU runs well only with many rows in flight (a row per thread or warp);
 * beside a wide loop it would take a whole block per row. */
static int has_serial_loop(const KProgram *p, uint32_t block) {
  const VecU32 *b = &p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    if ((s->kind == KS_FOR && s->loop == KL_SERIAL) || s->kind == KS_WHILE) return 1;
    if ((s->kind == KS_FOR || s->kind == KS_IF) && has_serial_loop(p, s->body)) return 1;
  }
  return 0;
}

/* Whether loop t can join loop s (both parallel, s first) */
static int can_join(const Merge *m, uint32_t s, uint32_t t) {
  const KStmt *a = &m->p->stmts.a[s], *b = &m->p->stmts.a[t];
  if (!is_parfor(b) || has_serial_loop(m->p, a->body) || has_serial_loop(m->p, b->body) ||
      !kexpr_same(m->p, a->e[0], b->e[0], m->value) || !kexpr_same(m->p, a->e[1], b->e[1], m->value))
    return 0;
  KEffects ea = {0}, eb = {0};
  kir_effects(m->p, a, &ea);
  kir_effects(m->p, b, &eb);
  int ok = !kir_effects_conflict(&m->p->entries.a[m->entry], &ea, &eb);
  kir_effects_free(&ea);
  kir_effects_free(&eb);
  return ok;
}

/* The statements of block with expression `with` for variable var (a row
 * loop holds no products or calls: they run on the host) */
static void subst_block(KProgram *p, uint32_t block, uint32_t var, uint32_t with) {
  for (size_t i = 0; i < p->blocks.a[block].n; i++) {
    KStmt *s = &p->stmts.a[p->blocks.a[block].a[i]]; /* only p->exprs grows below */
    if (s->kind == KS_GEMM || s->kind == KS_CALL) PC_BUG("merge_rows: a product or call inside a row loop");
    for (int k = 0; k < kstmt_n_exprs(s); k++) s->e[k] = kx_subst_var(p, s->e[k], var, with);
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) subst_block(p, s->body, var, with);
  }
}

/* t's body after s's, reading s's variable where it read its own */
static void join(Merge *m, uint32_t s, uint32_t t) {
  KProgram *p = m->p;
  uint32_t body = p->stmts.a[s].body, tbody = p->stmts.a[t].body;
  subst_block(p, tbody, p->stmts.a[t].var, kx_var(p, &p->entries.a[m->entry], p->stmts.a[s].var));
  for (size_t i = 0; i < p->blocks.a[tbody].n; i++) vec_push(&p->blocks.a[body], p->blocks.a[tbody].a[i]);
  p->blocks.a[tbody].n = 0;
}

static void merge_block(Merge *m, uint32_t block) {
  KProgram *p = m->p;
  VecU32 in = p->blocks.a[block], out = {0}; /* the block's statements, rebuilt into out */
  p->blocks.a[block] = (VecU32){0};
  for (size_t i = 0; i < in.n; i++) {
    const KStmt *s = &p->stmts.a[in.a[i]];
    if ((s->kind == KS_FOR && s->loop != KL_PARALLEL) || s->kind == KS_IF || s->kind == KS_WHILE) merge_block(m, s->body);
  }
  for (size_t i = 0; i < in.n;) {
    uint32_t s = in.a[i++];
    if (!is_parfor(&p->stmts.a[s])) {
      vec_push(&out, s);
      continue;
    }
    for (;;) { /* join the loops after s while they can, moving host assignments between them in front */
      size_t k = i;
      while (k < in.n && p->stmts.a[in.a[k]].kind == KS_ASSIGN && !kexpr_loads(p, p->stmts.a[in.a[k]].e[0]) &&
             !stmt_reads(p, &p->stmts.a[s], p->stmts.a[in.a[k]].var))
        k++;
      if (k == in.n || !can_join(m, s, in.a[k])) break;
      for (; i < k; i++) vec_push(&out, in.a[i]);
      join(m, s, in.a[i++]);
    }
    vec_push(&out, s);
  }
  vec_free(&in);
  p->blocks.a[block] = out;
}

void merge_rows(KProgram *p, uint32_t entry) {
  const KEntry *e = &p->entries.a[entry];
  Merge m = {.p = p, .entry = entry, .value = pc_xmalloc(sizeof(uint32_t) * (e->vars.n + 1))};
  uint32_t *n = pc_xcalloc(e->vars.n + 1, sizeof *n);
  memset(m.value, 0xff, sizeof(uint32_t) * (e->vars.n + 1));
  count_assigns(p, e->body, n, m.value);
  for (size_t v = 0; v < e->vars.n; v++)
    if (n[v] != 1) m.value[v] = UINT32_MAX;
  merge_block(&m, e->body);
  free(n);
  free(m.value);
}
