/* Which kernels can write a bf16 mirror of what they store (CudaMirror).
 * A matrix product in bf16 reads its operands rounded to bf16; when the
 * kernel that made an activation also stores it rounded, the product reads
 * that copy instead of converting (cuda_exec.c). The host must then know
 * which elements a launch wrote, so a kernel mirrors a buffer only when
 * each of its stores to it provably writes whole rows:
 *
 *   parfor r in lo .. hi:          (the kernel's loop)
 *     buf[c + r] = ...             (a row of one element), or
 *     vfor j in 0 .. w:            (directly in the row, no condition around it)
 *       buf[c + r * w + j] = ...   (a row of w elements)
 *
 * with c and w computed from the host's values only; variables the row
 * assigns once (n = r * w) are read through. So are copies into rows,
 *
 *   parfor r in lo .. hi:
 *     copy buf + (c + r * w) <- src + ..., count w     (a whole row), or
 *     copy buf + (c_i + r * w) <- src_i + ..., count w_i
 *                                  (parts that tile each row, c_i, w_i and
 *                                   w known at compile time: the gradient
 *                                   of q, k and v copied into their product's)
 *
 * from another buffer. Anything else that writes the buffer in the kernel
 * (a store elsewhere, a fill, another copy) and the kernel mirrors none
 * of it.
 *
 * Where nothing but products reads what kernels store in the buffer (no
 * load of it anywhere in the entry, no copy from it, no call or product
 * adding into it; or the lowering's promise, KBuf.operand_only), the
 * stores write the mirror alone when there is one.
 *
 * A buffer that products write (beta 0) and that otherwise only parallel
 * loops load and store, storing whole rows (no fill, copy, call, product
 * adding into it, host's read), lives in its mirror alone (half): its
 * products write C in bf16 there, its kernels load it from there, and its
 * stores write the mirror alone; without a mirror it is fp32 as before.
 *
 * A mirror is worth its stores only if a product reads it before the rows
 * are stored again: a forward's pre-activation, which its gradient later
 * overwrites in place, is no product's operand, though the buffer's
 * gradient is. Where the next statement of the same block that writes the
 * buffer, or reads it in a product, is a kernel mirroring the same rows
 * (the same loop bounds, w and c, with no variable among them assigned
 * twice), the first launch writes no mirror (CudaMirror.overwritten). */
#include "backends/cuda/cuda_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  const CudaScan *a;
  const KStmt *parfor;
  uint32_t j;        /* the vector loop's variable, UINT32_MAX outside one */
  uint32_t row_coef; /* r's coefficient: an expression, UINT32_MAX for 1 */
  int rows, cols;    /* terms in r, in j */
  VecU32 *terms;     /* c's */
} Linear;

/* known to the host at launch: no loads, no variables of the kernel's own */
static int host_known(const Linear *q, uint32_t x) {
  const KExpr *k = &q->a->p->exprs.a[x];
  if (k->op == KE_LOAD) return 0;
  if (k->op == KE_VAR && cuda_block_inside(q->a, q->a->owner[k->id], q->parfor->body)) return 0;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (!host_known(q, k->a[i])) return 0;
  return 1;
}

/* the kernel's variable v, assigned once in the row: its value */
static uint32_t local_def(const Linear *q, uint32_t v) {
  const CudaScan *a = q->a;
  return !a->loop_var[v] && a->n_assign[v] == 1 && cuda_block_inside(a, a->owner[v], q->parfor->body) ? a->def[v] : UINT32_MAX;
}

static int is_row_var(const Linear *q, uint32_t x) {
  const KExpr *k = &q->a->p->exprs.a[x];
  return k->op == KE_VAR && k->id == q->parfor->var;
}

