/* Engine.train for the CUDA engine: from begin to end the device owns the
 * parameters and the AdamW moments; the train entry's gradients stay in its
 * output buffers (summed into per-parameter buffers when a step has several
 * micro-batches), and the norm and AdamW run as the runtime's kernels
 * (kernels/optim.cu). Per step the batch goes up, and the loss and the norm
 * come down. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/engine_compiled.h"
#include "runtime/cli/engine_cuda_internal.h"

void cuda_engine_train_free(CudaEngine *c) {
  for (size_t i = 0; c->dev && i < c->n_params; i++) {
    if (c->m && c->m[i]) c->dev->release(c->dev, c->m[i]);
    if (c->v && c->v[i]) c->dev->release(c->dev, c->v[i]);
    if (c->acc && c->acc[i]) c->dev->release(c->dev, c->acc[i]);
  }
  if (c->dev) cuda_optim_free(&c->opt, c->dev);
  free(c->m);
  free(c->v);
  free(c->acc);
  free(c->grad_out);
  free(c->keep);
  free(c->decays);
  c->m = c->v = c->acc = NULL;
  c->grad_out = NULL;
  c->keep = c->decays = NULL;
  c->training = 0;
}

static CudaEngine *train_ctx(Engine *e) {
  CudaEngine *c = engine_runner_ctx(e);
  if (!c->training) PC_BUG("Engine.train: not begun");
  return c;
}

/* The train entry's outputs: "loss" and a gradient per parameter of p. */
static int train_outputs(CudaEngine *c, const Params *p, PcError *err) {
  EntryMem *m = &c->mem[c->train_entry];
  cJSON *root = cJSON_Parse(c->info), *x;
  const cJSON *outs = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "entries"), c->train_entry), "outputs");
  c->keep = pc_xcalloc(m->n_out + 1, 1);
  c->grad_out = pc_xmalloc((c->n_params + 1) * sizeof *c->grad_out);
  for (size_t i = 0; i < c->n_params; i++) c->grad_out[i] = -1;
  c->loss_out = -1;
  int k = 0;
  cJSON_ArrayForEach(x, outs) {
    const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(x, "name"));
    int i = n && !strncmp(n, "grad:", 5) ? params_find(p, n + 5) : -1;
    if (n && !strcmp(n, "loss")) c->loss_out = k;
    if (i >= 0 && (size_t)i < c->n_params && (size_t)k < m->n_out) {
      c->grad_out[i] = k;
      c->keep[k] = 1;
    }
    k++;
  }
  cJSON_Delete(root);
  if (c->loss_out < 0 || (size_t)c->loss_out >= m->n_out) return pc_errorf(err, "the train entry has no loss output");
  for (size_t i = 0; i < c->n_params; i++)
    if (c->grad_out[i] < 0) return pc_errorf(err, "the train entry has no gradient for '%s'", p->spec.a[i].name);
  return 0;
}

