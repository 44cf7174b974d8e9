/* The host's part of a CUDA entry: it walks the statements the renderer
 * left to it (loops and conditions around launches, scalar assignments),
 * evaluating their expressions itself, and hands each launch, matrix
 * product, fill and copy to the device, in order. A one-thread kernel
 * that assigns host variables leaves them in slots, read back after it;
 * the host remembers scalars it read back or filled (Known), so that it
 * waits for the device once for each.
 * In bf16 it rounds each product's operands first, or finds them in the
 * bf16 mirrors that kernels wrote (CudaGemmCtx). */
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_internal.h"
#include "backends/cuda/cuda_library.h"
#include "backends/cuda/cuda_profile.h"
#include "backends/cuda/cuda_traffic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- host expressions: one function per op, on f32 or i64 operands -------- */

typedef CudaValue (*EvalFn)(KType t, CudaValue a, CudaValue b, CudaValue c);

#define F(x) ((CudaValue){.f = (x)})
#define I(x) ((CudaValue){.i = (x)})
static CudaValue ev_add(KType t, CudaValue a, CudaValue b, CudaValue c) { return t == K_F32 ? F(a.f + b.f) : I(a.i + b.i); }
static CudaValue ev_sub(KType t, CudaValue a, CudaValue b, CudaValue c) { return t == K_F32 ? F(a.f - b.f) : I(a.i - b.i); }
static CudaValue ev_mul(KType t, CudaValue a, CudaValue b, CudaValue c) { return t == K_F32 ? F(a.f * b.f) : I(a.i * b.i); }
static CudaValue ev_div(KType t, CudaValue a, CudaValue b, CudaValue c) { return t == K_F32 ? F(a.f / b.f) : I(a.i / b.i); }
static CudaValue ev_min(KType t, CudaValue a, CudaValue b, CudaValue c) {
  return t == K_F32 ? F(fminf(a.f, b.f)) : I(a.i < b.i ? a.i : b.i);
}
static CudaValue ev_max(KType t, CudaValue a, CudaValue b, CudaValue c) {
  return t == K_F32 ? F(fmaxf(a.f, b.f)) : I(a.i > b.i ? a.i : b.i);
}
static CudaValue ev_neg(KType t, CudaValue a, CudaValue b, CudaValue c) { return t == K_F32 ? F(-a.f) : I(-a.i); }
static CudaValue ev_rem(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(a.i % b.i); }
static CudaValue ev_exp(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(expf(a.f)); }
static CudaValue ev_log(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(logf(a.f)); }
static CudaValue ev_sqrt(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(sqrtf(a.f)); }
static CudaValue ev_tanh(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(tanhf(a.f)); }
static CudaValue ev_erf(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(erff(a.f)); }
static CudaValue ev_cos(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(cosf(a.f)); }
static CudaValue ev_sin(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(sinf(a.f)); }
static CudaValue ev_pow(KType t, CudaValue a, CudaValue b, CudaValue c) { return F(powf(a.f, b.f)); }
static CudaValue ev_lt(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(t == K_F32 ? a.f < b.f : a.i < b.i); }
static CudaValue ev_le(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(t == K_F32 ? a.f <= b.f : a.i <= b.i); }
static CudaValue ev_eq(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(t == K_F32 ? a.f == b.f : a.i == b.i); }
static CudaValue ev_and(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(a.i && b.i); }
static CudaValue ev_or(KType t, CudaValue a, CudaValue b, CudaValue c) { return I(a.i || b.i); }
static CudaValue ev_select(KType t, CudaValue a, CudaValue b, CudaValue c) { return a.i ? b : c; }
static CudaValue ev_itof(KType t, CudaValue a, CudaValue b, CudaValue c) { return F((float)a.i); }
static CudaValue ev_ftoi(KType t, CudaValue a, CudaValue b, CudaValue c) { return I((int64_t)a.f); }
#undef F
#undef I

