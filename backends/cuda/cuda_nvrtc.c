/* NVRTC through dlopen: the few entry points we call are declared here
 * (the toolkit's headers are not needed to build), looked up once. */
#include "backends/cuda/cuda_nvrtc.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/base/file.h"
#include "runtime/base/mem.h"
#include "runtime/base/strmap.h"

typedef struct NvrtcProg *NvrtcProg; /* nvrtcProgram */

struct CudaNvrtc {
  void *dl;
  int major, minor;
  int (*version)(int *, int *);
  int (*create)(NvrtcProg *, const char *, const char *, int, const char *const *, const char *const *);
  int (*compile)(NvrtcProg, int, const char *const *);
  int (*ptx_size)(NvrtcProg, size_t *);
  int (*ptx)(NvrtcProg, char *);
  int (*log_size)(NvrtcProg, size_t *);
  int (*log)(NvrtcProg, char *);
  int (*destroy)(NvrtcProg *);
  const char *(*error_string)(int);
};

/* RTLD_NODELETE: NVRTC carries its own C++ runtime, whose exception
 * pool must stay mapped (and reachable) after we close it, or leak
 * checkers report it as lost */
#define NVRTC_DLOPEN (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)

static void *open_lib(void) {
  const char *env = getenv("PONDER_NVRTC");
  if (env && *env) return strcmp(env, "none") ? dlopen(env, NVRTC_DLOPEN) : NULL;
  static const char *names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    void *dl = dlopen(names[i], NVRTC_DLOPEN);
    if (dl) return dl;
  }
  const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
  for (size_t i = 0; i < sizeof homes / sizeof *homes; i++) {
    char path[4096];
    if (!homes[i] || !*homes[i]) continue;
    snprintf(path, sizeof path, "%s/lib64/libnvrtc.so", homes[i]);
    void *dl = dlopen(path, NVRTC_DLOPEN);
    if (dl) return dl;
  }
  return NULL;
}

int cuda_nvrtc_open(CudaNvrtc **out, PcError *err) {
  *out = NULL;
  void *dl = open_lib();
  if (!dl) return pc_errorf(err, "NVRTC (libnvrtc.so) not found: install the CUDA toolkit, or set PONDER_NVRTC to the library");
  CudaNvrtc *n = pc_xcalloc(1, sizeof *n);
  n->dl = dl;
  struct {
    void **fn;
    const char *name;
  } syms[] = {{(void **)&n->version, "nvrtcVersion"},         {(void **)&n->create, "nvrtcCreateProgram"},
              {(void **)&n->compile, "nvrtcCompileProgram"},  {(void **)&n->ptx_size, "nvrtcGetPTXSize"},
              {(void **)&n->ptx, "nvrtcGetPTX"},              {(void **)&n->log_size, "nvrtcGetProgramLogSize"},
              {(void **)&n->log, "nvrtcGetProgramLog"},       {(void **)&n->destroy, "nvrtcDestroyProgram"},
              {(void **)&n->error_string, "nvrtcGetErrorString"}};
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
    if (!(*syms[i].fn = dlsym(dl, syms[i].name))) {
      cuda_nvrtc_close(n);
      return pc_errorf(err, "NVRTC: the library has no %s", syms[i].name);
    }
  n->version(&n->major, &n->minor);
  *out = n;
  return 0;
}

void cuda_nvrtc_close(CudaNvrtc *n) {
  if (!n) return;
  dlclose(n->dl);
  free(n);
}

void cuda_nvrtc_version(const CudaNvrtc *n, int *major, int *minor) {
  *major = n->major;
  *minor = n->minor;
}

const char *cuda_cache_dir(char *buf, size_t n) {
  const char *dir = getenv("PONDER_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (dir && *dir) snprintf(buf, n, "%s/cuda", dir);
  else if (xdg && *xdg) snprintf(buf, n, "%s/pondercc/cuda", xdg);
  else if (home && *home) snprintf(buf, n, "%s/.cache/pondercc/cuda", home);
  else return NULL;
  return buf;
}

/* mkdir -p */
static int make_dirs(const char *path) {
  char p[4400];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      if (mkdir(p, 0755) && errno != EEXIST) return -1;
      *s = '/';
    }
  return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

/* The cache file: the source's hash and length, the architecture, NVRTC's version. */
static int cache_path(const CudaNvrtc *n, const char *source, int arch, char *out, size_t len) {
  char dir[4000];
  if (!cuda_cache_dir(dir, sizeof dir)) return -1;
  size_t bytes = strlen(source);
  snprintf(out, len, "%s/%016" PRIx64 "-%zu-compute_%d-nvrtc%d.%d.ptx", dir, pc_hash_bytes(source, bytes), bytes, arch,
           n->major, n->minor);
  return 0;
}

/* Best effort: a cache that cannot be written is no error. A unique
 * temporary name, then rename, so that concurrent writers never mix. */
static void cache_store(const char *path, const char *ptx) {
  char dir[4300], tmp[4400];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  if (make_dirs(dir)) return;
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return;
  size_t len = strlen(ptx), done = 0;
  while (done < len) {
    ssize_t w = write(fd, ptx + done, len - done);
    if (w <= 0) break;
    done += (size_t)w;
  }
  close(fd);
  if (done != len || rename(tmp, path)) unlink(tmp);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cuda_nvrtc_ptx(CudaNvrtc *n, const char *source, int arch, int use_cache, char **ptx, CudaPtxInfo *info, PcError *err) {
  char path[4200];
  CudaPtxInfo dummy;
  if (!info) info = &dummy;
  *info = (CudaPtxInfo){0};
  *ptx = NULL;
  int cache = use_cache && !cache_path(n, source, arch, path, sizeof path);
  if (cache && (*ptx = pc_read_file(path, NULL, NULL))) {
    info->cached = 1;
    return 0;
  }
  double t0 = now();
  NvrtcProg prog;
  int rc = n->create(&prog, source, "pondercc.cu", 0, NULL, NULL);
  if (rc) return pc_errorf(err, "NVRTC: %s", n->error_string(rc));
  char opt_arch[64];
  snprintf(opt_arch, sizeof opt_arch, "--gpu-architecture=compute_%d", arch);
  const char *opts[] = {opt_arch, "-w"};
  rc = n->compile(prog, 2, opts);
  if (rc) {
    size_t len = 0;
    n->log_size(prog, &len);
    char *log = pc_xmalloc(len + 1);
    log[0] = 0;
    n->log(prog, log);
    log[len] = 0;
    for (char *s = log; *s; s++) /* one line */
      if (*s == '\n') *s = ' ';
    pc_errorf(err, "NVRTC failed for compute_%d: %s: %.700s", arch, n->error_string(rc), log);
    free(log);
    n->destroy(&prog);
    return -1;
  }
  size_t len = 0;
  n->ptx_size(prog, &len);
  *ptx = pc_xmalloc(len + 1);
  n->ptx(prog, *ptx);
  (*ptx)[len] = 0;
  n->destroy(&prog);
  info->seconds = now() - t0;
  if (cache) cache_store(path, *ptx);
  return 0;
}
