/* Shared by the lowering files: the lowering state, the memory plan, and
 * small builders that read like the loops they make. */
#ifndef PC_LOWER_INTERNAL_H
#define PC_LOWER_INTERNAL_H

#include "compiler/lower/lower.h"
#include "ir/rewrite.h"

#define L_MAX_SCRATCH 4

typedef struct Lower {
  KProgram *p;
  uint32_t entry;
  const IrGraph *g;
  const KSchedule *s;
  const int64_t *dim_max;
  uint32_t block;          /* where statements go */
  uint32_t *buf;           /* per graph value: its buffer, or IR_NONE */
  uint32_t *var;           /* per graph value: its variable (loop indices), or IR_NONE */
  unsigned char *inlined;  /* per graph value: not stored; computed inside its consumer's loop (elementwise),
                              added by its own op into its only consumer, a sum (summed_into), read in
                              place by attention kernels (a slice: slices_as_views), or written by them
                              into the columns of the slice gradient that adds it in (gradients_in_place) */
  uint32_t *at_row;        /* per graph value: the node next to it that computes it: in its row loop (a norm
                              or elementwise op right after the group, a norm gradient right before it), or
                              by adding its own result into it (a sum right after the op), or IR_NONE */
  uint32_t *uses;          /* per graph value */
  uint32_t *dim;           /* per graph symbolic dim: the entry's dim */
  uint32_t (*scratch)[L_MAX_SCRATCH]; /* per node: scratch buffers its lowering asked for; after the last node,
                              the entry's own: [0] the row of ones that bias gradients multiply (sums_as_products) */
  int64_t n_ones;          /* that row's length (0: none), the most rows any such gradient sums */
  int tmp;                 /* names of new variables */
  uint32_t n_outputs;      /* outputs lowered so far */
  struct {                 /* the last slice copied row by row: the next one of the same rows may join its loop */
    uint32_t stmt, whole;  /* its parallel loop (UINT32_MAX: none); the whole-width value (a slice) or buffer (a gradient) */
    int axis, grad;
    IrShape x;
  } slice_rows;
} Lower;

static inline KEntry *L_entry(Lower *l) { return &l->p->entries.a[l->entry]; }

/* merge_rows.c: the entry's sibling row loops as one (KSchedule.merge_rows) */
void merge_rows(KProgram *p, uint32_t entry);

/* ---- where values are computed (inline.c) ---------------------------------- */
/* Which values are computed inside their consumer (elementwise groups), and
 * which groups the node next to them computes in its row loop (at_row). */
void plan_inline(Lower *l);
/* The elementwise group that node `node` computes in its row loop before
 * its own row (a norm's or an elementwise op's input), or after it (a norm
 * gradient's residual sum): a value, or IR_NONE. */
uint32_t row_group_before(Lower *l, uint32_t node);
uint32_t row_group_after(Lower *l, uint32_t node);
/* The sum that value v (an op's result, never stored) is added into by its
 * op, or IR_NONE; *other gets the sum's other operand. */
uint32_t summed_into(Lower *l, uint32_t v, uint32_t *other);
/* Where result k of node n goes: its own buffer, or the buffer of the sum
 * that its op adds it into (*accumulate = 1), which this makes hold the
 * sum's other operand first (a copy, unless the plan put the sum there). */
uint32_t L_result_buffer(Lower *l, const IrNode *n, uint32_t k, int *accumulate);
/* Whether v, zeros from a fill, starts a chain of slice gradients that
 * covers its axis exactly once (each slice copied in, no fill); whether
 * slice gradient n is on such a chain. */
int covering_chain(Lower *l, uint32_t v);
int on_covering_chain(Lower *l, const IrNode *n);
/* A view's whole (slices_as_views): the stored value w, or, for a bias add
 * computed in its slices, the product it adds to (*whole) and its bias
 * (*bias, else IR_NONE); 0 when w is neither. */
int view_parts(Lower *l, uint32_t w, uint32_t *whole, uint32_t *bias);
/* How many times nodes read value v, when ok(l, n, k) holds for every
 * node n reading it as operand k; -1 when it fails for one. */
int uses_all(Lower *l, uint32_t v, int (*ok)(Lower *l, const IrNode *n, uint32_t k));
/* Operands an elementwise group rooted at v reads from memory (its inlined
 * elementwise values' operands, recursively), appended to out; for a view,
 * what its whole reads. */
void group_leaves(Lower *l, uint32_t v, VecU32 *out);

/* Whether sum_to node n is lowered as a product (KSchedule.sums_as_products;
 * lower_ops.c). */
int sum_to_as_product(Lower *l, const IrNode *n);

