#include "runtime/cli/decoder.h"

#include <stdlib.h>
#include <string.h>

int decoder_open(Decoder *d, const LoadedModel *m, int cached, PcError *err) {
  *d = (Decoder){.m = m, .cached = cached};
  if (!cached) return 0;
  size_t n;
  const EngineIO *io = m->engine->inputs(m->engine, ENTRY_DECODE, &n, err);
  if (!io) return -1;
  d->caches = pc_xcalloc(n + 1, sizeof *d->caches);
  d->names = pc_xcalloc(n + 1, sizeof *d->names);
  for (size_t i = 0; i < n; i++) {
    if (strncmp(io[i].name, "kv.", 3)) continue;
    int64_t dim[PC_MAX_RANK];
    for (int k = 0; k < io[i].rank; k++) dim[k] = io[i].dim[k] >= 0 ? io[i].dim[k] : 1; /* B = 1 */
    d->cache_len = dim[3];
    Tensor *t = tensor_new(PC_F32, io[i].rank, dim);
    if (!t) {
      decoder_close(d);
      return pc_errorf(err, "out of memory for the KV caches");
    }
    d->names[d->n_caches] = io[i].name;
    d->caches[d->n_caches++] = t;
  }
  return 0;
}

/* Runs an entry on ids [1, n] (+ pos and the caches when decoding); copies
 * the last position's logits into row. */
static int run_last(Decoder *d, EntryKind k, const uint32_t *ids, size_t n, int64_t pos, float *row, PcError *err) {
  int64_t shape[2] = {1, (int64_t)n}, vocab = d->m->vocab;
  Tensor *in = tensor_new(PC_I32, 2, shape), *p = tensor_new(PC_I32, 0, shape);
  for (size_t i = 0; i < n; i++) tensor_i32(in)[i] = (int32_t)ids[i];
  tensor_i32(p)[0] = (int32_t)pos;
  size_t n_in = k == ENTRY_DECODE ? 2 + d->n_caches : 1, n_out = 0;
  NamedTensor *inputs = pc_xcalloc(n_in, sizeof *inputs), outputs[4] = {{0}};
  inputs[0] = (NamedTensor){"ids", in};
  if (k == ENTRY_DECODE) {
    inputs[1] = (NamedTensor){"pos", p};
    for (size_t i = 0; i < d->n_caches; i++) inputs[2 + i] = (NamedTensor){d->names[i], d->caches[i]};
  }
  Engine *e = d->m->engine;
  int rc = e->run(e, k, &d->m->params, inputs, n_in, outputs, 4, &n_out, err);
  if (!rc) {
    const Tensor *lg = outputs[0].tensor;
    if (lg->rank != 3 || lg->dim[1] != (int64_t)n || lg->dim[2] != vocab)
      rc = pc_errorf(err, "the model's first output is not logits [1, %zu, %lld]", n, (long long)vocab);
    else
      memcpy(row, tensor_f32(lg) + (n - 1) * (size_t)vocab, (size_t)vocab * sizeof *row);
  }
  for (size_t i = 0; i < n_out; i++) tensor_free(outputs[i].tensor);
  free(inputs);
  tensor_free(in);
  tensor_free(p);
  return rc;
}

int decoder_next(Decoder *d, const uint32_t *ids, size_t n, float *row, PcError *err) {
  if (!d->cached) return run_last(d, ENTRY_LOGITS, ids, n, 0, row, err);
  if (n <= d->fed) return pc_errorf(err, "the decoder was fed %zu tokens; give it new ones", d->fed);
  if ((int64_t)n > d->cache_len)
    return pc_errorf(err, "%zu tokens do not fit the KV caches of %lld positions", n, (long long)d->cache_len);
  if (run_last(d, ENTRY_DECODE, ids + d->fed, n - d->fed, (int64_t)d->fed, row, err) < 0) return -1;
  d->fed = n;
  return 0;
}

void decoder_close(Decoder *d) {
  for (size_t i = 0; i < d->n_caches; i++) tensor_free(d->caches[i]);
  free(d->caches);
  free(d->names);
  *d = (Decoder){0};
}
