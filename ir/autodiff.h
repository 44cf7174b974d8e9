/* Reverse-mode autodiff on the graph IR. The result is an ordinary graph,
 * so every backend runs it. */
#ifndef PC_AUTODIFF_H
#define PC_AUTODIFF_H

#include "ir/ir.h"

/* How a loop's body activations reach its backward loop:
 *  - AD_LOOPS_RECOMPUTE: the forward loop stores only each iteration's
 *    carried inputs and its fused vocabulary ops' results (one stack slot
 *    per iteration); the backward loop runs the rest of the body again
 *    from them. Memory: K x (carried + the mixtures).
 *  - AD_LOOPS_SAVE: the forward loop stores every value its body makes;
 *    the backward loop reads them back. Memory: K x body activations,
 *    once dce drops the stacks that no gradient rule reads. */
typedef enum { AD_LOOPS_RECOMPUTE, AD_LOOPS_SAVE } AdLoopMode;

/* Builds the training graph of `fwd`: a copy of it (same outputs) whose
 * loops also record what their backward needs, followed by the backward
 * pass, with one more output "grad:NAME" per parameter NAME holding the
 * gradient of the scalar output `loss_name`. */
int ir_autodiff(const IrGraph *fwd, const char *loss_name, AdLoopMode mode, IrGraph **out, PcError *err);

#endif
