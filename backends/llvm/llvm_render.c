/* Renders kernel IR as LLVM IR, with the semantics of the C renderer
 * (backends/c/c_render.c); docs/llvm-backend.md has the whole picture.
 *  - expressions: a table from op to an LLVM instruction, intrinsic or libm
 *    call (with its libmvec variants), for f32 and for i64 operands; i64
 *    arithmetic is nsw and addresses are inbounds, as signed C arithmetic;
 *    conversions are C's casts; select, and, or evaluate lazily (branches)
 *    when an operand could fault, as ?:, && and || do in C;
 *  - variables live in allocas (promoted to registers by the optimiser);
 *  - every loop nest without sgemm (outside a kernel) becomes a kernel: a
 *    function over the buffers, dims and outer variables it uses, under
 *    canonical numbers, one per distinct body (the same op in every layer
 *    shares one), buffers noalias like the C kernels' restrict;
 *  - a parallel loop is outlined: a chunk function (the loop over [lo, hi),
 *    buffers noalias) and a trampoline for libgomp's GOMP_parallel, which
 *    gives each thread its static share as `omp parallel for
 *    schedule(static)` does; a parallel loop inside one runs serially;
 *  - a vector loop gets `llvm.loop.vectorize.enable` metadata and its
 *    reductions of outer variables (a = a + x, a = max(a, x)) fast-math
 *    flags that let them be reordered, as `omp simd reduction` does. */
#include "backends/llvm/llvm_internal.h"

#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>

#include "runtime/base/strmap.h"

#define NONE UINT32_MAX

/* ---- state ------------------------------------------------------------------ */

/* The function being built. */
typedef struct {
  LLVMValueRef fn;
  LLVMBasicBlockRef entry; /* allocas and argument loads; branches to the body when the function is done */
  LLVMValueRef *slot;      /* per entry variable: its alloca here (or, in a chunk, a shared variable's address) */
  LLVMValueRef *buf;       /* per entry buffer: its base pointer here (a parameter; NULL in an entry) */
  LLVMValueRef *dim;       /* per dim: its value, loaded on first use */
  LLVMValueRef dims;       /* const int64_t * */
  LLVMValueRef io[4];      /* entry functions: the PonderCall's params, inputs, outputs, arena */
  int in_kernel;           /* loop nests stay inline (the function is a kernel or inside one) */
  int in_parallel;         /* parallel loops run serially (the function is a parallel chunk) */
  uint32_t vec_body;       /* the body of the vector loop being rendered, or NONE */
} Fn;

typedef struct {
  const KProgram *p;
  const KEntry *e;
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b, ab; /* ab: at the end of the current function's entry block */
  LLVMTypeRef f32, i64, i32, i1, ptr, vd;
  uint32_t *parent; /* per block: the enclosing block (NONE at the top) */
  uint32_t *owner;  /* per variable: the innermost block holding all its uses */
  Fn fn;
  StrMap seen;      /* kernel key -> index in kernels */
  VEC(LLVMValueRef) kernels;
  unsigned n_par, vector_loops;
  unsigned md_loop;
  LLVMMetadataRef vec_enable;
  LLVMAttributeRef noalias, nounwind, noinline, readnone, willreturn;
  const char *vec_math;      /* libmvec variants: pairs of ISA letter and width digit ('x': 16), "" for none */
  VEC(LLVMValueRef) keep;    /* declarations for llvm.compiler.used */
} LR;

static LLVMTypeRef ltype(const LR *r, KType t) {
  switch (t) {
  case K_F32: return r->f32;
  case K_I64: return r->i64;
  case K_BOOL: return r->i1;
  default: return r->i32;
  }
}

static LLVMValueRef i64c(const LR *r, int64_t v) { return LLVMConstInt(r->i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(const LR *r, int v) { return LLVMConstInt(r->i32, (unsigned long long)(int64_t)v, 1); }

static LLVMValueRef call(LR *r, LLVMTypeRef ft, LLVMValueRef f, LLVMValueRef *args, unsigned n) {
  return LLVMBuildCall2(r->b, ft, f, args, n, "");
}

/* An external function, declared on first use. */
static LLVMValueRef extern_fn(LR *r, const char *name, LLVMTypeRef ft) {
  LLVMValueRef f = LLVMGetNamedFunction(r->mod, name);
  if (!f) {
    f = LLVMAddFunction(r->mod, name, ft);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, r->nounwind);
  }
  return f;
}

static LLVMValueRef call_intrinsic(LR *r, const char *name, LLVMTypeRef t, LLVMValueRef *args, unsigned n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) PC_BUG("llvm renderer: no intrinsic %s", name);
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(r->mod, id, &t, 1);
  return call(r, LLVMIntrinsicGetType(r->ctx, id, &t, 1), f, args, n);
}

/* ---- where variables are declared (as in the C renderer) ------------------------ */

static void note_use(LR *r, uint32_t var, uint32_t block) {
  if (r->owner[var] == NONE) {
    r->owner[var] = block;
    return;
  }
  for (uint32_t a = r->owner[var]; a != NONE; a = r->parent[a])
    for (uint32_t b = block; b != NONE; b = r->parent[b])
      if (a == b) {
        r->owner[var] = a;
        return;
      }
}

static void scan_expr(LR *r, uint32_t x, uint32_t block) {
  const KExpr *k = &r->p->exprs.a[x];
  if (k->op == KE_VAR) note_use(r, k->id, block);
  for (int i = 0; i < kop_info(k->op)->n; i++) scan_expr(r, k->a[i], block);
}

/* the expressions of a statement (GEMM: its nine) */
static int stmt_exprs(const KProgram *p, const KStmt *s, uint32_t *xs) {
  switch (s->kind) {
  case KS_FOR:
  case KS_STORE: memcpy(xs, s->e, 2 * sizeof *xs); return 2;
  case KS_ASSIGN:
  case KS_IF:
  case KS_WHILE: xs[0] = s->e[0]; return 1;
  case KS_FILL:
  case KS_COPY: memcpy(xs, s->e, 3 * sizeof *xs); return 3;
  case KS_CALL: return 0;
  case KS_GEMM: {
    const KGemm *g = &p->gemms.a[s->gemm];
    uint32_t gx[] = {g->m, g->n, g->k, g->a_off, g->b_off, g->c_off, g->lda, g->ldb, g->ldc};
    memcpy(xs, gx, sizeof gx);
    return 9;
  }
  }
  return 0;
}

static void scan_block(LR *r, uint32_t block) {
  const VecU32 *b = &r->p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &r->p->stmts.a[b->a[i]];
    uint32_t xs[9];
    int n = stmt_exprs(r->p, s, xs);
    for (int k = 0; k < n; k++) scan_expr(r, xs[k], block);
    if (s->kind == KS_ASSIGN) note_use(r, s->var, block);
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) {
      r->parent[s->body] = block;
      scan_block(r, s->body);
    }
  }
}

/* ---- what a loop nest uses ------------------------------------------------------
 * The buffers and variables of a statement in first-use order, each
 * variable local (declared inside, or a loop variable of a loop inside), read
 * from outside ('v': passed by value) or written ('r': by reference); and,
 * for kernels, a key: the statement's text under those canonical numbers
 * plus the signature, equal for two nests exactly when one function serves
 * both. */

