#include "runtime/cli/model_load.h"

#include <stdlib.h>
#include <string.h>

#include "compiler/params_from_graph.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err) {
  *m = (LoadedModel){0};
  if (model_opts_open(o, &m->fe, err) < 0) return -1;
  int rc = model_opts_compile(o, m->fe, &m->graph, err);
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