/* x as c + rows * row_coef + cols * j, c a sum of host-known terms */
static int linear(Linear *q, uint32_t x, int depth) {
  const KExpr *k = &q->a->p->exprs.a[x];
  if (depth > 32 || k->type != K_I64) return 0;
  if (host_known(q, x)) {
    vec_push(q->terms, x);
    return 1;
  }
  switch (k->op) {
  case KE_ADD: return linear(q, k->a[0], depth + 1) && linear(q, k->a[1], depth + 1);
  case KE_MUL:
    for (int i = 0; i < 2; i++)
      if (is_row_var(q, k->a[i]) && host_known(q, k->a[1 - i])) {
        q->rows++;
        q->row_coef = k->a[1 - i];
        return 1;
      }
    return 0;
  case KE_VAR: {
    if (k->id == q->parfor->var) {
      q->rows++;
      q->row_coef = UINT32_MAX;
      return 1;
    }
    if (k->id == q->j) {
      q->cols++;
      return 1;
    }
    uint32_t def = local_def(q, k->id);
    return def != UINT32_MAX && linear(q, def, depth + 1);
  }
  default: return 0;
  }
}

static int is_zero(const KProgram *p, uint32_t x) { return p->exprs.a[x].op == KE_ICONST && p->exprs.a[x].i == 0; }

/* A store to buf: a whole row (vfor: the loop writing it, NULL directly in
 * the row)? Appends its record. */
static int row_store(const CudaScan *a, const KStmt *parfor, const KStmt *vfor, const KStmt *s, uint32_t buf, CudaProgram *out) {
  uint32_t c0 = (uint32_t)out->mirror_terms.n;
  Linear q = {.a = a, .parfor = parfor, .j = vfor ? vfor->var : UINT32_MAX, .terms = &out->mirror_terms};
  int ok = linear(&q, s->e[0], 0) && q.rows == 1 &&
           (vfor ? q.cols == 1 && q.row_coef != UINT32_MAX && is_zero(a->p, vfor->e[0]) && kexpr_same(a->p, q.row_coef, vfor->e[1], NULL)
                 : q.cols == 0 && q.row_coef == UINT32_MAX);
  if (!ok) {
    out->mirror_terms.n = c0;
    return 0;
  }
  vec_push(&out->mirrors, ((CudaMirror){.buf = buf, .w = q.row_coef, .c0 = c0, .n_c = (uint32_t)out->mirror_terms.n - c0, .alone = cuda_mirror_alone(a, buf)}));
  return 1;
}

/* A copy's part of a row: [c, c + w) of each row of W elements. */
typedef struct {
  int64_t c, w, W;
  uint32_t row_coef, t0, n_t; /* W's expression; c's terms */
} Part;
typedef VEC(Part) Parts;

/* x's value when it is known exactly at compile time: constants, and
 * variables assigned once from such values (not dims: only their maxima are) */
static int exact(const CudaScan *a, uint32_t x, int64_t *out) {
  const KExpr *k = &a->p->exprs.a[x];
  int64_t u, v;
  switch (k->op) {
  case KE_ICONST: *out = k->i; return 1;
  case KE_VAR: return !a->loop_var[k->id] && a->n_assign[k->id] == 1 && exact(a, a->def[k->id], out);
  case KE_ADD: case KE_SUB: case KE_MUL:
    if (!exact(a, k->a[0], &u) || !exact(a, k->a[1], &v)) return 0;
    *out = k->op == KE_ADD ? u + v : k->op == KE_SUB ? u - v : u * v;
    return 1;
  default: return 0;
  }
}

/* A copy into buf from another buffer: a whole row (appends its record) or
 * a part of one with everything known (appends to parts)? */
static int row_copy(const CudaScan *a, const KStmt *parfor, const KStmt *s, uint32_t buf, Parts *parts, CudaProgram *out) {
  uint32_t c0 = (uint32_t)out->mirror_terms.n;
  Linear q = {.a = a, .parfor = parfor, .j = UINT32_MAX, .terms = &out->mirror_terms};
  if (s->buf[1] == buf || !linear(&q, s->e[0], 0) || q.rows != 1 || q.cols != 0 || q.row_coef == UINT32_MAX) {
    out->mirror_terms.n = c0;
    return 0;
  }
  uint32_t n_t = (uint32_t)out->mirror_terms.n - c0;
  if (kexpr_same(a->p, q.row_coef, s->e[2], NULL)) {
    vec_push(&out->mirrors, ((CudaMirror){.buf = buf, .w = q.row_coef, .c0 = c0, .n_c = n_t, .alone = cuda_mirror_alone(a, buf)}));
    return 1;
  }
  Part pt = {0, 0, 0, q.row_coef, c0, n_t};
  int known = exact(a, q.row_coef, &pt.W) && exact(a, s->e[2], &pt.w);
  for (uint32_t t = 0; t < n_t && known; t++) {
    int64_t v;
    known = exact(a, out->mirror_terms.a[c0 + t], &v);
    pt.c += v;
  }
  if (known) vec_push(parts, pt);
  return known;
}