/* indexed by op; the operand type passed is operand 0's (operand 1's for select) */
static const EvalFn eval_op[KE_NUM] = {
    [KE_ADD] = ev_add,   [KE_SUB] = ev_sub,   [KE_MUL] = ev_mul,   [KE_DIV] = ev_div,    [KE_MIN] = ev_min,
    [KE_MAX] = ev_max,   [KE_NEG] = ev_neg,   [KE_REM] = ev_rem,   [KE_EXP] = ev_exp,    [KE_LOG] = ev_log,
    [KE_SQRT] = ev_sqrt, [KE_TANH] = ev_tanh, [KE_ERF] = ev_erf,   [KE_COS] = ev_cos,    [KE_SIN] = ev_sin,
    [KE_POW] = ev_pow,   [KE_LT] = ev_lt,     [KE_LE] = ev_le,     [KE_EQ] = ev_eq,      [KE_AND] = ev_and,
    [KE_OR] = ev_or,     [KE_SELECT] = ev_select, [KE_ITOF] = ev_itof, [KE_FTOI] = ev_ftoi,
};

/* A range of device memory the host knows holds one 32-bit pattern
 * (a scalar read back, or a fill): its buffer's element type decides
 * what a load of it gives. A write over any of it forgets it. */
#define CUDA_KNOWN 16
typedef struct {
  CuPtr lo, hi; /* [lo, hi); lo == hi: unused */
  uint32_t bits;
  KType elem;
  uint64_t used; /* when it was last known or recalled (the least recent one is replaced) */
} Known;

typedef struct {
  const CudaProgram *cp;
  const KProgram *p;
  const KEntry *e;
  CudaDevice *d;
  const int64_t *dims;
  const CuPtr *bufs;
  CuPtr slots;
  CudaValue *vars;
  uint64_t *values;
  void **params;
  CudaGemmCtx *gc; /* NULL: fp32 */
  CuPtr mirror0;   /* where arena byte 0's mirror would be; 0: no mirrors */
  int half;        /* with mirrors: buffers that can live in their mirrors do (CudaProgram.half) */
  CudaProfile *prof; /* NULL: no timing */
  CudaTraffic *traffic; /* with prof: the bytes each op moves */
  Known known[CUDA_KNOWN];
  uint64_t known_clock;
  PcError *err;
} Exec;

/* With a profile, the device time since the last stamp is the op's that
 * just ran, which moved about `bytes`. */
static int mark(Exec *x, CudaProfKind kind, const KStmt *s, uint32_t kernel, const char *fn, double bytes) {
  if (!x->prof) return 0;
  CudaProfKey k = {.kind = kind, .kernel = kernel, .origin = s->origin, .fn = fn};
  return cuda_profile_mark(x->prof, x->d, &k, bytes, x->err);
}

int cuda_eval(const KProgram *p, const int64_t *dims, const CudaValue *vars, const unsigned char *unknown, uint32_t id,
              CudaValue *out) {
  const KExpr *k = &p->exprs.a[id];
  switch (k->op) {
  case KE_FCONST: *out = (CudaValue){.f = (float)k->f}; return 1;
  case KE_ICONST: *out = (CudaValue){.i = k->i}; return 1;
  case KE_VAR: *out = vars[k->id]; return !unknown || !unknown[k->id];
  case KE_DIM: *out = (CudaValue){.i = dims[k->id]}; return 1;
  case KE_LOAD: return 0;
  default: break;
  }
  CudaValue v[3] = {{0}};
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (!cuda_eval(p, dims, vars, unknown, k->a[i], &v[i])) return 0;
  KType t = p->exprs.a[k->a[k->op == KE_SELECT ? 1 : 0]].type;
  if ((k->op == KE_DIV || k->op == KE_REM) && t != K_F32 && v[1].i == 0) return 0;
  *out = eval_op[k->op](t, v[0], v[1], v[2]);
  return 1;
}

static CudaValue eval(const Exec *x, uint32_t id) {
  CudaValue v;
  if (!cuda_eval(x->p, x->dims, x->vars, NULL, id, &v)) PC_BUG("cuda: the host reads device memory");
  return v;
}

static int64_t eval_i(const Exec *x, uint32_t id) { return eval(x, id).i; }

/* ---- scalars the host knows the device holds ---------------------------------- */

static void know(Exec *x, CuPtr lo, CuPtr hi, uint32_t bits, KType elem) {
  Known *k = &x->known[0];
  for (int i = 1; i < CUDA_KNOWN && k->lo < k->hi; i++) /* an unused one, else the least recent */
    if (x->known[i].lo == x->known[i].hi || x->known[i].used < k->used) k = &x->known[i];
  *k = (Known){lo, hi, bits, elem, ++x->known_clock};
}

