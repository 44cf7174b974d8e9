/* pondercc: compiles a model script. It prints the graph IR (--emit ir),
 * the kernel IR of the compiled module (--emit kir), its C source (--emit
 * c), its LLVM IR (--emit llvm, llvm-opt), its CUDA C (--emit cuda) or
 * what its entries ask of a GPU, counted without one (--emit cuda-census), or
 * builds the module into a shared library exporting the model ABI (-o
 * model.so, with the llvm backend unless --backend c; with PTX for GPUs
 * with --target cuda). It also reads graph IR text back (FILE.ir). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/c/c_render.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_census.h"
#include "backends/cuda/cuda_lib.h"
#include "backends/llvm/llvm_backend.h"
#include "compiler/model_opts.h"
#include "compiler/module.h"
#include "runtime/base/file.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pondercc MODEL.lua [options] (-o MODEL.so | --emit WHAT)\n"
          "       pondercc GRAPH.ir --emit ir      (read graph IR text, verify, print)\n"
          "\n"
          "Compiles a model script: traces it into graph IR, runs the pass pipeline,\n"
          "lowers it to kernel IR and renders it with a backend.\n"
          "\n"
          "model:\n" MODEL_OPTIONS_HELP
          "graph (--emit ir):\n"
          "  --no-loss          inference only: logits, no targets input and no loss\n"
          "  --decode           incremental decoding: KV cache inputs (one per attention call and pass)\n"
          "  --train            the training graph: loss and a gradient per parameter, no logits\n"
          "  --save-loop-activations  keep loop activations instead of recomputing them\n"
          "compiled model:\n"
          "  -o FILE            compile to a shared library (the model ABI: docs/abi.md) with\n"
          "                     --backend llvm (the default: docs/llvm-backend.md) or --backend c\n"
          "  --target cuda      -o makes a library for GPUs: PTX for sm_80 and sm_90 (docs/cuda-backend.md);\n"
          "                     --emit kir prints the kernel IR as it is lowered for them\n"
          "  --max-batch N      the largest batch it is planned for (default 8)\n"
          "  --max-seq N        the longest sequence, and the KV caches' length (default: the context)\n"
          "  --entries LIST     any of train,eval,logits,decode (default: all)\n"
          "output:\n"
          "  --emit WHAT        ir: the graph; hparams: the resolved hyperparameters;\n"
          "                     kir: the compiled module's kernel IR; c: its C source;\n"
          "                     llvm: its LLVM IR; llvm-opt: the LLVM IR after -O3; cuda: its CUDA C;\n"
          "                     cuda-census: what each entry asks of a GPU at --max-batch and --max-seq\n"
          "                     (decode: one token), counted without one\n"
          "  --dump-after PASS  print the graph after PASS (%s)\n"
          "  --list-configs     print the script's config names\n"
          "  -h, --help         this help\n",
          pc_pipeline_pass_names());
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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

/* --emit ir / hparams / --list-configs / a check that the script compiles */
static int graph_mode(const ModelOpts *o, int train, const char *emit, int list, PcError *err) {
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

/* --emit cuda-census: each entry at its largest dims (decode: a step of one token) */
static int census_mode(const PcModule *m, PcError *err) {
  CudaOptions co = cuda_options_default();
  CudaProgram cp;
  if (cuda_render(m->prog, &co, &cp, err) < 0) return -1;
  int rc = 0;
  for (uint32_t k = 0; k < m->prog->entries.n && !rc; k++) {
    const KEntry *e = &m->prog->entries.a[k];
    int64_t dims[16] = {0};
    printf("entry %s at", e->name);
    for (size_t d = 0; d < e->dims.n && d < 16; d++) {
      dims[d] = !strcmp(e->name, "decode") && !strcmp(e->dims.a[d].name, "T") ? 1 : e->dims.a[d].max;
      printf("%s %s = %lld", d ? "," : "", e->dims.a[d].name, (long long)dims[d]);
    }
    printf(" (bf16 products; counted without a GPU):\n");
    CudaCensus c;
    rc = cuda_census(&cp, k, dims, CUDA_BF16, &c, err);
    if (!rc) cuda_census_print(&c, &cp, 12, stdout);
    cuda_census_free(&c);
  }
  cuda_program_free(&cp);
  return rc;
}

/* --emit cuda, --target cuda -o */
static int cuda_mode(const PcModule *m, const char *emit, const char *out, double t0, PcError *err) {
  if (emit && !strcmp(emit, "cuda-census")) return census_mode(m, err);
  if (emit) {
    CudaOptions co = cuda_options_default();
    CudaProgram cp;
    if (cuda_render(m->prog, &co, &cp, err) < 0) return -1;
    fputs(cp.source, stdout);
    cuda_program_free(&cp);
    return 0;
  }
  static const int archs[] = {80, 90};
  double t1 = seconds();
  CudaLibStats st;
  if (cuda_build_shared(m, archs, 2, out, &st, err) < 0) return -1;
  fprintf(stderr, "pondercc: %s: %zu entries, %u CUDA kernels, PTX for sm_80 and sm_90 (%.1f MiB); compiled in %.2f s "
                  "(%.2f s pondercc, %.2f s CUDA C, %.2f s NVRTC, %.2f s cc)\n",
          out, m->prog->entries.n, st.kernels, st.ptx_bytes / 1048576.0, seconds() - t0, t1 - t0, st.render_s, st.nvrtc_s,
          st.link_s);
  return 0;
}

/* --emit kir / c / llvm / cuda, -o: the compiled module */
/* Fails unless the folder that will hold path exists and can be written. */
static int writable_dir_of(const char *path, PcError *err) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  if (access(dir, W_OK) < 0) return pc_errorf(err, "%s: cannot write into %s: %s", path, dir, strerror(errno));
  return 0;
}

