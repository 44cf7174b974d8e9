/* The GPU device: the CUDA driver API (libcuda.so.1) and cuBLAS, both
 * opened with dlopen, so that ponder builds and runs on machines without
 * them. The entry points are declared here (no CUDA headers are needed).
 * Everything runs on the default stream of the first GPU's primary
 * context, in order; a download waits for the work before it. */
#include "runtime/cuda/cuda_runtime.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/mem.h"
#include "runtime/cuda/cuda_driver_api.h"

typedef int CUresult;
typedef struct CuCtx *CUcontext;
typedef struct CuMod *CUmodule;
typedef struct CuFunc *CUfunction;
typedef struct CuEvent *CUevent;
typedef unsigned long long CUdeviceptr;

typedef struct {
  CUresult (*init)(unsigned);
  CUresult (*device_get)(int *, int);
  CUresult (*device_name)(char *, int, int);
  CUresult (*device_attr)(int *, int, int);
  CUresult (*ctx_retain)(CUcontext *, int);
  CUresult (*ctx_release)(int);
  CUresult (*ctx_set)(CUcontext);
  CUresult (*ctx_sync)(void);
  CUresult (*module_load)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*module_function)(CUfunction *, CUmodule, const char *);
  CUresult (*module_unload)(CUmodule);
  CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
  CUresult (*mem_alloc)(CUdeviceptr *, size_t);
  CUresult (*mem_free)(CUdeviceptr);
  CUresult (*htod)(CUdeviceptr, const void *, size_t);
  CUresult (*dtoh)(void *, CUdeviceptr, size_t);
  CUresult (*dtod)(CUdeviceptr, CUdeviceptr, size_t, void *);
  CUresult (*memset32)(CUdeviceptr, unsigned, size_t, void *);
  CUresult (*error_name)(CUresult, const char **);
  CUresult (*error_string)(CUresult, const char **);
} DriverApi;

/* for profiles only: a driver without them runs the same, untimed */
typedef struct {
  CUresult (*create)(CUevent *, unsigned);
  CUresult (*destroy)(CUevent);
  CUresult (*record)(CUevent, void *);
  CUresult (*sync)(CUevent);
  CUresult (*elapsed)(float *, CUevent, CUevent);
} EventApi;

typedef struct {
  int (*create)(void **);
  int (*destroy)(void *);
  int (*gemm_ex)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *, int, int, const void *,
                 void *, int, int, int, int); /* cublasGemmEx */
} BlasApi;

const char *const pc_cu_driver_names[PC_CU_DRIVER_ENTRIES] = {
    "cuInit",           "cuDeviceGet",          "cuDeviceGetName",  "cuDeviceGetAttribute", "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuCtxSynchronize", "cuModuleLoadDataEx", "cuModuleGetFunction",
    "cuModuleUnload",   "cuLaunchKernel",       "cuMemAlloc_v2",    "cuMemFree_v2",         "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",  "cuMemcpyDtoDAsync_v2", "cuMemsetD32Async", "cuGetErrorName",       "cuGetErrorString"};
_Static_assert(sizeof(DriverApi) == PC_CU_DRIVER_ENTRIES * sizeof(void *), "one name per entry point");
/* CUDA 12.8 added cuEventElapsedTime_v2, which CUDA 13's headers mean by the name */
const char *const pc_cu_event_names[PC_CU_EVENT_ENTRIES] = {"cuEventCreate", "cuEventDestroy_v2", "cuEventRecord",
                                                            "cuEventSynchronize", "cuEventElapsedTime_v2"};
_Static_assert(sizeof(EventApi) == PC_CU_EVENT_ENTRIES * sizeof(void *), "one name per entry point");
const char *const pc_cublas_names[PC_CUBLAS_ENTRIES] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasGemmEx"};
_Static_assert(sizeof(BlasApi) == PC_CUBLAS_ENTRIES * sizeof(void *), "one name per entry point");

typedef struct {
  CudaDevice base;
  char name[256];
  void *dl_cuda, *dl_blas;
  DriverApi cu;
  EventApi ev;
  BlasApi blas;
  int dev;
  CUcontext ctx;
  CUmodule module;
  CUfunction *fn;
  uint32_t n_fn;
  void *blas_handle;
  int sync_each; /* PONDER_CUDA_SYNC=1: wait after every launch, to name a kernel that faults */
  VEC(CUevent) events; /* a profile's stamps: events[0 .. n_stamped) are recorded */
  size_t n_stamped;
} Gpu;

