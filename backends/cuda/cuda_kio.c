/* Kernel program <-> bytes: a magic, then the program's arrays, every
 * number little-endian (x86-64 and aarch64 alike, written as they are). */
#include "backends/cuda/cuda_kio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char magic[8] = "PCKIR\0\0\10";

/* ---- writing ------------------------------------------------------------------ */

static void w32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void w64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void wstr(FILE *f, const char *s) {
  w32(f, (uint32_t)strlen(s));
  fputs(s, f);
}

void *cuda_kir_write(const KProgram *p, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  fwrite(magic, 8, 1, f);
  w32(f, (uint32_t)p->exprs.n);
  for (size_t i = 0; i < p->exprs.n; i++) {
    const KExpr *x = &p->exprs.a[i];
    uint64_t fbits;
    memcpy(&fbits, &x->f, 8);
    w32(f, (uint32_t)x->op | (uint32_t)x->type << 8);
    for (int k = 0; k < 3; k++) w32(f, x->a[k]);
    w32(f, x->id);
    w64(f, fbits);
    w64(f, (uint64_t)x->i);
  }
  w32(f, (uint32_t)p->stmts.n);
  for (size_t i = 0; i < p->stmts.n; i++) {
    const KStmt *s = &p->stmts.a[i];
    uint32_t v[] = {s->kind, s->loop, s->var, s->e[0], s->e[1], s->e[2], s->buf[0], s->buf[1], s->body, s->gemm, s->call,
                    s->origin};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) w32(f, v[k]);
  }
  w32(f, (uint32_t)p->blocks.n);
  for (size_t i = 0; i < p->blocks.n; i++) {
    w32(f, (uint32_t)p->blocks.a[i].n);
    for (size_t k = 0; k < p->blocks.a[i].n; k++) w32(f, p->blocks.a[i].a[k]);
  }
  w32(f, (uint32_t)p->gemms.n);
  for (size_t i = 0; i < p->gemms.n; i++) {
    const KGemm *g = &p->gemms.a[i];
    uint32_t alpha, beta;
    memcpy(&alpha, &g->alpha, 4);
    memcpy(&beta, &g->beta, 4);
    uint32_t v[] = {(uint32_t)g->ta, (uint32_t)g->tb, g->m, g->n, g->k, alpha, beta, g->a, g->b, g->c,
                    g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) w32(f, v[k]);
  }
  w32(f, (uint32_t)p->calls.n);
  for (size_t i = 0; i < p->calls.n; i++) {
    const KCall *c = &p->calls.a[i];
    w32(f, (uint32_t)c->op);
    for (int k = 0; k < KCALL_MAX_BUFS; k++) w32(f, c->buf[k]);
    for (int k = 0; k < KCALL_MAX_ARGS; k++) w32(f, c->arg[k]);
  }
  w32(f, (uint32_t)p->origins.n);
  for (size_t i = 0; i < p->origins.n; i++) wstr(f, p->origins.a[i]);
  w32(f, (uint32_t)p->entries.n);
  for (size_t i = 0; i < p->entries.n; i++) {
    const KEntry *e = &p->entries.a[i];
    wstr(f, e->name);
    w32(f, e->body);
    w64(f, e->arena_bytes);
    w32(f, (uint32_t)e->bufs.n);
    for (size_t k = 0; k < e->bufs.n; k++) {
      const KBuf *b = &e->bufs.a[k];
      wstr(f, b->name);
      w32(f, (uint32_t)b->elem | (uint32_t)b->kind << 8 | (uint32_t)b->operand_only << 16);
      w32(f, b->index);
      w64(f, b->offset);
      w64(f, b->numel);
    }
    w32(f, (uint32_t)e->vars.n);
    for (size_t k = 0; k < e->vars.n; k++) {
      wstr(f, e->vars.a[k].name);
      w32(f, e->vars.a[k].type);
    }
    w32(f, (uint32_t)e->dims.n);
    for (size_t k = 0; k < e->dims.n; k++) {
      wstr(f, e->dims.a[k].name);
      w64(f, (uint64_t)e->dims.a[k].max);
    }
  }
  fclose(f);
  return buf;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct {
  const unsigned char *p, *end;
  int bad;
} Rd;

static uint32_t r32(Rd *r) {
  uint32_t v = 0;
  if (r->end - r->p < 4) r->bad = 1;
  else memcpy(&v, r->p, 4), r->p += 4;
  return v;
}

static uint64_t r64(Rd *r) {
  uint64_t v = 0;
  if (r->end - r->p < 8) r->bad = 1;
  else memcpy(&v, r->p, 8), r->p += 8;
  return v;
}