static int module_mode(const ModelOpts *o, const PcModuleOptions *mo, const char *emit, const char *out, int cuda, PcError *err) {
  double t0 = seconds();
  PcModule m;
  if (pc_module_build(o, mo, &m, err) < 0) return -1;
  int rc = 0;
  if (emit && !strcmp(emit, "kir")) { /* as the CUDA schedule lowers it with --target cuda */
    kir_print(m.prog, stdout);
  } else if (cuda || (emit && !strncmp(emit, "cuda", 4))) {
    rc = cuda_mode(&m, emit, out, t0, err);
  } else if (emit && !strncmp(emit, "llvm", 4)) {
    rc = llvm_print(&m, !strcmp(emit, "llvm-opt"), stdout, err);
  } else if (emit) {
    rc = c_render(&m, stdout, err);
  } else if (!o->backend || !strcmp(o->backend, "llvm")) {
    double t1 = seconds();
    LlvmStats st;
    rc = llvm_build_shared(&m, out, &st, err);
    if (!rc) {
      uint64_t arena = 0;
      for (size_t i = 0; i < m.prog->entries.n; i++)
        if (m.prog->entries.a[i].arena_bytes > arena) arena = m.prog->entries.a[i].arena_bytes;
      fprintf(stderr,
              "pondercc: %s: %zu entries, %u kernels, arena %.1f MiB; compiled in %.2f s (%.2f s pondercc, %.2f s LLVM IR, "
              "%.2f s optimisation, %.2f s codegen, %.2f s cc)\n",
              out, m.prog->entries.n, st.kernels, arena / 1048576.0, seconds() - t0, t1 - t0, st.render_s, st.optimize_s,
              st.codegen_s, st.link_s);
    }
  } else {
    char c_path[4200];
    snprintf(c_path, sizeof c_path, "%s.c", out);
    FILE *f = fopen(c_path, "w");
    if (!f) rc = pc_errorf(err, "%s: cannot write: %s", c_path, strerror(errno));
    if (!rc) rc = c_render(&m, f, err);
    if (f && fclose(f) && !rc) rc = pc_errorf(err, "%s: cannot write", c_path);
    double t1 = seconds();
    if (!rc) rc = c_build_shared(c_path, out, err);
    if (!rc) {
      uint64_t arena = 0;
      for (size_t i = 0; i < m.prog->entries.n; i++)
        if (m.prog->entries.a[i].arena_bytes > arena) arena = m.prog->entries.a[i].arena_bytes;
      fprintf(stderr, "pondercc: %s: %zu entries, arena %.1f MiB; compiled in %.2f s (%.2f s pondercc, %.2f s cc)\n", out,
              m.prog->entries.n, arena / 1048576.0, seconds() - t0, t1 - t0, seconds() - t1);
    }
    unlink(c_path);
  }
  pc_module_free(&m);
  return rc;
}

static int parse_entries(const char *s, unsigned *out) {
  static const struct {
    const char *name;
    unsigned bit;
  } names[] = {{"train", PC_ENTRY_TRAIN}, {"eval", PC_ENTRY_EVAL}, {"logits", PC_ENTRY_LOGITS}, {"decode", PC_ENTRY_DECODE}};
  *out = 0;
  while (*s) {
    size_t n = strcspn(s, ","), k = 0;
    while (k < 4 && (strlen(names[k].name) != n || strncmp(s, names[k].name, n))) k++;
    if (k == 4) return -1;
    *out |= names[k].bit;
    s += n + (s[n] == ',');
  }
  return *out ? 0 : -1;
}

