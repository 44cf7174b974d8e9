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
 * (CudaGemmCtx) is the engine's and grows as needed. Engine.train, the
 * device optimizer, is engine_cuda_train.c. PONDER_CUDA_TIMING=1 prints each
 * call's upload, run and download times and bytes, and each update's
 * optimizer time; PONDER_CUDA_PROFILE (1: stderr, or a file) the device
 * time of every op, summed over the run, when the engine closes. */
#include "runtime/cli/engine_cuda_internal.h"

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

double cuda_engine_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The profiles' tables: one per entry that ran, then the optimizer's. */
static void profile_report(CudaEngine *c) {
  FILE *f = stderr;
  if (c->prof_path && !(f = fopen(c->prof_path, "w"))) {
    fprintf(stderr, "cuda: PONDER_CUDA_PROFILE: cannot write %s; the profile follows here\n", c->prof_path);
    f = stderr;
  }
  for (size_t k = 0; k <= c->prog->entries.n; k++) {
    CudaProfiles *p = &c->prof[k];
    const char *unit = k < c->prog->entries.n ? "call" : "step";
    char title[320];
    int n = k < c->prog->entries.n ? snprintf(title, sizeof title, "%s on %s, %s products", c->prog->entries.a[k].name,
                                              c->dev->name, cuda_precision_name(c->gemm.precision))
                                     : snprintf(title, sizeof title, "optimizer on %s", c->dev->name);
    if (p->rest.calls)
      snprintf(title + n, sizeof title - (size_t)n, " (after the first %s, %.3f ms with its warm-up)", unit, p->first.ms);
    else if (p->first.calls)
      snprintf(title + n, sizeof title - (size_t)n, " (its only %s, with the warm-up)", unit);
    cuda_profile_print(p->rest.calls ? &p->rest : &p->first, &c->cp, title, unit, f == stderr ? 25 : 40, f);
    cuda_profile_free(&p->first);
    cuda_profile_free(&p->rest);
  }
  if (f != stderr && fclose(f)) fprintf(stderr, "cuda: PONDER_CUDA_PROFILE: cannot write %s\n", c->prof_path);
  free(c->prof);
  free(c->prof_path);
}