static int cu_fail(const Gpu *g, CUresult rc, const char *what, PcError *err) {
  const char *name = "?", *text = "";
  if (g->cu.error_name) g->cu.error_name(rc, &name);
  if (g->cu.error_string) g->cu.error_string(rc, &text);
  return pc_errorf(err, "CUDA: %s: %s (%s)", what, name, text);
}

#define CU(g, call, what)                               \
  do {                                                  \
    CUresult rc_ = (call);                              \
    if (rc_) return cu_fail((g), rc_, (what), err);     \
  } while (0)

static int gpu_load(CudaDevice *d, const char *source, const char *ptx, uint32_t n_kernels, PcError *err) {
  Gpu *g = (Gpu *)d;
  if (!ptx) return pc_errorf(err, "CUDA: no PTX for %s (sm_%d)", g->name, d->arch);
  if (g->module) { /* another program replaces the last one */
    g->cu.module_unload(g->module);
    g->module = NULL;
    free(g->fn);
    g->fn = NULL;
    g->n_fn = 0;
  }
  char log[4096] = "";
  int opts[] = {PC_CU_JIT_ERROR_LOG, PC_CU_JIT_ERROR_LOG_SIZE};
  void *vals[] = {log, (void *)(uintptr_t)sizeof log};
  CUresult rc = g->cu.module_load(&g->module, ptx, 2, opts, vals);
  if (rc == PC_CU_ERROR_UNSUPPORTED_PTX_VERSION)
    return pc_errorf(err, "CUDA: the driver is older than the NVRTC that made this PTX: update the driver, or compile with "
                          "the NVRTC of the driver's CUDA version (PONDER_NVRTC)");
  if (rc) {
    for (char *s = log; *s; s++)
      if (*s == '\n') *s = ' ';
    cu_fail(g, rc, "loading the PTX", err);
    return pc_error_prefix(err, "%s", log);
  }
  g->fn = pc_xcalloc(n_kernels + 1, sizeof *g->fn);
  g->n_fn = n_kernels;
  for (uint32_t k = 0; k < n_kernels; k++) {
    char name[32];
    snprintf(name, sizeof name, "k%u", k);
    CU(g, g->cu.module_function(&g->fn[k], g->module, name), name);
  }
  return 0;
}

static int gpu_alloc(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err) {
  Gpu *g = (Gpu *)d;
  CUdeviceptr p;
  CUresult rc = g->cu.mem_alloc(&p, bytes ? bytes : 4);
  if (rc) {
    cu_fail(g, rc, "cuMemAlloc", err);
    return pc_error_prefix(err, "%.1f MiB on %s", bytes / 1048576.0, g->name);
  }
  *out = p;
  return 0;
}

static void gpu_release(CudaDevice *d, CuPtr p) { ((Gpu *)d)->cu.mem_free(p); }

static int gpu_upload(CudaDevice *d, CuPtr dst, const void *src, size_t bytes, PcError *err) {
  Gpu *g = (Gpu *)d;
  CU(g, g->cu.htod(dst, src, bytes), "cuMemcpyHtoD");
  return 0;
}

static int gpu_download(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err) {
  Gpu *g = (Gpu *)d;
  CU(g, g->cu.dtoh(dst, src, bytes), "cuMemcpyDtoH (or a kernel before it)");
  return 0;
}

static int gpu_copy(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err) {
  Gpu *g = (Gpu *)d;
  CU(g, g->cu.dtod(dst, src, bytes, NULL), "cuMemcpyDtoDAsync");
  return 0;
}

static int gpu_fill32(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) {
  Gpu *g = (Gpu *)d;
  CU(g, g->cu.memset32(dst, bits, count, NULL), "cuMemsetD32Async");
  return 0;
}

static int gpu_launch(CudaDevice *d, uint32_t kernel, uint32_t grid, uint32_t block, void **params, PcError *err) {
  Gpu *g = (Gpu *)d;
  if (kernel >= g->n_fn) return pc_errorf(err, "CUDA: no kernel k%u loaded", kernel);
  CUresult rc = g->cu.launch(g->fn[kernel], grid, 1, 1, block, 1, 1, 0, NULL, params, NULL);
  if (!rc && g->sync_each) rc = g->cu.ctx_sync();
  if (rc) {
    char what[64];
    snprintf(what, sizeof what, "launching k%u (%u blocks of %u)", kernel, grid, block);
    return cu_fail(g, rc, what, err);
  }
  return 0;
}

