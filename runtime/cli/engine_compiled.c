/* The compiled engine: a model compiled to native code, reached through the
 * three functions of the model ABI (runtime/include/ponder_abi.h), from a
 * shared library or from a JIT. Its model info (JSON) says, per entry, the
 * inputs, outputs, symbolic dims and arena size. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime/cli/engine.h"
#include "runtime/cli/engine_compiled.h"
#include "runtime/include/ponder_abi.h"

typedef struct {
  int index; /* position in the module, -1 when absent */
  EngineIO *in, *out;
  size_t n_in, n_out;
  char dim_name[4][16];
  int64_t dim_max[4];
  size_t n_dims;
  uint64_t arena_bytes;
} Entry;

typedef struct {
  Engine base;
  void *dl;
  void *owner; /* the JIT, or NULL */
  void (*owner_free)(void *);
  PonderRunFn run;
  EngineRunner runner; /* instead of run: a device engine with its own memory */
  void *runner_ctx;
  char *info;
  Entry entry[ENTRY_COUNT];
  void *arena;
} Compiled;

static int parse_io(const cJSON *list, const Entry *e, EngineIO **out, size_t *n, PcError *err) {
  *n = (size_t)cJSON_GetArraySize(list);
  *out = pc_xcalloc(*n + 1, sizeof(EngineIO));
  size_t i = 0;
  const cJSON *x;
  cJSON_ArrayForEach(x, list) {
    EngineIO *io = &(*out)[i++];
    const cJSON *name = cJSON_GetObjectItem(x, "name"), *dt = cJSON_GetObjectItem(x, "dtype"),
                *shape = cJSON_GetObjectItem(x, "shape"), *d;
    if (!cJSON_IsString(name) || !cJSON_IsString(dt) || !cJSON_IsArray(shape))
      return pc_errorf(err, "model info: a malformed input or output");
    snprintf(io->name, sizeof io->name, "%s", name->valuestring);
    int t = pc_dtype_from_name(dt->valuestring, strlen(dt->valuestring));
    if (t < 0) return pc_errorf(err, "model info: unknown dtype %s", dt->valuestring);
    io->dtype = (PcDType)t;
    cJSON_ArrayForEach(d, shape) {
      if (io->rank == PC_MAX_RANK) return pc_errorf(err, "model info: rank too large");
      int64_t v = -1;
      if (cJSON_IsNumber(d)) v = (int64_t)d->valuedouble;
      else
        for (size_t k = 0; k < e->n_dims; k++)
          if (cJSON_IsString(d) && !strcmp(d->valuestring, e->dim_name[k])) v = -1 - (int64_t)k;
      io->dim[io->rank++] = v;
    }
  }
  return 0;
}

static int parse_info(Compiled *c, PcError *err) {
  cJSON *root = cJSON_Parse(c->info), *entries = cJSON_GetObjectItem(root, "entries"), *x;
  int rc = cJSON_IsArray(entries) ? 0 : pc_errorf(err, "the model info has no entries");
  for (int k = 0; k < ENTRY_COUNT; k++) c->entry[k].index = -1;
  int index = 0;
  cJSON_ArrayForEach(x, entries) {
    if (rc) break;
    const cJSON *name = cJSON_GetObjectItem(x, "name");
    int k = 0;
    while (k < ENTRY_COUNT && (!cJSON_IsString(name) || strcmp(entry_name((EntryKind)k), name->valuestring))) k++;
    if (k == ENTRY_COUNT) {
      index++;
      continue;
    }
    Entry *e = &c->entry[k];
    e->index = index++;
    e->arena_bytes = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(x, "arena_bytes"));
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(x, "dims")) {
      if (e->n_dims == 4) break;
      snprintf(e->dim_name[e->n_dims], sizeof e->dim_name[0], "%s", cJSON_GetStringValue(cJSON_GetObjectItem(d, "name")));
      e->dim_max[e->n_dims++] = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "max"));
    }
    rc = parse_io(cJSON_GetObjectItem(x, "inputs"), e, &e->in, &e->n_in, err);
    if (!rc) rc = parse_io(cJSON_GetObjectItem(x, "outputs"), e, &e->out, &e->n_out, err);
  }
  cJSON_Delete(root);
  return rc;
}

