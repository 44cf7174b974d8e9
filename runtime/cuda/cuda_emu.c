/* A CUDA device emulated on the CPU, so that the CUDA backend's kernels,
 * launch plan, argument packing and cuBLAS calls are checked against the
 * interpreter on machines without a GPU. The generated CUDA C is compiled
 * as C++ by the system compiler with a prelude that maps threadIdx,
 * barriers and warp shuffles onto hooks here. Blocks run one at a time;
 * the threads of a block are fibers that switch at barriers (a few
 * instructions on x86-64, ucontext elsewhere), so shared memory is plain
 * static storage. A barrier that not every thread
 * of its warp or block reaches (a barrier in divergent code, a hang on a
 * GPU) is reported as an error. Device memory is host memory.
 * PONDER_CUDA_EMULATE=reverse runs the blocks of a grid, and the threads of
 * a block between barriers, in the reverse order: a kernel whose result
 * depends on the order (a missing barrier, a race between blocks) then
 * gives another answer, which the tests compare. */
#include "runtime/cuda/cuda_runtime.h"

#include <cblas.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include "runtime/base/mem.h"

/* what the kernels see (the prelude declares the same layout) */
typedef struct {
  unsigned x, y, z;
} EmuDim3;
typedef struct {
  EmuDim3 tid, bid, bdim, gdim;
} EmuThread;
typedef struct {
  const EmuThread *(*self)(void);
  void (*barrier)(int warp);
  void (*exchange)(void *v, int bytes, int lane_mask);
} EmuHooks;

static const char prelude[] =
    "#include <math.h>\n#include <string.h>\n"
    "struct pc_emu_dim3 { unsigned x, y, z; };\n"
    "struct pc_emu_thread { pc_emu_dim3 tid, bid, bdim, gdim; };\n"
    "struct pc_emu_hooks_t {\n  const pc_emu_thread *(*self)(void);\n  void (*barrier)(int warp);\n"
    "  void (*exchange)(void *v, int bytes, int lane_mask);\n};\n"
    "extern \"C\" { pc_emu_hooks_t pc_emu_hooks; }\n"
    "#define threadIdx (pc_emu_hooks.self()->tid)\n#define blockIdx (pc_emu_hooks.self()->bid)\n"
    "#define blockDim (pc_emu_hooks.self()->bdim)\n#define gridDim (pc_emu_hooks.self()->gdim)\n"
    "#define __global__\n#define __device__\n#define __forceinline__ inline\n#define __shared__ static\n"
    "#define __launch_bounds__(n)\n"
    "static inline void __syncthreads(void) { pc_emu_hooks.barrier(0); }\n"
    "static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask; pc_emu_hooks.barrier(1); }\n"
    "template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int m) {\n"
    "  (void)mask;\n  pc_emu_hooks.exchange(&v, (int)sizeof v, m);\n  return v;\n}\n"
    "static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }\n"
    "static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }\n"
    "/* IEEE single operations, rounded to nearest (no contraction at -O0) */\n"
    "static inline float __fadd_rn(float a, float b) { return a + b; }\n"
    "static inline float __fsub_rn(float a, float b) { return a - b; }\n"
    "static inline float __fmul_rn(float a, float b) { return a * b; }\n"
    "static inline float __fdiv_rn(float a, float b) { return a / b; }\n"
    "static inline float __fsqrt_rn(float a) { return sqrtf(a); }\n"
    /* attention.cu's tensor-core helpers. pc_bf16x2: two floats rounded to
     * bf16 (nearest even, as cvt.rn.bf16x2.f32), lo in the lower half.
     * pc_mma_bf16_16816: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
     * with PTX's fragments (PTX ISA 9.7.14.5.8, quoted in attention.cu):
     * each lane leaves its fragments in its warp's slots, the warp meets,
     * each lane rebuilds A and B from all 32 and computes its four elements
     * of D (bf16 products are exact in fp32; summed in k order, then added to
     * c: a tensor core's order is its own), and the warp meets again before
     * the slots are reused. */
    "static inline unsigned pc_emu_bf16(float f) {\n"
    "  unsigned u;\n  memcpy(&u, &f, 4);\n"
    "  return (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;\n}\n"
    "static inline unsigned pc_bf16x2(float lo, float hi) { return pc_emu_bf16(lo) | pc_emu_bf16(hi) << 16; }\n"
    "static inline float pc_emu_bf16_float(unsigned h) { h <<= 16; float f; memcpy(&f, &h, 4); return f; }\n"
    "static unsigned pc_emu_mma_a[32][32][4], pc_emu_mma_b[32][32][2]; /* [warp][lane] */\n"
    "static inline void pc_mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2]) {\n"
    "  const unsigned w = threadIdx.x >> 5, lane = threadIdx.x & 31;\n"
    "  memcpy(pc_emu_mma_a[w][lane], a, 16);\n  memcpy(pc_emu_mma_b[w][lane], b, 8);\n"
    "  pc_emu_hooks.barrier(1);\n"
    "  float A[16][16], B[16][8];\n"
    "  for (int l = 0; l < 32; l++) {\n"
    "    const int g = l >> 2, t = l & 3; /* groupID, threadID_in_group */\n"
    "    for (int i = 0; i < 8; i++) { /* a_i: row g, + 8 for i = 2, 3, 6, 7; col 2t + (i & 1), + 8 for i >= 4 */\n"
    "      const unsigned r = pc_emu_mma_a[w][l][i >> 1];\n"
    "      A[g + ((i >> 1) & 1) * 8][2 * t + (i & 1) + (i >> 2) * 8] = pc_emu_bf16_float(i & 1 ? r >> 16 : r & 0xffffu);\n"
    "    }\n"
    "    for (int i = 0; i < 4; i++) { /* b_i: row 2t + (i & 1), + 8 for i >= 2; col g */\n"
    "      const unsigned r = pc_emu_mma_b[w][l][i >> 1];\n"
    "      B[2 * t + (i & 1) + (i >> 1) * 8][g] = pc_emu_bf16_float(i & 1 ? r >> 16 : r & 0xffffu);\n"
    "    }\n  }\n"
    "  for (int i = 0; i < 4; i++) { /* d_i: row g, + 8 for i >= 2; col 2t + (i & 1) */\n"
    "    const int row = (int)(lane >> 2) + (i >> 1) * 8, col = 2 * (int)(lane & 3) + (i & 1);\n"
    "    float s = 0.f;\n"
    "    for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];\n"
    "    d[i] += s;\n  }\n"
    "  pc_emu_hooks.barrier(1);\n}\n"
    "#line 1 \"pondercc.cu\"\n";

