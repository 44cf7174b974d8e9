#include "runtime/cli/model_load.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backends/c/c_render.h"
#include "backends/llvm/llvm_backend.h"
#include "compiler/module.h"
#include "compiler/params_from_graph.h"
#include "runtime/cli/engine_compiled.h"
#include "runtime/cli/engine_cuda.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"
#include "runtime/base/file.h"

/* The parameter table, name and hyperparameters from a compiled model's info. */
static int from_info(LoadedModel *m, const char *info, PcError *err) {
  cJSON *root = cJSON_Parse(info), *x;
  if (!root) return pc_errorf(err, "the compiled model's info is not JSON");
  int rc = 0;
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(root, "params")) {
    ParamSpec s = {.name = cJSON_GetStringValue(cJSON_GetObjectItem(x, "name"))};
    const cJSON *d, *layout = cJSON_GetObjectItem(x, "layout");
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(x, "shape")) if (s.rank < PC_MAX_RANK) s.dim[s.rank++] = (int64_t)d->valuedouble;
    const char *init = cJSON_GetStringValue(cJSON_GetObjectItem(x, "init"));
    if (!s.name || !init || params_init_kind(init, &s.init) < 0) {
      rc = pc_errorf(err, "the compiled model's parameter table is malformed");
      break;
    }
    s.std = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "std"));
    s.hf_layout = cJSON_IsString(layout) ? layout->valuestring : NULL;
    s.embedding = cJSON_IsTrue(cJSON_GetObjectItem(x, "embedding"));
    if ((rc = params_add(&m->params, &s, err)) < 0) break;
  }
  const cJSON *hp = cJSON_GetObjectItem(root, "hparams");
  m->name = pc_xstrdup(cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")) ? cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")) : "?");
  m->hparams_json = hp ? cJSON_Print(hp) : pc_xstrdup("{}");
  m->vocab = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(hp, "vocab_size"));
  m->context = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(root, "context"));
  cJSON_Delete(root);
  return rc;
}

/* The table, name and hyperparameters as the compiled model has them, in
 * place of those the front end gave. */
static int replace_with_info(LoadedModel *m, const char *info, PcError *err) {
  params_free(&m->params);
  free(m->name);
  free(m->hparams_json);
  m->name = m->hparams_json = NULL;
  return from_info(m, info, err);
}

/* What a compiled backend plans for: the entries, the largest batch and
 * sequence (the context unless --max-seq); who names the backend in errors. */
static int plan_options(const ModelOpts *o, const LoadedModel *m, const char *who, PcModuleOptions *mo, PcError *err) {
  *mo = (PcModuleOptions){.entries = o->entries ? o->entries : PC_ENTRY_ALL, .max_batch = o->max_batch ? o->max_batch : 8,
                          .max_seq = o->max_seq ? o->max_seq : m->context, .schedule = kschedule_default()};
  if (mo->max_seq <= 0) return pc_errorf(err, "%s needs --max-seq (the script names no context length)", who);
  return 0;
}

/* Compiles the script with the C backend into a temporary library and loads it. */
static int jit_c(const ModelOpts *o, LoadedModel *m, PcError *err) {
  PcModuleOptions mo;
  if (plan_options(o, m, "the C backend", &mo, err) < 0) return -1;
  PcModule mod;
  if (pc_module_build(o, &mo, &mod, err) < 0) return -1;
  char dir[] = "/tmp/pondercc-XXXXXX", c_path[64], so_path[64];
  if (!mkdtemp(dir)) {
    pc_module_free(&mod);
    return pc_errorf(err, "cannot make a temporary folder");
  }
  snprintf(c_path, sizeof c_path, "%s/model.c", dir);
  snprintf(so_path, sizeof so_path, "%s/model.so", dir);
  FILE *f = fopen(c_path, "w");
  int rc = f ? c_render(&mod, f, err) : pc_errorf(err, "%s: cannot write", c_path);
  if (f && fclose(f)) rc = pc_errorf(err, "%s: cannot write", c_path);
  pc_module_free(&mod);
  if (!rc) rc = c_build_shared(c_path, so_path, err);
  const char *info;
  if (!rc) rc = engine_open_library(so_path, &m->engine, &info, err);
  if (getenv("PONDER_KEEP_JIT")) { /* for debugging generated code */
    fprintf(stderr, "ponder: kept %s and %s\n", c_path, so_path);
  } else {
    unlink(c_path);
    unlink(so_path); /* the mapping stays */
    rmdir(dir);
  }
  if (!rc) rc = replace_with_info(m, info, err);
  return rc;
}

/* Compiles the script with the LLVM backend in-process (ORC LLJIT); the JIT
 * is the engine's owner and goes with it. */
