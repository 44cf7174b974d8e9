#include "runtime/cli/model_load.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/params_from_graph.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"

int model_opts_take(ModelOpts *o, int c, const char *arg) {
  switch (c) {
  case MODEL_OPT_CONFIG: o->config = arg; return 1;
  case MODEL_OPT_HF: o->hf = arg; return 1;
  case MODEL_OPT_SET: vec_push(&o->sets, (char *)arg); return 1;
  case MODEL_OPT_SEED: {
    char *end;
    errno = 0;
    unsigned long long s = strtoull(arg, &end, 10);
    if (errno || *end || !*arg) {
      fprintf(stderr, "ponder: --seed %s: expected a non-negative integer\n", arg);
      return -1;
    }
    o->seed = s;
    return 1;
  }
  default: return 0;
  }
}

void model_opts_free(ModelOpts *o) { vec_free(&o->sets); }

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err) {
  *m = (LoadedModel){0};
  if (fe_open(o->script, &m->fe, err) < 0) return -1;
  int rc = o->config ? fe_select_config(m->fe, o->config, err) : 0;
  if (!rc && o->hf) rc = fe_load_hf_config(m->fe, o->hf, err);
  for (size_t i = 0; !rc && i < o->sets.n; i++) {
    char *eq = strchr(o->sets.a[i], '=');
    if (!eq) {
      rc = pc_errorf(err, "--set %s: expected KEY=VALUE", o->sets.a[i]);
      break;
    }
    *eq = 0;
    rc = fe_set_hparam(m->fe, o->sets.a[i], eq + 1, err);
    *eq = '=';
  }
  if (!rc) rc = fe_trace(m->fe, o->trace_flags, &m->graph, err);
  if (!rc) rc = pc_params_from_graph(m->graph, &m->params, err);
  if (!rc && o->hf) {
    StCheckpoint *ck;
    rc = st_open(o->hf, &ck, err);
    if (!rc) {
      rc = hf_import(&m->params, ck, err);
      st_close(ck);
    }
  } else if (!rc) {
    rc = params_init(&m->params, o->seed, err);
  }
  if (rc) model_unload(m);
  return rc;
}

void model_unload(LoadedModel *m) {
  params_free(&m->params);
  ir_graph_free(m->graph);
  fe_close(m->fe);
  *m = (LoadedModel){0};
}
