/* What the gradient rules (vjp.c) see of the autodiff pass (autodiff.c). */
#ifndef PC_AUTODIFF_INTERNAL_H
#define PC_AUTODIFF_INTERNAL_H

#include "ir/autodiff.h"

typedef struct AdCtx AdCtx;

const IrGraph *ad_src(const AdCtx *c);
/* The forward value, in the graph being built, of a source value. */
uint32_t ad_fwd(const AdCtx *c, uint32_t src_value);
/* Adds a gradient contribution for a source value (summed with earlier ones). */
void ad_acc(AdCtx *c, uint32_t src_value, uint32_t grad);
/* Takes a source value's gradient so far (zeros if none) out of the sums,
 * for a rule whose op adds its contribution into it; the rule then gives
 * the op's result to ad_acc. */
uint32_t ad_take(AdCtx *c, uint32_t src_value);
/* Emits a node with the current source node's location; types are known to
 * agree, so a failure is a bug in a rule. Returns its first result. */
uint32_t ad_emit(AdCtx *c, IrOp op, const uint32_t *in, uint32_t n_in, const IrAttr *attr);
/* Zeros shaped like a source value. */
uint32_t ad_zeros(AdCtx *c, uint32_t src_value);
/* g summed down to the shape of source value x (g itself if already so). */
uint32_t ad_sum_to(AdCtx *c, uint32_t g, uint32_t src_x);

/* A gradient rule: given node n of the source graph and the gradients dy of
 * its results (IR_NONE where none flows), adds its operands' gradients. */
typedef int (*AdRule)(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err);
/* NULL when the op has no rule. */
AdRule ad_rule(IrOp op);

#endif