/* ---- fibers: a context is a stack to switch to ------------------------------- */

#if defined(__x86_64__)
/* The System V callee-saved registers go on the old stack, the stack
 * pointer into *from; then the same in reverse from to. */
typedef struct {
  void *sp;
} Ctx;
void pc_emu_switch(Ctx *from, Ctx *to);
__asm__(".text\n.globl pc_emu_switch\n.hidden pc_emu_switch\n.type pc_emu_switch,@function\npc_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq (%rsi), %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n"
        ".size pc_emu_switch, .-pc_emu_switch\n");
static void ctx_switch(Ctx *from, Ctx *to) { pc_emu_switch(from, to); }
/* a stack whose first switch returns into fn, as if fn had been called */
static void ctx_make(Ctx *c, char *stack, size_t size, void (*fn)(void)) {
  uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
  void **sp = (void **)top;
  *--sp = NULL;        /* fn's return address: it never returns */
  *--sp = (void *)fn;  /* where the switch's ret goes */
  for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp, rbx, r12-r15 */
  c->sp = sp;
}
#else
typedef ucontext_t Ctx;
static void ctx_switch(Ctx *from, Ctx *to) { swapcontext(from, to); }
static void ctx_make(Ctx *c, char *stack, size_t size, void (*fn)(void)) {
  getcontext(c);
  c->uc_stack.ss_sp = stack;
  c->uc_stack.ss_size = size;
  c->uc_link = NULL;
  makecontext(c, fn, 0);
}
#endif

enum { F_READY, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };
#define STACK_BYTES (256 * 1024)

typedef struct {
  Ctx ctx;
  char *stack;
  EmuThread t;
  int state, warp, lane;
  unsigned round; /* exchanges so far: alternate slot sets */
} Fiber;

typedef struct {
  int live, waiting;
  uint64_t slot[2][32];
} Warp;

typedef struct {
  CudaDevice base;
  char dir[64];
  void *dl;
  void (**kernel)(void **);
  uint32_t n_kernels;
  EmuHooks *hooks;
  /* the running block */
  Fiber *fibers;
  size_t n_fibers, cap_fibers;
  Warp warps[32];
  int live, waiting;
  int reverse; /* blocks and threads last to first */
  Ctx sched;
  void (*fn)(void **);
  void **params;
  VEC(double) stamps; /* seconds: the work is done when a call returns */
} Emu;

