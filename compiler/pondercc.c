/* pondercc: compiles a model script (or reads graph IR text) and emits
 * what was asked for. The compiled backends arrive with their issues; today
 * it traces, runs the pass pipeline (compiler/pipeline.h), verifies and
 * prints. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/model_opts.h"
#include "runtime/base/file.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pondercc MODEL.lua [options]\n"
          "       pondercc GRAPH.ir --emit ir      (read graph IR text, verify, print)\n"
          "\n"
          "Traces a model script into graph IR and runs the pass pipeline.\n"
          "\n"
          "model:\n" MODEL_OPTIONS_HELP
          "graph:\n"
          "  --no-loss          inference only: logits, no targets input and no loss\n"
          "  --decode           incremental decoding: KV cache inputs (one per attention call and pass)\n"
          "  --train            the training graph: loss and a gradient per parameter, no logits\n"
          "  --save-loop-activations  (with --train) keep loop activations instead of recomputing\n"
          "output:\n"
          "  --emit WHAT        ir: the final graph; hparams: the resolved hyperparameters\n"
          "  --dump-after PASS  print the graph after PASS (trace, fuse, dce, autodiff)\n"
          "  --list-configs     print the script's config names\n"
          "  -h, --help         this help\n");
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static int emit_ir_file(const char *path, PcError *err) {
  char *text = pc_read_file(path, NULL, err);
  if (!text) return -1;
  IrGraph *g;
  int rc = ir_parse(text, path, &g, err);
  free(text);
  if (rc < 0) return -1;
  rc = ir_verify(g, err);
  if (!rc) ir_print(g, stdout);
  ir_graph_free(g);
  return rc;
}

static int compile(const ModelOpts *o, int train, const char *emit, int list, PcError *err) {
  FeModel *m;
  if (model_opts_open(o, &m, err) < 0) return -1;
  int rc = 0;
  if (list) {
    for (size_t i = 0; i < fe_config_count(m); i++)
      printf("%s%s\n", fe_config_name(m, i), !strcmp(fe_config_name(m, i), fe_selected_config(m)) ? " (default)" : "");
  } else if (emit && !strcmp(emit, "hparams")) {
    rc = fe_print_hparams(m, stdout, err);
  } else {
    IrGraph *g = NULL, *grad = NULL;
    rc = model_opts_compile(o, m, &g, err);
    if (!rc && train) rc = pc_differentiate(g, &o->pipeline, &grad, err);
    IrGraph *out = grad ? grad : g;
    if (!rc && emit) ir_print(out, stdout);
    if (!rc && !emit)
      fprintf(stderr, "pondercc: %s compiled and verified (%zu nodes); --emit ir prints the graph\n", o->script,
              out->nodes.n);
    ir_graph_free(g);
    ir_graph_free(grad);
  }
  fe_close(m);
  return rc;
}

int main(int argc, char **argv) {
  enum { OPT_NO_LOSS = 256, OPT_DECODE, OPT_TRAIN, OPT_SAVE_LOOPS, OPT_EMIT, OPT_DUMP, OPT_LIST };
  static const struct option opts[] = {MODEL_LONG_OPTIONS,
                                       {"no-loss", no_argument, 0, OPT_NO_LOSS},
                                       {"decode", no_argument, 0, OPT_DECODE},
                                       {"train", no_argument, 0, OPT_TRAIN},
                                       {"save-loop-activations", no_argument, 0, OPT_SAVE_LOOPS},
                                       {"emit", required_argument, 0, OPT_EMIT},
                                       {"dump-after", required_argument, 0, OPT_DUMP},
                                       {"list-configs", no_argument, 0, OPT_LIST},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  ModelOpts o = {.trace_flags = FE_TRACE_LOSS, .pipeline = {.dump = stdout}};
  const char *emit = NULL;
  int train = 0, list = 0, c, bad = 0;
  opterr = 0;
  while (!bad && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    int taken = model_opts_take(&o, c, optarg);
    if (taken) {
      bad = taken < 0;
      continue;
    }
    switch (c) {
    case OPT_NO_LOSS: o.trace_flags &= ~(unsigned)FE_TRACE_LOSS; break;
    case OPT_DECODE: o.trace_flags = FE_TRACE_DECODE; break;
    case OPT_TRAIN: train = 1; break;
    case OPT_SAVE_LOOPS: o.pipeline.loop_mode = AD_LOOPS_SAVE; break;
    case OPT_EMIT: emit = optarg; break;
    case OPT_DUMP: o.pipeline.dump_after = optarg; break;
    case OPT_LIST: list = 1; break;
    case 'h': usage(stdout); model_opts_free(&o); return 0;
    default:
      fprintf(stderr, "pondercc: unknown or incomplete option '%s' (try --help)\n", argv[optind - 1]);
      bad = 1;
    }
  }
  if (!bad && optind != argc - 1) fprintf(stderr, "pondercc: expected one MODEL.lua or GRAPH.ir (try --help)\n"), bad = 1;
  if (!bad && emit && strcmp(emit, "ir") && strcmp(emit, "hparams"))
    fprintf(stderr, "pondercc: --emit %s: expected ir or hparams\n", emit), bad = 1;
  if (!bad && o.pipeline.dump_after && !pc_pipeline_knows_pass(o.pipeline.dump_after))
    fprintf(stderr, "pondercc: --dump-after %s: the passes are %s\n", o.pipeline.dump_after, pc_pipeline_pass_names()),
        bad = 1;
  if (!bad && train && !(o.trace_flags & FE_TRACE_LOSS)) fprintf(stderr, "pondercc: --train needs the loss\n"), bad = 1;
  if (!bad && train && (o.trace_flags & FE_TRACE_DECODE)) fprintf(stderr, "pondercc: --train and --decode exclude each other\n"), bad = 1;
  if (bad) {
    model_opts_free(&o);
    return 2;
  }
  if (train) o.trace_flags |= FE_TRACE_NO_LOGITS;
  o.script = argv[optind];
  PcError err;
  int rc;
  if (ends_with(o.script, ".ir")) {
    rc = emit && strcmp(emit, "ir") ? pc_errorf(&err, "%s: an IR file can only be re-emitted as ir", o.script)
                                    : emit_ir_file(o.script, &err);
  } else {
    rc = compile(&o, train, emit, list, &err);
  }
  model_opts_free(&o);
  if (rc < 0) {
    fprintf(stderr, "pondercc: %s\n", err.msg);
    return 1;
  }
  return 0;
}
