/* Every kernel the CUDA backend makes for the models of the equivalence
 * suite (GPT-2, Pythia and LLaMA tiny, K = 0 and K = 3, every entry), and
 * for the GPT-2 124M shape of the GPU benchmark (K = 3, 16 x 1024), compiles
 * with NVRTC to PTX for compute_80 and compute_90, and the PTX assembles
 * with ptxas for sm_80 and sm_90: no GPU needed. (Whole modules go through
 * NVRTC in test_cuda_backend, which builds a --target cuda library.) Skips (77) without NVRTC
 * or ptxas ($PONDER_NVRTC / $PONDER_PTXAS = none hide them). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "compiler/module.h"
#include "runtime/base/strmap.h"
#include "tests/backend_equiv.h"
#include "tests/check.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ptxas: $PONDER_PTXAS, else $CUDA_HOME/bin, /usr/local/cuda/bin, the PATH */
static const char *find_ptxas(char *buf, size_t n) {
  const char *env = getenv("PONDER_PTXAS");
  if (env && *env) return strcmp(env, "none") && access(env, X_OK) == 0 ? env : NULL;
  const char *homes[] = {getenv("CUDA_HOME"), "/usr/local/cuda"};
  for (size_t i = 0; i < 2; i++) {
    if (!homes[i]) continue;
    snprintf(buf, n, "%s/bin/ptxas", homes[i]);
    if (access(buf, X_OK) == 0) return buf;
  }
  return system("ptxas --version >/dev/null 2>&1") == 0 ? "ptxas" : NULL;
}

static int ptxas(const char *exe, const char *ptx_path, int arch) {
  char opt[32];
  snprintf(opt, sizeof opt, "-arch=sm_%d", arch);
  pid_t pid = fork();
  if (pid == 0) {
    execlp(exe, exe, opt, ptx_path, "-o", "/dev/null", (char *)NULL);
    _exit(127);
  }
  int status;
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The distinct kernels of every module, renamed kd0, kd1, ..., in one
 * source: kernels repeat between models (K = 0's are in K = 3's), and one
 * NVRTC call per architecture costs much less than one per module. */
typedef struct {
  char *prelude;
  VEC(char) src;
  StrMap seen;
  unsigned distinct, total;
} Combined;

static void append(Combined *c, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) vec_push(&c->src, s[i]);
}

