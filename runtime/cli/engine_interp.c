/* The interpreter engine: each entry is a graph traced and run through the
 * pipeline on first use, then interpreted. */
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/engine.h"

static const unsigned entry_flags[ENTRY_COUNT] = {
    [ENTRY_TRAIN] = FE_TRACE_LOSS | FE_TRACE_NO_LOGITS,
    [ENTRY_EVAL] = FE_TRACE_LOSS | FE_TRACE_NO_LOGITS,
    [ENTRY_LOGITS] = 0,
    [ENTRY_DECODE] = FE_TRACE_DECODE,
};

const char *entry_name(EntryKind k) {
  static const char *names[ENTRY_COUNT] = {"train", "eval", "logits", "decode"};
  return names[k];
}

typedef struct {
  Engine base;
  FeModel *fe;
  ModelOpts opts;
  int64_t max_seq;
  IrGraph *graph[ENTRY_COUNT];
  EngineIO *io[ENTRY_COUNT];
  size_t n_io[ENTRY_COUNT];
} Interp;

static int graph_of(Interp *ip, EntryKind k, PcError *err) {
  if (ip->graph[k]) return 0;
  ModelOpts o = ip->opts;
  o.trace_flags = entry_flags[k];
  o.cache_len = ip->max_seq;
  IrGraph *g;
  if (model_opts_compile(&o, ip->fe, &g, err) < 0) return -1;
  if (k == ENTRY_TRAIN) {
    IrGraph *train;
    int rc = pc_differentiate(g, &o.pipeline, &train, err);
    ir_graph_free(g);
    if (rc < 0) return -1;
    g = train;
  }
  ip->graph[k] = g;
  return 0;
}

static int run(Engine *e, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
               size_t max_out, size_t *n_out, PcError *err) {
  Interp *ip = (Interp *)e;
  if (graph_of(ip, k, err) < 0) return -1;
  NamedTensor *got = pc_xcalloc(max_out + 1, sizeof *got);
  int rc = interp_run(ip->graph[k], p, in, n_in, got, max_out, n_out, err);
  for (size_t i = 0; !rc && i < *n_out; i++) {
    if (out[i].tensor) { /* the caller's buffer */
      if (!tensor_same_shape(out[i].tensor, got[i].tensor)) PC_BUG("engine: output %s has the wrong shape", got[i].name);
      memcpy(out[i].tensor->data, got[i].tensor->data, tensor_bytes(got[i].tensor));
      tensor_free(got[i].tensor);
      out[i].name = got[i].name;
    } else {
      out[i] = got[i];
    }
  }
  free(got);
  return rc;
}

static const EngineIO *inputs(Engine *e, EntryKind k, size_t *n, PcError *err) {
  Interp *ip = (Interp *)e;
  if (graph_of(ip, k, err) < 0) return NULL;
  if (!ip->io[k]) {
    const IrGraph *g = ip->graph[k];
    ip->io[k] = pc_xcalloc(g->inputs.n + 1, sizeof(EngineIO));
    for (size_t i = 0; i < g->inputs.n; i++) {
      uint32_t v = ir_node(g, g->inputs.a[i])->out;
      EngineIO *io = &ip->io[k][i];
      const IrType *t = ir_type(g, v);
      snprintf(io->name, sizeof io->name, "%s", ir_str(g, g->values.a[v].name));
      io->dtype = t->dtype;
      io->rank = t->shape.rank;
      for (int d = 0; d < t->shape.rank; d++) io->dim[d] = t->shape.dim[d]; /* symbolic: -1 - k, as in the IR */
    }
    ip->n_io[k] = g->inputs.n;
  }
  *n = ip->n_io[k];
  return ip->io[k];
}

static void engine_free(Engine *e) {
  Interp *ip = (Interp *)e;
  for (int k = 0; k < ENTRY_COUNT; k++) {
    ir_graph_free(ip->graph[k]);
    free(ip->io[k]);
  }
  free(ip);
}

Engine *engine_interp(FeModel *fe, const ModelOpts *o, int64_t max_seq) {
  Interp *ip = pc_xcalloc(1, sizeof *ip);
  ip->base = (Engine){"interp", run, inputs, engine_free, NULL};
  ip->fe = fe;
  ip->opts = *o;
  memset(&ip->opts.sets, 0, sizeof ip->opts.sets); /* already applied to fe; not ours to free */
  memset(&ip->opts.owned, 0, sizeof ip->opts.owned);
  ip->max_seq = max_seq;
  return &ip->base;
}