/* Whether parts tile rows of their W, side by side; *first gets the leftmost. */
static int tile_rows(Parts *parts, const Part **first) {
  for (size_t i = 1; i < parts->n; i++) /* insertion sort by c */
    for (size_t j = i; j > 0 && parts->a[j - 1].c > parts->a[j].c; j--) {
      Part t = parts->a[j];
      parts->a[j] = parts->a[j - 1];
      parts->a[j - 1] = t;
    }
  int64_t end = parts->a[0].c;
  for (size_t i = 0; i < parts->n; i++) {
    if (parts->a[i].W != parts->a[0].W || parts->a[i].c != end || parts->a[i].w <= 0) return 0;
    end += parts->a[i].w;
  }
  *first = &parts->a[0];
  return end - parts->a[0].c == parts->a[0].W;
}

static int writes(const KProgram *p, const KStmt *s, uint32_t buf) {
  KEffects fx = {0};
  kir_effects(p, s, &fx);
  int w = 0;
  for (size_t i = 0; i < fx.w.n; i++) w |= fx.w.a[i] == buf;
  kir_effects_free(&fx);
  return w;
}

/* Every write to buf in block blk (the row's body, or a vector loop's) is a
 * row store, a row copy, or a copy of a part of a row (into parts). */
static int rows_only(const CudaScan *a, const KStmt *parfor, const KStmt *vfor, uint32_t blk, uint32_t buf, Parts *parts,
                     CudaProgram *out) {
  const VecU32 *b = &a->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &a->p->stmts.a[b->a[i]];
    if (!writes(a->p, s, buf)) continue;
    if (s->kind == KS_STORE) {
      if (!row_store(a, parfor, vfor, s, buf, out)) return 0;
    } else if (!vfor && s->kind == KS_COPY) {
      if (!row_copy(a, parfor, s, buf, parts, out)) return 0;
    } else if (!vfor && s->kind == KS_FOR && s->loop == KL_VECTOR) {
      if (!rows_only(a, parfor, s, s->body, buf, parts, out)) return 0;
    } else {
      return 0;
    }
  }
  return 1;
}

int cuda_mirror_alone(const CudaScan *a, uint32_t buf) {
  return a->e->bufs.a[buf].operand_only || !a->loaded[buf] || a->half[buf];
}

int cuda_mirror_find(const CudaScan *a, const KStmt *parfor, uint32_t buf, CudaProgram *out) {
  const KBuf *b = &a->e->bufs.a[buf];
  size_t m0 = out->mirrors.n, t0 = out->mirror_terms.n;
  Parts parts = {0};
  const Part *first;
  int ok = b->kind == KB_ARENA && b->elem == K_F32 && rows_only(a, parfor, NULL, parfor->body, buf, &parts, out);
  if (ok && parts.n) { /* parts of rows, and nothing else, that tile them: one record, from the leftmost */
    ok = out->mirrors.n == m0 && tile_rows(&parts, &first);
    if (ok) vec_push(&out->mirrors, ((CudaMirror){.buf = buf, .w = first->row_coef, .c0 = first->t0, .n_c = first->n_t, .alone = cuda_mirror_alone(a, buf)}));
  }
  vec_free(&parts);
  if (ok) return 1;
  out->mirrors.n = m0;
  out->mirror_terms.n = t0;
  return 0;
}

/* Clears half[b] for the buffers that a parallel loop of block blk (or
 * below it, outside parallel loops) writes other than in whole rows. */
static void half_rows(CudaScan *a, uint32_t blk, CudaProgram *scratch) {
  const VecU32 *b = &a->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &a->p->stmts.a[b->a[i]];
    if (s->kind == KS_FOR && s->loop == KL_PARALLEL) {
      KEffects fx = {0};
      kir_effects(a->p, s, &fx);
      for (size_t w = 0; w < fx.w.n; w++)
        if (a->half[fx.w.a[w]] && !cuda_mirror_find(a, s, fx.w.a[w], scratch)) a->half[fx.w.a[w]] = 0;
      kir_effects_free(&fx);
    } else if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
      half_rows(a, s->body, scratch);
    }
  }
}

