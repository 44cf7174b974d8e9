/* The CUDA engine: device memory for a compiled model and the calls
 * around cuda_exec. Each call uploads its inputs, runs the entry and
 * downloads its outputs; the arena, the outputs' device buffers and the KV
 * caches persist, and so do the parameters: the device keeps a copy of one
 * Params' values and uploads a parameter again only when that Params'
 * version moved (params_changed), its tensors were replaced, or another
 * Params comes. The caches belong to the host tensors the decoder passes
 * (one sequence at a time): a call with other tensors must start at
 * position 0, and a call at a position beyond what was written is refused,
 * so that a cache is never silently stale. Matrix products run in the
 * precision the engine was opened with; their bf16 operands' scratch
 * (CudaGemmCtx) is the engine's and grows as needed.
 *
 * Engine.train (the device optimizer): from begin to end the device owns
 * the parameters and the AdamW moments; the train entry's gradients stay
 * in its output buffers (summed into per-parameter buffers when a step has
 * several micro-batches), and the norm and AdamW run as the runtime's
 * kernels (kernels/optim.cu). Per step the batch goes up, and the loss and
 * the norm come down. PONDER_CUDA_TIMING=1 prints each call's upload, run
 * and download times and bytes, and each update's optimizer time. */
#include "runtime/cli/engine_cuda.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_kio.h"
#include "backends/cuda/cuda_library.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "runtime/base/strmap.h"
#include "runtime/cli/engine_compiled.h"
#include "runtime/cuda/cuda_runtime.h"
#include "runtime/include/ponder_abi.h"
#include "runtime/include/ponder_cuda.h"

typedef struct {
  int ready;
  size_t n_in, n_out;
  CuPtr *in, *out;
  size_t *in_cap, *out_cap;
  VecU32 params;       /* the parameters it reads */
  unsigned char *kv;   /* per input: the entry writes it (a KV cache): it stays on the device */
  int pos_input, t_dim; /* decode: the input "pos" and the dim T, or -1 */
  void **kv_host;      /* the host tensors whose caches the device holds */
  int64_t kv_len;      /* positions written into them */
} EntryMem;

typedef struct {
  CudaDevice *dev;
  KProgram *prog;
  CudaProgram cp;
  char *info;
  void *dl; /* the library, when the model came from one */
  size_t n_params;
  CuPtr *params;
  size_t *param_bytes;
  CuPtr arena, slots;
  uint64_t arena_cap, slots_cap;
  EntryMem *mem;
  CuPtr *bufs;
  CudaGemmCtx gemm; /* the products' precision, their bf16 operands */
  int timing;
  /* the parameters' device copies hold held's values at held_version where
   * fresh[i]; held_data[i]: the tensor data they came from */
  const Params *held;
  uint64_t held_version;
  const float **held_data;
  unsigned char *fresh;
  /* Engine.train */
  int training, train_entry; /* train_entry: the program's train entry, or -1 */
  int loss_out;              /* its output "loss" */
  int *grad_out;             /* per parameter: its output holding the gradient */
  unsigned char *keep;       /* per output of the train entry: a gradient, kept on the device */
  unsigned char *decays;
  CuPtr *m, *v, *acc;        /* per parameter: moments, the step's gradient when accumulated */
  int64_t of;                /* the step's micro-batches */
  CudaOptim opt;
  double opt_ms;             /* timing: optimizer kernels since the last update */
} CudaEngine;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void train_free(CudaEngine *c);