static char *rstr(Rd *r) {
  uint32_t n = r32(r);
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return pc_xstrdup("");
  }
  char *s = pc_xmalloc(n + 1);
  memcpy(s, r->p, n);
  s[n] = 0;
  r->p += n;
  return s;
}

/* a count, bounded by the bytes left (every element takes at least 4) */
static uint32_t rcount(Rd *r) {
  uint32_t n = r32(r);
  if ((size_t)(r->end - r->p) / 4 < n) r->bad = 1;
  return r->bad ? 0 : n;
}

static int check_expr(const KProgram *p, const KExpr *x) {
  if (x->op >= KE_NUM || x->type > K_I32) return 0;
  for (int k = 0; k < kop_info(x->op)->n; k++)
    if (x->a[k] >= p->exprs.n) return 0;
  return 1;
}

/* every handle inside its array; buffers, variables and dims checked per entry below */
static int check(const KProgram *p) {
  for (size_t i = 0; i < p->exprs.n; i++)
    if (!check_expr(p, &p->exprs.a[i])) return 0;
  for (size_t i = 0; i < p->stmts.n; i++) {
    const KStmt *s = &p->stmts.a[i];
    if (s->kind > KS_CALL || s->loop > KL_VECTOR) return 0;
    for (int k = 0; k < 3; k++)
      if (s->e[k] >= p->exprs.n) return 0;
    if ((s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && s->body >= p->blocks.n) return 0;
    if (s->kind == KS_GEMM && s->gemm >= p->gemms.n) return 0;
    if (s->kind == KS_CALL && s->call >= p->calls.n) return 0;
    if (s->origin > p->origins.n) return 0;
  }
  for (size_t i = 0; i < p->calls.n; i++) {
    if (p->calls.a[i].op >= KC_NUM) return 0;
    for (int k = 0; k < KCALL_MAX_ARGS; k++)
      if (p->calls.a[i].arg[k] >= p->exprs.n) return 0;
  }
  for (size_t i = 0; i < p->blocks.n; i++)
    for (size_t k = 0; k < p->blocks.a[i].n; k++)
      if (p->blocks.a[i].a[k] >= p->stmts.n) return 0;
  for (size_t i = 0; i < p->gemms.n; i++) {
    const KGemm *g = &p->gemms.a[i];
    uint32_t xs[] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
    for (size_t k = 0; k < sizeof xs / sizeof *xs; k++)
      if (xs[k] >= p->exprs.n) return 0;
  }
  return 1;
}

/* variables, dims and buffers an expression names, against its entry's tables */
static int check_names(const KProgram *p, const KEntry *e, uint32_t x, int depth) {
  const KExpr *k = &p->exprs.a[x];
  if (depth > 1000 || (k->op == KE_VAR && k->id >= e->vars.n) || (k->op == KE_DIM && k->id >= e->dims.n) ||
      (k->op == KE_LOAD && k->id >= e->bufs.n))
    return 0;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (!check_names(p, e, k->a[i], depth + 1)) return 0;
  return 1;
}

/* the handles an entry's statements use, against its own tables (walks its blocks) */
static int check_block(const KProgram *p, const KEntry *e, uint32_t blk, int depth) {
  if (depth > 256) return 0;
  const VecU32 *b = &p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    for (int k = 0; k < 3; k++)
      if (!check_names(p, e, s->e[k], 0)) return 0;
    if ((s->kind == KS_FOR || s->kind == KS_ASSIGN) && s->var >= e->vars.n) return 0;
    if ((s->kind == KS_STORE || s->kind == KS_FILL || s->kind == KS_COPY) && s->buf[0] >= e->bufs.n) return 0;
    if (s->kind == KS_COPY && s->buf[1] >= e->bufs.n) return 0;
    if (s->kind == KS_GEMM) {
      const KGemm *g = &p->gemms.a[s->gemm];
      uint32_t xs[] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
      for (size_t k = 0; k < sizeof xs / sizeof *xs; k++)
        if (!check_names(p, e, xs[k], 0)) return 0;
      if (g->a >= e->bufs.n || g->b >= e->bufs.n || g->c >= e->bufs.n) return 0;
    }
    if (s->kind == KS_CALL) {
      const KCall *c = &p->calls.a[s->call];
      const KCallInfo *ci = kcall_info(c->op);
      for (int k = 0; k < ci->n_buf; k++)
        if (c->buf[k] >= e->bufs.n) return 0;
      for (int k = 0; k < ci->n_arg; k++)
        if (!check_names(p, e, c->arg[k], 0)) return 0;
    }
    if ((s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) && !check_block(p, e, s->body, depth + 1)) return 0;
  }
  return 1;
}

