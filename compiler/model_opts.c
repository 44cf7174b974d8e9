#include "compiler/model_opts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int model_opts_take(ModelOpts *o, int c, const char *arg) {
  switch (c) {
  case MODEL_OPT_CONFIG: o->config = arg; return 1;
  case MODEL_OPT_HF: o->hf = arg; return 1;
  case MODEL_OPT_SET: vec_push(&o->sets, (char *)arg); return 1;
  case MODEL_OPT_NO_FUSE: o->pipeline.no_fuse = 1; return 1;
  case MODEL_OPT_JIT: o->backend = "llvm"; return 1;
  case MODEL_OPT_DEVICE:
    if (strcmp(arg, "cpu") && strcmp(arg, "cuda")) {
      fprintf(stderr, "--device %s: expected cpu or cuda\n", arg);
      return -1;
    }
    o->device = arg;
    return 1;
  case MODEL_OPT_PRECISION:
    if (strcmp(arg, "bf16") && strcmp(arg, "tf32") && strcmp(arg, "fp32")) {
      fprintf(stderr, "--precision %s: expected bf16, tf32 or fp32\n", arg);
      return -1;
    }
    o->precision = arg;
    return 1;
  case MODEL_OPT_PROFILE: o->profile = arg; return 1;
  case MODEL_OPT_BACKEND:
    if (strcmp(arg, "interp") && strcmp(arg, "c") && strcmp(arg, "llvm")) {
      fprintf(stderr, "--backend %s: expected interp, c or llvm\n", arg);
      return -1;
    }
    o->backend = arg;
    return 1;
  case MODEL_OPT_PONDER: {
    char *end;
    errno = 0;
    long k = strtol(arg, &end, 10);
    if (errno || *end || !*arg) {
      fprintf(stderr, "--ponder %s: expected the number of pondering steps\n", arg);
      return -1;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "pondering_steps=%ld", k);
    vec_push(&o->owned, pc_xstrdup("ponderinglm=true"));
    vec_push(&o->sets, o->owned.a[o->owned.n - 1]);
    vec_push(&o->owned, pc_xstrdup(buf));
    vec_push(&o->sets, o->owned.a[o->owned.n - 1]);
    return 1;
  }
  case MODEL_OPT_SEED: {
    char *end;
    errno = 0;
    unsigned long long s = strtoull(arg, &end, 10);
    if (errno || *end || !*arg) {
      fprintf(stderr, "--seed %s: expected a non-negative integer\n", arg);
      return -1;
    }
    o->seed = s;
    return 1;
  }
  default: return 0;
  }
}

void model_opts_free(ModelOpts *o) {
  for (size_t i = 0; i < o->owned.n; i++) free(o->owned.a[i]);
  vec_free(&o->owned);
  vec_free(&o->sets);
}

int model_opts_open(const ModelOpts *o, FeModel **out, PcError *err) {
  FeModel *fe;
  if (fe_open(o->script, &fe, err) < 0) return -1;
  int rc = o->config ? fe_select_config(fe, o->config, err) : 0;
  if (!rc && o->hf) rc = fe_load_hf_config(fe, o->hf, err);
  for (size_t i = 0; !rc && i < o->sets.n; i++) {
    char *eq = strchr(o->sets.a[i], '=');
    if (!eq) {
      rc = pc_errorf(err, "--set %s: expected KEY=VALUE", o->sets.a[i]);
      break;
    }
    *eq = 0;
    rc = fe_set_hparam(fe, o->sets.a[i], eq + 1, err);
    *eq = '=';
  }
  if (rc) {
    fe_close(fe);
    return -1;
  }
  *out = fe;
  return 0;
}

int model_opts_compile(const ModelOpts *o, FeModel *fe, IrGraph **out, PcError *err) {
  IrGraph *traced;
  if (o->cache_len > 0) fe_set_cache_length(fe, o->cache_len);
  if (fe_trace(fe, o->trace_flags, &traced, err) < 0) return -1;
  if (o->pipeline.dump_after && !strcmp(o->pipeline.dump_after, "trace") && o->pipeline.dump) {
    fprintf(o->pipeline.dump, "# after trace\n");
    ir_print(traced, o->pipeline.dump);
  }
  int rc = pc_optimize(traced, &o->pipeline, out, err);
  ir_graph_free(traced);
  return rc;
}