static void forget(Exec *x, CuPtr lo, CuPtr hi) {
  for (int i = 0; i < CUDA_KNOWN; i++)
    if (x->known[i].lo < hi && lo < x->known[i].hi) x->known[i].hi = x->known[i].lo;
}

/* Where statement s assigns a host variable one element of a buffer, at an
 * index the host computes: that element's address and type (0: not such). */
static CuPtr scalar_load(const Exec *x, const KStmt *s, KType *elem) {
  if (s->kind != KS_ASSIGN) return 0;
  const KExpr *k = &x->p->exprs.a[s->e[0]];
  if (k->op != KE_LOAD || kexpr_loads(x->p, k->a[0])) return 0;
  const KBuf *b = &x->e->bufs.a[k->id];
  if (x->e->vars.a[s->var].type != (b->elem == K_F32 ? K_F32 : K_I64)) return 0;
  int64_t i = eval_i(x, k->a[0]);
  if (i < 0 || (uint64_t)i >= b->numel) return 0;
  *elem = b->elem;
  return x->bufs[k->id] + 4 * (uint64_t)i;
}

static int recall(Exec *x, CuPtr at, KType elem, CudaValue *v) {
  for (int i = 0; i < CUDA_KNOWN; i++) {
    Known *k = &x->known[i];
    if (k->lo <= at && at + 4 <= k->hi && k->elem == elem) {
      k->used = ++x->known_clock;
      if (elem == K_F32) memcpy(&v->f, &k->bits, 4);
      else v->i = (int32_t)k->bits;
      return 1;
    }
  }
  return 0;
}

static uint32_t value_bits(KType elem, CudaValue v) {
  uint32_t bits;
  if (elem == K_F32) memcpy(&bits, &v.f, 4);
  else bits = (uint32_t)(int32_t)v.i;
  return bits;
}

/* The elements [*from, *to) of m's buffer that the rows of parallel loop s
 * store with their mirror: row r writes [c + r w, c + (r + 1) w). 0: none. */
static int mirror_rows(const Exec *x, const KStmt *s, const CudaMirror *m, uint64_t *from, uint64_t *to) {
  int64_t lo = eval_i(x, s->e[0]), hi = eval_i(x, s->e[1]);
  int64_t w = m->w == UINT32_MAX ? 1 : eval_i(x, m->w), c = 0;
  for (uint32_t t = 0; t < m->n_c; t++) c += eval_i(x, x->cp->mirror_terms.a[m->c0 + t]);
  if (w <= 0 || lo >= hi || c + lo * w < 0 || (uint64_t)(c + hi * w) > x->e->bufs.a[m->buf].numel) return 0;
  *from = (uint64_t)(c + lo * w);
  *to = (uint64_t)(c + hi * w);
  return 1;
}

/* The bytes launch l of statement s moves (cuda_traffic.h), with the
 * mirrors it stores. */
static double launch_bytes(Exec *x, const KStmt *s, const CudaLaunch *l) {
  CudaMirrored *m = pc_xcalloc(l->n_m + 1, sizeof *m);
  size_t n = 0;
  for (uint32_t k = 0; x->mirror0 && k < l->n_m; k++) {
    const CudaMirror *r = &x->cp->mirrors.a[l->m0 + k];
    uint64_t from, to;
    if (!r->overwritten && cuda_launch_mirrors(x->cp, l, r->buf, x->half) && mirror_rows(x, s, r, &from, &to))
      m[n++] = (CudaMirrored){r->buf, to - from, (int)r->alone};
  }
  double bytes = cuda_traffic_launch(x->traffic, s, x->dims, x->vars, m, n);
  free(m);
  return bytes;
}

