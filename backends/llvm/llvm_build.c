/* From a rendered module to code: the host's target machine, the new pass
 * manager's default<O3>, an object file in memory, then either a shared
 * library (cc -shared) or ORC LLJIT linking it into this process. */
#include "backends/llvm/llvm_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

/* What JIT-compiled code calls from OpenBLAS, taken from this process so
 * that the linker keeps the library. */
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc);

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int llvm_error(PcError *err, const char *what, LLVMErrorRef e) {
  char *msg = LLVMGetErrorMessage(e);
  int rc = pc_errorf(err, "llvm backend: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return rc;
}

static void init_native(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
}

int llvm_host_machine(LLVMTargetMachineRef *out, PcError *err) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_native);
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef target;
  int rc = 0;
  if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
    rc = pc_errorf(err, "llvm backend: no target for %s: %s", triple, msg ? msg : "?");
  } else {
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    *out = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                   LLVMCodeModelDefault);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    if (!*out) rc = pc_errorf(err, "llvm backend: cannot make a target machine for %s", triple);
  }
  LLVMDisposeMessage(msg);
  LLVMDisposeMessage(triple);
  return rc;
}

/* libmvec's variants for the host's vector ISAs (glibc's x86-64 vector
 * math: b = SSE4, c = AVX, d = AVX2, e = AVX-512); PONDER_LLVM_VECMATH=0
 * turns them off. A property of the machine, found once. */
static char vector_math[8];

/* "+name" in LLVM's comma-separated feature list */
static int has_feature(const char *features, const char *name) {
  size_t n = strlen(name);
  for (const char *p = features; (p = strstr(p, name)); p += n)
    if (p > features && p[-1] == '+' && (p[n] == ',' || !p[n])) return 1;
  return 0;
}

static void find_vector_math(void) {
  const char *off = getenv("PONDER_LLVM_VECMATH");
  char *triple = LLVMGetDefaultTargetTriple();
  void *mvec = strncmp(triple, "x86_64", 6) || (off && !strcmp(off, "0")) ? NULL : dlopen("libmvec.so.1", RTLD_LAZY | RTLD_LOCAL);
  LLVMDisposeMessage(triple);
  if (!mvec) return;
  dlclose(mvec);
  char *f = LLVMGetHostCPUFeatures();
  strcpy(vector_math, "b4");
  if (has_feature(f, "avx2")) strcat(vector_math, "d8");
  else if (has_feature(f, "avx")) strcat(vector_math, "c8");
  if (has_feature(f, "avx512f")) strcat(vector_math, "ex");
  LLVMDisposeMessage(f);
}

const char *llvm_vector_math(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, find_vector_math);
  return vector_math;
}

/* LLVM's diagnostics while optimising: the loops it was asked to vectorize
 * and could not are counted (warnings, which would otherwise be printed on
 * stderr); remarks are dropped; an error is kept for the message.
 * PONDER_LLVM_DIAG=1 prints them all. */
typedef struct {
  unsigned not_vectorized;
  char first_error[512];
} Diag;

static void on_diagnostic(LLVMDiagnosticInfoRef di, void *ctx) {
  Diag *d = ctx;
  char *text = LLVMGetDiagInfoDescription(di);
  LLVMDiagnosticSeverity sev = LLVMGetDiagInfoSeverity(di);
  if (sev == LLVMDSWarning && strstr(text, "loop not vectorized")) d->not_vectorized++;
  else if (sev == LLVMDSError && !d->first_error[0])
    snprintf(d->first_error, sizeof d->first_error, "%s", text);
  if (getenv("PONDER_LLVM_DIAG")) fprintf(stderr, "llvm: %s\n", text);
  LLVMDisposeMessage(text);
}

/* default<O3> for the target machine's CPU. */
static int optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, LlvmStats *st, PcError *err) {
  double t0 = seconds();
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  LLVMDiagnosticHandler old = LLVMContextGetDiagnosticHandler(ctx);
  void *old_ctx = LLVMContextGetDiagnosticContext(ctx);
  Diag d = {0};
  LLVMContextSetDiagnosticHandler(ctx, on_diagnostic, &d);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 1);
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  LLVMContextSetDiagnosticHandler(ctx, old, old_ctx);
  if (e) return llvm_error(err, "optimisation", e);
  if (d.first_error[0]) return pc_errorf(err, "llvm backend: optimisation: %s", d.first_error);
  st->not_vectorized += d.not_vectorized;
  st->optimize_s += seconds() - t0;
  return 0;
}

