/* Building a compiled module: every entry is traced, run through the pass
 * pipeline and lowered to kernel IR against one shared parameter table. */
#include "compiler/module.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "compiler/params_from_graph.h"
#include "runtime/include/ponder_abi.h"

typedef struct {
  const char *name;
  unsigned bit, trace_flags;
  int train;
} EntryKind;

static const EntryKind kinds[] = {
    {"train", PC_ENTRY_TRAIN, FE_TRACE_LOSS | FE_TRACE_NO_LOGITS, 1},
    {"eval", PC_ENTRY_EVAL, FE_TRACE_LOSS | FE_TRACE_NO_LOGITS, 0},
    {"logits", PC_ENTRY_LOGITS, 0, 0},
    {"decode", PC_ENTRY_DECODE, FE_TRACE_DECODE, 0},
};

static cJSON *shape_json(const IrGraph *g, const IrType *t) {
  cJSON *a = cJSON_CreateArray();
  for (int d = 0; d < t->shape.rank; d++) {
    int64_t x = t->shape.dim[d];
    cJSON_AddItemToArray(a, IR_IS_SYM(x) ? cJSON_CreateString(g->syms.a[IR_SYM_INDEX(x)]) : cJSON_CreateNumber((double)x));
  }
  return a;
}

static cJSON *io_json(const IrGraph *g, const char *name, uint32_t v) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", name);
  cJSON_AddStringToObject(o, "dtype", pc_dtype_name(ir_type(g, v)->dtype));
  cJSON_AddItemToObject(o, "shape", shape_json(g, ir_type(g, v)));
  return o;
}

static cJSON *entry_json(const IrGraph *g, const KEntry *e) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", e->name);
  cJSON *dims = cJSON_AddArrayToObject(o, "dims");
  for (size_t d = 0; d < e->dims.n; d++) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "name", e->dims.a[d].name);
    cJSON_AddNumberToObject(x, "max", (double)e->dims.a[d].max);
    cJSON_AddItemToArray(dims, x);
  }
  cJSON_AddNumberToObject(o, "arena_bytes", (double)e->arena_bytes);
  cJSON *in = cJSON_AddArrayToObject(o, "inputs"), *out = cJSON_AddArrayToObject(o, "outputs");
  for (size_t i = 0; i < g->inputs.n; i++) {
    uint32_t v = ir_node(g, g->inputs.a[i])->out;
    cJSON_AddItemToArray(in, io_json(g, ir_str(g, g->values.a[v].name), v));
  }
  const IrRegion *top = &g->regions.a[0];
  for (size_t i = 0; i < top->nodes.n; i++) {
    const IrNode *n = ir_node(g, top->nodes.a[i]);
    if (n->op == IR_OUTPUT) cJSON_AddItemToArray(out, io_json(g, ir_str(g, n->attr[0].s), ir_in(g, n, 0)));
  }
  return o;
}

static cJSON *params_json(const Params *p) {
  static const char *inits[] = {"normal", "trunc_normal", "zeros", "ones"};
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; i < p->spec.n; i++) {
    const ParamSpec *s = &p->spec.a[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < s->rank; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)s->dim[d]));
    cJSON_AddStringToObject(o, "init", inits[s->init]);
    cJSON_AddNumberToObject(o, "std", s->std);
    if (s->hf_layout) cJSON_AddStringToObject(o, "layout", s->hf_layout);
    cJSON_AddBoolToObject(o, "embedding", s->embedding);
    cJSON_AddItemToArray(a, o);
  }
  return a;
}

int pc_module_build(const ModelOpts *o, const PcModuleOptions *mo, PcModule *out, PcError *err) {
  *out = (PcModule){0};
  FeModel *fe;
  if (model_opts_open(o, &fe, err) < 0) return -1;
  PcModuleOptions opts = *mo;
  if (opts.max_seq <= 0) opts.max_seq = fe_context_length(fe);
  if (opts.max_seq <= 0) {
    fe_close(fe);
    return pc_errorf(err, "%s names no context length: give the longest sequence (--max-seq)", o->script);
  }
  mo = &opts;
  out->prog = kir_new();
  Params params = {0};
  cJSON *info = cJSON_CreateObject(), *entries = NULL;
  const char **names = NULL;
  int rc = 0;
  for (size_t k = 0; !rc && k < sizeof kinds / sizeof *kinds; k++) {
    if (!(mo->entries & kinds[k].bit)) continue;
    ModelOpts eo = *o;
    eo.trace_flags = kinds[k].trace_flags;
    eo.cache_len = mo->max_seq;
    eo.pipeline.dump_after = NULL;
    IrGraph *g = NULL, *train = NULL;
    rc = model_opts_compile(&eo, fe, &g, err);
    if (!rc && kinds[k].train) rc = pc_differentiate(g, &o->pipeline, &train, err);
    const IrGraph *use = train ? train : g;
    if (!rc && !names) { /* the first entry fixes the parameter table */
      rc = pc_params_from_graph(use, &params, err);
      names = pc_xcalloc(params.spec.n + 1, sizeof *names);
      for (size_t i = 0; i < params.spec.n; i++) names[i] = params.spec.a[i].name;
    }
    int64_t dim_max[8];
    for (size_t d = 0; d < use->syms.n && d < 8; d++)
      dim_max[d] = !strcmp(use->syms.a[d], "B") ? mo->max_batch : !strcmp(use->syms.a[d], "T") ? mo->max_seq : 1;
    if (!rc) rc = lower_entry(out->prog, kinds[k].name, use, dim_max, names, params.spec.n, &mo->schedule, err);
    if (!rc) {
      if (!entries) entries = cJSON_AddArrayToObject(info, "entries");
      cJSON_AddItemToArray(entries, entry_json(use, &out->prog->entries.a[out->prog->entries.n - 1]));
    }
    ir_graph_free(g);
    ir_graph_free(train);
  }
  if (!rc) {
    cJSON_AddNumberToObject(info, "abi", PONDER_ABI_VERSION);
    cJSON_AddStringToObject(info, "model", fe_model_name(fe));
    cJSON_AddStringToObject(info, "script", o->script);
    char *hp = fe_hparams_json(fe, err);
    if (!hp) rc = -1;
    else {
      cJSON_AddItemToObject(info, "hparams", cJSON_Parse(hp));
      free(hp);
    }
    cJSON_AddNumberToObject(info, "context", (double)fe_context_length(fe));
    cJSON_AddItemToObject(info, "params", params_json(&params));
    out->info_json = cJSON_PrintUnformatted(info);
  }
  cJSON_Delete(info);
  free(names);
  params_free(&params);
  fe_close(fe);
  if (rc) pc_module_free(out);
  return rc;
}

void pc_module_free(PcModule *m) {
  kir_free(m->prog);
  free(m->info_json);
  *m = (PcModule){0};
}
