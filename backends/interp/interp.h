/* The reference interpreter: runs graph IR with plain C loops and OpenBLAS
 * sgemm. It is the oracle every compiled backend is checked against, so it
 * is written for clarity first. */
#ifndef PC_INTERP_H
#define PC_INTERP_H

#include "ir/ir.h"
#include "runtime/params.h"

typedef struct {
  const char *name;
  Tensor *tensor;
} NamedTensor;

/* Runs g. Inputs are matched by name and bind the symbolic dims (B, T);
 * parameters come from params by name. On success outputs[0..*n_out) hold
 * the graph's outputs in order, owned by the caller (free with
 * tensor_free); names point into the graph. */
int interp_run(const IrGraph *g, const Params *params, const NamedTensor *inputs, size_t n_inputs,
               NamedTensor *outputs, size_t max_outputs, size_t *n_out, PcError *err);

/* Threads for the BLAS calls (0: as many as cores). */
void interp_set_threads(int n);

#endif