/* Rendered and optimised for the host; the module is the caller's. */
static int compile(const PcModule *m, LLVMContextRef ctx, int optimized, LLVMTargetMachineRef *tm, LLVMModuleRef *mod,
                   LlvmStats *st, PcError *err) {
  double t0 = seconds();
  *mod = NULL;
  if (llvm_host_machine(tm, err) < 0) return -1;
  if (llvm_render_for(m, ctx, *tm, llvm_vector_math(), mod, st, err) < 0) {
    LLVMDisposeTargetMachine(*tm);
    return -1;
  }
  st->render_s += seconds() - t0;
  if (optimized && optimize(*mod, *tm, st, err) < 0) {
    LLVMDisposeModule(*mod);
    LLVMDisposeTargetMachine(*tm);
    *mod = NULL;
    return -1;
  }
  return 0;
}

/* The object file of m, in memory. */
static int compile_object(const PcModule *m, LLVMMemoryBufferRef *obj, LlvmStats *st, PcError *err) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMTargetMachineRef tm;
  LLVMModuleRef mod;
  int rc = compile(m, ctx, 1, &tm, &mod, st, err);
  if (!rc) {
    double t0 = seconds();
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, obj))
      rc = pc_errorf(err, "llvm backend: code generation: %s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    st->codegen_s += seconds() - t0;
    LLVMDisposeModule(mod);
    LLVMDisposeTargetMachine(tm);
  }
  LLVMContextDispose(ctx);
  return rc;
}

int llvm_print(const PcModule *m, int optimized, FILE *f, PcError *err) {
  LlvmStats st = {0};
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMTargetMachineRef tm;
  LLVMModuleRef mod;
  int rc = compile(m, ctx, optimized, &tm, &mod, &st, err);
  if (!rc) {
    char *text = LLVMPrintModuleToString(mod);
    fputs(text, f);
    LLVMDisposeMessage(text);
    if (optimized)
      fprintf(f, "; %u kernels, %u loops marked for vectorization, %u of them not vectorized\n", st.kernels,
              st.vector_loops, st.not_vectorized);
    LLVMDisposeModule(mod);
    LLVMDisposeTargetMachine(tm);
    if (ferror(f)) rc = pc_errorf(err, "cannot write the LLVM IR");
  }
  LLVMContextDispose(ctx);
  return rc;
}

/* ---- AOT -------------------------------------------------------------------------- */

static int run_cc(const char *obj, const char *so_path, PcError *err) {
  const char *cc = getenv("CC");
  if (!cc || !*cc) cc = "cc";
  pid_t pid = fork();
  if (pid < 0) return pc_errorf(err, "cannot start %s: %s", cc, strerror(errno));
  if (pid == 0) {
    if (*llvm_vector_math()) execlp(cc, cc, "-shared", "-o", so_path, obj, "-lopenblas", "-lgomp", "-lmvec", "-lm", (char *)NULL);
    else execlp(cc, cc, "-shared", "-o", so_path, obj, "-lopenblas", "-lgomp", "-lm", (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return pc_errorf(err, "%s: %s", cc, strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return pc_errorf(err, "%s -shared failed on %s (exit %d)", cc, obj, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}

int llvm_build_shared(const PcModule *m, const char *so_path, LlvmStats *stats, PcError *err) {
  LlvmStats st = {0};
  LLVMMemoryBufferRef obj;
  if (compile_object(m, &obj, &st, err) < 0) return -1;
  double t0 = seconds();
  char obj_path[] = "/tmp/pondercc-XXXXXX.o";
  int fd = mkstemps(obj_path, 2), rc = 0;
  if (fd < 0) {
    rc = pc_errorf(err, "cannot make a temporary object file: %s", strerror(errno));
  } else {
    const char *p = LLVMGetBufferStart(obj);
    size_t left = LLVMGetBufferSize(obj);
    while (left && !rc) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) rc = pc_errorf(err, "%s: cannot write: %s", obj_path, strerror(errno));
      else p += w, left -= (size_t)w;
    }
    if (close(fd) && !rc) rc = pc_errorf(err, "%s: cannot write: %s", obj_path, strerror(errno));
    if (!rc) rc = run_cc(obj_path, so_path, err);
    unlink(obj_path);
  }
  LLVMDisposeMemoryBuffer(obj);
  st.link_s = seconds() - t0;
  if (stats) *stats = st;
  return rc;
}

/* ---- JIT -------------------------------------------------------------------------- */

struct LlvmJit {
  LLVMOrcLLJITRef jit;
};

void llvm_jit_free(void *p) {
  LlvmJit *j = p;
  if (!j) return;
  if (j->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
    if (e) LLVMConsumeError(e);
  }
  free(j);
}

/* libgomp, loaded on first use (as loading a C-backend library does) and
 * never unloaded: its threads outlive any one model. Not linked into the
 * program, so that OMP_WAIT_POLICY and the like can still be set before it
 * starts. */
static void *gomp;

static void open_gomp(void) { gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL); }

/* The runtime's functions the code calls, at their addresses in this process. */
static int define_runtime(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd, LLVMErrorRef *e, PcError *err) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, open_gomp);
  if (!gomp) return pc_errorf(err, "llvm backend: the JIT needs libgomp.so.1 (GCC's OpenMP runtime): %s", dlerror());
  static const char *from_gomp[] = {"GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads"};
  enum { N = 6 };
  const char *names[N] = {"cblas_sgemm", "tanhf", "erff"};
  void *addr[N] = {(void *)(uintptr_t)cblas_sgemm, (void *)(uintptr_t)tanhf, (void *)(uintptr_t)erff};
  for (int i = 0; i < 3; i++) {
    names[3 + i] = from_gomp[i];
    if (!(addr[3 + i] = dlsym(gomp, from_gomp[i]))) return pc_errorf(err, "llvm backend: libgomp has no %s", from_gomp[i]);
  }
  LLVMOrcCSymbolMapPair pairs[N];
  for (size_t i = 0; i < N; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit, names[i]);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)addr[i];
    pairs[i].Sym.Flags = (LLVMJITSymbolFlags){LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0};
  }
  *e = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(pairs, N));
  return 0;
}

