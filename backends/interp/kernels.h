/* One kernel per graph op (those with data to compute). A kernel reads its
 * operands, writes the result tensors the interpreter allocated from the
 * inferred types, and reports data errors (a token id out of range) as
 * user errors. */
#ifndef PC_INTERP_KERNELS_H
#define PC_INTERP_KERNELS_H

#include "ir/ir.h"

typedef int (*InterpKernel)(const IrNode *n, Tensor *const *in, Tensor *const *out, PcError *err);

/* Indices of the k largest of x[0..V) (ties: the lower index), unordered. */
void interp_top_k(const float *x, int64_t V, int64_t k, int64_t *idx);

/* Rotary positions (kernels.c), for rope and rope_grad: y = x turned by
 * each position's angles, or back (inverse = 1). */
void interp_rope(const IrNode *n, const Tensor *x, const Tensor *positions, Tensor *y, int inverse);

/* The gradient, reduction and stack kernels (kernels_grad.c). */
extern const InterpKernel interp_grad_kernels[IR_NUM_OPS];
/* The fused vocabulary ops (kernels_vocab.c). */
extern const InterpKernel interp_vocab_kernels[IR_NUM_OPS];

/* NULL for the structural ops the interpreter handles itself. */
InterpKernel interp_kernel(IrOp op);

#endif