static void ctx_free(void *p) {
  CudaEngine *c = p;
  if (!c) return;
  train_free(c);
  for (size_t k = 0; c->mem && k < c->prog->entries.n; k++) {
    EntryMem *m = &c->mem[k];
    for (size_t i = 0; i < m->n_in; i++)
      if (m->in[i]) c->dev->release(c->dev, m->in[i]);
    for (size_t i = 0; i < m->n_out; i++)
      if (m->out[i]) c->dev->release(c->dev, m->out[i]);
    free(m->in);
    free(m->out);
    free(m->in_cap);
    free(m->out_cap);
    free(m->kv);
    free(m->kv_host);
    vec_free(&m->params);
  }
  for (size_t i = 0; i < c->n_params; i++)
    if (c->params[i]) c->dev->release(c->dev, c->params[i]);
  if (c->dev) cuda_gemm_ctx_free(&c->gemm, c->dev);
  if (c->arena) c->dev->release(c->dev, c->arena);
  if (c->slots) c->dev->release(c->dev, c->slots);
  if (c->dev) c->dev->free(c->dev);
  cuda_program_free(&c->cp);
  kir_free(c->prog);
  free(c->mem);
  free(c->params);
  free(c->param_bytes);
  free(c->bufs);
  free(c->held_data);
  free(c->fresh);
  free(c->info);
  if (c->dl) dlclose(c->dl);
  free(c);
}

/* The position of an entry's input `name` in the model info, or -1. */
static int input_named(const char *info, size_t entry, const char *name) {
  cJSON *root = cJSON_Parse(info), *x;
  const cJSON *inputs = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "entries"), (int)entry), "inputs");
  int found = -1, i = 0;
  cJSON_ArrayForEach(x, inputs) {
    const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(x, "name"));
    if (n && !strcmp(n, name)) found = i;
    i++;
  }
  cJSON_Delete(root);
  return found;
}

/* Sizes of an entry's inputs and outputs (from its buffers at the maximum
 * dims), and which inputs it writes. */
static void prepare(CudaEngine *c, size_t entry) {
  const KEntry *e = &c->prog->entries.a[entry];
  EntryMem *m = &c->mem[entry];
  unsigned char *seen = pc_xcalloc(c->n_params + 1, 1);
  for (size_t i = 0; i < e->bufs.n; i++) {
    const KBuf *b = &e->bufs.a[i];
    if (b->kind == KB_PARAM && !seen[b->index]) {
      seen[b->index] = 1;
      vec_push(&m->params, b->index);
    }
    if (b->kind == KB_INPUT && b->index + 1 > m->n_in) m->n_in = b->index + 1;
    if (b->kind == KB_OUTPUT && b->index + 1 > m->n_out) m->n_out = b->index + 1;
  }
  free(seen);
  m->in = pc_xcalloc(m->n_in + 1, sizeof *m->in);
  m->out = pc_xcalloc(m->n_out + 1, sizeof *m->out);
  m->in_cap = pc_xcalloc(m->n_in + 1, sizeof *m->in_cap);
  m->out_cap = pc_xcalloc(m->n_out + 1, sizeof *m->out_cap);
  m->kv = pc_xcalloc(m->n_in + 1, 1);
  m->kv_host = pc_xcalloc(m->n_in + 1, sizeof *m->kv_host);
  cuda_written_inputs(c->prog, e, m->kv);
  m->pos_input = input_named(c->info, entry, "pos");
  m->t_dim = -1;
  for (size_t d = 0; d < e->dims.n; d++)
    if (!strcmp(e->dims.a[d].name, "T")) m->t_dim = (int)d;
  m->ready = 1;
}

/* A device buffer of at least bytes (contents not kept when it grows);
 * zeroed when new if zero. */
static int ensure(CudaEngine *c, CuPtr *p, size_t *cap, size_t bytes, int zero, PcError *err) {
  if (*p && *cap >= bytes) return 0;
  if (*p) c->dev->release(c->dev, *p);
  *p = 0;
  if (c->dev->alloc(c->dev, bytes ? bytes : 4, p, err) < 0) return -1;
  *cap = bytes;
  return zero ? c->dev->fill32(c->dev, *p, 0, (bytes + 3) / 4, err) : 0;
}

/* The KV caches: the same host tensors as the last call continue their
 * sequence; other ones start a new one. */