typedef struct {
  VecU32 bufs, vars;
  uint32_t *buf_map, *var_map; /* entry buffer / variable -> position, or NONE */
  unsigned char *assigned, *loop_var, *inside;
  char *kind;                  /* per position in vars: 'l', 'v' or 'r' */
  int has_gemm;
  FILE *key;
  char *key_text;
  size_t key_len;
} Uses;

static void uses_var(Uses *u, uint32_t v) {
  if (u->var_map[v] != NONE) return;
  u->var_map[v] = (uint32_t)u->vars.n;
  vec_push(&u->vars, v);
}

static void uses_buf(Uses *u, uint32_t b) {
  if (u->buf_map[b] != NONE) return;
  u->buf_map[b] = (uint32_t)u->bufs.n;
  vec_push(&u->bufs, b);
}

static void uses_expr(const LR *r, Uses *u, uint32_t x) {
  const KExpr *k = &r->p->exprs.a[x];
  if (u->key) fprintf(u->key, "(%d%c", (int)k->op, "fibw"[k->type]);
  switch (k->op) {
  case KE_FCONST:
    if (u->key) fprintf(u->key, "%a", k->f);
    break;
  case KE_ICONST:
    if (u->key) fprintf(u->key, "%lld", (long long)k->i);
    break;
  case KE_VAR:
    uses_var(u, k->id);
    if (u->key) fprintf(u->key, "v%u", u->var_map[k->id]);
    break;
  case KE_DIM:
    if (u->key) fprintf(u->key, "d%u", k->id);
    break;
  case KE_LOAD:
    uses_buf(u, k->id);
    if (u->key) fprintf(u->key, "b%u", u->buf_map[k->id]);
    break;
  default: break;
  }
  for (int i = 0; i < kop_info(k->op)->n; i++) uses_expr(r, u, k->a[i]);
  if (u->key) fputc(')', u->key);
}

static void uses_block(const LR *r, Uses *u, uint32_t blk);

static void uses_stmt(const LR *r, Uses *u, const KStmt *s) {
  if (u->key) fprintf(u->key, "[%d%d", (int)s->kind, (int)s->loop);
  switch (s->kind) {
  case KS_FOR:
  case KS_ASSIGN:
    uses_var(u, s->var);
    if (s->kind == KS_FOR) u->loop_var[s->var] = 1;
    else u->assigned[s->var] = 1;
    if (u->key) fprintf(u->key, "v%u", u->var_map[s->var]);
    break;
  case KS_STORE:
  case KS_FILL:
  case KS_COPY:
    for (int i = 0; i < (s->kind == KS_COPY ? 2 : 1); i++) {
      uses_buf(u, s->buf[i]);
      if (u->key) fprintf(u->key, "b%u", u->buf_map[s->buf[i]]);
    }
    break;
  case KS_GEMM: {
    const KGemm *g = &r->p->gemms.a[s->gemm];
    u->has_gemm = 1;
    uses_buf(u, g->a);
    uses_buf(u, g->b);
    uses_buf(u, g->c);
    break;
  }
  default: break;
  }
  uint32_t xs[9];
  int n = stmt_exprs(r->p, s, xs);
  for (int k = 0; k < n; k++) uses_expr(r, u, xs[k]);
  if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) uses_block(r, u, s->body);
  if (u->key) fputc(']', u->key);
}

static void uses_block(const LR *r, Uses *u, uint32_t blk) {
  u->inside[blk] = 1;
  const VecU32 *b = &r->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) uses_stmt(r, u, &r->p->stmts.a[b->a[i]]);
}

static void uses_of(const LR *r, const KStmt *s, int with_key, Uses *u) {
  size_t nb = r->e->bufs.n, nv = r->e->vars.n;
  *u = (Uses){.buf_map = pc_xmalloc(sizeof(uint32_t) * (nb + 1)), .var_map = pc_xmalloc(sizeof(uint32_t) * (nv + 1)),
              .assigned = pc_xcalloc(nv + 1, 1), .loop_var = pc_xcalloc(nv + 1, 1),
              .inside = pc_xcalloc(r->p->blocks.n + 1, 1)};
  memset(u->buf_map, 0xff, sizeof(uint32_t) * (nb + 1));
  memset(u->var_map, 0xff, sizeof(uint32_t) * (nv + 1));
  if (with_key) u->key = open_memstream(&u->key_text, &u->key_len);
  uses_stmt(r, u, s);
  u->kind = pc_xcalloc(u->vars.n + 1, 1);
  for (size_t i = 0; i < u->vars.n; i++) {
    uint32_t v = u->vars.a[i], o = r->owner[v];
    int local = u->loop_var[v] || (o != NONE && u->inside[o]);
    u->kind[i] = local ? 'l' : u->assigned[v] ? 'r' : 'v';
  }
  if (u->key) { /* the signature */
    fputc('|', u->key);
    for (size_t i = 0; i < u->bufs.n; i++) fputc("fibw"[r->e->bufs.a[u->bufs.a[i]].elem], u->key);
    for (size_t i = 0; i < u->vars.n; i++) fprintf(u->key, "%c%c", u->kind[i], "fibw"[r->e->vars.a[u->vars.a[i]].type]);
    fprintf(u->key, "|%d", r->fn.in_parallel);
    fclose(u->key);
    u->key = NULL;
  }
}

static void uses_free(Uses *u) {
  vec_free(&u->bufs);
  vec_free(&u->vars);
  free(u->buf_map);
  free(u->var_map);
  free(u->assigned);
  free(u->loop_var);
  free(u->inside);
  free(u->kind);
  free(u->key_text);
}

/* ---- functions ------------------------------------------------------------------- */

/* Starts a function: an entry block for allocas, a body block for the builder. */
static Fn fn_begin(LR *r, LLVMValueRef f) {
  Fn fn = {.fn = f, .vec_body = NONE};
  fn.slot = pc_xcalloc(r->e->vars.n + 1, sizeof *fn.slot);
  fn.buf = pc_xcalloc(r->e->bufs.n + 1, sizeof *fn.buf);
  fn.dim = pc_xcalloc(r->e->dims.n + 1, sizeof *fn.dim);
  fn.entry = LLVMAppendBasicBlockInContext(r->ctx, f, "entry");
  LLVMPositionBuilderAtEnd(r->ab, fn.entry);
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->ctx, f, "body"));
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, r->nounwind);
  return fn;
}

/* Ends the current function (returns void) and goes back to `saved`. */
static void fn_end(LR *r, const Fn *saved, LLVMBasicBlockRef saved_block) {
  LLVMBuildRetVoid(r->b);
  LLVMBuildBr(r->ab, LLVMGetNextBasicBlock(r->fn.entry));
  free(r->fn.slot);
  free(r->fn.buf);
  free(r->fn.dim);
  r->fn = *saved;
  if (saved_block) {
    LLVMPositionBuilderAtEnd(r->b, saved_block);
    LLVMPositionBuilderAtEnd(r->ab, r->fn.entry);
  }
}

static LLVMValueRef slot(LR *r, uint32_t v) {
  if (!r->fn.slot[v]) r->fn.slot[v] = LLVMBuildAlloca(r->ab, ltype(r, r->e->vars.a[v].type), r->e->vars.a[v].name);
  return r->fn.slot[v];
}

