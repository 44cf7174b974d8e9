/* The pass pipeline, in one place:
 *
 *   trace (front.c) -> fuse -> dce                 pc_optimize: the forward graph
 *                   -> unroll -> autodiff -> dce   pc_differentiate: the training graph
 *                      (unroll: only with saved loop activations)
 *
 * Every pass returns a new verified graph. With `dump_after` set to a pass
 * name, the graph after that pass is printed to `dump` in the IR's text form. */
#ifndef PC_PIPELINE_H
#define PC_PIPELINE_H

#include <stdio.h>

#include "ir/autodiff.h"
#include "ir/ir.h"

typedef struct {
  int no_fuse;            /* keep the vocabulary ops unfused (for tests and comparisons) */
  AdLoopMode loop_mode;   /* how autodiff treats loops */
  const char *dump_after; /* a pass name, or NULL */
  FILE *dump;
} PcPipeline;

/* The pass names, for --dump-after and its error message. */
const char *pc_pipeline_pass_names(void);
int pc_pipeline_knows_pass(const char *name);

/* Each frees nothing: the caller keeps `in` and owns *out. */
int pc_optimize(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err);
int pc_differentiate(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err);

#endif