/* ---- the memory plan (plan.c) --------------------------------------------- */
/* Gives every value that needs storage a buffer: external (parameters,
 * inputs, outputs) or a slice of the arena, sharing slices between values
 * whose lives do not overlap and aliasing where an op works in place. */
int plan_memory(Lower *l, PcError *err);

/* ---- builders (lower.c) --------------------------------------------------- */
uint32_t L_i(Lower *l, int64_t v);
uint32_t L_f(Lower *l, double v);
uint32_t L_dimx(Lower *l, int64_t d);              /* a shape dim as an i64 expr */
uint32_t L_numel(Lower *l, const IrShape *s);       /* product of all dims */
uint32_t L_rows(Lower *l, const IrShape *s);        /* product of all but the last */
uint32_t L_last(Lower *l, const IrShape *s);        /* the last dim */
int64_t L_max_numel(Lower *l, const IrShape *s);    /* at the maximum dims */
const IrShape *L_shape(Lower *l, uint32_t value);
uint32_t L_newvar(Lower *l, const char *prefix, KType t);
uint32_t L_varx(Lower *l, uint32_t var);
/* Opens a loop; statements go into its body until l->block is restored.
 * Returns the loop variable's expr; *saved gets the block to go back to. */
uint32_t L_loop(Lower *l, KLoopKind kind, uint32_t lo, uint32_t hi, uint32_t *saved);
uint32_t L_load(Lower *l, uint32_t value, uint32_t index);
void L_store(Lower *l, uint32_t value, uint32_t index, uint32_t x);
uint32_t L_scalar(Lower *l, uint32_t value);        /* an i32[] value as i64 */
void L_assign(Lower *l, uint32_t var, uint32_t x);
uint32_t L_fvar(Lower *l, uint32_t x);              /* x in a new f32 variable; its expr */
uint32_t L_ivar(Lower *l, uint32_t x);              /* x in a new i64 variable; its expr */
uint32_t L_acc(Lower *l, KType t, uint32_t init);   /* a new accumulator variable */
uint32_t L_ex(Lower *l, KOp op, uint32_t a);        /* a unary kernel expression */
uint32_t L_scratch(Lower *l, const IrNode *n, int k); /* node n's scratch buffer k */
uint32_t L_ones(Lower *l);                          /* the entry's row of ones (Lower.n_ones) */
/* buf's stored values are read only as products' operands (KBuf.operand_only) */
void L_operand_only(Lower *l, uint32_t buf);
uint32_t L_ldb(Lower *l, uint32_t buf, uint32_t index);
void L_stb(Lower *l, uint32_t buf, uint32_t index, uint32_t x);
#define L_op(l, op, a, b) kx_op((l)->p, op, a, b, 0)
#define L_add(l, a, b) kx_op((l)->p, KE_ADD, a, b, 0)
#define L_sub(l, a, b) kx_op((l)->p, KE_SUB, a, b, 0)
#define L_mul(l, a, b) kx_op((l)->p, KE_MUL, a, b, 0)
#define L_div(l, a, b) kx_op((l)->p, KE_DIV, a, b, 0)
/* a row-major sgemm over kernel buffers (l->buf[value] for a graph value), element offsets */
void L_gemm(Lower *l, int ta, int tb, uint32_t m, uint32_t n, uint32_t k, float alpha, uint32_t a, uint32_t a_off,
            uint32_t lda, uint32_t b, uint32_t b_off, uint32_t ldb, float beta, uint32_t c, uint32_t c_off, uint32_t ldc);

/* ---- op lowerings --------------------------------------------------------- */
typedef int (*LowerFn)(Lower *l, const IrNode *n, PcError *err);
/* Scratch a node needs, in elements (f32), at the maximum dims. */
typedef int (*ScratchFn)(Lower *l, const IrNode *n, int64_t *elems);

typedef struct {
  LowerFn lower;
  ScratchFn scratch; /* NULL: none */
} OpLowering;

const OpLowering *lower_op(IrOp op);
const OpLowering *lower_vocab_op(IrOp op); /* lower_vocab.c */
int lower_elementwise_root(Lower *l, const IrNode *n, PcError *err);
/* Row r of elementwise group root v, computed and stored by a vector loop
 * (inside a row loop of the caller's) */
void lower_elementwise_row(Lower *l, uint32_t v, uint32_t r);
/* v at row r, column c of a loop over `out` (which v broadcasts against):
 * a load, or v computed there when it is inlined */
uint32_t elementwise_value_at(Lower *l, uint32_t v, const IrShape *out, uint32_t r, uint32_t c);
int elementwise_op(IrOp op); /* ops an elementwise group may contain */

#endif
