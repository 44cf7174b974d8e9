/* The CUDA backend against the reference interpreter: every model of the
 * backend-equivalence suite (GPT-2, Pythia, LLaMA tiny, K = 0 and K = 3),
 * every entry (train: the loss and every gradient; eval; logits; cached
 * decode), within 1e-4 of each output's largest magnitude, compiled
 * in-process (--device cuda) and, for one model, through a library made by
 * pondercc --target cuda (with column sums over chunks of 5 rows).
 *
 *   test_cuda_backend emu   the generated CUDA C on the CPU emulator (every CI
 *                           run; skips without a C++ compiler), with blocks
 *                           and threads in order, then in reverse order
 *   test_cuda_backend gpu   on the first GPU (skips without a driver or GPU) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cuda/cuda_lib.h"
#include "runtime/cuda/cuda_runtime.h"
#include "tests/backend_equiv.h"
#include "tests/check.h"

static int have_cxx(void) {
  const char *cxx = getenv("CXX");
  char cmd[256];
  snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", cxx && *cxx ? cxx : "c++");
  return system(cmd) == 0;
}

/* The model as ponder --device cuda loads it, and (lib) as a library made
 * by pondercc --target cuda, against the interpreter. */
static void check_case(const EquivCase *k, const char *how, int lib) {
  ModelOpts o;
  char buf[8][64];
  if (equiv_opts(k, &o, buf) < 0) return;
  o.backend = "interp"; /* the reference */
  PcError err;
  LoadedModel ref, got;
  if (model_load(&o, &ref, &err) < 0) {
    CHECKF(0, "%s: %s", k->label, err.msg);
    vec_free(&o.sets);
    return;
  }
  ModelOpts cu = o;
  cu.device = "cuda";
  if (model_load(&cu, &got, &err) < 0) {
    CHECKF(0, "%s: %s: %s", k->label, how, err.msg);
  } else {
    equiv_models(k->label, how, &ref, &got);
    model_unload(&got);
  }
  if (lib) {
    PcModuleOptions mo = {.entries = PC_ENTRY_ALL, .max_batch = 2, .max_seq = 16, .schedule = kschedule_cuda()};
    mo.schedule.colsum_rows = 5; /* the suite's 32 rows in 7 chunks, the last one short (the default's 64 make one) */
    PcModule mod;
    char dir[] = "/tmp/test_cuda-XXXXXX", so[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(so, sizeof so, "%s/model.so", dir);
    int archs[] = {80, 90};
    CudaLibStats st;
    if (pc_module_build(&o, &mo, &mod, &err) < 0) {
      CHECKF(0, "%s: %s", k->label, err.msg);
    } else if (cuda_build_shared(&mod, archs, 2, so, &st, &err) < 0) {
      if (strstr(err.msg, "NVRTC") && strstr(err.msg, "not found")) printf("SKIP the --target cuda library: %s\n", err.msg);
      else CHECKF(0, "%s: --target cuda: %s", k->label, err.msg);
    } else {
      ModelOpts lo = {.script = so, .seed = 3, .device = "cuda"};
      if (model_load(&lo, &got, &err) < 0) {
        CHECKF(0, "%s: --target cuda library: %s", k->label, err.msg);
      } else {
        char what[64];
        snprintf(what, sizeof what, "%s, .so", how);
        equiv_models(k->label, what, &ref, &got);
        model_unload(&got);
      }
    }
    pc_module_free(&mod);
    unlink(so);
    rmdir(dir);
  }
  model_unload(&ref);
  vec_free(&o.sets);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "emu";
  PcError err;
  if (!strcmp(mode, "emu")) {
    if (!have_cxx()) {
      printf("SKIP: no C++ compiler ($CXX or c++) to build the emulated kernels\n");
      return 77;
    }
    setenv("PONDER_CUDA_EMULATE", "1", 1);
  } else if (!strcmp(mode, "gpu")) {
    CudaDevice *d;
    if (cuda_driver_open(&d, &err) < 0) {
      printf("SKIP: %s\n", err.msg);
      return 77;
    }
    printf("GPU: %s (sm_%d)\n", d->name, d->arch);
    d->free(d);
    unsetenv("PONDER_CUDA_EMULATE");
  } else {
    fprintf(stderr, "usage: test_cuda_backend emu|gpu\n");
    return 2;
  }
  size_t n;
  const EquivCase *cases = equiv_cases(&n);
  for (size_t i = 0; i < n; i++) check_case(&cases[i], mode, i == 1);
  if (!strcmp(mode, "emu")) { /* a missing barrier or a race between blocks gives another answer in another order */
    setenv("PONDER_CUDA_EMULATE", "reverse", 1);
    for (size_t i = 0; i < n; i++) check_case(&cases[i], "emu, reverse order", 0);
  }
  return check_exit();
}