static void ctx_free(void *p) {
  CudaEngine *c = p;
  if (!c) return;
  cuda_engine_train_free(c);
  if (c->prof) profile_report(c);
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
void cuda_engine_prepare(CudaEngine *c, size_t entry) {
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
CudaProfile *cuda_engine_profile(CudaEngine *c, size_t k) {
  if (!c->prof) return NULL;
  return c->prof[k].first.calls ? &c->prof[k].rest : &c->prof[k].first;
}

int cuda_engine_ensure(CudaEngine *c, CuPtr *p, size_t *cap, size_t bytes, int zero, PcError *err) {
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
int cuda_engine_hold(CudaEngine *c, const Params *p, PcError *err) {
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
int cuda_engine_take_param(CudaEngine *c, uint32_t i, size_t *up, PcError *err) {
  if (c->fresh[i]) return 0;
  if (i >= c->held->spec.n || tensor_bytes(c->held->value[i]) != c->param_bytes[i])
    return pc_errorf(err, "parameter %u does not have the size the program has for it", i);
  cuda_gemm_ctx_params_changed(&c->gemm, i); /* its bf16 copy too, even if the upload fails */
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
  if (!m->ready) cuda_engine_prepare(c, (size_t)entry);
  double t0 = cuda_engine_now();
  uint64_t converted = c->gemm.converted, mirrored = c->gemm.mirrored;
  size_t up = 0, down = 0;
  int rc = cuda_engine_ensure(c, &c->arena, &c->arena_cap, e->arena_bytes, 0, err);
  if (!rc) rc = cuda_engine_ensure(c, &c->slots, &c->slots_cap, 8 * (e->vars.n + 1), 0, err);
  for (size_t i = 0; !rc && i < e->bufs.n; i++) { /* device buffers at their largest, and the parameters' values */
    const KBuf *b = &e->bufs.a[i];
    size_t bytes = 4 * b->numel;
    if (b->kind == KB_PARAM) {
      CuPtr was = c->params[b->index];
      rc = cuda_engine_ensure(c, &c->params[b->index], &c->param_bytes[b->index], bytes, 0, err);
      if (c->params[b->index] != was) c->fresh[b->index] = 0; /* a new buffer (a parameter's size is fixed: only the first) */
    } else if (b->kind == KB_INPUT) {
      size_t want = bytes > in_bytes[b->index] ? bytes : in_bytes[b->index];
      rc = cuda_engine_ensure(c, &m->in[b->index], &m->in_cap[b->index], want, m->kv[b->index], err);
    } else if (b->kind == KB_OUTPUT) {
      size_t want = bytes > out_bytes[b->index] ? bytes : out_bytes[b->index];
      rc = cuda_engine_ensure(c, &m->out[b->index], &m->out_cap[b->index], want, 0, err);
    }
  }
  if (!rc) rc = cuda_engine_hold(c, p, err);
  for (size_t i = 0; !rc && i < m->params.n; i++) rc = cuda_engine_take_param(c, m->params.a[i], &up, err);
  if (!rc) rc = kv_check(m, call, err);
  for (size_t i = 0; !rc && i < m->n_in; i++)
    if (m->in[i] && !m->kv[i]) {
      rc = d->upload(d, m->in[i], call->inputs[i], in_bytes[i], err);
      up += in_bytes[i];
    }
  double t1 = cuda_engine_now();
  if (!rc) {
    cuda_buffer_addresses(e, c->params, m->in, m->out, c->arena, c->bufs);
    size_t refused = c->gemm.mirror_refused;
    CudaProfile *prof = cuda_engine_profile(c, (size_t)entry);
    rc = cuda_exec(&c->cp, d, (uint32_t)entry, call->dims, c->bufs, c->slots, &c->gemm, prof, err);
    if (!rc && prof) prof->calls++;
    if (!refused && c->gemm.mirror_refused)
      fprintf(stderr, "cuda: no device memory for %.0f MiB of bf16 mirrors: products convert their operands instead "
                      "(the same results, more memory traffic)\n", c->gemm.mirror_refused / 1048576.0);
  }
  if (!rc && c->timing) rc = d->sync(d, err);
  double t2 = cuda_engine_now();
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
            "cuda: %s: upload %.2f ms, run %.2f ms, download %.2f ms (%s products, %.1f MiB of bf16 operands, "
            "%llu elements converted, %llu read from mirrors); %zu bytes up, %zu down\n",
            e->name, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (cuda_engine_now() - t2) * 1e3, cuda_precision_name(c->gemm.precision),
            cuda_gemm_ctx_bytes(&c->gemm) / 1048576.0, (unsigned long long)(c->gemm.converted - converted),
            (unsigned long long)(c->gemm.mirrored - mirrored), up, down);
  return 0;
}


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
  if (c->prof_path && !c->dev->stamp) {
    fprintf(stderr, "cuda: %s cannot time its work: no profile\n", c->dev->name);
    free(c->prof_path);
    c->prof_path = NULL;
  } else if (c->prof_path) {
    c->prof = pc_xcalloc(c->prog->entries.n + 1, sizeof *c->prof);
    if (!strcmp(c->prof_path, "-")) { /* stderr */
      free(c->prof_path);
      c->prof_path = NULL;
    }
  }
  if (engine_from_runner("cuda", c->info, runner, c, ctx_free, out, info_json, err) < 0) {
    ctx_free(c);
    return -1;
  }
  if (c->train_entry >= 0) (*out)->train = &cuda_engine_train;
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

/* PONDER_CUDA_MIRRORS=0: bf16 operands converted at every product, none
 * read from the kernels' mirrors (the same bits as PONDER_CUDA_HALF=0,
 * more memory traffic). PONDER_CUDA_HALF=0: buffers that could live in
 * their bf16 mirrors stay fp32 (products' results in fp32).
 * The profile's destination: the option's, else PONDER_CUDA_PROFILE's
 * (1: stderr, 0 or empty: none), kept in prof_path until make() ("-":
 * stderr). */
static CudaEngine *engine_new(const CudaEngineOptions *o) {
  CudaEngine *c = pc_xcalloc(1, sizeof *c);
  const char *mirrors = getenv("PONDER_CUDA_MIRRORS"), *half = getenv("PONDER_CUDA_HALF");
  const char *prof = o->profile ? o->profile : getenv("PONDER_CUDA_PROFILE");
  c->gemm = (CudaGemmCtx){.precision = o->precision, .convert_only = mirrors && !strcmp(mirrors, "0"),
                          .no_half = half && !strcmp(half, "0")};
  if (prof && *prof && strcmp(prof, "0")) c->prof_path = pc_xstrdup(strcmp(prof, "1") ? prof : "-");
  return c;
}

int engine_cuda_from_module(PcModule *m, const CudaEngineOptions *o, Engine **out, const char **info_json, PcError *err) {
  CudaEngine *c = engine_new(o);
  c->prog = m->prog;
  c->info = m->info_json;
  *m = (PcModule){0};
  if (load(c, NULL, err) < 0) {
    ctx_free(c);
    return -1;
  }
  return make(c, out, info_json, err);
}

int engine_cuda_open_library(const char *path, const CudaEngineOptions *o, Engine **out, const char **info_json, PcError *err) {
  CudaEngine *c = engine_new(o);
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
