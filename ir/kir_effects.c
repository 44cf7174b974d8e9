/* What kernel-IR statements read and write, by buffer, and what
 * expressions read and whether two are the same: for the passes and
 * backends that reorder or regroup statements (merge_rows, the CUDA
 * renderer's barriers, its mirrors). */
#include "ir/kir.h"

#include <stdlib.h>

int kstmt_n_exprs(const KStmt *s) {
  switch (s->kind) {
  case KS_FOR:
  case KS_STORE: return 2;
  case KS_ASSIGN:
  case KS_IF:
  case KS_WHILE: return 1;
  case KS_FILL:
  case KS_COPY: return 3;
  default: return 0;
  }
}

static void push_unique(VecU32 *v, uint32_t x) {
  for (size_t i = 0; i < v->n; i++)
    if (v->a[i] == x) return;
  vec_push(v, x);
}

void kir_effects_expr(const KProgram *p, uint32_t x, KEffects *out) {
  const KExpr *k = &p->exprs.a[x];
  if (k->op == KE_LOAD) push_unique(&out->r, k->id);
  for (int i = 0; i < kop_info(k->op)->n; i++) kir_effects_expr(p, k->a[i], out);
}

void kir_effects(const KProgram *p, const KStmt *s, KEffects *out) {
  for (int k = 0; k < kstmt_n_exprs(s); k++) kir_effects_expr(p, s->e[k], out);
  switch (s->kind) {
  case KS_STORE:
  case KS_FILL: push_unique(&out->w, s->buf[0]); break;
  case KS_COPY:
    push_unique(&out->w, s->buf[0]);
    push_unique(&out->r, s->buf[1]);
    break;
  case KS_GEMM: {
    const KGemm *g = &p->gemms.a[s->gemm];
    push_unique(&out->r, g->a);
    push_unique(&out->r, g->b);
    push_unique(&out->w, g->c);
    if (g->beta != 0) push_unique(&out->r, g->c);
    break;
  }
  case KS_CALL: {
    const KCall *c = &p->calls.a[s->call];
    const KCallInfo *ci = kcall_info(c->op);
    for (int k = 0; k < ci->n_buf; k++) push_unique(k < ci->n_read ? &out->r : &out->w, c->buf[k]);
    for (int k = 0; k < ci->n_arg; k++) kir_effects_expr(p, c->arg[k], out);
    break;
  }
  case KS_FOR:
  case KS_IF:
  case KS_WHILE: {
    const VecU32 *b = &p->blocks.a[s->body];
    for (size_t i = 0; i < b->n; i++) kir_effects(p, &p->stmts.a[b->a[i]], out);
    break;
  }
  default: break;
  }
}

/* Two buffers of an entry may share memory: the same caller buffer, or
 * overlapping slices of the arena (the memory plan reuses it). */
static int may_alias(const KEntry *e, uint32_t x, uint32_t y) {
  const KBuf *a = &e->bufs.a[x], *b = &e->bufs.a[y];
  if (x == y) return 1;
  if (a->kind != b->kind) return 0;
  if (a->kind != KB_ARENA) return a->index == b->index;
  return a->offset < b->offset + 4 * b->numel && b->offset < a->offset + 4 * a->numel;
}

static int any_alias(const KEntry *e, const VecU32 *x, const VecU32 *y) {
  for (size_t i = 0; i < x->n; i++)
    for (size_t j = 0; j < y->n; j++)
      if (may_alias(e, x->a[i], y->a[j])) return 1;
  return 0;
}

int kir_effects_conflict(const KEntry *e, const KEffects *a, const KEffects *b) {
  return any_alias(e, &a->w, &b->r) || any_alias(e, &a->w, &b->w) || any_alias(e, &a->r, &b->w);
}

void kir_effects_clear(KEffects *x) { x->r.n = x->w.n = 0; }

void kir_effects_free(KEffects *x) {
  vec_free(&x->r);
  vec_free(&x->w);
}

int kexpr_loads(const KProgram *p, uint32_t x) {
  const KExpr *k = &p->exprs.a[x];
  if (k->op == KE_LOAD) return 1;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (kexpr_loads(p, k->a[i])) return 1;
  return 0;
}

int kexpr_uses_var(const KProgram *p, uint32_t x, uint32_t var) {
  const KExpr *k = &p->exprs.a[x];
  if (k->op == KE_VAR && k->id == var) return 1;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (kexpr_uses_var(p, k->a[i], var)) return 1;
  return 0;
}

static int same_at(const KProgram *p, uint32_t x, uint32_t y, const uint32_t *def, int depth) {
  if (x == y) return 1;
  if (depth > 64) return 0; /* variables whose values read each other */
  const KExpr *a = &p->exprs.a[x], *b = &p->exprs.a[y];
  if (def && a->op == KE_VAR && def[a->id] != UINT32_MAX) return same_at(p, def[a->id], y, def, depth + 1);
  if (def && b->op == KE_VAR && def[b->id] != UINT32_MAX) return same_at(p, x, def[b->id], def, depth + 1);
  if (a->op != b->op || a->type != b->type) return 0;
  switch (a->op) {
  case KE_ICONST: return a->i == b->i;
  case KE_FCONST: return a->f == b->f;
  case KE_VAR:
  case KE_DIM: return a->id == b->id;
  default: break;
  }
  for (int i = 0; i < kop_info(a->op)->n; i++)
    if (!same_at(p, a->a[i], b->a[i], def, depth + 1)) return 0;
  return 1;
}

int kexpr_same(const KProgram *p, uint32_t x, uint32_t y, const uint32_t *def) { return same_at(p, x, y, def, 0); }