static LLVMValueRef dim(LR *r, uint32_t d) {
  if (!r->fn.dim[d]) {
    LLVMValueRef i = i64c(r, d);
    LLVMValueRef at = LLVMBuildInBoundsGEP2(r->ab, r->i64, r->fn.dims, &i, 1, "");
    r->fn.dim[d] = LLVMBuildLoad2(r->ab, r->i64, at, r->e->dims.a[d].name);
  }
  return r->fn.dim[d];
}

/* A buffer's base pointer. In an entry function it is found from the
 * PonderCall where it is used, not once at the top: an entry is a long
 * run of calls, and hundreds of pointers live across all of them would
 * make code generation slow. */
static LLVMValueRef buf(LR *r, uint32_t k) {
  if (r->fn.buf[k]) return r->fn.buf[k];
  const KBuf *b = &r->e->bufs.a[k];
  if (!r->fn.io[0]) PC_BUG("llvm renderer: buffer %s is not a parameter of this function", b->name);
  LLVMValueRef at;
  if (b->kind == KB_ARENA) {
    at = i64c(r, (int64_t)b->offset);
    return LLVMBuildInBoundsGEP2(r->b, LLVMInt8TypeInContext(r->ctx), r->fn.io[3], &at, 1, b->name);
  }
  at = i64c(r, b->index);
  LLVMValueRef p = LLVMBuildInBoundsGEP2(r->b, r->ptr, r->fn.io[b->kind], &at, 1, "");
  return LLVMBuildLoad2(r->b, r->ptr, p, b->name);
}

/* &buffer[index] */
static LLVMValueRef element(LR *r, uint32_t k, LLVMValueRef index) {
  return LLVMBuildInBoundsGEP2(r->b, ltype(r, r->e->bufs.a[k].elem), buf(r, k), &index, 1, "");
}

/* ---- expressions ----------------------------------------------------------------- */

/* How an op is rendered, by the type of its operands (f32 or i64). */
typedef enum { X_NONE, X_BIN, X_CMP, X_NEG, X_INTRINSIC, X_LIBM } XKind;
typedef struct {
  XKind kind;
  int op; /* LLVMOpcode (BIN), LLVMRealPredicate / LLVMIntPredicate (CMP) */
  const char *name;
} XRule;

static const struct {
  XRule f32, i64;
} rules[KE_NUM] = {
    [KE_ADD] = {{X_BIN, LLVMFAdd, 0}, {X_BIN, LLVMAdd, 0}},
    [KE_SUB] = {{X_BIN, LLVMFSub, 0}, {X_BIN, LLVMSub, 0}},
    [KE_MUL] = {{X_BIN, LLVMFMul, 0}, {X_BIN, LLVMMul, 0}},
    [KE_DIV] = {{X_BIN, LLVMFDiv, 0}, {X_BIN, LLVMSDiv, 0}},
    [KE_REM] = {{X_NONE, 0, 0}, {X_BIN, LLVMSRem, 0}},
    [KE_MIN] = {{X_INTRINSIC, 0, "llvm.minnum"}, {X_INTRINSIC, 0, "llvm.smin"}},
    [KE_MAX] = {{X_INTRINSIC, 0, "llvm.maxnum"}, {X_INTRINSIC, 0, "llvm.smax"}},
    [KE_NEG] = {{X_NEG, 0, 0}, {X_NEG, 0, 0}},
    [KE_EXP] = {{X_LIBM, 0, "expf"}, {X_NONE, 0, 0}},
    [KE_LOG] = {{X_LIBM, 0, "logf"}, {X_NONE, 0, 0}},
    [KE_SQRT] = {{X_INTRINSIC, 0, "llvm.sqrt"}, {X_NONE, 0, 0}},
    [KE_TANH] = {{X_LIBM, 0, "tanhf"}, {X_NONE, 0, 0}},
    [KE_ERF] = {{X_LIBM, 0, "erff"}, {X_NONE, 0, 0}},
    [KE_COS] = {{X_LIBM, 0, "cosf"}, {X_NONE, 0, 0}},
    [KE_SIN] = {{X_LIBM, 0, "sinf"}, {X_NONE, 0, 0}},
    [KE_POW] = {{X_LIBM, 0, "powf"}, {X_NONE, 0, 0}},
    [KE_LT] = {{X_CMP, LLVMRealOLT, 0}, {X_CMP, LLVMIntSLT, 0}},
    [KE_LE] = {{X_CMP, LLVMRealOLE, 0}, {X_CMP, LLVMIntSLE, 0}},
    [KE_EQ] = {{X_CMP, LLVMRealOEQ, 0}, {X_CMP, LLVMIntEQ, 0}},
};

/* C's conversions between the scalar types */
static LLVMValueRef convert(LR *r, LLVMValueRef v, KType from, KType to) {
  if (from == to) return v;
  LLVMTypeRef t = ltype(r, to);
  if (from == K_F32)
    return to == K_BOOL ? LLVMBuildFCmp(r->b, LLVMRealUNE, v, LLVMConstReal(r->f32, 0), "") : LLVMBuildFPToSI(r->b, v, t, "");
  if (from == K_BOOL) return to == K_F32 ? LLVMBuildUIToFP(r->b, v, t, "") : LLVMBuildZExt(r->b, v, t, "");
  if (to == K_F32) return LLVMBuildSIToFP(r->b, v, t, "");
  if (to == K_BOOL) return LLVMBuildICmp(r->b, LLVMIntNE, v, LLVMConstInt(LLVMTypeOf(v), 0, 0), "");
  return LLVMBuildIntCast2(r->b, v, t, 1, "");
}

static LLVMValueRef expr(LR *r, uint32_t x);

static LLVMValueRef expr_as(LR *r, uint32_t x, KType to) { return convert(r, expr(r, x), r->p->exprs.a[x].type, to); }

/* Could evaluating x fault (a load, an integer division)? Then C's ?:, &&
 * and || must not evaluate it unless chosen, and neither do we. */
static int may_fault(const KProgram *p, uint32_t x) {
  const KExpr *k = &p->exprs.a[x];
  if (k->op == KE_LOAD || ((k->op == KE_DIV || k->op == KE_REM) && k->type != K_F32)) return 1;
  for (int i = 0; i < kop_info(k->op)->n; i++)
    if (may_fault(p, k->a[i])) return 1;
  return 0;
}

/* cond ? a : b with a, b of type t, evaluating only the one chosen
 * (a NONE: the constant `false`, for && and ||) */