static int launch(Exec *x, const KStmt *s, const CudaLaunch *l) {
  KType elem = K_F32;
  CuPtr at = l->mode == CM_SERIAL ? scalar_load(x, s, &elem) : 0;
  if (at && recall(x, at, elem, &x->vars[s->var])) return 0;
  int64_t n = l->mode == CM_SERIAL || l->mode == CM_GROUP ? 1 : eval_i(x, s->e[1]) - eval_i(x, s->e[0]);
  uint32_t grid, block;
  if (!cuda_launch_shape(l, n, &grid, &block)) return 0;
  double bytes = x->traffic ? launch_bytes(x, s, l) : 0;
  cuda_pack_args(x->cp, l, x->dims, x->bufs, x->vars, x->slots, x->mirror0, x->half, x->values, x->params);
  if (x->d->launch(x->d, l->kernel, grid, block, x->params, x->err) < 0) return -1;
  for (uint32_t i = 0; i < l->n_args; i++) { /* host variables it assigned */
    const CudaArg *a = &x->cp->args.a[l->arg0 + i];
    if (a->kind != CA_SLOT) continue;
    if (x->d->download(x->d, &x->vars[a->id], x->slots + 8 * (uint64_t)a->id, a->type == K_F32 ? 4 : 8, x->err) < 0) return -1;
  }
  if (at) know(x, at, at + 4, value_bits(elem, x->vars[s->var]), elem);
  return mark(x, CP_KERNEL, s, l->kernel, NULL, bytes);
}

/* a call: the launches of its plan (the tensor-core forward in bf16), each given the op's struct */
static int call(Exec *x, const KStmt *s, const CudaLaunch *l) {
  const KCall *c = &x->p->calls.a[s->call];
  const KCallInfo *ci = kcall_info(c->op);
  int64_t args[KCALL_MAX_ARGS] = {0};
  float scale = 0;
  for (int k = 0; k < ci->n_arg; k++) {
    CudaValue v = eval(x, c->arg[k]);
    if (x->p->exprs.a[c->arg[k]].type == K_F32) scale = v.f; /* the one f32 argument */
    else args[k] = v.i;
  }
  CuPtr bufs[KCALL_MAX_BUFS];
  for (int k = 0; k < ci->n_buf; k++) bufs[k] = x->bufs[c->buf[k]];
  CudaAttnArgs a;
  cuda_call_args(c->op, bufs, args, scale, &a);
  int64_t n_mirrored = 0;
  int mb = x->mirror0 && l->n_m ? cuda_call_mirror(c->op, args, &n_mirrored) : -1;
  const KBuf *mbuf = mb < 0 ? NULL : &x->e->bufs.a[c->buf[mb]];
  PC_ASSERT(mbuf || !x->mirror0 || !l->n_m); /* the renderer saw the same constants */
  if (mbuf) cuda_call_mirror_args(c->op, args, x->mirror0 + mbuf->offset / 2, &a);
  int kernel[CUDA_CALL_MAX_KERNELS];
  uint32_t grid[CUDA_CALL_MAX_KERNELS], block[CUDA_CALL_MAX_KERNELS];
  int n = cuda_call_plan(c->op, args, x->gc && x->gc->precision == CUDA_BF16, kernel, grid, block);
  const char *fn[CUDA_CALL_MAX_KERNELS] = {0};
  unsigned threads[CUDA_CALL_MAX_KERNELS];
  if (x->prof) cuda_call_kernels(c->op, args[4], fn, threads); /* their names (args[4]: the head dim) */
  void *params[1] = {&a};
  for (int i = 0; i < n; i++) {
    uint32_t k = x->cp->args.a[l->arg0 + (uint32_t)kernel[i]].id;
    double bytes = x->prof ? cuda_traffic_call(c->op, i, args, mb, n_mirrored) : 0;
    if (x->d->launch(x->d, k, grid[i], block[i], params, x->err) < 0 || mark(x, CP_CALL, s, k, fn[kernel[i]], bytes) < 0)
      return -1;
  }
  if (mbuf && n) { /* fp32 and mirror */
    cuda_ranges_add(&x->gc->fresh, mbuf->offset, mbuf->offset + 4 * (uint64_t)n_mirrored);
    cuda_ranges_remove(&x->gc->stale, mbuf->offset, mbuf->offset + 4 * (uint64_t)n_mirrored);
  }
  return 0;
}

/* ---- matrix products and their bf16 operands --------------------------------- */

/* Scratch of at least bytes (its contents are not kept). Work already
 * queued may still read the old buffer: wait for it before releasing. */
static int grow(CudaDevice *d, CuPtr *p, size_t *cap, size_t bytes, PcError *err) {
  if (*p && *cap >= bytes) return 0;
  if (*p) {
    if (d->sync(d, err) < 0) return -1;
    d->release(d, *p);
    *p = 0;
    *cap = 0;
  }
  if (d->alloc(d, bytes, p, err) < 0) return -1;
  *cap = bytes;
  return 0;
}