/* The hooks are called from kernel code, which has no context to pass:
 * the emulator running on this thread and its current fiber. */
static _Thread_local Emu *cur_emu;
static _Thread_local Fiber *cur_fiber;

static const EmuThread *hook_self(void) { return &cur_fiber->t; }

static void hook_barrier(int warp) {
  Emu *m = cur_emu;
  Fiber *f = cur_fiber;
  if (warp) {
    Warp *w = &m->warps[f->warp];
    f->state = F_WAIT_WARP;
    w->waiting++;
  } else {
    f->state = F_WAIT_BLOCK;
    m->waiting++;
  }
  ctx_switch(&f->ctx, &m->sched);
}

static void hook_exchange(void *v, int bytes, int lane_mask) {
  Fiber *f = cur_fiber;
  Warp *w = &cur_emu->warps[f->warp];
  unsigned set = f->round++ & 1;
  memcpy(&w->slot[set][f->lane], v, (size_t)bytes);
  hook_barrier(1);
  memcpy(v, &w->slot[set][(f->lane ^ lane_mask) & 31], (size_t)bytes);
}

static void fiber_main(void) {
  Emu *m = cur_emu;
  m->fn(m->params);
  Fiber *f = cur_fiber;
  f->state = F_DONE;
  m->live--;
  m->warps[f->warp].live--;
  ctx_switch(&f->ctx, &m->sched); /* for good */
}

/* Frees the threads waiting at a barrier that everyone left alive reached. */
static void release(Emu *m) {
  for (int w = 0; w < 32; w++)
    if (m->warps[w].live && m->warps[w].waiting == m->warps[w].live) {
      for (size_t i = 0; i < m->n_fibers; i++)
        if (m->fibers[i].warp == w && m->fibers[i].state == F_WAIT_WARP) m->fibers[i].state = F_READY;
      m->warps[w].waiting = 0;
    }
  if (m->live && m->waiting == m->live) {
    for (size_t i = 0; i < m->n_fibers; i++)
      if (m->fibers[i].state == F_WAIT_BLOCK) m->fibers[i].state = F_READY;
    m->waiting = 0;
  }
}

static int run_block(Emu *m, uint32_t kernel, EmuDim3 bid, EmuDim3 bdim, EmuDim3 gdim, PcError *err) {
  size_t n = bdim.x;
  if (n > m->cap_fibers) {
    m->fibers = pc_xrealloc(m->fibers, n * sizeof *m->fibers);
    for (size_t i = m->cap_fibers; i < n; i++) m->fibers[i].stack = pc_xmalloc(STACK_BYTES);
    m->cap_fibers = n;
  }
  m->n_fibers = n;
  memset(m->warps, 0, sizeof m->warps);
  m->live = (int)n;
  m->waiting = 0;
  for (size_t i = 0; i < n; i++) {
    Fiber *f = &m->fibers[i];
    f->t = (EmuThread){.tid = {(unsigned)i, 0, 0}, .bid = bid, .bdim = bdim, .gdim = gdim};
    f->state = F_READY;
    f->warp = (int)(i / 32);
    f->lane = (int)(i % 32);
    f->round = 0;
    m->warps[f->warp].live++;
    ctx_make(&f->ctx, f->stack, STACK_BYTES, fiber_main);
  }
  while (m->live) {
    int ran = 0;
    for (size_t k = 0; k < n; k++) {
      size_t i = m->reverse ? n - 1 - k : k;
      if (m->fibers[i].state != F_READY) continue;
      cur_fiber = &m->fibers[i];
      ctx_switch(&m->sched, &m->fibers[i].ctx);
      release(m);
      ran = 1;
    }
    if (!ran)
      return pc_errorf(err, "emulated kernel k%u: block %u: threads wait at barriers that the others do not reach "
                            "(a barrier in divergent code would hang a GPU)", kernel, bid.x);
  }
  return 0;
}