static int jit_llvm(const ModelOpts *o, LoadedModel *m, PcError *err) {
  PcModuleOptions mo;
  if (plan_options(o, m, "the LLVM backend", &mo, err) < 0) return -1;
  PcModule mod;
  if (pc_module_build(o, &mo, &mod, err) < 0) return -1;
  /* The code's parallel loops run on libgomp, which the JIT loads now and
   * which reads its settings as it loads. Its threads would otherwise spin
   * after every loop against OpenBLAS's threads (a step 5-10x slower on 2
   * cores: docs/llvm-backend.md); the user's setting wins. */
  setenv("OMP_WAIT_POLICY", "passive", 0);
  LlvmJit *jit;
  LlvmAbi abi;
  int rc = llvm_jit_open(&mod, &jit, &abi, NULL, err);
  pc_module_free(&mod);
  const char *info;
  if (!rc && engine_from_functions("the LLVM JIT", abi.version, abi.info, abi.run, jit, llvm_jit_free, &m->engine, &info, err) < 0) {
    llvm_jit_free(jit);
    rc = -1;
  }
  if (!rc) rc = replace_with_info(m, info, err);
  return rc;
}

/* --precision (bf16 unless named) and --profile, for the CUDA engine */
static CudaEngineOptions cuda_options_of(const ModelOpts *o) {
  CudaEngineOptions e = {.precision = CUDA_BF16, .profile = o->profile};
  if (o->precision && cuda_precision_from_name(o->precision, &e.precision) < 0) PC_BUG("--precision %s", o->precision);
  return e;
}

/* Compiles the script for the GPU (--device cuda): NVRTC in-process. */
static int jit_cuda(const ModelOpts *o, LoadedModel *m, PcError *err) {
  PcModuleOptions mo;
  if (plan_options(o, m, "--device cuda", &mo, err) < 0) return -1;
  mo.schedule = kschedule_cuda();
  PcModule mod;
  if (pc_module_build(o, &mo, &mod, err) < 0) return -1;
  const char *info;
  CudaEngineOptions eo = cuda_options_of(o);
  int rc = engine_cuda_from_module(&mod, &eo, &m->engine, &info, err);
  pc_module_free(&mod);
  if (!rc) rc = replace_with_info(m, info, err);
  return rc;
}

int model_load(const ModelOpts *o, LoadedModel *m, PcError *err) {
  *m = (LoadedModel){0};
  int rc;
  int cuda = o->device && !strcmp(o->device, "cuda");
  if (cuda && o->backend && strcmp(o->backend, "interp"))
    return pc_errorf(err, "--device cuda compiles with the CUDA backend: drop --backend %s", o->backend);
  if (!cuda && o->precision)
    return pc_errorf(err, "--precision %s is for --device cuda (on the CPU everything is fp32)", o->precision);
  if (!cuda && o->profile) return pc_errorf(err, "--profile is for --device cuda (it times the GPU's work)");
  if (pc_ends_with(o->script, ".so")) { /* a compiled library */
    const char *fixed = o->config ? "--config" : o->sets.n ? "--set (or --ponder)" : o->pipeline.no_fuse ? "--no-fuse"
                      : o->backend ? "--backend" : NULL;
    if (fixed) return pc_errorf(err, "%s: %s cannot change a compiled library (compile again with pondercc)", o->script, fixed);
    const char *info;
    CudaEngineOptions eo = cuda_options_of(o);
    rc = cuda ? engine_cuda_open_library(o->script, &eo, &m->engine, &info, err)
              : engine_open_library(o->script, &m->engine, &info, err);
    if (!rc) rc = from_info(m, info, err);
  } else {
    if (model_opts_open(o, &m->fe, err) < 0) return -1;
    rc = model_opts_compile(o, m->fe, &m->graph, err);
    if (!rc) rc = pc_params_from_graph(m->graph, &m->params, err);
    if (!rc) rc = fe_hparam_int(m->fe, "vocab_size", &m->vocab, err);
    if (!rc) {
      m->context = fe_context_length(m->fe);
      m->name = pc_xstrdup(fe_model_name(m->fe));
      m->hparams_json = fe_hparams_json(m->fe, err);
      if (!m->hparams_json) rc = -1;
    }
    /* the default: the LLVM JIT, or the interpreter when nothing bounds
     * the sequence length that the compiled code would be planned for */
    const char *backend = o->backend ? o->backend : o->max_seq || m->context > 0 ? "llvm" : "interp";
    if (!rc && cuda)
      rc = jit_cuda(o, m, err);
    else if (!rc && !strcmp(backend, "interp"))
      m->engine = engine_interp(m->fe, o, o->max_seq ? o->max_seq : m->context);
    else if (!rc && !strcmp(backend, "c"))
      rc = jit_c(o, m, err);
    else if (!rc && !strcmp(backend, "llvm"))
      rc = jit_llvm(o, m, err);
    else if (!rc)
      rc = pc_errorf(err, "backend %s is not available in this build", backend);
  }
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
  if (m->engine) m->engine->free(m->engine);
  params_free(&m->params);
  ir_graph_free(m->graph);
  fe_close(m->fe);
  free(m->name);
  free(m->hparams_json);
  *m = (LoadedModel){0};
}
