/* pondercc: compiles a model script (or reads graph IR text) and emits
 * what was asked for. Compiled backends arrive with their issues; today it
 * traces, verifies and prints. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/front.h"
#include "runtime/base/file.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pondercc MODEL.lua [options]\n"
          "       pondercc GRAPH.ir --emit ir      (read graph IR text, verify, print)\n"
          "\n"
          "Traces a model script into graph IR.\n"
          "\n"
          "options:\n"
          "  --config NAME      one of the script's configs (default: the script's default)\n"
          "  --hf DIR           take hyperparameters from a Hugging Face config.json (file or folder)\n"
          "  --set KEY=VALUE    override one hyperparameter (repeatable)\n"
          "  --no-loss          trace inference only (no targets input, no loss output)\n"
          "  --emit WHAT        ir: the graph IR; hparams: the resolved hyperparameters\n"
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

int main(int argc, char **argv) {
  enum { OPT_CONFIG = 256, OPT_HF, OPT_SET, OPT_NO_LOSS, OPT_EMIT, OPT_LIST };
  static const struct option opts[] = {{"config", required_argument, 0, OPT_CONFIG},
                                       {"hf", required_argument, 0, OPT_HF},
                                       {"set", required_argument, 0, OPT_SET},
                                       {"no-loss", no_argument, 0, OPT_NO_LOSS},
                                       {"emit", required_argument, 0, OPT_EMIT},
                                       {"list-configs", no_argument, 0, OPT_LIST},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *config = NULL, *hf = NULL, *emit = NULL;
  VEC(char *) sets = {0};
  int loss = 1, list = 0, c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_CONFIG: config = optarg; break;
    case OPT_HF: hf = optarg; break;
    case OPT_SET: vec_push(&sets, optarg); break;
    case OPT_NO_LOSS: loss = 0; break;
    case OPT_EMIT: emit = optarg; break;
    case OPT_LIST: list = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "pondercc: expected one MODEL.lua or GRAPH.ir (try --help)\n");
    return 2;
  }
  const char *input = argv[optind];
  if (emit && strcmp(emit, "ir") && strcmp(emit, "hparams")) {
    fprintf(stderr, "pondercc: --emit %s: expected ir or hparams\n", emit);
    return 2;
  }
  PcError err;
  if (ends_with(input, ".ir")) {
    free(sets.a);
    if (emit && strcmp(emit, "ir")) {
      fprintf(stderr, "pondercc: %s: an IR file can only be re-emitted as ir\n", input);
      return 2;
    }
    if (emit_ir_file(input, &err) < 0) {
      fprintf(stderr, "pondercc: %s\n", err.msg);
      return 1;
    }
    return 0;
  }

  FeModel *m;
  int rc = fe_open(input, &m, &err);
  if (!rc && config) rc = fe_select_config(m, config, &err);
  if (!rc && hf) rc = fe_load_hf_config(m, hf, &err);
  for (size_t i = 0; !rc && i < sets.n; i++) {
    char *eq = strchr(sets.a[i], '=');
    if (!eq) {
      rc = pc_errorf(&err, "--set %s: expected KEY=VALUE", sets.a[i]);
      break;
    }
    *eq = 0;
    rc = fe_set_hparam(m, sets.a[i], eq + 1, &err);
  }
  free(sets.a);
  if (!rc && list) {
    for (size_t i = 0; i < fe_config_count(m); i++)
      printf("%s%s\n", fe_config_name(m, i), !strcmp(fe_config_name(m, i), fe_selected_config(m)) ? " (default)" : "");
  } else if (!rc && emit && !strcmp(emit, "hparams")) {
    rc = fe_print_hparams(m, stdout, &err);
  } else if (!rc) {
    IrGraph *g;
    rc = fe_trace(m, loss ? FE_TRACE_LOSS : 0, &g, &err);
    if (!rc && emit) ir_print(g, stdout);
    if (!rc && !emit) fprintf(stderr, "pondercc: %s traced and verified (%zu nodes); use --emit ir to print it\n", input, g->nodes.n);
    if (!rc) ir_graph_free(g);
  }
  if (m) fe_close(m);
  if (rc < 0) {
    fprintf(stderr, "pondercc: %s\n", err.msg);
    return 1;
  }
  return 0;
}