static int kv_check(EntryMem *m, const PonderCall *call, PcError *err) {
  if (m->pos_input < 0) return 0;
  int64_t pos = *(const int32_t *)call->inputs[m->pos_input];
  int same = 1;
  for (size_t i = 0; i < m->n_in; i++)
    if (m->kv[i] && m->kv_host[i] != call->inputs[i]) same = 0;
  if (!same && pos != 0)
    return pc_errorf(err, "decode at position %lld with KV caches the GPU does not hold (it keeps one sequence's): "
                          "start the sequence at position 0", (long long)pos);
  if (same && pos > m->kv_len)
    return pc_errorf(err, "decode at position %lld, but the KV caches hold %lld positions", (long long)pos, (long long)m->kv_len);
  for (size_t i = 0; i < m->n_in; i++)
    if (m->kv[i]) m->kv_host[i] = call->inputs[i];
  return 0;
}

/* Whether the device's copies are of p's values as they are now; if not,
 * they become p's, all stale. While the device trains, its copies are the
 * current ones and nothing may replace them. */
static int hold(CudaEngine *c, const Params *p, PcError *err) {
  int same = c->held == p && c->held_version == p->version;
  for (size_t i = 0; same && i < c->n_params && i < p->spec.n; i++) same = c->held_data[i] == tensor_f32(p->value[i]);
  if (same) return 0;
  if (c->training)
    return pc_errorf(err, "the parameters changed on the host while the GPU trains them (fetch them from the device instead)");
  c->held = p;
  c->held_version = p->version;
  for (size_t i = 0; i < c->n_params; i++) {
    c->held_data[i] = i < p->spec.n ? tensor_f32(p->value[i]) : NULL;
    c->fresh[i] = 0;
  }
  return 0;
}

/* Uploads parameter i of the held Params if the device's copy is stale. */
static int take_param(CudaEngine *c, uint32_t i, size_t *up, PcError *err) {
  if (c->fresh[i]) return 0;
  if (i >= c->held->spec.n || tensor_bytes(c->held->value[i]) != c->param_bytes[i])
    return pc_errorf(err, "parameter %u does not have the size the program has for it", i);
  if (c->dev->upload(c->dev, c->params[i], c->held_data[i], c->param_bytes[i], err) < 0) return -1;
  *up += c->param_bytes[i];
  c->fresh[i] = 1;
  return 0;
}

static int runner(void *ctx, int entry, const Params *p, const PonderCall *call, const size_t *in_bytes,
                  const size_t *out_bytes, PcError *err) {
  CudaEngine *c = ctx;
  CudaDevice *d = c->dev;
  const KEntry *e = &c->prog->entries.a[entry];
  EntryMem *m = &c->mem[entry];
  if (!m->ready) prepare(c, (size_t)entry);
  double t0 = now();
  size_t up = 0, down = 0;
  int rc = ensure(c, &c->arena, &c->arena_cap, e->arena_bytes, 0, err);
  if (!rc) rc = ensure(c, &c->slots, &c->slots_cap, 8 * (e->vars.n + 1), 0, err);
  for (size_t i = 0; !rc && i < e->bufs.n; i++) { /* device buffers at their largest, and the parameters' values */
    const KBuf *b = &e->bufs.a[i];
    size_t bytes = 4 * b->numel;
    if (b->kind == KB_PARAM) {
      CuPtr was = c->params[b->index];
      rc = ensure(c, &c->params[b->index], &c->param_bytes[b->index], bytes, 0, err);
      if (c->params[b->index] != was) c->fresh[b->index] = 0; /* a new buffer (a parameter's size is fixed: only the first) */
    } else if (b->kind == KB_INPUT) {
      size_t want = bytes > in_bytes[b->index] ? bytes : in_bytes[b->index];
      rc = ensure(c, &m->in[b->index], &m->in_cap[b->index], want, m->kv[b->index], err);
    } else if (b->kind == KB_OUTPUT) {
      size_t want = bytes > out_bytes[b->index] ? bytes : out_bytes[b->index];
      rc = ensure(c, &m->out[b->index], &m->out_cap[b->index], want, 0, err);
    }
  }
  if (!rc) rc = hold(c, p, err);
  for (size_t i = 0; !rc && i < m->params.n; i++) rc = take_param(c, m->params.a[i], &up, err);
  if (!rc) rc = kv_check(m, call, err);
  for (size_t i = 0; !rc && i < m->n_in; i++)
    if (m->in[i] && !m->kv[i]) {
      rc = d->upload(d, m->in[i], call->inputs[i], in_bytes[i], err);
      up += in_bytes[i];
    }
  double t1 = now();
  if (!rc) {
    cuda_buffer_addresses(e, c->params, m->in, m->out, c->arena, c->bufs);
    rc = cuda_exec(&c->cp, d, (uint32_t)entry, call->dims, c->bufs, c->slots, &c->gemm, err);
  }
  if (!rc && c->timing) rc = d->sync(d, err);
  double t2 = now();
  for (size_t i = 0; !rc && i < m->n_out; i++)
    if (m->out[i] && out_bytes[i]) {
      rc = d->download(d, call->outputs[i], m->out[i], out_bytes[i], err);
      down += out_bytes[i];
    }
  if (!rc && m->pos_input >= 0 && m->t_dim >= 0) m->kv_len = *(const int32_t *)call->inputs[m->pos_input] + call->dims[m->t_dim];
  if (rc) {
    m->kv_len = 0; /* a failed call may have written anything */
    if (!c->training) memset(c->fresh, 0, c->n_params);
    return pc_error_prefix(err, "%s on %s", e->name, d->name);
  }
  if (c->timing)
    fprintf(stderr,
            "cuda: %s: upload %.2f ms, run %.2f ms, download %.2f ms (%s products, %.1f MiB of bf16 operands); "
            "%zu bytes up, %zu down\n",
            e->name, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (now() - t2) * 1e3, cuda_precision_name(c->gemm.precision),
            cuda_gemm_ctx_bytes(&c->gemm) / 1048576.0, up, down);
  return 0;
}