static int to_bf16(Exec *x, CuPtr src, CuPtr dst, uint64_t n) {
  CudaToBf16Args a = {src, dst, (int64_t)n};
  x->gc->converted += n;
  return cuda_runtime_launch(x->cp, x->d, CR_TO_BF16, (int64_t)n, &a, x->err);
}

/* Buffer buf is written: the host forgets what it knew of it, the
 * activation slots holding any of it forget it, and so does the mirror
 * (unless the launch mirrored what it wrote). */
static void written(Exec *x, uint32_t buf, int mirrored) {
  const KBuf *b = &x->e->bufs.a[buf];
  CuPtr lo = x->bufs[buf], hi = lo + 4 * b->numel;
  forget(x, lo, hi);
  if (!x->gc) return;
  for (int i = 0; i < CUDA_ACT_SLOTS; i++) {
    CudaActBf16 *t = &x->gc->act[i];
    if (t->held && t->src < hi && lo < t->src + 4 * t->n) t->held = 0;
  }
  if (x->mirror0 && !mirrored && b->kind == KB_ARENA) {
    cuda_ranges_remove(&x->gc->fresh, b->offset, b->offset + 4 * b->numel);
    cuda_ranges_remove(&x->gc->stale, b->offset, b->offset + 4 * b->numel);
  }
}

/* Launch l of a parallel loop stored its rows with their mirrors: they
 * are fresh; stale too where it stored the mirror alone. */
static void mark_rows(Exec *x, const KStmt *s, const CudaLaunch *l) {
  for (uint32_t k = 0; k < l->n_m; k++) {
    const CudaMirror *m = &x->cp->mirrors.a[l->m0 + k];
    uint64_t from, to, at = x->e->bufs.a[m->buf].offset;
    if (m->overwritten || !cuda_launch_mirrors(x->cp, l, m->buf, x->half) || !mirror_rows(x, s, m, &from, &to)) continue;
    cuda_ranges_add(&x->gc->fresh, at + 4 * from, at + 4 * to);
    if (m->alone) cuda_ranges_add(&x->gc->stale, at + 4 * from, at + 4 * to);
    else cuda_ranges_remove(&x->gc->stale, at + 4 * from, at + 4 * to);
  }
}

/* After launch l: what it mirrored is fresh (a call marks its own), what
 * else it wrote is not. */
static void launch_written(Exec *x, const KStmt *s, const CudaLaunch *l) {
  if (x->mirror0 && l->n_m && l->mode != CM_CALL) mark_rows(x, s, l);
  for (uint32_t i = 0; i < l->n_w; i++) {
    uint32_t buf = x->cp->writes.a[l->w0 + i];
    written(x, buf, cuda_launch_mirrors(x->cp, l, buf, x->half));
  }
}

/* The bf16 copy of a product's operand: rows x cols of buffer buf from
 * element off, leading dimension ld; *out gets its address, in scratch
 * with the same layout (ld is unchanged). */