static LLVMValueRef choose(LR *r, LLVMValueRef cond, uint32_t a, uint32_t b, KType t) {
  if (!may_fault(r->p, a) && !may_fault(r->p, b)) {
    LLVMValueRef va = expr_as(r, a, t), vb = expr_as(r, b, t);
    return LLVMBuildSelect(r->b, cond, va, vb, "");
  }
  LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "then"),
                    no = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "else"),
                    join = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "join");
  LLVMBuildCondBr(r->b, cond, yes, no);
  LLVMPositionBuilderAtEnd(r->b, yes);
  LLVMValueRef va = expr_as(r, a, t);
  LLVMBasicBlockRef yes_end = LLVMGetInsertBlock(r->b);
  LLVMBuildBr(r->b, join);
  LLVMPositionBuilderAtEnd(r->b, no);
  LLVMValueRef vb = expr_as(r, b, t);
  LLVMBasicBlockRef no_end = LLVMGetInsertBlock(r->b);
  LLVMBuildBr(r->b, join);
  LLVMPositionBuilderAtEnd(r->b, join);
  LLVMValueRef phi = LLVMBuildPhi(r->b, ltype(r, t), "");
  LLVMValueRef vals[] = {va, vb};
  LLVMBasicBlockRef from[] = {yes_end, no_end};
  LLVMAddIncoming(phi, vals, from, 2);
  return phi;
}

/* a && b, a || b: b only when it decides */
static LLVMValueRef logic(LR *r, const KExpr *k) {
  LLVMValueRef a = expr_as(r, k->a[0], K_BOOL);
  if (!may_fault(r->p, k->a[1])) {
    LLVMValueRef b = expr_as(r, k->a[1], K_BOOL);
    return k->op == KE_AND ? LLVMBuildAnd(r->b, a, b, "") : LLVMBuildOr(r->b, a, b, "");
  }
  LLVMBasicBlockRef start = LLVMGetInsertBlock(r->b), rhs = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "rhs"),
                    join = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "join");
  if (k->op == KE_AND) LLVMBuildCondBr(r->b, a, rhs, join);
  else LLVMBuildCondBr(r->b, a, join, rhs);
  LLVMPositionBuilderAtEnd(r->b, rhs);
  LLVMValueRef b = expr_as(r, k->a[1], K_BOOL);
  LLVMBasicBlockRef rhs_end = LLVMGetInsertBlock(r->b);
  LLVMBuildBr(r->b, join);
  LLVMPositionBuilderAtEnd(r->b, join);
  LLVMValueRef phi = LLVMBuildPhi(r->b, r->i1, "");
  LLVMValueRef vals[] = {LLVMConstInt(r->i1, k->op == KE_OR, 0), b};
  LLVMBasicBlockRef from[] = {start, rhs_end};
  LLVMAddIncoming(phi, vals, from, 2);
  return phi;
}

/* float NAMEf(float...) from libm, as if compiled with -fno-math-errno (it
 * reads and writes no memory), with its libmvec variants when the target
 * has them: the vectorizer then calls _ZGVdN8v_expf and the like. */
static LLVMValueRef libm_call(LR *r, const char *name, LLVMValueRef *args, unsigned n) {
  LLVMTypeRef pt[] = {r->f32, r->f32};
  LLVMTypeRef ft = LLVMFunctionType(r->f32, pt, n, 0);
  LLVMValueRef f = LLVMGetNamedFunction(r->mod, name);
  if (!f) {
    f = extern_fn(r, name, ft);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, r->readnone);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, r->willreturn);
  }
  LLVMValueRef v = call(r, ft, f, args, n);
  if (!r->vec_math || !*r->vec_math) return v;
  /* "_ZGV_LLVM_N8v_expf(_ZGVdN8v_expf),..." for each ISA letter and width */
  char attr[512], vname[64];
  size_t len = 0;
  for (const char *isa = r->vec_math; isa[0] && isa[1]; isa += 2) {
    unsigned width = isa[1] == 'x' ? 16 : (unsigned)(isa[1] - '0');
    const char *params = n == 2 ? "vv" : "v";
    snprintf(vname, sizeof vname, "_ZGV%cN%u%s_%s", isa[0], width, params, name);
    len += (size_t)snprintf(attr + len, sizeof attr - len, "%s_ZGV_LLVM_N%u%s_%s(%s)", len ? "," : "", width, params, name, vname);
    if (!LLVMGetNamedFunction(r->mod, vname)) { /* declared, and kept until the vectorizer has looked */
      LLVMTypeRef vt = LLVMVectorType(r->f32, width), vpt[] = {vt, vt};
      LLVMValueRef vf = extern_fn(r, vname, LLVMFunctionType(vt, vpt, n, 0));
      LLVMAddAttributeAtIndex(vf, LLVMAttributeFunctionIndex, r->readnone);
      vec_push(&r->keep, vf);
    }
  }
  LLVMAddCallSiteAttribute(v, LLVMAttributeFunctionIndex,
                           LLVMCreateStringAttribute(r->ctx, "vector-function-abi-variant", 27, attr, (unsigned)len));
  return v;
}

static LLVMValueRef expr_rule(LR *r, const KExpr *k) {
  KType t = r->p->exprs.a[k->a[0]].type;
  if (t == K_BOOL) t = K_I64; /* C promotes bools to int */
  const XRule *rule = t == K_F32 ? &rules[k->op].f32 : &rules[k->op].i64;
  if (rule->kind == X_NONE) PC_BUG("llvm renderer: no rule for %s on %s", kop_info(k->op)->name, t == K_F32 ? "f32" : "i64");
  LLVMValueRef a[3];
  int n = kop_info(k->op)->n;
  for (int i = 0; i < n; i++) a[i] = expr_as(r, k->a[i], t);
  LLVMValueRef v;
  KType got = t;
  switch (rule->kind) {
  case X_BIN:
    v = LLVMBuildBinOp(r->b, (LLVMOpcode)rule->op, a[0], a[1], "");
    if (t != K_F32 && rule->op != LLVMSDiv && rule->op != LLVMSRem && LLVMIsAInstruction(v)) LLVMSetNSW(v, 1);
    break;
  case X_CMP:
    v = t == K_F32 ? LLVMBuildFCmp(r->b, (LLVMRealPredicate)rule->op, a[0], a[1], "")
                   : LLVMBuildICmp(r->b, (LLVMIntPredicate)rule->op, a[0], a[1], "");
    got = K_BOOL;
    break;
  case X_NEG:
    v = t == K_F32 ? LLVMBuildFNeg(r->b, a[0], "") : LLVMBuildNSWNeg(r->b, a[0], "");
    break;
  case X_INTRINSIC: v = call_intrinsic(r, rule->name, ltype(r, t), a, (unsigned)n); break;
  default: v = libm_call(r, rule->name, a, (unsigned)n); break;
  }
  return convert(r, v, got, k->type);
}

static LLVMValueRef expr(LR *r, uint32_t x) {
  const KExpr *k = &r->p->exprs.a[x];
  switch (k->op) {
  case KE_FCONST: return LLVMConstReal(r->f32, (double)(float)k->f);
  case KE_ICONST: return i64c(r, k->i);
  case KE_VAR: return LLVMBuildLoad2(r->b, ltype(r, r->e->vars.a[k->id].type), slot(r, k->id), "");
  case KE_DIM: return dim(r, k->id);
  case KE_LOAD: {
    KType elem = r->e->bufs.a[k->id].elem;
    LLVMValueRef v = LLVMBuildLoad2(r->b, ltype(r, elem), element(r, k->id, expr_as(r, k->a[0], K_I64)), "");
    LLVMSetAlignment(v, 4);
    return elem == K_I32 ? LLVMBuildSExt(r->b, v, r->i64, "") : v; /* i32 elements load as i64 */
  }
  case KE_ITOF:
  case KE_FTOI: return expr_as(r, k->a[0], k->type); /* (float)x, (int64_t)x */
  case KE_SELECT: return choose(r, expr_as(r, k->a[0], K_BOOL), k->a[1], k->a[2], k->type);
  case KE_AND:
  case KE_OR: return logic(r, k);
  default: return expr_rule(r, k);
  }
}

