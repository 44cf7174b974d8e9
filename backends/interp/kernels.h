/* One kernel per graph op (those with data to compute). A kernel reads its
 * operands, writes the result tensor the interpreter allocated from the
 * inferred type, and reports data errors (a token id out of range) as
 * user errors. */
#ifndef PC_INTERP_KERNELS_H
#define PC_INTERP_KERNELS_H

#include "ir/ir.h"

typedef int (*InterpKernel)(const IrNode *n, Tensor *const *in, Tensor *out, PcError *err);

/* NULL for the structural ops the interpreter handles itself. */
InterpKernel interp_kernel(IrOp op);

#endif