static int bf16_operand(Exec *x, uint32_t buf, int64_t off, int64_t rows, int64_t cols, int64_t ld, CuPtr *out) {
  CudaGemmCtx *g = x->gc;
  const KBuf *b = &x->e->bufs.a[buf];
  uint64_t n = rows > 0 && cols > 0 ? (uint64_t)((rows - 1) * ld + cols) : 0, lo = (uint64_t)off, hi = lo + n;
  CuPtr src = x->bufs[buf] + 4 * lo;
  if (x->mirror0 && b->kind == KB_ARENA && cuda_ranges_cover(&g->fresh, b->offset + 4 * lo, b->offset + 4 * hi)) {
    *out = x->mirror0 + b->offset / 2 + 2 * lo; /* kernels stored it with its mirror */
    g->mirrored += n;
    return 0;
  }
  if (x->mirror0 && b->kind == KB_ARENA && cuda_ranges_meet(&g->stale, b->offset + 4 * lo, b->offset + 4 * hi))
    return pc_errorf(x->err, "cuda: entry %s: a product reads %s partly from rows stored in bf16 only (not all of its "
                             "rows are fresh)", x->e->name, b->name);
  if (b->kind != KB_PARAM) { /* an activation: unless a slot holds it already */
    CudaActBf16 *slot = NULL;
    for (int i = 0; i < CUDA_ACT_SLOTS; i++) {
      CudaActBf16 *t = &g->act[i];
      if (t->held && t->src == src && t->n == n) {
        t->used = ++g->clock;
        *out = t->bf16;
        return 0;
      }
      if (!slot || t->used < slot->used) slot = t; /* never the other operand's: it was used last */
    }
    if (grow(x->d, &slot->bf16, &slot->bytes, 2 * n, x->err) < 0) return -1;
    *slot = (CudaActBf16){slot->bf16, slot->bytes, src, n, ++g->clock, 1};
    *out = slot->bf16;
    return n ? to_bf16(x, src, *out, n) : 0;
  }
  PC_ASSERT(hi <= b->numel);
  if (b->index >= g->n_param) {
    g->param = pc_xrealloc(g->param, (b->index + 1) * sizeof *g->param);
    memset(g->param + g->n_param, 0, (b->index + 1 - g->n_param) * sizeof *g->param);
    g->n_param = b->index + 1;
  }
  CudaParamBf16 *p = &g->param[b->index];
  if (!p->bf16) {
    if (x->d->alloc(x->d, 2 * b->numel, &p->bf16, x->err) < 0) return -1;
    p->bytes = 2 * b->numel;
  }
  *out = p->bf16 + 2 * lo;
  if (cuda_ranges_cover(&p->done, lo, hi)) return 0; /* converted since it last changed */
  cuda_ranges_add(&p->done, lo, hi);
  g->converted_params += n;
  return n ? to_bf16(x, src, *out, n) : 0;
}

static int gemm(Exec *x, const KStmt *s) {
  const KGemm *g = &x->p->gemms.a[s->gemm];
  int64_t m = eval_i(x, g->m), n = eval_i(x, g->n), k = eval_i(x, g->k);
  if (m <= 0 || n <= 0) return 0;
  int64_t a_off = eval_i(x, g->a_off), b_off = eval_i(x, g->b_off), lda = eval_i(x, g->lda), ldb = eval_i(x, g->ldb);
  CuPtr a = x->bufs[g->a] + 4 * (uint64_t)a_off, b = x->bufs[g->b] + 4 * (uint64_t)b_off;
  CudaPrecision precision = x->gc ? x->gc->precision : CUDA_FP32;
  PC_ASSERT(x->e->bufs.a[g->c].kind != KB_PARAM); /* parameters are read-only: their bf16 copies stay valid */
  uint64_t converted = x->gc ? x->gc->converted : 0;
  if (precision == CUDA_BF16 && /* row-major A is m x k (k x m transposed), B is k x n (n x k) */
      (bf16_operand(x, g->a, a_off, g->ta ? k : m, g->ta ? m : k, lda, &a) < 0 ||
       bf16_operand(x, g->b, b_off, g->tb ? n : k, g->tb ? k : n, ldb, &b) < 0))
    return -1;
  if (x->prof && x->gc && x->gc->converted != converted && /* 4 bytes read, 2 written */
      mark(x, CP_CONVERT, s, 0, NULL, 6.0 * (double)(x->gc->converted - converted)) < 0)
    return -1;
  int64_t c_off = eval_i(x, g->c_off), ldc = eval_i(x, g->ldc);
  const KBuf *cb = &x->e->bufs.a[g->c];
  int half = x->half && cuda_buf_half(x->cp, (uint32_t)(x->e - x->p->entries.a), g->c); /* C lives in its mirror */
  CudaGemm c = cuda_gemm_colmajor(g->ta, g->tb, m, n, k, g->alpha, a, lda, b, ldb, g->beta,
                                  half ? x->mirror0 + cb->offset / 2 + 2 * (uint64_t)c_off
                                       : x->bufs[g->c] + 4 * (uint64_t)c_off,
                                  ldc);
  c.precision = precision;
  c.c_bf16 = half;
  written(x, g->c, 0);
  if (x->d->gemm(x->d, &c, x->err) < 0) return -1;
  if (half) { /* rows m of ldc from c_off: fresh, in the mirror alone */
    uint64_t lo = cb->offset + 4 * (uint64_t)c_off, hi = lo + 4 * (uint64_t)((m - 1) * ldc + n);
    cuda_ranges_add(&x->gc->fresh, lo, hi);
    cuda_ranges_add(&x->gc->stale, lo, hi);
  }
  if (!x->prof) return 0;
  CudaProfKey key = {.kind = CP_GEMM, .origin = s->origin, .precision = precision, .ta = g->ta, .tb = g->tb, .m = m, .n = n, .k = k};
  return cuda_profile_mark(x->prof, x->d, &key, cuda_traffic_gemm(m, n, k, precision, g->beta != 0, half), x->err);
}