static void add_module(Combined *c, const char *label, const ModelOpts *o, int64_t max_batch, int64_t max_seq) {
  PcModuleOptions mo = {.entries = PC_ENTRY_ALL, .max_batch = max_batch, .max_seq = max_seq, .schedule = kschedule_cuda()};
  PcModule m;
  PcError err;
  if (pc_module_build(o, &mo, &m, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    return;
  }
  CudaOptions co = cuda_options_default();
  CudaProgram cp;
  if (cuda_render(m.prog, &co, &cp, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    pc_module_free(&m);
    return;
  }
  /* kernels: `extern "C" __global__ void __launch_bounds__(N) kM(...) {` to the last "}" before the next */
  static const char head[] = "extern \"C\" __global__ void ";
  const char *first = strstr(cp.source, head), *end = strstr(cp.source, "\n#ifdef PONDER_CUDA_EMU");
  if (!c->prelude && first) c->prelude = strndup(cp.source, (size_t)(first - cp.source));
  unsigned before = c->distinct;
  for (const char *k = first; k && k < end;) {
    const char *next = strstr(k + 1, head), *stop = next && next < end ? next : end, *close = NULL;
    for (const char *p = k; (p = strstr(p, "\n}\n")) && p < stop; p++) close = p;
    const char *name = strstr(k, ") k"), *paren = name ? strchr(name + 2, '(') : NULL;
    CHECKF(close && paren && paren < close, "%s: a kernel without a body", label);
    if (!close || !paren || paren > close) break;
    size_t key_len = (size_t)(close + 3 - paren);
    uint32_t id;
    if (!strmap_get(&c->seen, paren, key_len, &id)) {
      strmap_put(&c->seen, paren, key_len, c->distinct);
      char renamed[64];
      int n = snprintf(renamed, sizeof renamed, ") kd%u", c->distinct++);
      append(c, "\n", 1);
      append(c, k, (size_t)(name - k));
      append(c, renamed, (size_t)n);
      append(c, paren, key_len);
    }
    c->total++;
    k = stop;
  }
  printf("%-36s %3u kernels (%u new), %4zu launches\n", label, cp.n_kernels, c->distinct - before, cp.launches.n);
  CHECKF(c->total > 0, "%s: no kernels", label);
  cuda_program_free(&cp);
  pc_module_free(&m);
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p++) n++;
  return n;
}

/* NVRTC and ptxas for one architecture */
static void compile(CudaNvrtc *nv, const char *ptxas_exe, const char *source, unsigned kernels, int arch, const char *dir) {
  char *ptx = NULL, path[128];
  CudaPtxInfo info;
  PcError err;
  if (cuda_nvrtc_ptx(nv, source, arch, 0, &ptx, &info, &err) < 0) {
    CHECKF(0, "compute_%d: %s", arch, err.msg);
    return;
  }
  CHECKF(count(ptx, ".entry ") == (int)kernels, "%d kernels in the PTX, %u in the source", count(ptx, ".entry "), kernels);
  snprintf(path, sizeof path, "%s/k.ptx", dir);
  FILE *f = fopen(path, "w");
  fputs(ptx, f);
  fclose(f);
  double t0 = now();
  int rc = ptxas(ptxas_exe, path, arch);
  CHECKF(rc == 0, "ptxas -arch=sm_%d failed (exit %d)", arch, rc);
  printf("sm_%d: NVRTC %.1f s (%.1f MiB of PTX), ptxas %.1f s%s\n", arch, info.seconds, strlen(ptx) / 1048576.0, now() - t0,
         rc ? " FAILED" : "");
  unlink(path);
  free(ptx);
}

int main(void) {
  CudaNvrtc *nv;
  PcError err;
  char buf[4200];
  if (cuda_nvrtc_open(&nv, &err) < 0) {
    printf("SKIP: %s\n", err.msg);
    return 77;
  }
  const char *exe = find_ptxas(buf, sizeof buf);
  if (!exe) {
    printf("SKIP: ptxas not found (the CUDA toolkit's bin folder; $PONDER_PTXAS)\n");
    cuda_nvrtc_close(nv);
    return 77;
  }
  int major, minor;
  cuda_nvrtc_version(nv, &major, &minor);
  printf("NVRTC %d.%d, %s\n", major, minor, exe);
  char dir[] = "/tmp/test_cuda_ptx-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  Combined c = {0};
  size_t n;
  const EquivCase *cases = equiv_cases(&n);
  for (size_t i = 0; i < n; i++) {
    ModelOpts o;
    char sets[8][64];
    if (equiv_opts(&cases[i], &o, sets) < 0) continue;
    add_module(&c, cases[i].label, &o, 2, 16);
    vec_free(&o.sets);
  }
  char s0[] = "ponderinglm=true", s1[] = "pondering_steps=3";
  ModelOpts big = {.script = "models/gpt2.lua"};
  vec_push(&big.sets, s0);
  vec_push(&big.sets, s1);
  add_module(&c, "gpt2 124M, K = 3, 16 x 1024", &big, 16, 1024);
  vec_free(&big.sets);
  printf("%u kernels, %u distinct\n", c.total, c.distinct);
  append(&c, "", 1);
  char *source = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&source, &len);
  fprintf(f, "%s\n%s", c.prelude ? c.prelude : "", c.src.a);
  fclose(f);
  compile(nv, exe, source, c.distinct, 80, dir);
  compile(nv, exe, source, c.distinct, 90, dir);
  free(source);
  free(c.prelude);
  vec_free(&c.src);
  strmap_free(&c.seen);
  rmdir(dir);
  cuda_nvrtc_close(nv);
  return check_exit();
}