/* ---- statements ------------------------------------------------------------------ */

static void block(LR *r, uint32_t blk);
static void stmt(LR *r, const KStmt *s, uint32_t blk);

/* Loop metadata asking for vectorization: !{!self, !{"llvm.loop.vectorize.enable", i1 true}} */
static LLVMValueRef vector_md(LR *r) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(r->ctx, NULL, 0);
  LLVMMetadataRef ops[] = {tmp, r->vec_enable};
  LLVMMetadataRef loop = LLVMMDNodeInContext2(r->ctx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(tmp, loop);
  return LLVMMetadataAsValue(r->ctx, loop);
}

/* for (var = lo; var < hi; var++) body, hi evaluated per iteration as in C */
static void loop(LR *r, uint32_t var, LLVMValueRef lo, uint32_t hi, LLVMValueRef hi_value, uint32_t body, int vector) {
  LLVMBuildStore(r->b, lo, slot(r, var));
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "for"),
                    in = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "for.body"),
                    out = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "for.end");
  LLVMBuildBr(r->b, head);
  LLVMPositionBuilderAtEnd(r->b, head);
  LLVMValueRef i = LLVMBuildLoad2(r->b, r->i64, slot(r, var), "");
  LLVMValueRef h = hi_value ? hi_value : expr_as(r, hi, K_I64);
  LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, i, h, ""), in, out);
  LLVMPositionBuilderAtEnd(r->b, in);
  uint32_t saved = r->fn.vec_body;
  r->fn.vec_body = vector ? body : NONE;
  block(r, body);
  r->fn.vec_body = saved;
  i = LLVMBuildLoad2(r->b, r->i64, slot(r, var), "");
  LLVMBuildStore(r->b, LLVMBuildNSWAdd(r->b, i, i64c(r, 1), ""), slot(r, var));
  LLVMValueRef latch = LLVMBuildBr(r->b, head);
  if (vector) {
    LLVMSetMetadata(latch, r->md_loop, vector_md(r));
    r->vector_loops++;
  }
  LLVMPositionBuilderAtEnd(r->b, out);
}

/* Is `a = a + x` or `a = max(a, x)` (a from outside the vector loop) the
 * only way the body assigns outer variables, with no nested control flow?
 * The C renderer's `omp simd reduction` test. */
static int vector_ok(LR *r, uint32_t body) {
  const VecU32 *b = &r->p->blocks.a[body];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &r->p->stmts.a[b->a[i]];
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) return 0;
    if (s->kind != KS_ASSIGN || r->owner[s->var] == body) continue;
    const KExpr *x = &r->p->exprs.a[s->e[0]], *a = &r->p->exprs.a[x->a[0]];
    if ((x->op != KE_ADD && x->op != KE_MAX) || a->op != KE_VAR || a->id != s->var) return 0;
  }
  return 1;
}

static LLVMValueRef ctx_field(LR *r, LLVMTypeRef st, LLVMValueRef p, unsigned i) {
  return LLVMBuildStructGEP2(r->b, st, p, i, "");
}

/* The function of a loop nest: (dims, buffers..., values..., references...)
 * for a kernel; a parallel loop's chunk takes (lo, hi, ...) first and runs
 * the loop over [lo, hi). */
static LLVMValueRef nest_fn(LR *r, const char *name, const KStmt *s, const Uses *u, int chunk) {
  size_t n = (size_t)(chunk ? 3 : 1) + u->bufs.n + u->vars.n;
  LLVMTypeRef *pt = pc_xcalloc(n + 1, sizeof *pt);
  size_t np = 0;
  if (chunk) pt[np++] = r->i64, pt[np++] = r->i64;
  pt[np++] = r->ptr;
  size_t first_buf = np;
  for (size_t i = 0; i < u->bufs.n; i++) pt[np++] = r->ptr;
  for (size_t i = 0; i < u->vars.n; i++)
    if (u->kind[i] != 'l') pt[np++] = u->kind[i] == 'v' ? ltype(r, r->e->vars.a[u->vars.a[i]].type) : r->ptr;
  LLVMValueRef f = LLVMAddFunction(r->mod, name, LLVMFunctionType(r->vd, pt, (unsigned)np, 0));
  free(pt);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  for (size_t i = 0; i < u->bufs.n; i++) LLVMAddAttributeAtIndex(f, (unsigned)(first_buf + i + 1), r->noalias);
  if (!chunk) LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, r->noinline);

  Fn saved = r->fn;
  LLVMBasicBlockRef saved_block = LLVMGetInsertBlock(r->b);
  r->fn = fn_begin(r, f);
  r->fn.in_kernel = saved.in_kernel || !chunk;
  r->fn.in_parallel = saved.in_parallel || chunk;
  unsigned arg = chunk ? 2 : 0;
  r->fn.dims = LLVMGetParam(f, arg++);
  for (size_t i = 0; i < u->bufs.n; i++) r->fn.buf[u->bufs.a[i]] = LLVMGetParam(f, arg++);
  LLVMValueRef *param = pc_xcalloc(u->vars.n + 1, sizeof *param); /* per variable position */
  for (size_t i = 0; i < u->vars.n; i++) {
    uint32_t v = u->vars.a[i];
    if (u->kind[i] == 'l') continue;
    param[i] = LLVMGetParam(f, arg++);
    if (u->kind[i] == 'r' && chunk) { /* shared with the other threads, as in OpenMP */
      r->fn.slot[v] = param[i];
      continue;
    }
    LLVMTypeRef t = ltype(r, r->e->vars.a[v].type);
    LLVMBuildStore(r->ab, u->kind[i] == 'v' ? param[i] : LLVMBuildLoad2(r->ab, t, param[i], ""), slot(r, v));
  }
  if (chunk) loop(r, s->var, LLVMGetParam(f, 0), NONE, LLVMGetParam(f, 1), s->body, 0);
  else stmt(r, s, NONE);
  for (size_t i = 0; i < u->vars.n; i++) /* a kernel copies the variables it wrote back */
    if (u->kind[i] == 'r' && !chunk) {
      uint32_t v = u->vars.a[i];
      LLVMBuildStore(r->b, LLVMBuildLoad2(r->b, ltype(r, r->e->vars.a[v].type), slot(r, v), ""), param[i]);
    }
  free(param);
  fn_end(r, &saved, saved_block);
  return f;
}

/* The arguments of a call to nest_fn's function, after (lo, hi) and dims. */
static void nest_args(LR *r, const Uses *u, LLVMValueRef *args, unsigned *n) {
  for (size_t i = 0; i < u->bufs.n; i++) args[(*n)++] = buf(r, u->bufs.a[i]);
  for (size_t i = 0; i < u->vars.n; i++) {
    uint32_t v = u->vars.a[i];
    if (u->kind[i] == 'v') args[(*n)++] = LLVMBuildLoad2(r->b, ltype(r, r->e->vars.a[v].type), slot(r, v), "");
    if (u->kind[i] == 'r') args[(*n)++] = slot(r, v);
  }
}

