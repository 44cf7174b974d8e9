/* Lowering: graph IR (after the pipeline's passes) -> kernel IR. Each graph
 * becomes one entry of a kernel program; memory is planned at compile time
 * into one arena per entry. docs/kernel-ir.md describes the result. */
#ifndef PC_LOWER_H
#define PC_LOWER_H

#include "ir/ir.h"
#include "ir/kir.h"

/* Schedule knobs, the autotuner's search space. */
typedef struct {
  int64_t vocab_chunk; /* rows of the vocabulary matrix per step of the fused vocabulary ops */
  int64_t vocab_scratch; /* > 0: chunks grow past vocab_chunk (up to V) while [rows, chunk] stays within this many
                            elements, so calls with few rows take few chunks (the GPU's choice: launches) */
  int parallel;        /* emit parallel loops (threads) where rows are independent */
  int attention_kernel; /* attention and its gradient as calls of the backend's kernels (KS_CALL), not loop nests */
  int64_t colsum_rows;  /* sums over rows spread over threads, the GPU's choice: bias and norm-weight gradients in
                           chunks of this many rows, then the chunks in order; embedding gradients a thread per
                           column; 0: one serial loop over the rows, each row's columns spread */
  int wide_rows;        /* a row's heads in one vector loop over its columns, not a serial loop of short ones (the
                           GPU's choice: a block's threads over the row, stores along it; rope) */
  int merge_rows;       /* sibling parallel loops over the same rows, sharing no written memory, as one loop (the
                           GPU's choice: a kernel launch each; merge_rows.c) */
  int sums_as_products; /* a bias's gradient (sum_to over rows into a fixed shape) as a product with a row of ones
                           (the GPU's choice: in bf16 it reads x's mirror, half the bytes, and x may need no fp32) */
  int recompute_shared; /* an elementwise value that several elementwise ops read and that reads at most one operand
                            of its size (a bias add) is computed in each of them, never stored (the GPU's choice) */
  int operands_apart;   /* an elementwise result that only products read is not written over its operand's buffer
                           (the GPU's choice: nothing then loads its buffer, so in bf16 its stores write the mirror
                           alone; the GELU's gradient, 4 bytes an element fewer to store) */
} KSchedule;

KSchedule kschedule_default(void);
/* The CUDA backend's: attention through its FlashAttention-style kernels,
 * column sums over chunks of 64 rows, bias gradients as products,
 * vocabulary chunks sized by rows, sibling row loops merged, results only
 * products read in buffers of their own. */
KSchedule kschedule_cuda(void);

/* Lowers g into a new entry `name` of p. dim_max[k] bounds the graph's
 * symbolic dim k (B, T) for the memory plan; params are named by
 * param_names (the program's parameter order; an entry refers to them by
 * position there). */
int lower_entry(KProgram *p, const char *name, const IrGraph *g, const int64_t *dim_max, const char *const *param_names,
                size_t n_params, const KSchedule *s, PcError *err);

#endif
