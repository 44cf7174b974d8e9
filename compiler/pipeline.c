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

/* dce: needs a verified graph; keeps what the outputs need */
static int pass_dce(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) { return ir_dce(in, out, err); }

/* autodiff: needs an output "loss"; adds an output "grad:NAME" per parameter */
static int pass_autodiff(const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  return ir_autodiff(in, "loss", p->loop_mode, out, err);
}

static const Pass forward_passes[] = {{"fuse", pass_fuse}, {"dce", pass_dce}};
static const Pass training_passes[] = {{"autodiff", pass_autodiff}, {"dce", pass_dce}};

const char *pc_pipeline_pass_names(void) { return "trace, fuse, dce, autodiff"; }

int pc_pipeline_knows_pass(const char *name) {
  return !strcmp(name, "trace") || !strcmp(name, "fuse") || !strcmp(name, "dce") || !strcmp(name, "autodiff");
}

static int run(const Pass *passes, size_t n, const IrGraph *in, const PcPipeline *p, IrGraph **out, PcError *err) {
  IrGraph *cur = NULL;
  for (size_t i = 0; i < n; i++) {
    if (p->no_fuse && !strcmp(passes[i].name, "fuse")) continue;
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