static int run_keeping(Engine *eng, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
                       size_t max_out, size_t *n_out, const unsigned char *keep, PcError *err) {
  Compiled *c = (Compiled *)eng;
  Entry *e = &c->entry[k];
  *n_out = 0;
  if (e->index < 0) return pc_errorf(err, "the compiled model has no %s entry", entry_name(k));
  int64_t dims[4] = {-1, -1, -1, -1};
  void **inputs = pc_xcalloc(e->n_in + 1, sizeof *inputs);
  int rc = 0;
  for (size_t i = 0; !rc && i < e->n_in; i++) { /* match inputs by name; bind the dims */
    const EngineIO *io = &e->in[i];
    size_t j = 0;
    while (j < n_in && strcmp(in[j].name, io->name)) j++;
    if (j == n_in) {
      rc = pc_errorf(err, "%s: input '%s' was not given", entry_name(k), io->name);
      break;
    }
    const Tensor *t = in[j].tensor;
    int ok = t->dtype == io->dtype && t->rank == io->rank;
    for (int d = 0; ok && d < t->rank; d++) {
      if (io->dim[d] >= 0) {
        ok = t->dim[d] == io->dim[d];
        continue;
      }
      int64_t *bound = &dims[-1 - io->dim[d]];
      if (*bound < 0) *bound = t->dim[d];
      ok = *bound == t->dim[d];
    }
    if (!ok) rc = pc_errorf(err, "%s: input '%s' has the wrong dtype or shape", entry_name(k), io->name);
    inputs[i] = t->data;
  }
  for (size_t d = 0; !rc && d < e->n_dims; d++)
    if (dims[d] > e->dim_max[d])
      rc = pc_errorf(err, "%s: %s = %lld but the model was compiled for at most %lld (pondercc --max-%s)", entry_name(k),
                     e->dim_name[d], (long long)dims[d], (long long)e->dim_max[d], d == 0 ? "batch" : "seq");
  if (!rc && e->n_out > max_out) rc = pc_errorf(err, "%s: %zu outputs do not fit", entry_name(k), e->n_out);
  void **outputs = pc_xcalloc(e->n_out + 1, sizeof *outputs);
  for (size_t i = 0; !rc && i < e->n_out; i++) {
    const EngineIO *io = &e->out[i];
    if (keep && keep[i]) { /* it stays on the device */
      out[i] = (NamedTensor){.name = io->name};
      *n_out = i + 1;
      continue;
    }
    int64_t dim[PC_MAX_RANK];
    for (int d = 0; d < io->rank; d++) dim[d] = io->dim[d] >= 0 ? io->dim[d] : dims[-1 - io->dim[d]];
    if (!out[i].tensor && !(out[i].tensor = tensor_new(io->dtype, io->rank, dim)))
      rc = pc_errorf(err, "out of memory for output %s", io->name);
    if (!rc) {
      out[i].name = io->name;
      outputs[i] = out[i].tensor->data;
      *n_out = i + 1;
    }
  }
  if (!rc) {
    float **params = pc_xcalloc(p->spec.n + 1, sizeof *params);
    for (size_t i = 0; i < p->spec.n; i++) params[i] = tensor_f32(p->value[i]);
    PonderCall call = {params, inputs, outputs, c->arena, dims};
    if (c->runner) {
      size_t *in_bytes = pc_xcalloc(e->n_in + e->n_out + 1, sizeof *in_bytes), *out_bytes = in_bytes + e->n_in;
      for (size_t i = 0; i < e->n_in; i++)
        for (size_t j = 0; j < n_in; j++)
          if (!strcmp(in[j].name, e->in[i].name)) in_bytes[i] = tensor_bytes(in[j].tensor);
      for (size_t i = 0; i < e->n_out; i++) out_bytes[i] = out[i].tensor ? tensor_bytes(out[i].tensor) : 0;
      rc = c->runner(c->runner_ctx, e->index, p, &call, in_bytes, out_bytes, err);
      free(in_bytes);
    } else if (c->run(e->index, &call) != 0) {
      rc = pc_errorf(err, "the compiled model refused entry %s", entry_name(k));
    }
    free(params);
  }
  free(inputs);
  free(outputs);
  return rc;
}

static int run(Engine *eng, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
               size_t max_out, size_t *n_out, PcError *err) {
  return run_keeping(eng, k, p, in, n_in, out, max_out, n_out, NULL, err);
}

int engine_run_keeping(Engine *e, EntryKind k, const Params *p, const NamedTensor *in, size_t n_in, NamedTensor *out,
                       size_t max_out, size_t *n_out, const unsigned char *keep, PcError *err) {
  if (!((Compiled *)e)->runner) PC_BUG("engine_run_keeping: not a device engine");
  return run_keeping(e, k, p, in, n_in, out, max_out, n_out, keep, err);
}

void *engine_runner_ctx(Engine *e) {
  if (!((Compiled *)e)->runner) PC_BUG("engine_runner_ctx: not a device engine");
  return ((Compiled *)e)->runner_ctx;
}