/* A loop nest without sgemm, outside any kernel: a call to its kernel. */
static int kernel_call(LR *r, const KStmt *s) {
  Uses u;
  uses_of(r, s, 1, &u);
  int made = !u.has_gemm;
  if (made) {
    uint32_t id;
    if (!strmap_get(&r->seen, u.key_text, u.key_len, &id)) {
      id = (uint32_t)r->kernels.n;
      char name[32];
      snprintf(name, sizeof name, "pc_kern%u", id);
      LLVMValueRef f = nest_fn(r, name, s, &u, 0);
      vec_push(&r->kernels, f);
      strmap_put(&r->seen, u.key_text, u.key_len, id);
    }
    LLVMValueRef f = r->kernels.a[id];
    LLVMValueRef *args = pc_xcalloc(1 + u.bufs.n + u.vars.n, sizeof *args);
    unsigned n = 0;
    args[n++] = r->fn.dims;
    nest_args(r, &u, args, &n);
    call(r, LLVMGlobalGetValueType(f), f, args, n);
    free(args);
  }
  uses_free(&u);
  return made;
}

/* A parallel loop: GOMP_parallel(trampoline, &context, 0, 0), where the
 * trampoline takes this thread's static share of [lo, hi) and calls the
 * chunk function on it. The context holds lo, hi, dims and the chunk
 * function's other arguments. */
static void parallel_call(LR *r, const KStmt *s) {
  Uses u;
  uses_of(r, s, 0, &u);
  unsigned id = r->n_par++;
  char name[48];
  snprintf(name, sizeof name, "pc_par%u.chunk", id);
  LLVMValueRef lo = expr_as(r, s->e[0], K_I64), hi = expr_as(r, s->e[1], K_I64);
  LLVMValueRef chunk = nest_fn(r, name, s, &u, 1);
  LLVMTypeRef chunk_t = LLVMGlobalGetValueType(chunk);
  /* the context: the chunk's parameters */
  unsigned n = LLVMCountParamTypes(chunk_t);
  LLVMTypeRef *ft = pc_xcalloc(n + 1, sizeof *ft);
  LLVMGetParamTypes(chunk_t, ft);
  LLVMTypeRef ctx_t = LLVMStructTypeInContext(r->ctx, ft, n, 0);
  free(ft);
  LLVMValueRef *args = pc_xcalloc(n + 1, sizeof *args);
  unsigned na = 0;
  args[na++] = lo;
  args[na++] = hi;
  args[na++] = r->fn.dims;
  nest_args(r, &u, args, &na);
  /* one iteration (a decoding step's single row): no threads */
  LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "par.one"),
                    fork = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "par.fork"),
                    done = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "par.done");
  LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntSLE, LLVMBuildNSWSub(r->b, hi, lo, ""), i64c(r, 1), ""), one, fork);
  LLVMPositionBuilderAtEnd(r->b, one);
  call(r, chunk_t, chunk, args, n);
  LLVMBuildBr(r->b, done);
  LLVMPositionBuilderAtEnd(r->b, fork);
  LLVMValueRef ctx = LLVMBuildAlloca(r->ab, ctx_t, "par.ctx");
  for (unsigned i = 0; i < n; i++) LLVMBuildStore(r->b, args[i], ctx_field(r, ctx_t, ctx, i));

  /* the trampoline */
  LLVMTypeRef tramp_t = LLVMFunctionType(r->vd, &r->ptr, 1, 0);
  snprintf(name, sizeof name, "pc_par%u", id);
  LLVMValueRef tramp = LLVMAddFunction(r->mod, name, tramp_t);
  LLVMSetLinkage(tramp, LLVMInternalLinkage);
  LLVMAddAttributeAtIndex(tramp, LLVMAttributeFunctionIndex, r->nounwind);
  LLVMBasicBlockRef saved_block = LLVMGetInsertBlock(r->b);
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->ctx, tramp, "entry"));
  LLVMValueRef p = LLVMGetParam(tramp, 0);
  for (unsigned i = 0; i < n; i++)
    args[i] = LLVMBuildLoad2(r->b, LLVMStructGetTypeAtIndex(ctx_t, i), ctx_field(r, ctx_t, p, i), "");
  LLVMTypeRef omp_t = LLVMFunctionType(r->i32, NULL, 0, 0);
  LLVMValueRef tid = LLVMBuildSExt(r->b, call(r, omp_t, extern_fn(r, "omp_get_thread_num", omp_t), NULL, 0), r->i64, "tid");
  LLVMValueRef nt = LLVMBuildSExt(r->b, call(r, omp_t, extern_fn(r, "omp_get_num_threads", omp_t), NULL, 0), r->i64, "nt");
  /* schedule(static): q = n / nt, rem = n % nt; the first rem threads take q + 1 */
  LLVMValueRef total = LLVMBuildNSWSub(r->b, args[1], args[0], "n");
  LLVMValueRef q = LLVMBuildSDiv(r->b, total, nt, "q"), rem = LLVMBuildSRem(r->b, total, nt, "rem");
  LLVMValueRef extra = LLVMBuildICmp(r->b, LLVMIntSLT, tid, rem, "");
  LLVMValueRef count = LLVMBuildNSWAdd(r->b, q, LLVMBuildZExt(r->b, extra, r->i64, ""), "count");
  LLVMValueRef before = LLVMBuildSelect(r->b, extra, tid, rem, "");
  args[0] = LLVMBuildNSWAdd(r->b, args[0], LLVMBuildNSWAdd(r->b, LLVMBuildNSWMul(r->b, tid, q, ""), before, ""), "start");
  args[1] = LLVMBuildNSWAdd(r->b, args[0], count, "end");
  call(r, chunk_t, chunk, args, n);
  LLVMBuildRetVoid(r->b);
  LLVMPositionBuilderAtEnd(r->b, saved_block);

  /* the fork */
  LLVMTypeRef gomp_pt[] = {r->ptr, r->ptr, r->i32, r->i32};
  LLVMTypeRef gomp_t = LLVMFunctionType(r->vd, gomp_pt, 4, 0);
  LLVMValueRef gargs[] = {tramp, ctx, i32c(r, 0), i32c(r, 0)};
  call(r, gomp_t, extern_fn(r, "GOMP_parallel", gomp_t), gargs, 4);
  LLVMBuildBr(r->b, done);
  LLVMPositionBuilderAtEnd(r->b, done);
  free(args);
  uses_free(&u);
}

