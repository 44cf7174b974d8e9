#include "compiler/pipeline.h"

#include <string.h>

#include "ir/passes.h"

typedef struct {
  const char *name;
  int (*run)(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err);
} Pass;

/* fuse: needs a verified graph; replaces the vocabulary patterns */
static int pass_fuse(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return ir_fuse_vocab(in, out, err);
}

/* cse: needs a verified graph; runs after fuse, whose patterns ask that
 * their intermediate values have no other use */
static int pass_cse(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) { return ir_cse(in, out, err); }

/* dce: needs a verified graph; keeps what the outputs need */
static int pass_dce(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) { return ir_dce(in, out, err); }

/* Loops of up to this many iterations are unrolled before autodiff when
 * their activations are saved: pondering's K + 1 passes are few, and
 * straight-line code keeps each pass's activations where they were made
 * (no stacks, no copies into and out of them). */
#define UNROLL_MAX_TRIP 16

/* unroll: with saved loop activations (skipped otherwise) */
static int pass_unroll(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return ir_unroll(in, UNROLL_MAX_TRIP, out, err);
}

/* autodiff: needs an output "loss"; adds an output "grad:NAME" per parameter */
static int pass_autodiff(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return ir_autodiff(in, "loss", p->loop_mode, out, err);
}

static const Pass forward_passes[] = {{"fuse", pass_fuse}, {"cse", pass_cse}, {"dce", pass_dce}};
/* cse again after unroll: the copies of the body share what they compute alike */
static const Pass training_passes[] = {
    {"unroll", pass_unroll}, {"cse", pass_cse}, {"autodiff", pass_autodiff}, {"dce", pass_dce}};

const char *pc_pipeline_pass_names(void) { return "trace, fuse, cse, dce, unroll, autodiff"; }

int pc_pipeline_knows_pass(const char *name) {
  int known = !strcmp(name, "trace");
  for (size_t i = 0; i < sizeof forward_passes / sizeof *forward_passes; i++) known |= !strcmp(name, forward_passes[i].name);
  for (size_t i = 0; i < sizeof training_passes / sizeof *training_passes; i++) known |= !strcmp(name, training_passes[i].name);
  return known;
}

/* The passes a pipeline's options turn off. */
static int skipped(const Pass *pass, const PcPipeline *p) {
  return (p->no_fuse && !strcmp(pass->name, "fuse")) || (p->loop_mode != AD_LOOPS_SAVE && !strcmp(pass->name, "unroll"));
}

static int run(const Pass *passes, size_t n, const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  IrGraph *cur = NULL;
  for (size_t i = 0; i < n; i++) {
    if (skipped(&passes[i], p)) continue;
    IrGraph *next;
    if (passes[i].run(cur ? cur : in, p, &next, err) < 0) {
      ir_graph_free(cur);
      return pc_error_prefix(err, "pass %s", passes[i].name);
    }
    ir_graph_free(cur);
    cur = next;
    if (p->dump_after && p->dump && !strcmp(p->dump_after, passes[i].name)) {
      fprintf(p->dump, "# after %s\n", passes[i].name);
      ir_print(cur, p->dump);
    }
  }
  *out = cur;
  return 0;
}

int pc_optimize(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return run(forward_passes, sizeof forward_passes / sizeof *forward_passes, in, p, out, err);
}

int pc_differentiate(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return run(training_passes, sizeof training_passes / sizeof *training_passes, in, p, out, err);
}