/* ---- Engine.train: the device optimizer ------------------------------------- */

static void train_free(CudaEngine *c) {
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
  if (!c->mem[c->train_entry].ready) prepare(c, (size_t)c->train_entry);
  int rc = hold(c, p, err);
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
    rc = ensure(c, &c->params[i], &c->param_bytes[i], bytes, 0, err);
    if (c->params[i] != was) c->fresh[i] = 0;
    if (!rc) rc = take_param(c, (uint32_t)i, &up, err);
    if (!rc) rc = ensure(c, &c->m[i], &cap, bytes, 0, err);
    if (!rc) rc = ensure(c, &c->v[i], &cap, bytes, 0, err);
    if (!rc) rc = d->upload(d, c->m[i], tensor_f32(mt[i]), bytes, err);
    if (!rc) rc = d->upload(d, c->v[i], tensor_f32(vt[i]), bytes, err);
    up += 2 * bytes;
  }
  if (rc) {
    train_free(c);
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
    if (c->of > 1 && !c->acc[i]) rc = ensure(c, &c->acc[i], &cap, c->param_bytes[i], 0, err);
    CuPtr src = m->out[c->grad_out[i]];
    t[i] = (CudaOptTensor){.w = c->params[i], .g = c->of > 1 ? c->acc[i] : src, .m = c->m[i], .v = c->v[i], .src = src,
                           .n = (int64_t)(c->param_bytes[i] / 4), .decays = c->decays[i]};
  }
  if (!rc) rc = cuda_optim_tensors(&c->opt, c->dev, t, c->n_params, err);
  free(t);
  return rc;
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
  double t0 = now();
  rc = train_table(c, err);
  if (!rc) rc = cuda_optim_accumulate(&c->opt, &c->cp, c->dev, micro == 0, micro == of - 1, (float)(1.0 / (double)of), err);
  if (!rc && c->timing) rc = c->dev->sync(c->dev, err);
  c->opt_ms += (now() - t0) * 1e3;
  return rc ? pc_error_prefix(err, "accumulating gradients on %s", c->dev->name) : 0;
}