int llvm_jit_open(const PcModule *m, LlvmJit **out, LlvmAbi *abi, LlvmStats *stats, PcError *err) {
  *out = NULL;
  LlvmStats st = {0};
  LLVMMemoryBufferRef obj;
  if (compile_object(m, &obj, &st, err) < 0) return -1;
  double t0 = seconds();
  LlvmJit *j = pc_xcalloc(1, sizeof *j);
  LLVMOrcJITTargetMachineBuilderRef jtmb;
  LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
  if (e) {
    LLVMDisposeMemoryBuffer(obj);
    free(j);
    return llvm_error(err, "JIT target", e);
  }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
  e = LLVMOrcCreateLLJIT(&j->jit, builder); /* takes the builder */
  const char *what = "creating the JIT";
  int rc = 0;
  if (!e) {
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    what = "runtime symbols";
    rc = define_runtime(j->jit, jd, &e, err);
    LLVMOrcDefinitionGeneratorRef gen;
    if (rc) goto done;
    if (!e) e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
    if (!e) LLVMOrcJITDylibAddGenerator(jd, gen);
    if (!e && *llvm_vector_math()) {
      e = LLVMOrcCreateDynamicLibrarySearchGeneratorForPath(&gen, "libmvec.so.1", LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
      if (!e) LLVMOrcJITDylibAddGenerator(jd, gen);
    }
    if (!e) {
      what = "adding the object";
      e = LLVMOrcLLJITAddObjectFile(j->jit, jd, obj); /* takes the buffer */
      obj = NULL;
    }
    LLVMOrcExecutorAddress addr[3] = {0};
    static const char *names[] = {"ponder_abi_version", "ponder_model_info", "ponder_run"};
    for (int i = 0; !e && i < 3; i++) {
      what = names[i];
      e = LLVMOrcLLJITLookup(j->jit, &addr[i], names[i]);
    }
    if (!e) {
      abi->version = (PonderAbiVersionFn)(uintptr_t)addr[0];
      abi->info = (PonderModelInfoFn)(uintptr_t)addr[1];
      abi->run = (PonderRunFn)(uintptr_t)addr[2];
    }
  }
done:
  if (obj) LLVMDisposeMemoryBuffer(obj);
  st.link_s = seconds() - t0;
  if (stats) *stats = st;
  if (e) rc = llvm_error(err, what, e);
  if (rc) {
    llvm_jit_free(j);
    return -1;
  }
  if (getenv("PONDER_LLVM_DIAG"))
    fprintf(stderr, "llvm jit: %u kernels; %.2f s LLVM IR, %.2f s optimisation, %.2f s codegen, %.2f s linking\n", st.kernels,
            st.render_s, st.optimize_s, st.codegen_s, st.link_s);
  *out = j;
  return 0;
}
