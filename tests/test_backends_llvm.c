/* The LLVM backend against the reference interpreter: for each model
 * (GPT-2, and Pythia and LLaMA when their scripts are present) with K = 0
 * and K = 3 pondering, every entry — train (the loss and every gradient),
 * eval, logits, and decode with KV caches (a prefill, then single tokens) —
 * must agree within 1e-4 of each output's largest magnitude, through the
 * in-process JIT (ponder --jit) and, for one model, through a shared
 * library built as `pondercc -o` builds it. Also: the optimised code has
 * its hot loops vectorized, and a library made for another ABI version is
 * refused with a message. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/llvm/llvm_backend.h"
#include "tests/backend_equiv.h"
#include "tests/check.h"

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
static void check_model(const EquivCase *c, int aot) {
  const char *label = c->label;
  char buf[8][64];
  ModelOpts base;
  if (equiv_opts(c, &base, buf) < 0) return;
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
    equiv_models(label, "jit", &ref, &got);
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
        equiv_models(label, "aot .so", &ref, &got);
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
  size_t n;
  const EquivCase *cases = equiv_cases(&n);
  for (size_t i = 0; i < n; i++) check_model(&cases[i], i == 1); /* GPT-2 K = 3 also as a library */
  check_vectorized();
  check_bad_abi();
  return check_exit();
}