static int train_begin(Engine *e, const Params *p, Tensor *const *mt, Tensor *const *vt, const unsigned char *decays,
                       PcError *err) {
  CudaEngine *c = engine_runner_ctx(e);
  CudaDevice *d = c->dev;
  if (c->training) PC_BUG("Engine.train: begun twice");
  if (p->spec.n != c->n_params)
    return pc_errorf(err, "%zu parameters, but the program has %zu", p->spec.n, c->n_params);
  if (!c->mem[c->train_entry].ready) cuda_engine_prepare(c, (size_t)c->train_entry);
  int rc = cuda_engine_hold(c, p, err);
  size_t up = 0;
  if (!rc) rc = train_outputs(c, p, err);
  c->m = pc_xcalloc(c->n_params + 1, sizeof *c->m);
  c->v = pc_xcalloc(c->n_params + 1, sizeof *c->v);
  c->acc = pc_xcalloc(c->n_params + 1, sizeof *c->acc);
  c->decays = pc_xcalloc(c->n_params + 1, 1);
  for (size_t i = 0; !rc && i < c->n_params; i++) {
    size_t bytes = tensor_bytes(p->value[i]), cap = 0;
    c->decays[i] = decays[i] != 0;
    if (tensor_bytes(mt[i]) != bytes || tensor_bytes(vt[i]) != bytes) PC_BUG("Engine.train: moments of another size");
    CuPtr was = c->params[i];
    rc = cuda_engine_ensure(c, &c->params[i], &c->param_bytes[i], bytes, 0, err);
    if (c->params[i] != was) c->fresh[i] = 0;
    if (!rc) rc = cuda_engine_take_param(c, (uint32_t)i, &up, err);
    if (!rc) rc = cuda_engine_ensure(c, &c->m[i], &cap, bytes, 0, err);
    if (!rc) rc = cuda_engine_ensure(c, &c->v[i], &cap, bytes, 0, err);
    if (!rc) rc = d->upload(d, c->m[i], tensor_f32(mt[i]), bytes, err);
    if (!rc) rc = d->upload(d, c->v[i], tensor_f32(vt[i]), bytes, err);
    up += 2 * bytes;
  }
  if (rc) {
    cuda_engine_train_free(c);
    memset(c->fresh, 0, c->n_params);
    return pc_error_prefix(err, "training on %s", d->name);
  }
  c->training = 1;
  c->of = 1;
  c->opt_ms = 0;
  if (c->timing) fprintf(stderr, "cuda: optimizer: begin; %zu bytes up\n", up);
  return 0;
}

/* The optimizer's table: each parameter with the buffer of its step's
 * gradient (the entry's output, or its sum over micro-batches). */
static int train_table(CudaEngine *c, PcError *err) {
  EntryMem *m = &c->mem[c->train_entry];
  CudaOptTensor *t = pc_xcalloc(c->n_params + 1, sizeof *t);
  int rc = 0;
  for (size_t i = 0; i < c->n_params && !rc; i++) {
    size_t cap = 0;
    if (c->of > 1 && !c->acc[i]) rc = cuda_engine_ensure(c, &c->acc[i], &cap, c->param_bytes[i], 0, err);
    CuPtr src = m->out[c->grad_out[i]];
    t[i] = (CudaOptTensor){.w = c->params[i], .g = c->of > 1 ? c->acc[i] : src, .m = c->m[i], .v = c->v[i], .src = src,
                           .n = (int64_t)(c->param_bytes[i] / 4), .decays = c->decays[i]};
  }
  if (!rc) rc = cuda_optim_tensors(&c->opt, c->dev, t, c->n_params, err);
  free(t);
  return rc;
}

/* A profile of the optimizer's work (PONDER_CUDA_PROFILE): opt_start
 * before it, opt_end after it, what naming it in the table. */
static int opt_start(CudaEngine *c, PcError *err) {
  CudaProfile *pf = cuda_engine_opt_profile(c);
  return pf ? cuda_profile_start(pf, c->dev, err) : 0;
}

static int opt_end(CudaEngine *c, int rc, const char *what, PcError *err) {
  CudaProfile *pf = cuda_engine_opt_profile(c);
  if (!pf || !pf->started) return rc;
  CudaProfKey key = {.kind = CP_RUNTIME, .fn = what};
  if (!rc) rc = cuda_profile_mark(pf, c->dev, &key, 0, err);
  PcError ignored;
  int done = cuda_profile_finish(pf, c->dev, rc ? &ignored : err);
  return rc ? rc : done;
}

static int train_micro(Engine *e, const NamedTensor *in, size_t n_in, int64_t micro, int64_t of, double *loss,
                       PcError *err) {
  CudaEngine *c = train_ctx(e);
  EntryMem *m = &c->mem[c->train_entry];
  NamedTensor *out = pc_xcalloc(m->n_out + 1, sizeof *out);
  size_t n_out = 0;
  int rc = engine_run_keeping(e, ENTRY_TRAIN, c->held, in, n_in, out, m->n_out, &n_out, c->keep, err);
  if (!rc && (size_t)c->loss_out < n_out && out[c->loss_out].tensor) *loss = tensor_f32(out[c->loss_out].tensor)[0];
  for (size_t k = 0; k < n_out; k++) tensor_free(out[k].tensor);
  free(out);
  if (rc) return -1;
  c->of = of;
  if (of == 1) return 0; /* the entry's outputs are the step's gradients */
  double t0 = cuda_engine_now();
  rc = train_table(c, err);
  if (!rc) rc = opt_start(c, err);
  if (!rc) rc = cuda_optim_accumulate(&c->opt, &c->cp, c->dev, micro == 0, micro == of - 1, (float)(1.0 / (double)of), err);
  rc = opt_end(c, rc, "gradient accumulation (pc_opt_accum)", err);
  if (!rc && c->timing) rc = c->dev->sync(c->dev, err);
  c->opt_ms += (cuda_engine_now() - t0) * 1e3;
  return rc ? pc_error_prefix(err, "accumulating gradients on %s", c->dev->name) : 0;
}