/* fp32: C = A B in fp32 (cuBLAS's sgemm); tf32: fp32 operands, TF32 tensor
 * cores; bf16: bf16 operands, tensor cores summing in fp32. C is fp32, or
 * bf16 (rounded from the fp32 sums) for a buffer living in its mirror. */
static int gpu_gemm(CudaDevice *d, const CudaGemm *m, PcError *err) {
  Gpu *g = (Gpu *)d;
  int in = m->precision == CUDA_BF16 ? PC_CUDA_R_16BF : PC_CUDA_R_32F;
  int compute = m->precision == CUDA_TF32 ? PC_CUBLAS_COMPUTE_32F_FAST_TF32 : PC_CUBLAS_COMPUTE_32F;
  int rc = g->blas.gemm_ex(g->blas_handle, m->transa, m->transb, m->m, m->n, m->k, &m->alpha, (const void *)(uintptr_t)m->a,
                           in, m->lda, (const void *)(uintptr_t)m->b, in, m->ldb, &m->beta, (void *)(uintptr_t)m->c,
                           m->c_bf16 ? PC_CUDA_R_16BF : PC_CUDA_R_32F,
                           m->ldc, compute, PC_CUBLAS_GEMM_DEFAULT);
  if (rc)
    return pc_errorf(err, "cuBLAS: cublasGemmEx (%s) failed (status %d) for m=%d n=%d k=%d", cuda_precision_name(m->precision),
                     rc, m->m, m->n, m->k);
  return 0;
}

static int gpu_sync(CudaDevice *d, PcError *err) {
  Gpu *g = (Gpu *)d;
  CU(g, g->cu.ctx_sync(), "cuCtxSynchronize");
  return 0;
}

static int gpu_stamp(CudaDevice *d, PcError *err) {
  Gpu *g = (Gpu *)d;
  if (g->n_stamped == g->events.n) { /* events are made once and used again by every call */
    CUevent e;
    CU(g, g->ev.create(&e, 0), "cuEventCreate");
    vec_push(&g->events, e);
  }
  CU(g, g->ev.record(g->events.a[g->n_stamped], NULL), "cuEventRecord");
  g->n_stamped++;
  return 0;
}

static int gpu_elapsed(CudaDevice *d, float *ms, size_t n, PcError *err) {
  Gpu *g = (Gpu *)d;
  PC_ASSERT(n == g->n_stamped);
  g->n_stamped = 0;
  if (n) CU(g, g->ev.sync(g->events.a[n - 1]), "cuEventSynchronize (or the work before it)");
  for (size_t i = 0; i + 1 < n; i++) CU(g, g->ev.elapsed(&ms[i], g->events.a[i], g->events.a[i + 1]), "cuEventElapsedTime");
  return 0;
}

static void gpu_free(CudaDevice *d) {
  Gpu *g = (Gpu *)d;
  for (size_t i = 0; i < g->events.n; i++) g->ev.destroy(g->events.a[i]);
  vec_free(&g->events);
  if (g->blas_handle) g->blas.destroy(g->blas_handle);
  if (g->module) g->cu.module_unload(g->module);
  if (g->ctx) g->cu.ctx_release(g->dev);
  free(g->fn);
  if (g->dl_blas) dlclose(g->dl_blas);
  if (g->dl_cuda) dlclose(g->dl_cuda);
  free(g);
}

static void *open_first(const char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    void *dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (dl) return dl;
  }
  return NULL;
}

static int find(void *dl, const char *const *names, void **fns, size_t n, const char *lib, PcError *err) {
  for (size_t i = 0; i < n; i++)
    if (!(fns[i] = dlsym(dl, names[i]))) return pc_errorf(err, "%s has no %s", lib, names[i]);
  return 0;
}

