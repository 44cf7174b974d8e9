/* Graph-to-graph passes; compiler/pipeline.c runs them in order. Each takes
 * a verified graph and returns a new verified one. */
#ifndef PC_PASSES_H
#define PC_PASSES_H

#include "ir/ir.h"

/* fuse: recognises the vocabulary ops of pondering and of the loss
 *   matmul(softmax(scale?(linear(H, Wo))), Wi)       -> vocab_attention
 *   matmul(softmax_topk(scale?(linear(H, Wo))), Wi)  -> vocab_attention_topk
 *   cross_entropy(linear(H, W), targets)            -> linear_cross_entropy
 * when the intermediate values have no other use. Leaves the replaced
 * nodes behind for dce. */
int ir_fuse_vocab(const IrGraph *g, IrGraph **out, PcError *err);

/* dce: drops nodes whose results nothing uses (outputs are the roots), and
 * loops' carried values that nothing reads. */
int ir_dce(const IrGraph *g, IrGraph **out, PcError *err);

/* cse: a pure node the same as one before it (op, attributes, operands)
 * becomes a use of that one, and a pure node in a loop body that does not
 * depend on the loop moves in front of it. */
int ir_cse(const IrGraph *g, IrGraph **out, PcError *err);

/* unroll: every loop of at most max_trip iterations becomes that many
 * copies of its body in a row, each with its index as a constant. */
int ir_unroll(const IrGraph *g, int64_t max_trip, IrGraph **out, PcError *err);

#endif