static int emu_launch(CudaDevice *d, uint32_t kernel, uint32_t grid, uint32_t block, void **params, PcError *err) {
  Emu *m = (Emu *)d;
  if (kernel >= m->n_kernels) return pc_errorf(err, "emulator: no kernel k%u", kernel);
  if (block == 0 || block > 1024 || (block > 1 && block % 32)) return pc_errorf(err, "emulator: block of %u threads", block);
  m->fn = m->kernel[kernel];
  m->params = params;
  cur_emu = m;
  for (uint32_t k = 0; k < grid; k++) {
    uint32_t b = m->reverse ? grid - 1 - k : k;
    if (run_block(m, kernel, (EmuDim3){b, 0, 0}, (EmuDim3){block, 1, 1}, (EmuDim3){grid, 1, 1}, err) < 0) return -1;
  }
  return 0;
}

/* ---- memory and cuBLAS ------------------------------------------------------- */

static int emu_alloc(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) return pc_errorf(err, "emulator: out of memory for %zu bytes", bytes);
  *out = (CuPtr)(uintptr_t)p;
  return 0;
}

static void emu_release(CudaDevice *d, CuPtr p) { free((void *)(uintptr_t)p); }

static int emu_upload(CudaDevice *d, CuPtr dst, const void *src, size_t bytes, PcError *err) {
  memcpy((void *)(uintptr_t)dst, src, bytes);
  return 0;
}

static int emu_download(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err) {
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return 0;
}

static int emu_copy(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err) {
  if (dst < src + bytes && src < dst + bytes) return pc_errorf(err, "emulator: an overlapping device copy");
  memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
  return 0;
}

static int emu_fill32(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) {
  uint32_t *p = (uint32_t *)(uintptr_t)dst;
  for (size_t i = 0; i < count; i++) p[i] = bits;
  return 0;
}

/* bf16(v) as the kernels' pc_bf16 (runtime.cu) rounds it: nearest even,
 * a NaN stays a quiet NaN */
static uint16_t emu_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A bf16 operand widened to fp32 (exact): the rows x cols column-major
 * elements it reads, the same layout. */
static float *widen_bf16(CuPtr src, int rows, int cols, int ld) {
  size_t n = rows > 0 && cols > 0 ? (size_t)(cols - 1) * (size_t)ld + (size_t)rows : 0;
  const uint16_t *h = (const uint16_t *)(uintptr_t)src;
  float *f = pc_xmalloc(n ? 4 * n : 4);
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)h[i] << 16;
    memcpy(&f[i], &u, 4);
  }
  return f;
}

/* bf16: the operands widened to fp32, whose products are exact, summed in
 * fp32: a tensor core's arithmetic but for the order of the sums. tf32
 * runs as fp32 (the emulator does not round to TF32). A bf16 C (beta 0):
 * the fp32 sums rounded to nearest even. */
static int emu_gemm(CudaDevice *d, const CudaGemm *g, PcError *err) {
  const float *a = (const float *)(uintptr_t)g->a, *b = (const float *)(uintptr_t)g->b;
  float *wa = NULL, *wb = NULL, *c = (float *)(uintptr_t)g->c;
  if (g->c_bf16 && g->beta != 0) return pc_errorf(err, "emulator: a product adding into a bf16 result");
  if (g->c_bf16) c = pc_xmalloc(4 * ((size_t)(g->n - 1) * (size_t)g->ldc + (size_t)g->m));
  if (g->precision == CUDA_BF16) { /* column-major op(A) is m x k, op(B) k x n */
    a = wa = widen_bf16(g->a, g->transa ? g->k : g->m, g->transa ? g->m : g->k, g->lda);
    b = wb = widen_bf16(g->b, g->transb ? g->n : g->k, g->transb ? g->k : g->n, g->ldb);
  }
  cblas_sgemm(CblasColMajor, g->transa ? CblasTrans : CblasNoTrans, g->transb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k,
              g->alpha, a, g->lda, b, g->ldb, g->beta, c, g->ldc);
  free(wa);
  free(wb);
  if (g->c_bf16) { /* column-major m x n */
    uint16_t *h = (uint16_t *)(uintptr_t)g->c;
    for (int j = 0; j < g->n; j++)
      for (int i = 0; i < g->m; i++) h[(size_t)j * g->ldc + i] = emu_bf16(c[(size_t)j * g->ldc + i]);
    free(c);
  }
  return 0;
}

static int emu_sync(CudaDevice *d, PcError *err) { return 0; }