static void assign(LR *r, const KStmt *s, uint32_t blk) {
  KType t = r->e->vars.a[s->var].type;
  LLVMValueRef v = expr_as(r, s->e[0], t);
  const KExpr *x = &r->p->exprs.a[s->e[0]];
  /* a reduction of a vector loop: may be reordered (omp simd reduction) */
  if (blk != NONE && blk == r->fn.vec_body && r->owner[s->var] != blk && t == K_F32 && LLVMIsAInstruction(v) &&
      (x->op == KE_ADD || x->op == KE_MAX))
    LLVMSetFastMathFlags(v, x->op == KE_ADD ? LLVMFastMathAllowReassoc
                                            : LLVMFastMathAllowReassoc | LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
  LLVMBuildStore(r->b, v, slot(r, s->var));
}

static void gemm(LR *r, const KGemm *g) {
  LLVMTypeRef pt[] = {r->i32, r->i32, r->i32, r->i32, r->i32, r->i32, r->f32, r->ptr, r->i32, r->ptr, r->i32, r->f32, r->ptr, r->i32};
  LLVMTypeRef ft = LLVMFunctionType(r->vd, pt, 14, 0);
  LLVMValueRef a[] = {
      i32c(r, 101), i32c(r, g->ta ? 112 : 111), i32c(r, g->tb ? 112 : 111), expr_as(r, g->m, K_I32),
      expr_as(r, g->n, K_I32), expr_as(r, g->k, K_I32), LLVMConstReal(r->f32, g->alpha),
      element(r, g->a, expr_as(r, g->a_off, K_I64)), expr_as(r, g->lda, K_I32),
      element(r, g->b, expr_as(r, g->b_off, K_I64)), expr_as(r, g->ldb, K_I32), LLVMConstReal(r->f32, g->beta),
      element(r, g->c, expr_as(r, g->c_off, K_I64)), expr_as(r, g->ldc, K_I32),
  };
  call(r, ft, extern_fn(r, "cblas_sgemm", ft), a, 14);
}

static int is_zero(const KExpr *k) { return (k->op == KE_FCONST && k->f == 0) || (k->op == KE_ICONST && k->i == 0); }

static void stmt(LR *r, const KStmt *s, uint32_t blk) {
  switch (s->kind) {
  case KS_FOR:
    if (!r->fn.in_kernel && kernel_call(r, s)) return;
    if (s->loop == KL_PARALLEL && !r->fn.in_parallel) {
      parallel_call(r, s);
      return;
    }
    loop(r, s->var, expr_as(r, s->e[0], K_I64), s->e[1], NULL, s->body, s->loop == KL_VECTOR && vector_ok(r, s->body));
    return;
  case KS_IF: {
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "if"),
                      done = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "if.end");
    LLVMBuildCondBr(r->b, expr_as(r, s->e[0], K_BOOL), yes, done);
    LLVMPositionBuilderAtEnd(r->b, yes);
    block(r, s->body);
    LLVMBuildBr(r->b, done);
    LLVMPositionBuilderAtEnd(r->b, done);
    return;
  }
  case KS_WHILE: {
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "while"),
                      in = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "while.body"),
                      done = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "while.end");
    LLVMBuildBr(r->b, head);
    LLVMPositionBuilderAtEnd(r->b, head);
    LLVMBuildCondBr(r->b, expr_as(r, s->e[0], K_BOOL), in, done);
    LLVMPositionBuilderAtEnd(r->b, in);
    block(r, s->body);
    LLVMBuildBr(r->b, head);
    LLVMPositionBuilderAtEnd(r->b, done);
    return;
  }
  case KS_ASSIGN: assign(r, s, blk); return;
  case KS_STORE: {
    KType elem = r->e->bufs.a[s->buf[0]].elem;
    LLVMValueRef at = element(r, s->buf[0], expr_as(r, s->e[0], K_I64));
    LLVMSetAlignment(LLVMBuildStore(r->b, expr_as(r, s->e[1], elem), at), 4);
    return;
  }
  case KS_FILL: {
    KType elem = r->e->bufs.a[s->buf[0]].elem;
    LLVMValueRef count = expr_as(r, s->e[1], K_I64);
    LLVMValueRef zero = i64c(r, 0);
    if (is_zero(&r->p->exprs.a[s->e[2]])) {
      LLVMValueRef a[] = {count, zero};
      LLVMValueRef bytes = LLVMBuildNSWMul(r->b, call_intrinsic(r, "llvm.smax", r->i64, a, 2), i64c(r, 4), "");
      LLVMBuildMemSet(r->b, element(r, s->buf[0], expr_as(r, s->e[0], K_I64)), LLVMConstInt(LLVMInt8TypeInContext(r->ctx), 0, 0),
                      bytes, 4);
      return;
    }
    /* for (z = 0; z < count; z++) buf[offset + z] = value */
    LLVMValueRef z = LLVMBuildAlloca(r->ab, r->i64, "z");
    LLVMBuildStore(r->b, zero, z);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "fill"),
                      in = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "fill.body"),
                      out = LLVMAppendBasicBlockInContext(r->ctx, r->fn.fn, "fill.end");
    LLVMBuildBr(r->b, head);
    LLVMPositionBuilderAtEnd(r->b, head);
    LLVMValueRef zi = LLVMBuildLoad2(r->b, r->i64, z, "");
    LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, zi, count, ""), in, out);
    LLVMPositionBuilderAtEnd(r->b, in);
    LLVMValueRef at = element(r, s->buf[0], LLVMBuildNSWAdd(r->b, expr_as(r, s->e[0], K_I64), zi, ""));
    LLVMSetAlignment(LLVMBuildStore(r->b, expr_as(r, s->e[2], elem), at), 4);
    LLVMBuildStore(r->b, LLVMBuildNSWAdd(r->b, zi, i64c(r, 1), ""), z);
    LLVMBuildBr(r->b, head);
    LLVMPositionBuilderAtEnd(r->b, out);
    return;
  }
  case KS_COPY: {
    LLVMValueRef dst = element(r, s->buf[0], expr_as(r, s->e[0], K_I64));
    LLVMValueRef src = element(r, s->buf[1], expr_as(r, s->e[1], K_I64));
    LLVMBuildMemMove(r->b, dst, 4, src, 4, LLVMBuildNSWMul(r->b, expr_as(r, s->e[2], K_I64), i64c(r, 4), ""));
    return;
  }
  case KS_GEMM: gemm(r, &r->p->gemms.a[s->gemm]); return;
  case KS_CALL: PC_BUG("llvm renderer: a call of another backend's kernels (KSchedule.attention_kernel is for CUDA)");
  }
}

static void block(LR *r, uint32_t blk) {
  const VecU32 *b = &r->p->blocks.a[blk];
  for (size_t i = 0; i < b->n; i++) stmt(r, &r->p->stmts.a[b->a[i]], blk);
}

/* ---- entries and the ABI ---------------------------------------------------------- */