static int parse_positive(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || !*s || v < 1) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  enum { OPT_NO_LOSS = 256, OPT_DECODE, OPT_TRAIN, OPT_SAVE_LOOPS, OPT_EMIT, OPT_DUMP, OPT_LIST, OPT_MAXB, OPT_MAXS, OPT_ENTRIES, OPT_TARGET };
  static const struct option opts[] = {MODEL_LONG_OPTIONS,
                                       {"no-loss", no_argument, 0, OPT_NO_LOSS},
                                       {"decode", no_argument, 0, OPT_DECODE},
                                       {"train", no_argument, 0, OPT_TRAIN},
                                       {"save-loop-activations", no_argument, 0, OPT_SAVE_LOOPS},
                                       {"emit", required_argument, 0, OPT_EMIT},
                                       {"dump-after", required_argument, 0, OPT_DUMP},
                                       {"list-configs", no_argument, 0, OPT_LIST},
                                       {"max-batch", required_argument, 0, OPT_MAXB},
                                       {"max-seq", required_argument, 0, OPT_MAXS},
                                       {"entries", required_argument, 0, OPT_ENTRIES},
                                       {"target", required_argument, 0, OPT_TARGET},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  ModelOpts o = {.trace_flags = FE_TRACE_LOSS, .pipeline = {.dump = stdout}};
  PcModuleOptions mo = {.entries = PC_ENTRY_ALL, .max_batch = 8, .schedule = kschedule_default()};
  const char *emit = NULL, *out = NULL, *target = NULL;
  int train = 0, list = 0, c, bad = 0;
  opterr = 0;
  while (!bad && (c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
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
    case 'o': out = optarg; break;
    case OPT_MAXB:
      if (parse_positive(optarg, &mo.max_batch)) fprintf(stderr, "pondercc: --max-batch %s: expected a positive integer\n", optarg), bad = 1;
      break;
    case OPT_MAXS:
      if (parse_positive(optarg, &mo.max_seq)) fprintf(stderr, "pondercc: --max-seq %s: expected a positive integer\n", optarg), bad = 1;
      break;
    case OPT_TARGET: target = optarg; break;
    case OPT_ENTRIES:
      if (parse_entries(optarg, &mo.entries))
        fprintf(stderr, "pondercc: --entries %s: expected a list of train, eval, logits, decode\n", optarg), bad = 1;
      break;
    case 'h': usage(stdout); model_opts_free(&o); return 0;
    default:
      fprintf(stderr, "pondercc: unknown or incomplete option '%s' (try --help)\n", argv[optind - 1]);
      bad = 1;
    }
  }
  static const char *emits[] = {"ir", "hparams", "kir", "c", "llvm", "llvm-opt", "cuda", "cuda-census"};
  int known_emit = !emit;
  for (int i = 0; i < 8 && emit; i++) known_emit |= !strcmp(emit, emits[i]);
  if (!bad && optind != argc - 1) fprintf(stderr, "pondercc: expected one MODEL.lua or GRAPH.ir (try --help)\n"), bad = 1;
  if (!bad && !known_emit)
    fprintf(stderr, "pondercc: --emit %s: expected ir, hparams, kir, c, llvm, llvm-opt, cuda or cuda-census\n", emit), bad = 1;
  if (!bad && target && strcmp(target, "cpu") && strcmp(target, "cuda"))
    fprintf(stderr, "pondercc: --target %s: expected cpu or cuda\n", target), bad = 1;
  int cuda = target && !strcmp(target, "cuda");
  if (cuda || (emit && !strncmp(emit, "cuda", 4))) mo.schedule = kschedule_cuda();
  if (!bad && cuda && o.backend) fprintf(stderr, "pondercc: --target cuda has its own backend: drop --backend %s\n", o.backend), bad = 1;
  int kir = emit && !strcmp(emit, "kir");
  if (!bad && cuda && !out && !kir)
    fprintf(stderr, "pondercc: --target cuda goes with -o MODEL.so or --emit kir (--emit cuda prints the CUDA C)\n"), bad = 1;
  if (!bad && o.device) fprintf(stderr, "pondercc: --device is for ponder; pondercc compiles for GPUs with --target cuda\n"), bad = 1;
  if (!bad && o.precision)
    fprintf(stderr, "pondercc: --precision is for ponder --device cuda (a --target cuda library takes it when it runs)\n"), bad = 1;
  if (!bad && o.profile)
    fprintf(stderr, "pondercc: --profile is for ponder --device cuda (--emit cuda-census counts without a GPU)\n"), bad = 1;
  if (!bad && out && emit) fprintf(stderr, "pondercc: give -o or --emit, not both\n"), bad = 1;
  if (!bad && o.backend && strcmp(o.backend, "c") && strcmp(o.backend, "llvm"))
    fprintf(stderr, "pondercc: --backend %s: pondercc compiles with the llvm (default) or c backend\n", o.backend), bad = 1;
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
  if (out && writable_dir_of(out, &err) < 0) {
    rc = -1; /* before a compile that may take minutes */
  } else if (pc_ends_with(o.script, ".ir")) {
    rc = emit && strcmp(emit, "ir") ? pc_errorf(&err, "%s: an IR file can only be re-emitted as ir", o.script)
                                    : emit_ir_file(o.script, &err);
  } else if (out || (emit && (!strcmp(emit, "kir") || !strcmp(emit, "c") || !strncmp(emit, "llvm", 4) || !strncmp(emit, "cuda", 4)))) {
    rc = module_mode(&o, &mo, emit, out, cuda, &err);
  } else {
    rc = graph_mode(&o, train, emit, list, &err);
  }
  model_opts_free(&o);
  if (rc < 0) {
    fprintf(stderr, "pondercc: %s\n", err.msg);
    return 1;
  }
  return 0;
}
