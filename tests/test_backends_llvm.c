/* The LLVM backend against the reference interpreter: for each model
 * (GPT-2, and Pythia and LLaMA when their scripts are present) with K = 0
 * and K = 3 pondering, every entry — train (the loss and every gradient),
 * eval, logits, and decode with KV caches (a prefill, then single tokens) —
 * must agree within 1e-4 of each output's largest magnitude, through the
 * in-process JIT (ponder --jit) and, for one model, through a shared
 * library built as `pondercc -o` builds it. Also: the optimised code has
 * its hot loops vectorized, and a library made for another ABI version is
 * refused with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/llvm/llvm_backend.h"
#include "runtime/cli/decoder.h"
#include "runtime/cli/model_load.h"
#include "tests/check.h"

#define MAX_OUT 512

/* worst |a - b| / max|a| over the outputs of one entry, matched by name */
static double compare(const NamedTensor *a, size_t na, const NamedTensor *b, size_t nb, const char **worst_name) {
  double worst = 0;
  for (size_t i = 0; i < na; i++) {
    const Tensor *x = a[i].tensor, *y = NULL;
    for (size_t j = 0; j < nb; j++)
      if (!strcmp(b[j].name, a[i].name)) y = b[j].tensor;
    if (!y || !tensor_same_shape(x, y)) {
      *worst_name = a[i].name;
      return INFINITY;
    }
    double scale = 0;
    for (int64_t e = 0; e < tensor_numel(x); e++) scale = fmax(scale, fabs(tensor_f32(x)[e]));
    for (int64_t e = 0; e < tensor_numel(x); e++) {
      double d = fabs(tensor_f32(x)[e] - tensor_f32(y)[e]) / (scale > 0 ? scale : 1);
      if (!(d <= worst)) {
        worst = d;
        *worst_name = a[i].name;
      }
    }
  }
  return worst;
}

static void free_outputs(NamedTensor *o, size_t n) {
  for (size_t i = 0; i < n; i++) tensor_free(o[i].tensor);
}

/* Every entry of got against ref, on the same inputs and parameters. */
static void compare_models(const char *label, const char *how, LoadedModel *ref, LoadedModel *got) {
  PcError err;
  int64_t shape[2] = {2, 16};
  Tensor *ids = tensor_new(PC_I32, 2, shape), *tg = tensor_new(PC_I32, 2, shape);
  for (int i = 0; i < 32; i++) {
    tensor_i32(ids)[i] = (i * 37 + 5) % (int32_t)ref->vocab;
    tensor_i32(tg)[i] = i % 16 == 15 ? -1 : (i * 11 + 3) % (int32_t)ref->vocab;
  }
  NamedTensor in[2] = {{"ids", ids}, {"targets", tg}};
  printf("%-36s %s:", label, how);
  for (EntryKind k = ENTRY_TRAIN; k <= ENTRY_LOGITS; k++) {
    NamedTensor *a = calloc(MAX_OUT, sizeof *a), *b = calloc(MAX_OUT, sizeof *b);
    size_t na = 0, nb = 0;
    const char *worst_name = "";
    if (ref->engine->run(ref->engine, k, &ref->params, in, 2, a, MAX_OUT, &na, &err) < 0 ||
        got->engine->run(got->engine, k, &got->params, in, 2, b, MAX_OUT, &nb, &err) < 0) {
      CHECKF(0, "%s: %s: %s", label, entry_name(k), err.msg);
    } else {
      double worst = compare(a, na, b, nb, &worst_name);
      CHECKF(na == nb && worst <= 1e-4, "%s (%s): %s: %s differs by %g", label, how, entry_name(k), worst_name, worst);
      printf(" %s %.1e (%zu outputs)", entry_name(k), worst, na);
    }
    free_outputs(a, na);
    free_outputs(b, nb);
    free(a);
    free(b);
  }
  /* decode: a prompt of 5, then 3 tokens one at a time */
  Decoder da, db;
  if (decoder_open(&da, ref, 1, &err) < 0) {
    CHECKF(0, "%s: decode: %s", label, err.msg);
  } else if (decoder_open(&db, got, 1, &err) < 0) {
    CHECKF(0, "%s: decode: %s", label, err.msg);
    decoder_close(&da);
  } else {
    float *ra = malloc(sizeof(float) * (size_t)ref->vocab), *rb = malloc(sizeof(float) * (size_t)ref->vocab);
    uint32_t toks[8] = {1, 7, 3, 9, 4, 2, 8, 5};
    double worst = 0;
    for (size_t n = 5; n <= 8; n++) {
      if (decoder_next(&da, toks, n, ra, &err) < 0 || decoder_next(&db, toks, n, rb, &err) < 0) {
        CHECKF(0, "%s: decode: %s", label, err.msg);
        break;
      }
      double scale = 0;
      for (int64_t v = 0; v < ref->vocab; v++) scale = fmax(scale, fabs(ra[v]));
      for (int64_t v = 0; v < ref->vocab; v++) worst = fmax(worst, fabs(ra[v] - rb[v]) / scale);
    }
    CHECKF(worst <= 1e-4, "%s (%s): decode differs by %g", label, how, worst);
    printf(" decode %.1e\n", worst);
    free(ra);
    free(rb);
    decoder_close(&da);
    decoder_close(&db);
  }
  tensor_free(ids);
  tensor_free(tg);
}

