#include "runtime/cli/decoder.h"

#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

int decoder_open(Decoder *d, const LoadedModel *m, const ModelOpts *o, int cached, int64_t cache_len, PcError *err) {
  *d = (Decoder){.m = m, .cache_len = cache_len};
  if (fe_hparam_int(m->fe, "vocab_size", &d->vocab, err) < 0) return -1;
  if (!cached) return 0;
  ModelOpts dec = *o;
  dec.trace_flags = FE_TRACE_DECODE;
  dec.cache_len = cache_len;
  dec.pipeline.dump_after = NULL;
  if (model_opts_compile(&dec, m->fe, &d->graph, err) < 0) return -1;
  const IrGraph *g = d->graph;
  d->caches = pc_xcalloc(g->inputs.n + 1, sizeof *d->caches);
  d->names = pc_xcalloc(g->inputs.n + 1, sizeof *d->names);
  for (size_t i = 0; i < g->inputs.n; i++) {
    uint32_t v = ir_node(g, g->inputs.a[i])->out;
    const char *name = ir_str(g, g->values.a[v].name);
    if (strncmp(name, "kv.", 3)) continue;
    const IrShape *s = &ir_type(g, v)->shape;
    int64_t dim[5] = {s->dim[0], s->dim[1], 1, s->dim[3], s->dim[4]}; /* a batch of one */
    Tensor *t = tensor_new(PC_F32, 5, dim);
    if (!t) {
      decoder_close(d);
      return pc_errorf(err, "out of memory for the KV caches");
    }
    d->names[d->n_caches] = name;
    d->caches[d->n_caches++] = t;
  }
  return 0;
}

/* Runs graph g on ids [1, n] (+ pos and the caches when decoding); copies
 * the last position's logits into row. */
static int run_last(Decoder *d, const IrGraph *g, const uint32_t *ids, size_t n, int64_t pos, float *row, PcError *err) {
  int64_t shape[2] = {1, (int64_t)n};
  Tensor *in = tensor_new(PC_I32, 2, shape), *p = tensor_new(PC_I32, 0, shape);
  for (size_t i = 0; i < n; i++) tensor_i32(in)[i] = (int32_t)ids[i];
  tensor_i32(p)[0] = (int32_t)pos;
  size_t n_in = 2 + d->n_caches, n_out = 0;
  NamedTensor *inputs = pc_xcalloc(n_in, sizeof *inputs), outputs[4];
  inputs[0] = (NamedTensor){"ids", in};
  inputs[1] = (NamedTensor){"pos", p};
  for (size_t i = 0; i < d->n_caches; i++) inputs[2 + i] = (NamedTensor){d->names[i], d->caches[i]};
  int rc = interp_run(g, &d->m->params, inputs, n_in, outputs, 4, &n_out, err);
  if (!rc) {
    const Tensor *lg = outputs[0].tensor;
    if (lg->rank != 3 || lg->dim[1] != (int64_t)n || lg->dim[2] != d->vocab)
      rc = pc_errorf(err, "the model's first output is not logits [1, %zu, %lld]", n, (long long)d->vocab);
    else
      memcpy(row, tensor_f32(lg) + (n - 1) * (size_t)d->vocab, (size_t)d->vocab * sizeof *row);
  }
  for (size_t i = 0; i < n_out; i++) tensor_free(outputs[i].tensor);
  free(inputs);
  tensor_free(in);
  tensor_free(p);
  return rc;
}

int decoder_next(Decoder *d, const uint32_t *ids, size_t n, float *row, PcError *err) {
  if (!d->graph) return run_last(d, d->m->graph, ids, n, 0, row, err);
  if (n <= d->fed) return pc_errorf(err, "the decoder was fed %zu tokens; give it new ones", d->fed);
  if ((int64_t)n > d->cache_len)
    return pc_errorf(err, "%zu tokens do not fit the KV caches of %lld positions", n, (long long)d->cache_len);
  if (run_last(d, d->graph, ids + d->fed, n - d->fed, (int64_t)d->fed, row, err) < 0) return -1;
  d->fed = n;
  return 0;
}

void decoder_close(Decoder *d) {
  for (size_t i = 0; i < d->n_caches; i++) tensor_free(d->caches[i]);
  free(d->caches);
  free(d->names);
  ir_graph_free(d->graph);
  *d = (Decoder){0};
}