void cuda_half_find(CudaScan *a) {
  for (uint32_t buf = 0; buf < a->e->bufs.n; buf++) {
    const KBuf *b = &a->e->bufs.a[buf];
    a->half[buf] = b->kind == KB_ARENA && b->elem == K_F32 && a->product_out[buf] && !a->no_half[buf];
  }
  CudaProgram scratch = {0};
  half_rows(a, a->e->body, &scratch);
  vec_free(&scratch.mirrors);
  vec_free(&scratch.mirror_terms);
}

/* x has one value wherever the entry reads it: no loads, and its variables assigned at most once */
static int fixed(const CudaScan *a, uint32_t x) {
  const KExpr *k = &a->p->exprs.a[x];
  if (k->op == KE_LOAD || (k->op == KE_VAR && a->n_assign[k->id] > 1)) return 0;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (!fixed(a, k->a[i])) return 0;
  return 1;
}

static int same_fixed(const CudaScan *a, uint32_t x, uint32_t y) {
  if (x == UINT32_MAX || y == UINT32_MAX) return x == y; /* w: UINT32_MAX for 1 */
  return fixed(a, x) && fixed(a, y) && kexpr_same(a->p, x, y, a->def);
}

/* records m of parallel loop s and n of parallel loop t mirror the same elements */
static int same_rows(const CudaScan *a, const CudaProgram *cp, const KStmt *s, const CudaMirror *m, const KStmt *t,
                     const CudaMirror *n) {
  if (m->buf != n->buf || m->n_c != n->n_c || !same_fixed(a, s->e[0], t->e[0]) || !same_fixed(a, s->e[1], t->e[1]) ||
      !same_fixed(a, m->w, n->w))
    return 0;
  for (uint32_t i = 0; i < m->n_c; i++)
    if (!same_fixed(a, cp->mirror_terms.a[m->c0 + i], cp->mirror_terms.a[n->c0 + i])) return 0;
  return 1;
}

/* Statements blk[i + 1 ..] store m's rows (of launch statement s) again, mirrored, before a product may read them. */
static int overwritten(const CudaScan *a, const CudaProgram *cp, const VecU32 *blk, size_t i, const CudaMirror *m) {
  const KStmt *s = &a->p->stmts.a[blk->a[i]];
  KEffects mine = {0}, fx = {0};
  vec_push(&mine.w, m->buf);
  int again = 0;
  for (size_t j = i + 1; j < blk->n; j++) {
    const KStmt *t = &a->p->stmts.a[blk->a[j]];
    uint32_t l = cp->launch_of[blk->a[j]];
    if (l != UINT32_MAX && cp->launches.a[l].mode != CM_CALL) {
      const CudaLaunch *tl = &cp->launches.a[l];
      for (uint32_t k = 0; k < tl->n_m && !again; k++) again = same_rows(a, cp, s, m, t, &cp->mirrors.a[tl->m0 + k]);
      if (again) break;
    }
    kir_effects_clear(&fx);
    kir_effects(a->p, t, &fx);
    if (kir_effects_conflict(a->e, &mine, &(KEffects){.w = fx.w}) ||
        (cuda_stmt_multiplies(a->p, t) && kir_effects_conflict(a->e, &mine, &(KEffects){.r = fx.r})))
      break; /* written otherwise, or perhaps read by a product */
  }
  kir_effects_free(&mine);
  kir_effects_free(&fx);
  return again;
}

void cuda_mirror_overwritten(const CudaScan *a, uint32_t blk, CudaProgram *out) {
  const VecU32 *b = &a->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &a->p->stmts.a[b->a[i]];
    uint32_t l = out->launch_of[b->a[i]];
    if (l == UINT32_MAX) {
      if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) cuda_mirror_overwritten(a, s->body, out);
      continue;
    }
    const CudaLaunch *sl = &out->launches.a[l];
    if (sl->mode == CM_CALL || s->kind != KS_FOR) continue;
    for (uint32_t k = 0; k < sl->n_m; k++) {
      CudaMirror *m = &out->mirrors.a[sl->m0 + k];
      m->overwritten = !m->alone && overwritten(a, out, b, i, m);
    }
  }
}