int cuda_kir_read(const void *bytes, size_t len, KProgram **out, PcError *err) {
  *out = NULL;
  Rd r = {bytes, (const unsigned char *)bytes + len, 0};
  if (len < 8 || memcmp(bytes, magic, 7)) return pc_errorf(err, "not a kernel program");
  if (memcmp(bytes, magic, 8))
    return pc_errorf(err, "its kernel program has format %d, this runtime reads %d: compile it again", ((const unsigned char *)bytes)[7],
                     magic[7]);
  r.p += 8;
  KProgram *p = kir_new();
  p->exprs.n = 0;
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    KExpr x = {0};
    uint32_t optype = r32(&r);
    x.op = (KOp)(optype & 0xff);
    x.type = (KType)(optype >> 8);
    for (int k = 0; k < 3; k++) x.a[k] = r32(&r);
    x.id = r32(&r);
    uint64_t fbits = r64(&r);
    memcpy(&x.f, &fbits, 8);
    x.i = (int64_t)r64(&r);
    vec_push(&p->exprs, x);
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    KStmt s = {0};
    s.kind = (KStmtKind)r32(&r);
    s.loop = (KLoopKind)r32(&r);
    s.var = r32(&r);
    for (int k = 0; k < 3; k++) s.e[k] = r32(&r);
    s.buf[0] = r32(&r);
    s.buf[1] = r32(&r);
    s.body = r32(&r);
    s.gemm = r32(&r);
    s.call = r32(&r);
    s.origin = r32(&r);
    vec_push(&p->stmts, s);
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    uint32_t b = kir_block(p), m = rcount(&r);
    for (uint32_t k = 0; k < m && !r.bad; k++) vec_push(&p->blocks.a[b], r32(&r));
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    KGemm g = {0};
    g.ta = (int)r32(&r);
    g.tb = (int)r32(&r);
    g.m = r32(&r);
    g.n = r32(&r);
    g.k = r32(&r);
    uint32_t alpha = r32(&r), beta = r32(&r);
    memcpy(&g.alpha, &alpha, 4);
    memcpy(&g.beta, &beta, 4);
    g.a = r32(&r);
    g.b = r32(&r);
    g.c = r32(&r);
    g.a_off = r32(&r);
    g.b_off = r32(&r);
    g.c_off = r32(&r);
    g.lda = r32(&r);
    g.ldb = r32(&r);
    g.ldc = r32(&r);
    vec_push(&p->gemms, g);
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    KCall c = {0};
    c.op = (KCallOp)r32(&r);
    for (int k = 0; k < KCALL_MAX_BUFS; k++) c.buf[k] = r32(&r);
    for (int k = 0; k < KCALL_MAX_ARGS; k++) c.arg[k] = r32(&r);
    vec_push(&p->calls, c);
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    char *text = rstr(&r);
    vec_push(&p->origins, text);
  }
  for (uint32_t i = 0, n = rcount(&r); i < n && !r.bad; i++) {
    char *name = rstr(&r);
    KEntry e = {.name = name};
    e.body = r32(&r);
    e.arena_bytes = r64(&r);
    vec_push(&p->entries, e);
    KEntry *ep = &p->entries.a[p->entries.n - 1];
    for (uint32_t k = 0, m = rcount(&r); k < m && !r.bad; k++) {
      KBuf b = {.name = rstr(&r)};
      uint32_t ek = r32(&r);
      b.elem = (KType)(ek & 0xff);
      b.kind = (KBufKind)(ek >> 8 & 0xff);
      b.operand_only = (uint8_t)(ek >> 16);
      b.index = r32(&r);
      b.offset = r64(&r);
      b.numel = r64(&r);
      if (b.kind > KB_ARENA || (b.elem != K_F32 && b.elem != K_I32) || b.operand_only > 1) r.bad = 1;
      vec_push(&ep->bufs, b);
    }
    for (uint32_t k = 0, m = rcount(&r); k < m && !r.bad; k++) {
      KVar v = {.name = rstr(&r)};
      v.type = (KType)r32(&r);
      if (v.type > K_I32) r.bad = 1;
      vec_push(&ep->vars, v);
    }
    for (uint32_t k = 0, m = rcount(&r); k < m && !r.bad; k++) {
      KDim d = {.name = rstr(&r)};
      d.max = (int64_t)r64(&r);
      vec_push(&ep->dims, d);
    }
  }
  int ok = !r.bad && r.p == r.end && p->exprs.n > 0 && check(p);
  for (size_t i = 0; ok && i < p->entries.n; i++) {
    const KEntry *e = &p->entries.a[i];
    ok = e->body < p->blocks.n && check_block(p, e, e->body, 0);
  }
  if (!ok) {
    kir_free(p);
    return pc_errorf(err, "the kernel program is damaged");
  }
  *out = p;
  return 0;
}