static int train_norm(Engine *e, double *norm, PcError *err) {
  CudaEngine *c = train_ctx(e);
  double t0 = now();
  int rc = train_table(c, err);
  if (!rc) rc = cuda_optim_norm(&c->opt, &c->cp, c->dev, 0, norm, err);
  c->opt_ms += (now() - t0) * 1e3;
  return rc ? pc_error_prefix(err, "gradient norm on %s", c->dev->name) : 0;
}

static int train_update(Engine *e, const AdamWStep *s, PcError *err) {
  CudaEngine *c = train_ctx(e);
  double t0 = now();
  CudaAdamW a = {s->grad_scale, s->decay, s->neg_step, s->bc2_sqrt, s->eps, s->b2, s->one_minus_b1, s->one_minus_b2};
  int rc = train_table(c, err);
  if (!rc) rc = cuda_optim_adamw(&c->opt, &c->cp, c->dev, &a, err);
  if (!rc && c->timing) rc = c->dev->sync(c->dev, err);
  if (rc) return pc_error_prefix(err, "AdamW on %s", c->dev->name);
  if (c->timing)
    fprintf(stderr, "cuda: optimizer: run %.2f ms (accumulation, norm, AdamW); 0 bytes up, 8 down\n",
            c->opt_ms + (now() - t0) * 1e3);
  c->opt_ms = 0;
  return 0;
}

static int train_fetch(Engine *e, Params *p, Tensor *const *mt, Tensor *const *vt, PcError *err) {
  CudaEngine *c = train_ctx(e);
  CudaDevice *d = c->dev;
  if (p != c->held) PC_BUG("Engine.train: fetching into other parameters");
  double t0 = now();
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
  if (c->timing) fprintf(stderr, "cuda: optimizer: fetch %.2f ms; %zu bytes down\n", (now() - t0) * 1e3, down);
  return 0;
}

/* After end the host's values are the current ones: a later call uploads
 * them (the same bits, when fetch came just before). */
static void train_end(Engine *e) {
  CudaEngine *c = train_ctx(e);
  train_free(c);
  memset(c->fresh, 0, c->n_params);
}

static const EngineTrain cuda_train = {train_begin, train_micro, train_norm, train_update, train_fetch, train_end};

/* The engine around a program whose kernels the device has loaded. */
static int make(CudaEngine *c, Engine **out, const char **info_json, PcError *err) {
  size_t most = 1;
  for (size_t k = 0; k < c->prog->entries.n; k++) {
    const KEntry *e = &c->prog->entries.a[k];
    if (e->bufs.n > most) most = e->bufs.n;
    for (size_t i = 0; i < e->bufs.n; i++)
      if (e->bufs.a[i].kind == KB_PARAM && e->bufs.a[i].index + 1 > c->n_params) c->n_params = e->bufs.a[i].index + 1;
  }
  c->bufs = pc_xcalloc(most, sizeof *c->bufs);
  c->params = pc_xcalloc(c->n_params + 1, sizeof *c->params);
  c->param_bytes = pc_xcalloc(c->n_params + 1, sizeof *c->param_bytes);
  c->mem = pc_xcalloc(c->prog->entries.n + 1, sizeof *c->mem);
  c->held_data = pc_xcalloc(c->n_params + 1, sizeof *c->held_data);
  c->fresh = pc_xcalloc(c->n_params + 1, 1);
  c->train_entry = -1;
  for (size_t k = 0; k < c->prog->entries.n; k++)
    if (!strcmp(c->prog->entries.a[k].name, "train")) c->train_entry = (int)k;
  const char *t = getenv("PONDER_CUDA_TIMING");
  c->timing = t && !strcmp(t, "1");
  if (engine_from_runner("cuda", c->info, runner, c, ctx_free, out, info_json, err) < 0) {
    ctx_free(c);
    return -1;
  }
  if (c->train_entry >= 0) (*out)->train = &cuda_train;
  return 0;
}