void cuda_gemm_ctx_free(CudaGemmCtx *g, CudaDevice *d) {
  for (int i = 0; i < CUDA_ACT_SLOTS; i++)
    if (g->act[i].bf16) d->release(d, g->act[i].bf16);
  if (g->mirror) d->release(d, g->mirror);
  vec_free(&g->fresh);
  vec_free(&g->stale);
  for (size_t i = 0; i < g->n_param; i++) {
    if (g->param[i].bf16) d->release(d, g->param[i].bf16);
    vec_free(&g->param[i].done);
  }
  free(g->param);
  *g = (CudaGemmCtx){.precision = g->precision, .convert_only = g->convert_only};
}

void cuda_gemm_ctx_params_changed(CudaGemmCtx *g, uint32_t index) {
  for (size_t i = 0; i < g->n_param; i++)
    if (index == CUDA_ALL_PARAMS || i == index) g->param[i].done.n = 0;
}

size_t cuda_gemm_ctx_bytes(const CudaGemmCtx *g) {
  size_t bytes = 0;
  for (int i = 0; i < CUDA_ACT_SLOTS; i++) bytes += g->act[i].bytes;
  bytes += g->mirror_bytes;
  for (size_t i = 0; i < g->n_param; i++) bytes += g->param[i].bytes;
  return bytes;
}

static int fill(Exec *x, const KStmt *s) {
  int64_t count = eval_i(x, s->e[1]);
  if (count <= 0) return 0;
  CudaValue v = eval(x, s->e[2]);
  int is_f32 = x->p->exprs.a[s->e[2]].type == K_F32;
  uint32_t bits;
  if (x->e->bufs.a[s->buf[0]].elem == K_F32) {
    float f = is_f32 ? v.f : (float)v.i;
    memcpy(&bits, &f, 4);
  } else {
    int32_t i = is_f32 ? (int32_t)v.f : (int32_t)v.i;
    memcpy(&bits, &i, 4);
  }
  CuPtr at = x->bufs[s->buf[0]] + 4 * (uint64_t)eval_i(x, s->e[0]);
  know(x, at, at + 4 * (uint64_t)count, bits, x->e->bufs.a[s->buf[0]].elem);
  return x->d->fill32(x->d, at, bits, (size_t)count, x->err);
}

/* memmove's meaning; the device copies only disjoint ranges, so an
 * overlapping copy goes through a temporary buffer */
static int copy(Exec *x, const KStmt *s) {
  int64_t count = eval_i(x, s->e[2]);
  if (count <= 0) return 0;
  CuPtr dst = x->bufs[s->buf[0]] + 4 * (uint64_t)eval_i(x, s->e[0]), src = x->bufs[s->buf[1]] + 4 * (uint64_t)eval_i(x, s->e[1]);
  size_t bytes = 4 * (size_t)count;
  if (dst == src) return 0;
  if (dst >= src + bytes || src >= dst + bytes) return x->d->copy(x->d, dst, src, bytes, x->err);
  CuPtr tmp;
  if (x->d->alloc(x->d, bytes, &tmp, x->err) < 0) return -1;
  int rc = x->d->copy(x->d, tmp, src, bytes, x->err);
  if (!rc) rc = x->d->copy(x->d, dst, tmp, bytes, x->err);
  if (!rc) rc = x->d->sync(x->d, x->err);
  x->d->release(x->d, tmp);
  return rc;
}