static int run_cmd(const char *const *argv) {
  pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int status;
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The model through the JIT (and, with aot, through a library built from
 * the same module) against the interpreter. */
static void check_model(const char *label, const char *script, const char *config, const char *const *sets, size_t n_sets,
                        int aot) {
  if (access(script, R_OK) != 0) {
    printf("SKIP %s: %s is not here\n", label, script);
    return;
  }
  char buf[8][64];
  ModelOpts base = {.script = script, .config = config, .seed = 3, .max_batch = 2, .max_seq = 16};
  for (size_t i = 0; i < n_sets; i++) {
    snprintf(buf[i], sizeof buf[i], "%s", sets[i]);
    vec_push(&base.sets, buf[i]);
  }
  ModelOpts jit = base;
  jit.backend = "llvm";
  PcError err;
  LoadedModel ref, got;
  if (model_load(&base, &ref, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    vec_free(&base.sets);
    return;
  }
  if (model_load(&jit, &got, &err) < 0) {
    CHECKF(0, "%s: jit: %s", label, err.msg);
  } else {
    compare_models(label, "jit", &ref, &got);
    model_unload(&got);
  }
  if (aot) { /* as pondercc -o builds it, loaded as ponder --model model.so loads it */
    PcModuleOptions mo = {.entries = PC_ENTRY_ALL, .max_batch = 2, .max_seq = 16, .schedule = kschedule_default()};
    PcModule mod;
    char dir[] = "/tmp/test_llvm-XXXXXX", so[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(so, sizeof so, "%s/model.so", dir);
    LlvmStats st;
    if (pc_module_build(&base, &mo, &mod, &err) < 0 || llvm_build_shared(&mod, so, &st, &err) < 0) {
      CHECKF(0, "%s: aot: %s", label, err.msg);
    } else {
      ModelOpts lib = {.script = so, .seed = 3};
      if (model_load(&lib, &got, &err) < 0) {
        CHECKF(0, "%s: aot: %s", label, err.msg);
      } else {
        compare_models(label, "aot .so", &ref, &got);
        model_unload(&got);
      }
    }
    pc_module_free(&mod);
    unlink(so);
    rmdir(dir);
  }
  model_unload(&ref);
  vec_free(&base.sets);
}

/* The hot loops of GPT-2 (layernorm rows, softmax rows, elementwise
 * groups with GELU) vectorize: LLVM reports no loop it was asked to
 * vectorize and could not, and the reductions are vector ones. */
static void check_vectorized(void) {
  ModelOpts o = {.script = "models/gpt2.lua", .config = "tiny"};
  char set0[] = "ponderinglm=true", set1[] = "pondering_steps=3"; /* written to while parsed */
  vec_push(&o.sets, set0);
  vec_push(&o.sets, set1);
  PcModuleOptions mo = {.entries = PC_ENTRY_ALL, .max_batch = 8, .max_seq = 64, .schedule = kschedule_default()};
  PcModule mod;
  PcError err;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (pc_module_build(&o, &mo, &mod, &err) < 0 || llvm_print(&mod, 1, f, &err) < 0) CHECKF(0, "vectorization: %s", err.msg);
  fclose(f);
  const char *tail = text ? strstr(text, "; ") : NULL;
  while (tail && strstr(tail + 1, "\n; ")) tail = strstr(tail + 1, "\n; ") + 1;
  printf("gpt2 tiny, K = 3, optimised: %s", tail ? tail : "(nothing)\n");
  CHECK_STR_CONTAINS(text ? text : "", "of them not vectorized");
  CHECKF(tail && strstr(tail, " 0 of them not vectorized"), "a loop marked for vectorization was not vectorized: %s",
         tail ? tail : "");
  CHECK_STR_CONTAINS(text ? text : "", "fadd reassoc <8 x float>"); /* sums: mean, variance, softmax denominators */
  CHECK_STR_CONTAINS(text ? text : "", "@llvm.maxnum.v8f32");       /* softmax row maxima */
  pc_module_free(&mod);
  free(text);
  vec_free(&o.sets);
}

/* A library for another ABI version is refused, with a message. */
static void check_bad_abi(void) {
  char dir[] = "/tmp/test_llvm-XXXXXX", c[64], so[64];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(c, sizeof c, "%s/old.c", dir);
  snprintf(so, sizeof so, "%s/old.so", dir);
  FILE *f = fopen(c, "w");
  fprintf(f, "int ponder_abi_version(void) { return %d; }\n"
             "const char *ponder_model_info(void) { return \"{}\"; }\n"
             "int ponder_run(int e, const void *c) { (void)e; (void)c; return -1; }\n",
          PONDER_ABI_VERSION + 41);
  fclose(f);
  const char *cc[] = {"cc", "-shared", "-fPIC", "-o", so, c, NULL};
  if (run_cmd(cc) != 0) {
    CHECKF(0, "cannot build %s", so);
  } else {
    ModelOpts o = {.script = so};
    LoadedModel m;
    PcError err;
    char want[64];
    snprintf(want, sizeof want, "model ABI version %d", PONDER_ABI_VERSION + 41);
    CHECK(model_load(&o, &m, &err) < 0);
    CHECK_STR_CONTAINS(err.msg, want);
    CHECK_STR_CONTAINS(err.msg, "compile it again");
    printf("a library for another ABI: %s\n", err.msg);
  }
  unlink(so);
  unlink(c);
  rmdir(dir);
}

int main(void) {
  const char *k0[] = {"initializer_range=0.2"};
  const char *k3[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};
  const char *k3top[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "ponder_topk=5",
                         "ponder_accumulate=false"};
  check_model("gpt2 tiny, K = 0", "models/gpt2.lua", "tiny", k0, 1, 0);
  check_model("gpt2 tiny, K = 3", "models/gpt2.lua", "tiny", k3, 4, 1);
  check_model("gpt2 tiny, K = 3, top-5, latest only", "models/gpt2.lua", "tiny", k3top, 5, 0);
  const char *pk0[] = {"ponderinglm=false"};
  const char *pk3[] = {"ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};
  check_model("pythia tiny, K = 0", "models/pythia.lua", "tiny", pk0, 1, 0);
  check_model("pythia tiny, K = 3", "models/pythia.lua", "tiny", pk3, 3, 0);
  check_model("llama tiny, K = 0", "models/llama.lua", "tiny", pk0, 1, 0);
  check_model("llama tiny, K = 3", "models/llama.lua", "tiny", pk3, 3, 0);
  check_vectorized();
  check_bad_abi();
  return check_exit();
}
