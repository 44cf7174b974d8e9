/* The kernel IR: loop nests over flat buffers. Graph IR is lowered into it
 * once (compiler/lower), after fusion and memory planning, and every
 * backend renders it (backends/c, backends/llvm): an op is lowered once,
 * not once per backend.
 *
 * A program holds entries (one per compiled graph: train, eval, logits,
 * decode) over shared expression and statement arrays. An entry has
 * buffers (parameters, inputs, outputs, and slices of one arena whose
 * offsets were fixed at compile time), scalar variables, symbolic dims
 * bound per call (B, T, with compile-time maxima), and a body: a block of
 * statements. Handles are uint32 indices, as in the graph IR. */
#ifndef PC_KIR_H
#define PC_KIR_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/base/err.h"
#include "runtime/base/mem.h"

typedef enum { K_F32, K_I64, K_BOOL, K_I32 } KType; /* K_I32: a buffer element type only */

typedef enum {
#define KOP(e, name, n, res) KE_##e,
#include "ir/kops.def"
#undef KOP
  KE_NUM
} KOp;

typedef struct {
  const char *name;
  int n;
  char result; /* 'F', 'I', 'B', 'S' (type of operand 0), 'T' (type of operand 1) */
} KOpInfo;
const KOpInfo *kop_info(KOp op);

typedef struct {
  KOp op;
  KType type;
  uint32_t a[3];
  double f;    /* FCONST */
  int64_t i;   /* ICONST */
  uint32_t id; /* VAR: variable; DIM: dim; LOAD: buffer */
} KExpr;

typedef enum { KS_FOR, KS_ASSIGN, KS_STORE, KS_IF, KS_WHILE, KS_GEMM, KS_FILL, KS_COPY, KS_CALL } KStmtKind;
typedef enum { KL_SERIAL, KL_PARALLEL, KL_VECTOR } KLoopKind;

/* C[c_off..] = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm */
typedef struct {
  int ta, tb;
  uint32_t m, n, k;                   /* exprs (i64) */
  float alpha, beta;
  uint32_t a, b, c;                   /* buffers */
  uint32_t a_off, b_off, c_off;       /* exprs: element offsets */
  uint32_t lda, ldb, ldc;             /* exprs */
} KGemm;

/* A call of a backend's own kernels for a whole op, where hand-written code
 * beats loop nests (FlashAttention-style attention on CUDA). Emitted only
 * when the schedule asks for it (KSchedule.attention_kernel), for backends
 * that have the kernels. Buffers are passed whole (element 0); the op's
 * table entry (kcall_info) says which it reads, which it writes, and what
 * its scalar arguments mean. */
typedef enum { KC_ATTENTION, KC_ATTENTION_GRAD, KC_ATTENTION_CACHED, KC_NUM } KCallOp;
#define KCALL_MAX_BUFS 13
#define KCALL_MAX_ARGS 21
#define KCALL_CACHED_KEYS 8192 /* attention_cached: caches of at most this many positions (a row's scores fit on chip) */

typedef struct {
  KCallOp op;
  uint32_t buf[KCALL_MAX_BUFS];
  uint32_t arg[KCALL_MAX_ARGS]; /* exprs */
} KCall;

typedef struct {
  const char *name;
  int n_read, n_buf; /* buf[0 .. n_read) are read, buf[n_read .. n_buf) written */
  int n_arg;
  const char *bufs[KCALL_MAX_BUFS], *args[KCALL_MAX_ARGS];
} KCallInfo;
const KCallInfo *kcall_info(KCallOp op);

typedef struct {
  KStmtKind kind;
  KLoopKind loop;  /* FOR */
  uint32_t var;    /* FOR: the loop variable; ASSIGN: the target */
  uint32_t e[3];   /* FOR: lo, hi; ASSIGN: value; STORE: index, value; IF/WHILE: cond;
                      FILL: offset, count, value; COPY: dst offset, src offset, count */
  uint32_t buf[2]; /* STORE/FILL: buf[0]; COPY: dst buf[0], src buf[1] */
  uint32_t body;   /* FOR/IF/WHILE: a block */
  uint32_t gemm;   /* GEMM */
  uint32_t call;   /* CALL */
  uint32_t origin; /* the graph op it was lowered from (kir_origin_text); 0: none */
} KStmt;

typedef enum { KB_PARAM, KB_INPUT, KB_OUTPUT, KB_ARENA } KBufKind;

typedef struct {
  char *name;
  KType elem;      /* K_F32 or K_I32 */
  KBufKind kind;
  uint32_t index;  /* PARAM / INPUT / OUTPUT: position in the entry's list */
  uint64_t offset; /* ARENA: byte offset */
  uint64_t numel;  /* at the maximum dims */
  /* What kernels store here is read only as matrix products' operands, and
   * a kernel that stores an element reads it only before (the lowering's
   * promise): a backend whose products read bf16 copies may store only
   * those (cuda_render.c). */
  uint8_t operand_only;
} KBuf;

typedef struct {
  char *name;
  KType type;
} KVar;