static int emu_stamp(CudaDevice *d, PcError *err) {
  Emu *m = (Emu *)d;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  vec_push(&m->stamps, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 0;
}

static int emu_elapsed(CudaDevice *d, float *ms, size_t n, PcError *err) {
  Emu *m = (Emu *)d;
  PC_ASSERT(n == m->stamps.n);
  for (size_t i = 0; i + 1 < n; i++) ms[i] = (float)((m->stamps.a[i + 1] - m->stamps.a[i]) * 1e3);
  m->stamps.n = 0;
  return 0;
}

/* ---- loading: the source compiled as C++ ------------------------------------ */

static void unload(Emu *m) {
  if (m->dl) dlclose(m->dl);
  m->dl = NULL;
  free(m->kernel);
  m->kernel = NULL;
  m->n_kernels = 0;
}

static int compile(const char *cpp, const char *so, PcError *err) {
  const char *cxx = getenv("CXX");
  if (!cxx || !*cxx) cxx = "c++";
  pid_t pid = fork();
  if (pid < 0) return pc_errorf(err, "emulator: cannot start %s: %s", cxx, strerror(errno));
  if (pid == 0) {
    /* -O0: for the small models of the tests compiling takes longer than running */
    execlp(cxx, cxx, "-O0", "-fPIC", "-shared", "-w", "-fmax-errors=5", "-DPONDER_CUDA_EMU", "-o", so, cpp, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return pc_errorf(err, "emulator: %s: %s", cxx, strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status))
    return pc_errorf(err, "emulator: %s failed on the generated CUDA C (exit %d)", cxx, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}

static int emu_load(CudaDevice *d, const char *source, const char *ptx, uint32_t n_kernels, PcError *err) {
  Emu *m = (Emu *)d;
  unload(m);
  char cpp[128], so[128];
  snprintf(cpp, sizeof cpp, "%s/kernels.cpp", m->dir);
  snprintf(so, sizeof so, "%s/kernels.so", m->dir);
  FILE *f = fopen(cpp, "w");
  if (!f) return pc_errorf(err, "emulator: cannot write %s", cpp);
  fputs(prelude, f);
  fputs(source, f);
  if (fclose(f)) return pc_errorf(err, "emulator: cannot write %s", cpp);
  int rc = compile(cpp, so, err);
  if (!rc && !(m->dl = dlopen(so, RTLD_NOW | RTLD_LOCAL))) rc = pc_errorf(err, "emulator: %s", dlerror());
  unlink(cpp);
  unlink(so);
  if (rc) return -1;
  m->hooks = dlsym(m->dl, "pc_emu_hooks");
  m->kernel = pc_xcalloc(n_kernels + 1, sizeof *m->kernel);
  m->n_kernels = n_kernels;
  for (uint32_t k = 0; k < n_kernels && !rc; k++) {
    char name[32];
    snprintf(name, sizeof name, "pc_emu_k%u", k);
    *(void **)&m->kernel[k] = dlsym(m->dl, name);
    if (!m->kernel[k]) rc = pc_errorf(err, "emulator: the source has no kernel k%u", k);
  }
  if (!m->hooks) rc = pc_errorf(err, "emulator: the source has no pc_emu_hooks");
  if (rc) {
    unload(m);
    return -1;
  }
  *m->hooks = (EmuHooks){hook_self, hook_barrier, hook_exchange};
  return 0;
}

static void emu_free(CudaDevice *d) {
  Emu *m = (Emu *)d;
  unload(m);
  for (size_t i = 0; i < m->cap_fibers; i++) free(m->fibers[i].stack);
  free(m->fibers);
  vec_free(&m->stamps);
  rmdir(m->dir);
  free(m);
}

int cuda_emulator_open(CudaDevice **out, PcError *err) {
  Emu *m = pc_xcalloc(1, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "/tmp/pondercc-emu-XXXXXX");
  if (!mkdtemp(m->dir)) {
    free(m);
    return pc_errorf(err, "emulator: cannot make a temporary folder: %s", strerror(errno));
  }
  const char *order = getenv("PONDER_CUDA_EMULATE");
  m->reverse = order && !strcmp(order, "reverse");
  m->base = (CudaDevice){m->reverse ? "CUDA emulator (CPU, reverse order)" : "CUDA emulator (CPU)", 0,         emu_load, emu_alloc,  emu_release, emu_upload,
                         emu_download,          emu_copy,  emu_fill32, emu_launch, emu_gemm,    emu_sync, emu_free,
                         emu_stamp,             emu_elapsed};
  *out = &m->base;
  return 0;
}
