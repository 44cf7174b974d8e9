/* Graph-to-graph rewriting: a pass copies the source graph node by node
 * into a new one, replacing the nodes its hook chooses to. Loops are copied
 * with their bodies (the hook sees body nodes too), parameters and inputs
 * keep their names, and every node keeps its location. */
#ifndef PC_REWRITE_H
#define PC_REWRITE_H

#include "ir/ir.h"

typedef struct IrRewrite IrRewrite;

/* Called on each source node in order. Return 1 when the hook handled the
 * node (emitted a replacement and mapped its results, or dropped it), 0 to
 * have it copied unchanged, -1 on error (err set). */
typedef int (*IrRewriteHook)(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err);

int ir_rewrite(const IrGraph *src, IrRewriteHook hook, void *ctx, IrGraph **out, PcError *err);
/* As ir_rewrite, and drops the carried values of loops whose result values
 * `dropped` marks (indexed by source value): each one's initial value,
 * body argument, yield operand and result go, so nothing copied may use
 * the argument or the result. */
int ir_rewrite_dropping(const IrGraph *src, IrRewriteHook hook, void *ctx, const unsigned char *dropped, IrGraph **out,
                        PcError *err);

const IrGraph *ir_rewrite_src(const IrRewrite *rw);
IrBuilder *ir_rewrite_builder(IrRewrite *rw);
/* The new value of a source value (it must have been copied or mapped). */
uint32_t ir_rewrite_value(const IrRewrite *rw, uint32_t src_value);
void ir_rewrite_map(IrRewrite *rw, uint32_t src_value, uint32_t new_value);
/* Emits a node with the location of src_node; a failure is a bug in the pass. */
uint32_t ir_rewrite_emit(IrRewrite *rw, const IrNode *src_node, IrOp op, const uint32_t *in, uint32_t n_in,
                         const IrAttr *attr);

/* Copies the nodes of source region r into the current block (a hook that
 * replaces a loop copies its body this way, once per iteration); a region's
 * yield is left to the caller, which reads its operands' new values. */
int ir_rewrite_region(IrRewrite *rw, uint32_t r);

/* Uses of each value of g (operands at any depth), for pattern matching. */
uint32_t *ir_use_counts(const IrGraph *g);

#endif