static const EngineIO *inputs(Engine *eng, EntryKind k, size_t *n, PcError *err) {
  Compiled *c = (Compiled *)eng;
  if (c->entry[k].index < 0) {
    pc_errorf(err, "the compiled model has no %s entry", entry_name(k));
    return NULL;
  }
  *n = c->entry[k].n_in;
  return c->entry[k].in;
}

static void engine_free(Engine *eng) {
  Compiled *c = (Compiled *)eng;
  for (int k = 0; k < ENTRY_COUNT; k++) {
    free(c->entry[k].in);
    free(c->entry[k].out);
  }
  free(c->arena);
  free(c->info);
  if (c->dl) dlclose(c->dl);
  if (c->owner_free) c->owner_free(c->owner);
  free(c);
}

int engine_from_functions(const char *what, PonderAbiVersionFn version, PonderModelInfoFn info, PonderRunFn runfn,
                          void *owner, void (*owner_free)(void *), Engine **out, const char **info_json, PcError *err) {
  *out = NULL;
  if (version() != PONDER_ABI_VERSION)
    return pc_errorf(err, "%s was compiled for model ABI version %d, but this runtime has version %d: compile it again",
                     what, version(), PONDER_ABI_VERSION);
  Compiled *c = pc_xcalloc(1, sizeof *c);
  c->base = (Engine){"compiled", run, inputs, engine_free, NULL};
  c->run = runfn;
  c->info = pc_xstrdup(info());
  c->owner = owner;
  c->owner_free = owner_free;
  if (parse_info(c, err) < 0) {
    pc_error_prefix(err, "%s", what);
    c->owner_free = NULL; /* the caller still owns it */
    engine_free(&c->base);
    return -1;
  }
  uint64_t arena = 64;
  for (int k = 0; k < ENTRY_COUNT; k++)
    if (c->entry[k].arena_bytes > arena) arena = c->entry[k].arena_bytes;
  c->arena = aligned_alloc(64, (arena + 63) & ~(uint64_t)63);
  if (!c->arena) {
    c->owner_free = NULL;
    engine_free(&c->base);
    return pc_errorf(err, "%s: out of memory for an arena of %llu bytes", what, (unsigned long long)arena);
  }
  *out = &c->base;
  *info_json = c->info;
  return 0;
}

int engine_from_runner(const char *what, const char *info_json, EngineRunner runner, void *ctx, void (*ctx_free)(void *),
                       Engine **out, const char **info_out, PcError *err) {
  *out = NULL;
  Compiled *c = pc_xcalloc(1, sizeof *c);
  c->base = (Engine){what, run, inputs, engine_free, NULL};
  c->runner = runner;
  c->runner_ctx = ctx;
  c->info = pc_xstrdup(info_json);
  if (parse_info(c, err) < 0) { /* the caller still owns ctx */
    pc_error_prefix(err, "%s", what);
    engine_free(&c->base);
    return -1;
  }
  c->owner = ctx;
  c->owner_free = ctx_free;
  *out = &c->base;
  *info_out = c->info;
  return 0;
}

int engine_open_library(const char *path, Engine **out, const char **info_json, PcError *err) {
  *out = NULL;
  /* RTLD_NODELETE: the library (and libgomp under it) stays mapped after
   * dlclose, because OpenMP's worker threads outlive the model. libgomp
   * reads its settings as it loads, which is here: without a passive wait
   * its idle threads spin against OpenBLAS's (5-10x slower steps on 2 cores,
   * docs/llvm-backend.md); the user's setting wins. */
  setenv("OMP_WAIT_POLICY", "passive", 0);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!dl) return pc_errorf(err, "%s: cannot load: %s", path, dlerror());
  PonderAbiVersionFn version = (PonderAbiVersionFn)dlsym(dl, "ponder_abi_version");
  PonderModelInfoFn info = (PonderModelInfoFn)dlsym(dl, "ponder_model_info");
  PonderRunFn runfn = (PonderRunFn)dlsym(dl, "ponder_run");
  if (!version || !info || !runfn) {
    dlclose(dl);
    return pc_errorf(err, "%s: not a model compiled by pondercc (no ponder_abi_version/ponder_model_info/ponder_run)", path);
  }
  if (dlsym(dl, "ponder_cuda_image")) { /* pondercc --target cuda */
    dlclose(dl);
    return pc_errorf(err, "%s holds CUDA code: run it with --device cuda", path);
  }
  if (engine_from_functions(path, version, info, runfn, NULL, NULL, out, info_json, err) < 0) {
    dlclose(dl);
    return -1;
  }
  ((Compiled *)*out)->dl = dl;
  return 0;
}