typedef struct {
  char *name;
  int64_t max; /* the largest value a call may bind */
} KDim;

typedef struct {
  char *name;
  VEC(KBuf) bufs;
  VEC(KVar) vars;
  VEC(KDim) dims;
  uint32_t body;       /* a block */
  uint64_t arena_bytes;
} KEntry;

typedef struct KProgram {
  VEC(KExpr) exprs;
  VEC(KStmt) stmts;
  VEC(VecU32) blocks;
  VEC(KGemm) gemms;
  VEC(KCall) calls;
  VEC(KEntry) entries;
  VEC(char *) origins; /* KStmt.origin k > 0 is origins[k - 1]: "layernorm_grad @models/gpt2.lua:46" */
} KProgram;

KProgram *kir_new(void);
void kir_free(KProgram *p);
uint32_t kir_block(KProgram *p);
KEntry *kir_entry(KProgram *p, const char *name); /* adds one */

/* ---- building ------------------------------------------------------------ */
uint32_t kx_f(KProgram *p, double v);
uint32_t kx_i(KProgram *p, int64_t v);
uint32_t kx_var(KProgram *p, const KEntry *e, uint32_t var);
uint32_t kx_dim(KProgram *p, uint32_t dim);
uint32_t kx_load(KProgram *p, const KEntry *e, uint32_t buf, uint32_t index);
uint32_t kx_op(KProgram *p, KOp op, uint32_t a, uint32_t b, uint32_t c); /* unused operands: 0 */
/* x with expression `with` wherever it reads variable var (x itself where it does not) */
uint32_t kx_subst_var(KProgram *p, uint32_t x, uint32_t var, uint32_t with);
#define kx_add(p, a, b) kx_op(p, KE_ADD, a, b, 0)
#define kx_sub(p, a, b) kx_op(p, KE_SUB, a, b, 0)
#define kx_mul(p, a, b) kx_op(p, KE_MUL, a, b, 0)
#define kx_div(p, a, b) kx_op(p, KE_DIV, a, b, 0)

uint32_t kvar(KEntry *e, const char *name, KType type);
uint32_t kbuf(KEntry *e, const char *name, KType elem, KBufKind kind, uint32_t index, uint64_t offset, uint64_t numel);
uint32_t kdim(KEntry *e, const char *name, int64_t max);

/* Statements append to a block. */
void ks_assign(KProgram *p, uint32_t block, uint32_t var, uint32_t value);
void ks_store(KProgram *p, uint32_t block, uint32_t buf, uint32_t index, uint32_t value);
uint32_t ks_for(KProgram *p, uint32_t block, KLoopKind kind, uint32_t var, uint32_t lo, uint32_t hi); /* -> body */
uint32_t ks_if(KProgram *p, uint32_t block, uint32_t cond);                                          /* -> body */
uint32_t ks_while(KProgram *p, uint32_t block, uint32_t cond);                                       /* -> body */
void ks_gemm(KProgram *p, uint32_t block, const KGemm *g);
void ks_fill(KProgram *p, uint32_t block, uint32_t buf, uint32_t offset, uint32_t count, uint32_t value);
void ks_copy(KProgram *p, uint32_t block, uint32_t dst, uint32_t dst_off, uint32_t src, uint32_t src_off, uint32_t count);
void ks_call(KProgram *p, uint32_t block, const KCall *c);

/* Where statements came from, for profiles: the handle of an origin's text
 * (the same text, the same handle), and the statements from `first` on that
 * have none yet get it. */
uint32_t kir_origin(KProgram *p, const char *text);
void kir_set_origin(KProgram *p, size_t first, uint32_t origin);
const char *kir_origin_text(const KProgram *p, uint32_t origin); /* "" for 0 or one out of range */

/* ---- text (--emit kir) ---------------------------------------------------- */
/* Buffers read and written by a statement, with everything nested in it
 * (ir/kir_effects.c) */
typedef struct {
  VecU32 r, w;
} KEffects;
void kir_effects(const KProgram *p, const KStmt *s, KEffects *out); /* appends */
void kir_effects_expr(const KProgram *p, uint32_t x, KEffects *out);
/* Whether running b after a in another order, or together, could change
 * what either sees: a write of one to memory the other reads or writes
 * (arena buffers that share bytes too). */
int kir_effects_conflict(const KEntry *e, const KEffects *a, const KEffects *b);
void kir_effects_clear(KEffects *x);
void kir_effects_free(KEffects *x);
int kstmt_n_exprs(const KStmt *s); /* how many of e[] a statement uses */
int kexpr_loads(const KProgram *p, uint32_t x); /* reads a buffer */
int kexpr_uses_var(const KProgram *p, uint32_t x, uint32_t var);
/* x and y compute the same: the same expression, reading a variable v as
 * its value def[v] where def is given and def[v] != UINT32_MAX */
int kexpr_same(const KProgram *p, uint32_t x, uint32_t y, const uint32_t *def);

void kir_print(const KProgram *p, FILE *f);

#endif