static int run_block(Exec *x, uint32_t blk) {
  const VecU32 *b = &x->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) {
    uint32_t id = b->a[i];
    const KStmt *s = &x->p->stmts.a[id];
    int rc = 0;
    if (x->cp->launch_of[id] != UINT32_MAX) {
      const CudaLaunch *l = &x->cp->launches.a[x->cp->launch_of[id]];
      rc = l->mode == CM_CALL ? call(x, s, l) : launch(x, s, l);
      launch_written(x, s, l);
    } else {
      switch (s->kind) {
      case KS_ASSIGN: x->vars[s->var] = eval(x, s->e[0]); break;
      case KS_FOR: /* the bound is evaluated every iteration, as in C */
        for (int64_t v = eval_i(x, s->e[0]); !rc && (x->vars[s->var].i = v, v < eval_i(x, s->e[1])); v++) rc = run_block(x, s->body);
        break;
      case KS_IF:
        if (eval_i(x, s->e[0])) rc = run_block(x, s->body);
        break;
      case KS_WHILE:
        while (!rc && eval_i(x, s->e[0])) rc = run_block(x, s->body);
        break;
      case KS_GEMM: rc = gemm(x, s); break;
      case KS_FILL:
      case KS_COPY:
        written(x, s->buf[0], 0); /* first: a fill then knows what it wrote */
        rc = s->kind == KS_FILL ? fill(x, s) : copy(x, s);
        if (!rc) { /* a fill writes its elements; a copy reads and writes them */
          int64_t count = eval_i(x, s->e[s->kind == KS_FILL ? 1 : 2]);
          rc = mark(x, s->kind == KS_FILL ? CP_FILL : CP_COPY, s, 0, NULL, count > 0 ? 4.0 * (double)count * (s->kind == KS_FILL ? 1 : 2) : 0);
        }
        break;
      case KS_STORE: PC_BUG("cuda: a store left to the host");
      case KS_CALL: PC_BUG("cuda: a call without its launch");
      }
    }
    if (rc) return -1;
  }
  return 0;
}

int cuda_exec(const CudaProgram *cp, CudaDevice *d, uint32_t entry, const int64_t *dims, const CuPtr *bufs, CuPtr slots,
              CudaGemmCtx *gc, CudaProfile *prof, PcError *err) {
  uint32_t most = 1;
  for (size_t i = 0; i < cp->launches.n; i++)
    if (cp->launches.a[i].n_args > most) most = cp->launches.a[i].n_args;
  const KEntry *e = &cp->prog->entries.a[entry];
  Exec x = {.cp = cp, .p = cp->prog, .e = e, .d = d, .dims = dims, .bufs = bufs, .slots = slots, .gc = gc, .prof = prof,
            .err = err};
  for (int i = 0; gc && i < CUDA_ACT_SLOTS; i++) /* the inputs may have changed since the last call, and the arena */
    gc->act[i].held = 0;
  const uint64_t *span = &cp->mirror_span[2 * entry];
  if (gc && gc->precision == CUDA_BF16 && !gc->convert_only && !gc->mirror_refused && span[0] < span[1]) {
    if (grow(d, &gc->mirror, &gc->mirror_bytes, (span[1] - span[0]) / 2, err) < 0) {
      gc->mirror_refused = (span[1] - span[0]) / 2; /* too big for the device: convert, as without mirrors */
    } else {
      x.mirror0 = gc->mirror - span[0] / 2; /* wraps below the arena's first mirrored byte; never read there */
      x.half = !gc->no_half;
      gc->fresh.n = gc->stale.n = 0;
    }
  }
  x.vars = pc_xcalloc(e->vars.n + 1, sizeof *x.vars);
  x.values = pc_xcalloc(most, sizeof *x.values);
  x.params = pc_xcalloc(most, sizeof *x.params);
  x.traffic = prof ? cuda_traffic_new(cp->prog, e, x.half ? cp->half.a + cp->half0[entry] : NULL) : NULL;
  int rc = prof ? cuda_profile_start(prof, d, err) : 0;
  if (!rc) rc = run_block(&x, e->body);
  if (prof && prof->started) { /* after a failure too, so that the device forgets its stamps */
    PcError ignored;
    int done = cuda_profile_finish(prof, d, rc ? &ignored : err);
    if (!rc) rc = done;
  }
  if (prof) prof->guesses += cuda_traffic_guesses(x.traffic);
  cuda_traffic_free(x.traffic);
  free(x.vars);
  free(x.values);
  free(x.params);
  return rc;
}