/* Renders the program; PTX from ptx_of (a library's) or NVRTC (JIT). */
static int load(CudaEngine *c, const PonderCudaImage *image, PcError *err) {
  CudaOptions o = cuda_options_default();
  if (cuda_render(c->prog, &o, &c->cp, err) < 0) return -1;
  if (image && pc_hash_bytes(c->cp.source, strlen(c->cp.source)) != image->source_hash)
    return pc_errorf(err, "its PTX was made from other CUDA C than this runtime renders: compile it again");
  if (cuda_device_open(&c->dev, err) < 0) return -1;
  int arch = c->dev->arch;
  if (!arch) return c->dev->load(c->dev, c->cp.source, NULL, c->cp.n_kernels, err); /* the emulator */
  if (image) {
    const PonderCudaPtx *best = NULL;
    for (int i = 0; i < image->n_ptx; i++)
      if (image->ptx[i].arch <= arch && (!best || image->ptx[i].arch > best->arch)) best = &image->ptx[i];
    if (!best) return pc_errorf(err, "it has no PTX for %s (sm_%d) or older", c->dev->name, arch);
    return c->dev->load(c->dev, c->cp.source, best->ptx, c->cp.n_kernels, err);
  }
  CudaNvrtc *nv;
  if (cuda_nvrtc_open(&nv, err) < 0) return -1;
  char *ptx = NULL;
  int rc = cuda_nvrtc_ptx(nv, c->cp.source, arch, 1, &ptx, NULL, err);
  cuda_nvrtc_close(nv);
  if (!rc) rc = c->dev->load(c->dev, c->cp.source, ptx, c->cp.n_kernels, err);
  free(ptx);
  return rc;
}

int engine_cuda_from_module(PcModule *m, CudaPrecision precision, Engine **out, const char **info_json, PcError *err) {
  CudaEngine *c = pc_xcalloc(1, sizeof *c);
  c->gemm.precision = precision;
  c->prog = m->prog;
  c->info = m->info_json;
  *m = (PcModule){0};
  if (load(c, NULL, err) < 0) {
    ctx_free(c);
    return -1;
  }
  return make(c, out, info_json, err);
}

int engine_cuda_open_library(const char *path, CudaPrecision precision, Engine **out, const char **info_json, PcError *err) {
  CudaEngine *c = pc_xcalloc(1, sizeof *c);
  c->gemm.precision = precision;
  int rc = (c->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) ? 0 : pc_errorf(err, "%s: cannot load: %s", path, dlerror());
  PonderAbiVersionFn version = rc ? NULL : (PonderAbiVersionFn)dlsym(c->dl, "ponder_abi_version");
  PonderModelInfoFn info = rc ? NULL : (PonderModelInfoFn)dlsym(c->dl, "ponder_model_info");
  PonderCudaImageFn image_fn = rc ? NULL : (PonderCudaImageFn)dlsym(c->dl, "ponder_cuda_image");
  const PonderCudaImage *image = NULL;
  if (!rc && (!version || !info))
    rc = pc_errorf(err, "%s: not a model compiled by pondercc (no ponder_abi_version/ponder_model_info)", path);
  else if (!rc && version() != PONDER_ABI_VERSION)
    rc = pc_errorf(err, "%s was compiled for model ABI version %d, but this runtime has version %d: compile it again", path,
                   version(), PONDER_ABI_VERSION);
  else if (!rc && !image_fn)
    rc = pc_errorf(err, "%s has no CUDA code: compile it with pondercc --target cuda", path);
  else if (!rc && (image = image_fn())->version != PONDER_CUDA_IMAGE_VERSION)
    rc = pc_errorf(err, "%s carries CUDA code of image version %d, but this runtime reads version %d: compile it again", path,
                   image->version, PONDER_CUDA_IMAGE_VERSION);
  if (!rc) {
    c->info = pc_xstrdup(info());
    rc = cuda_kir_read(image->kir, image->kir_bytes, &c->prog, err);
  }
  if (!rc) rc = load(c, image, err);
  if (rc) {
    if (c->prog) pc_error_prefix(err, "%s", path);
    ctx_free(c);
    return -1;
  }
  return make(c, out, info_json, err);
}