/* void pc_entry_NAME(const PonderCall *call) */
static LLVMValueRef entry_fn(LR *r) {
  const KEntry *e = r->e;
  char name[160];
  snprintf(name, sizeof name, "pc_entry_%s", e->name);
  LLVMValueRef f = LLVMAddFunction(r->mod, name, LLVMFunctionType(r->vd, &r->ptr, 1, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  size_t nb = r->p->blocks.n;
  r->parent = pc_xmalloc(sizeof(uint32_t) * nb);
  r->owner = pc_xmalloc(sizeof(uint32_t) * (e->vars.n + 1));
  memset(r->parent, 0xff, sizeof(uint32_t) * nb);
  memset(r->owner, 0xff, sizeof(uint32_t) * (e->vars.n + 1));
  scan_block(r, e->body);

  Fn none = {.vec_body = NONE};
  r->fn = fn_begin(r, f);
  /* PonderCall: params, inputs, outputs, arena, dims */
  LLVMTypeRef fields[] = {r->ptr, r->ptr, r->ptr, r->ptr, r->ptr};
  LLVMTypeRef call_t = LLVMStructTypeInContext(r->ctx, fields, 5, 0);
  static const char *names[] = {"params", "inputs", "outputs", "arena", "dims"};
  for (unsigned i = 0; i < 5; i++) {
    LLVMValueRef p = LLVMBuildStructGEP2(r->ab, call_t, LLVMGetParam(f, 0), i, "");
    LLVMValueRef v = LLVMBuildLoad2(r->ab, r->ptr, p, names[i]);
    if (i < 4) r->fn.io[i] = v;
    else r->fn.dims = v;
  }
  block(r, e->body);
  fn_end(r, &none, NULL);
  free(r->parent);
  free(r->owner);
  return f;
}

static void abi_functions(LR *r, const PcModule *m, LLVMValueRef *entries) {
  /* int ponder_abi_version(void) */
  LLVMValueRef f = LLVMAddFunction(r->mod, "ponder_abi_version", LLVMFunctionType(r->i32, NULL, 0, 0));
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->ctx, f, "entry"));
  LLVMBuildRet(r->b, i32c(r, PONDER_ABI_VERSION));
  /* const char *ponder_model_info(void) */
  size_t len = strlen(m->info_json);
  LLVMValueRef text = LLVMConstStringInContext2(r->ctx, m->info_json, len, 0);
  LLVMValueRef info = LLVMAddGlobal(r->mod, LLVMTypeOf(text), "pc_model_info");
  LLVMSetInitializer(info, text);
  LLVMSetGlobalConstant(info, 1);
  LLVMSetLinkage(info, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(info, LLVMGlobalUnnamedAddr);
  f = LLVMAddFunction(r->mod, "ponder_model_info", LLVMFunctionType(r->ptr, NULL, 0, 0));
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->ctx, f, "entry"));
  LLVMBuildRet(r->b, info);
  /* int ponder_run(int entry, const PonderCall *call) */
  LLVMTypeRef pt[] = {r->i32, r->ptr};
  f = LLVMAddFunction(r->mod, "ponder_run", LLVMFunctionType(r->i32, pt, 2, 0));
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(r->ctx, f, "entry"),
                    bad = LLVMAppendBasicBlockInContext(r->ctx, f, "unknown");
  LLVMPositionBuilderAtEnd(r->b, start);
  size_t n = m->prog->entries.n;
  LLVMValueRef sw = LLVMBuildSwitch(r->b, LLVMGetParam(f, 0), bad, (unsigned)n);
  for (size_t i = 0; i < n; i++) {
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(r->ctx, f, m->prog->entries.a[i].name);
    LLVMAddCase(sw, i32c(r, (int)i), bb);
    LLVMPositionBuilderAtEnd(r->b, bb);
    LLVMValueRef arg = LLVMGetParam(f, 1);
    call(r, LLVMGlobalGetValueType(entries[i]), entries[i], &arg, 1);
    LLVMBuildRet(r->b, i32c(r, 0));
  }
  LLVMPositionBuilderAtEnd(r->b, bad);
  LLVMBuildRet(r->b, i32c(r, -1));
}

int llvm_render(const PcModule *m, LLVMContextRef ctx, LLVMModuleRef *out, PcError *err) {
  LLVMTargetMachineRef tm;
  *out = NULL;
  if (llvm_host_machine(&tm, err) < 0) return -1;
  int rc = llvm_render_for(m, ctx, tm, llvm_vector_math(), out, NULL, err);
  LLVMDisposeTargetMachine(tm);
  return rc;
}

/* @llvm.compiler.used = appending global [n x ptr] [...], section "llvm.metadata" */
static void compiler_used(LR *r) {
  if (!r->keep.n) return;
  LLVMTypeRef t = LLVMArrayType2(r->ptr, r->keep.n);
  LLVMValueRef g = LLVMAddGlobal(r->mod, t, "llvm.compiler.used");
  LLVMSetInitializer(g, LLVMConstArray2(r->ptr, r->keep.a, r->keep.n));
  LLVMSetLinkage(g, LLVMAppendingLinkage);
  LLVMSetSection(g, "llvm.metadata");
}

int llvm_render_for(const PcModule *m, LLVMContextRef ctx, LLVMTargetMachineRef tm, const char *vec_math, LLVMModuleRef *out,
                    LlvmStats *stats, PcError *err) {
  LR r = {.p = m->prog, .ctx = ctx, .vec_math = vec_math};
  r.mod = LLVMModuleCreateWithNameInContext("pondercc", ctx);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(r.mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(r.mod, dl);
  LLVMDisposeTargetData(dl);
  r.b = LLVMCreateBuilderInContext(ctx);
  r.ab = LLVMCreateBuilderInContext(ctx);
  r.f32 = LLVMFloatTypeInContext(ctx);
  r.i64 = LLVMInt64TypeInContext(ctx);
  r.i32 = LLVMInt32TypeInContext(ctx);
  r.i1 = LLVMInt1TypeInContext(ctx);
  r.ptr = LLVMPointerTypeInContext(ctx, 0);
  r.vd = LLVMVoidTypeInContext(ctx);
  r.md_loop = LLVMGetMDKindIDInContext(ctx, "llvm.loop", 9);
  LLVMMetadataRef enable[] = {LLVMMDStringInContext2(ctx, "llvm.loop.vectorize.enable", 26),
                              LLVMValueAsMetadata(LLVMConstInt(r.i1, 1, 0))};
  r.vec_enable = LLVMMDNodeInContext2(ctx, enable, 2);
  r.noalias = LLVMCreateEnumAttribute(ctx, LLVMGetEnumAttributeKindForName("noalias", 7), 0);
  r.nounwind = LLVMCreateEnumAttribute(ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0);
  r.noinline = LLVMCreateEnumAttribute(ctx, LLVMGetEnumAttributeKindForName("noinline", 8), 0);
  r.readnone = LLVMCreateEnumAttribute(ctx, LLVMGetEnumAttributeKindForName("memory", 6), 0); /* memory(none) */
  r.willreturn = LLVMCreateEnumAttribute(ctx, LLVMGetEnumAttributeKindForName("willreturn", 10), 0);

  LLVMValueRef *entries = pc_xcalloc(m->prog->entries.n + 1, sizeof *entries);
  for (size_t i = 0; i < m->prog->entries.n; i++) {
    r.e = &m->prog->entries.a[i];
    entries[i] = entry_fn(&r);
  }
  abi_functions(&r, m, entries);
  compiler_used(&r);
  free(entries);
  vec_free(&r.keep);
  if (stats) {
    stats->kernels = (unsigned)r.kernels.n;
    stats->vector_loops = r.vector_loops;
  }
  vec_free(&r.kernels);
  strmap_free(&r.seen);
  LLVMDisposeBuilder(r.b);
  LLVMDisposeBuilder(r.ab);

  char *msg = NULL;
  if (LLVMVerifyModule(r.mod, LLVMReturnStatusAction, &msg)) {
    int rc = pc_errorf(err, "llvm backend: the rendered module does not verify: %.900s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(r.mod);
    *out = NULL;
    return rc;
  }
  LLVMDisposeMessage(msg);
  *out = r.mod;
  return 0;
}