static int open_cublas(Gpu *g, PcError *err) {
  static const char *libs[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
                               "/usr/local/cuda/lib64/libcublas.so"};
  if (!(g->dl_blas = open_first(libs, sizeof libs / sizeof *libs)))
    return pc_errorf(err, "cuBLAS (libcublas.so) not found: install the CUDA toolkit's cuBLAS or add it to LD_LIBRARY_PATH");
  void *fns[PC_CUBLAS_ENTRIES];
  if (find(g->dl_blas, pc_cublas_names, fns, PC_CUBLAS_ENTRIES, "libcublas", err) < 0) return -1;
  memcpy(&g->blas.create, &fns[0], sizeof fns[0]);
  memcpy(&g->blas.destroy, &fns[1], sizeof fns[1]);
  memcpy(&g->blas.gemm_ex, &fns[2], sizeof fns[2]);
  /* the handle's default math mode: the compute type of each call decides */
  if (g->blas.create(&g->blas_handle)) return pc_errorf(err, "cuBLAS: cublasCreate failed on %s", g->name);
  return 0;
}

static void open_events(Gpu *g) {
  void *fns[PC_CU_EVENT_ENTRIES];
  for (size_t i = 0; i < PC_CU_EVENT_ENTRIES; i++) fns[i] = dlsym(g->dl_cuda, pc_cu_event_names[i]);
  if (!fns[4]) fns[4] = dlsym(g->dl_cuda, "cuEventElapsedTime");
  for (size_t i = 0; i < PC_CU_EVENT_ENTRIES; i++)
    if (!fns[i]) return;
  memcpy(&g->ev, fns, sizeof fns);
  g->base.stamp = gpu_stamp;
  g->base.elapsed = gpu_elapsed;
}

int cuda_driver_open(CudaDevice **out, PcError *err) {
  *out = NULL;
  Gpu *g = pc_xcalloc(1, sizeof *g);
  g->base = (CudaDevice){"", 0,          gpu_load,   gpu_alloc, gpu_release, gpu_upload, gpu_download,
                         gpu_copy, gpu_fill32, gpu_launch, gpu_gemm,  gpu_sync,    gpu_free, NULL, NULL}; /* stamps: open_events */
  if (!(g->dl_cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL))) {
    free(g);
    return pc_errorf(err, "no CUDA driver (libcuda.so.1 not found): this machine has no NVIDIA GPU driver");
  }
  void *fns[PC_CU_DRIVER_ENTRIES];
  int rc = find(g->dl_cuda, pc_cu_driver_names, fns, PC_CU_DRIVER_ENTRIES, "libcuda.so.1", err);
  if (!rc) memcpy(&g->cu, fns, sizeof fns);
  if (!rc) open_events(g);
  CUresult r = rc ? 0 : g->cu.init(0);
  if (!rc && r == PC_CU_ERROR_NO_DEVICE) rc = pc_errorf(err, "the CUDA driver is installed but finds no GPU");
  else if (!rc && r) rc = cu_fail(g, r, "cuInit", err);
  if (!rc && (r = g->cu.device_get(&g->dev, 0))) rc = cu_fail(g, r, "cuDeviceGet", err);
  int major = 0, minor = 0;
  if (!rc) {
    g->cu.device_name(g->name, sizeof g->name, g->dev);
    g->cu.device_attr(&major, PC_CU_ATTR_CC_MAJOR, g->dev);
    g->cu.device_attr(&minor, PC_CU_ATTR_CC_MINOR, g->dev);
    g->base.name = g->name;
    g->base.arch = 10 * major + minor;
  }
  if (!rc && (r = g->cu.ctx_retain(&g->ctx, g->dev))) rc = cu_fail(g, r, "cuDevicePrimaryCtxRetain", err);
  if (!rc && (r = g->cu.ctx_set(g->ctx))) rc = cu_fail(g, r, "cuCtxSetCurrent", err);
  if (!rc) rc = open_cublas(g, err);
  const char *sync = getenv("PONDER_CUDA_SYNC");
  g->sync_each = sync && !strcmp(sync, "1");
  if (rc) {
    gpu_free(&g->base);
    return -1;
  }
  *out = &g->base;
  return 0;
}

int cuda_device_open(CudaDevice **out, PcError *err) {
  const char *emu = getenv("PONDER_CUDA_EMULATE");
  return emu && (!strcmp(emu, "1") || !strcmp(emu, "reverse")) ? cuda_emulator_open(out, err) : cuda_driver_open(out, err);
}