static int train_norm(Engine *e, double *norm, PcError *err) {
  CudaEngine *c = train_ctx(e);
  double t0 = cuda_engine_now();
  int rc = train_table(c, err);
  if (!rc) rc = opt_start(c, err);
  if (!rc) rc = cuda_optim_norm(&c->opt, &c->cp, c->dev, 0, norm, err);
  rc = opt_end(c, rc, "gradient norm (pc_opt_sumsq, pc_opt_norm)", err);
  c->opt_ms += (cuda_engine_now() - t0) * 1e3;
  return rc ? pc_error_prefix(err, "gradient norm on %s", c->dev->name) : 0;
}

static int train_update(Engine *e, const AdamWStep *s, PcError *err) {
  CudaEngine *c = train_ctx(e);
  double t0 = cuda_engine_now();
  CudaAdamW a = {s->grad_scale, s->decay, s->neg_step, s->bc2_sqrt, s->eps, s->b2, s->one_minus_b1, s->one_minus_b2};
  int rc = train_table(c, err);
  if (!rc) rc = opt_start(c, err);
  if (!rc) rc = cuda_optim_adamw(&c->opt, &c->cp, c->dev, &a, err);
  cuda_gemm_ctx_params_changed(&c->gemm, CUDA_ALL_PARAMS); /* their bf16 copies are of the old values */
  rc = opt_end(c, rc, "AdamW (pc_opt_adamw)", err);
  if (!rc && cuda_engine_opt_profile(c)) cuda_engine_opt_profile(c)->calls++; /* a step */
  if (!rc && c->timing) rc = c->dev->sync(c->dev, err);
  if (rc) return pc_error_prefix(err, "AdamW on %s", c->dev->name);
  if (c->timing)
    fprintf(stderr, "cuda: optimizer: run %.2f ms (accumulation, norm, AdamW); 0 bytes up, 8 down\n",
            c->opt_ms + (cuda_engine_now() - t0) * 1e3);
  c->opt_ms = 0;
  return 0;
}

static int train_fetch(Engine *e, Params *p, Tensor *const *mt, Tensor *const *vt, PcError *err) {
  CudaEngine *c = train_ctx(e);
  CudaDevice *d = c->dev;
  if (p != c->held) PC_BUG("Engine.train: fetching into other parameters");
  double t0 = cuda_engine_now();
  size_t down = 0;
  int rc = 0;
  for (size_t i = 0; !rc && i < c->n_params; i++) {
    size_t bytes = c->param_bytes[i];
    rc = d->download(d, tensor_f32(p->value[i]), c->params[i], bytes, err);
    if (!rc) rc = d->download(d, tensor_f32(mt[i]), c->m[i], bytes, err);
    if (!rc) rc = d->download(d, tensor_f32(vt[i]), c->v[i], bytes, err);
    down += 3 * bytes;
  }
  if (rc) return pc_error_prefix(err, "fetching the parameters from %s", d->name);
  if (c->timing) fprintf(stderr, "cuda: optimizer: fetch %.2f ms; %zu bytes down\n", (cuda_engine_now() - t0) * 1e3, down);
  return 0;
}

/* After end the host's values are the current ones: a later call uploads
 * them (the same bits, when fetch came just before). */
static void train_end(Engine *e) {
  CudaEngine *c = train_ctx(e);
  cuda_engine_train_free(c);
  memset(c->fresh, 0, c->n_params);
}

const EngineTrain cuda_engine_train = {train_begin, train_micro, train_norm, train_update, train_fetch, train_end};
