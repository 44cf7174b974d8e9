/* The CUDA backend's host side without a GPU: launch shapes, buffer
 * addresses, argument packing, the row-major -> cuBLAS mapping (checked
 * numerically with OpenBLAS), which nests become which kind of kernel, the
 * barriers and lane-0 stores of uniform code, what the host executor asks
 * a (recording) device to do for a small hand-made program, render errors,
 * the kernel program's byte form (round trip; damaged bytes refused),
 * which stores write bf16 mirrors and when the executor reads them, and
 * how a profile charges the device's time to ops, and a census's counts. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_census.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_kio.h"
#include "backends/cuda/cuda_library.h"
#include "backends/cuda/cuda_profile.h"
#include "compiler/lower/lower.h"
#include "ir/ir.h"
#include "tests/check.h"

/* ---- launch shapes, addresses, arguments, gemm ---------------------------------- */

static void check_shapes(void) {
  uint32_t grid = 0, block = 0;
  CudaLaunch l = {.mode = CM_THREAD, .threads = 128};
  CHECK(!cuda_launch_shape(&l, 0, &grid, &block));
  CHECK(cuda_launch_shape(&l, 1000, &grid, &block) && grid == 8 && block == 128);
  l = (CudaLaunch){.mode = CM_WARP, .threads = 128};
  CHECK(cuda_launch_shape(&l, 10, &grid, &block) && grid == 3 && block == 128); /* 4 rows a block */
  l = (CudaLaunch){.mode = CM_BLOCK, .threads = 256};
  CHECK(cuda_launch_shape(&l, 5, &grid, &block) && grid == 5 && block == 256);
  CHECK(cuda_launch_shape(&l, (int64_t)1 << 40, &grid, &block) && grid == CUDA_MAX_GRID);
  l = (CudaLaunch){.mode = CM_SERIAL, .threads = 1};
  CHECK(cuda_launch_shape(&l, 1, &grid, &block) && grid == 1 && block == 1);
}

static void check_addresses_and_args(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "t");
  kbuf(e, "w", K_F32, KB_PARAM, 1, 0, 10);
  kbuf(e, "ids", K_I32, KB_INPUT, 0, 0, 4);
  kbuf(e, "out", K_F32, KB_OUTPUT, 2, 0, 4);
  kbuf(e, "tmp", K_F32, KB_ARENA, 0, 4096, 4);
  kvar(e, "f", K_F32);
  kvar(e, "n", K_I64);
  CuPtr params[2] = {0x1000, 0x2000}, inputs[1] = {0x3000}, outputs[3] = {0, 0, 0x5000}, bufs[4];
  cuda_buffer_addresses(e, params, inputs, outputs, 0x10000, bufs);
  CHECK(bufs[0] == 0x2000 && bufs[1] == 0x3000 && bufs[2] == 0x5000 && bufs[3] == 0x10000 + 4096);
  CudaProgram cp = {.prog = p};
  CudaArg args[] = {{CA_DIM, K_I64, 1}, {CA_BUF, 0, 3}, {CA_VAR, K_F32, 0}, {CA_VAR, K_I64, 1}, {CA_SLOT, K_F32, 1}};
  for (size_t i = 0; i < 5; i++) vec_push(&cp.args, args[i]);
  CudaLaunch l = {.arg0 = 0, .n_args = 5};
  int64_t dims[2] = {3, 7};
  CudaValue vars[2] = {{.f = 2.5f}, {.i = -9}};
  uint64_t values[5];
  void *ptrs[5];
  cuda_pack_args(&cp, &l, dims, bufs, vars, 0x9000, 0, 0, values, ptrs);
  float f;
  memcpy(&f, ptrs[2], 4);
  CHECK(*(int64_t *)ptrs[0] == 7 && *(uint64_t *)ptrs[1] == 0x10000 + 4096 && f == 2.5f && *(int64_t *)ptrs[3] == -9 &&
        *(uint64_t *)ptrs[4] == 0x9000 + 8);
  vec_free(&cp.args);
  kir_free(p);
}

/* C = A op B in row-major through cuBLAS's column-major arguments equals
 * cblas's row-major product, for each transposition. */
static void check_gemm_mapping(void) {
  enum { M = 3, N = 4, K = 5 };
  float a[M * K], b[K * N], want[M * N], got[M * N];
  for (int i = 0; i < M * K; i++) a[i] = (float)(i % 7) - 3;
  for (int i = 0; i < K * N; i++) b[i] = (float)(i % 5) * 0.5f - 1;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      int lda = ta ? M : K, ldb = tb ? K : N;
      for (int i = 0; i < M * N; i++) want[i] = got[i] = (float)i;
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.5f, a, lda, b, ldb,
                  0.5f, want, N);
      CudaGemm g = cuda_gemm_colmajor(ta, tb, M, N, K, 1.5f, (CuPtr)(uintptr_t)a, lda, (CuPtr)(uintptr_t)b, ldb, 0.5f,
                                      (CuPtr)(uintptr_t)got, N);
      cblas_sgemm(CblasColMajor, g.transa ? CblasTrans : CblasNoTrans, g.transb ? CblasTrans : CblasNoTrans, g.m, g.n, g.k,
                  g.alpha, (float *)(uintptr_t)g.a, g.lda, (float *)(uintptr_t)g.b, g.ldb, g.beta, (float *)(uintptr_t)g.c, g.ldc);
      CHECKF(!memcmp(want, got, sizeof want), "gemm ta=%d tb=%d differs", ta, tb);
    }
}

/* --precision's names, and zero (an unset CudaGemm) meaning fp32 */
static void check_precision_names(void) {
  for (int p = 0; p < CUDA_PRECISION_NUM; p++) {
    CudaPrecision q;
    CHECK(cuda_precision_from_name(cuda_precision_name((CudaPrecision)p), &q) == 0 && q == (CudaPrecision)p);
  }
  CudaPrecision q;
  CHECK(cuda_precision_from_name("fp16", &q) < 0);
  CHECK(!strcmp(cuda_precision_name(CUDA_BF16), "bf16") && (CudaGemm){0}.precision == CUDA_FP32);
}

/* ---- a small program ----------------------------------------------------------
 *   entry t [B <= 4]
 *     %0 param f32[4096]  %1 input f32[4096]  %2 output f32[4096]  %3 output f32[8]  %4 arena f32[8]
 *     for i in 0 .. 2:                  (host: it holds launches)
 *       parfor p in 0 .. B:             (block: rows of 1024)
 *         a = 0
 *         vfor j in 0 .. 1024: a = a + %1[p*1024 + j]
 *         %4[p] = a                     (lane 0)
 *         vfor j in 0 .. 1024: %2[p*1024 + j] = %1[p*1024 + j] / %4[p] + itof(i)   (after a barrier)
 *     parfor q in 0 .. B:               (a thread per row)
 *       %3[q] = %4[q]
 *     s = %4[0]                         (one thread; s comes back to the host)
 *     parfor r in 0 .. B:               (warp: rows of 32)
 *       vfor j in 0 .. 32: %2[r*32 + j] = s
 *     gemm nt m=B n=2 k=2  %3 + 0 <- %0 + 0, %0 + 8
 *     fill %3 + 4, count 2, value 1
 *     copy %2 + 1 <- %2 + 0, count 4    (overlapping) */

typedef struct {
  KProgram *p;
  uint32_t host_for, block_pf, thread_pf, serial, warp_pf;
} Prog;

static Prog make_program(void) {
  Prog r = {.p = kir_new()};
  KProgram *p = r.p;
  KEntry *e = kir_entry(p, "t");
  uint32_t B = kdim(e, "B", 4);
  uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 4096), x = kbuf(e, "x", K_F32, KB_INPUT, 0, 0, 4096);
  uint32_t y = kbuf(e, "y", K_F32, KB_OUTPUT, 0, 0, 4096), z = kbuf(e, "z", K_F32, KB_OUTPUT, 1, 0, 8);
  uint32_t sums = kbuf(e, "sums", K_F32, KB_ARENA, 0, 0, 8);
  uint32_t i = kvar(e, "i", K_I64), pv = kvar(e, "p", K_I64), a = kvar(e, "a", K_F32), j = kvar(e, "j", K_I64);
  uint32_t j2 = kvar(e, "j2", K_I64), q = kvar(e, "q", K_I64), s = kvar(e, "s", K_F32), rv = kvar(e, "r", K_I64);
  uint32_t j3 = kvar(e, "j3", K_I64);
  r.host_for = (uint32_t)p->stmts.n;
  uint32_t body = ks_for(p, e->body, KL_SERIAL, i, kx_i(p, 0), kx_i(p, 2));
  r.block_pf = (uint32_t)p->stmts.n;
  uint32_t row = ks_for(p, body, KL_PARALLEL, pv, kx_i(p, 0), kx_dim(p, B));
  ks_assign(p, row, a, kx_f(p, 0));
  uint32_t base = kx_mul(p, kx_var(p, e, pv), kx_i(p, 1024));
  uint32_t v1 = ks_for(p, row, KL_VECTOR, j, kx_i(p, 0), kx_i(p, 1024));
  ks_assign(p, v1, a, kx_add(p, kx_var(p, e, a), kx_load(p, e, x, kx_add(p, base, kx_var(p, e, j)))));
  ks_store(p, row, sums, kx_var(p, e, pv), kx_var(p, e, a));
  uint32_t v2 = ks_for(p, row, KL_VECTOR, j2, kx_i(p, 0), kx_i(p, 1024));
  uint32_t at = kx_add(p, base, kx_var(p, e, j2));
  ks_store(p, v2, y, at,
           kx_add(p, kx_div(p, kx_load(p, e, x, at), kx_load(p, e, sums, kx_var(p, e, pv))), kx_op(p, KE_ITOF, kx_var(p, e, i), 0, 0)));
  r.thread_pf = (uint32_t)p->stmts.n;
  uint32_t row2 = ks_for(p, e->body, KL_PARALLEL, q, kx_i(p, 0), kx_dim(p, B));
  ks_store(p, row2, z, kx_var(p, e, q), kx_load(p, e, sums, kx_var(p, e, q)));
  r.serial = (uint32_t)p->stmts.n;
  ks_assign(p, e->body, s, kx_load(p, e, sums, kx_i(p, 0)));
  r.warp_pf = (uint32_t)p->stmts.n;
  uint32_t row3 = ks_for(p, e->body, KL_PARALLEL, rv, kx_i(p, 0), kx_dim(p, B));
  uint32_t v3 = ks_for(p, row3, KL_VECTOR, j3, kx_i(p, 0), kx_i(p, 32));
  ks_store(p, v3, y, kx_add(p, kx_mul(p, kx_var(p, e, rv), kx_i(p, 32)), kx_var(p, e, j3)), kx_var(p, e, s));
  KGemm g = {.ta = 0, .tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 2), .k = kx_i(p, 2), .alpha = 1, .beta = 0, .a = w, .b = w, .c = z,
             .a_off = kx_i(p, 0), .b_off = kx_i(p, 8), .c_off = kx_i(p, 0), .lda = kx_i(p, 2), .ldb = kx_i(p, 2), .ldc = kx_i(p, 2)};
  ks_gemm(p, e->body, &g);
  ks_fill(p, e->body, z, kx_i(p, 4), kx_i(p, 2), kx_f(p, 1));
  ks_copy(p, e->body, y, kx_i(p, 1), y, kx_i(p, 0), kx_i(p, 4));
  return r;
}

/* a device that records what it is asked */
typedef struct {
  CudaDevice base;
  char log[4096];
  size_t len;
  int allocs, releases;
} Rec;

#define LOG(r, ...) ((r)->len += (size_t)snprintf((r)->log + (r)->len, sizeof (r)->log - (r)->len, __VA_ARGS__))

static int rec_launch(CudaDevice *d, uint32_t k, uint32_t grid, uint32_t block, void **params, PcError *err) {
  Rec *r = (Rec *)d;
  LOG(r, "k%u<%u,%u>", k, grid, block);
  if (k == 0) LOG(r, "(B=%lld,i=%lld)", (long long)*(int64_t *)params[0], (long long)*(int64_t *)params[4]); /* d0, x, sums, y, i */
  LOG(r, " ");
  return 0;
}
static int rec_download(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err) {
  Rec *r = (Rec *)d;
  float v = 0.75f;
  memcpy(dst, &v, 4);
  LOG(r, "download(%zu) ", bytes);
  return 0;
}
static int rec_gemm(CudaDevice *d, const CudaGemm *g, PcError *err) {
  Rec *r = (Rec *)d;
  LOG(r, "gemm(%c%c m=%d n=%d k=%d) ", g->transa ? 't' : 'n', g->transb ? 't' : 'n', g->m, g->n, g->k);
  return 0;
}
static int rec_fill(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) {
  Rec *r = (Rec *)d;
  LOG(r, "fill(+%llu,%zu,%08x) ", (unsigned long long)(dst - 0x300000), count, bits);
  return 0;
}
static int rec_copy(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err) {
  Rec *r = (Rec *)d;
  LOG(r, "copy(%zu) ", bytes);
  return 0;
}
static int rec_alloc(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err) {
  ((Rec *)d)->allocs++;
  *out = 0x900000;
  return 0;
}
static void rec_release(CudaDevice *d, CuPtr p) { ((Rec *)d)->releases++; }
static int rec_sync(CudaDevice *d, PcError *err) { return 0; }

static void check_program(void) {
  Prog r = make_program();
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  if (cuda_render(r.p, &o, &cp, &err) < 0) {
    CHECKF(0, "render: %s", err.msg);
    kir_free(r.p);
    return;
  }
  CHECK(cp.launch_of[r.host_for] == UINT32_MAX); /* the host runs the loop */
  CHECK(cp.launches.n == 4 && cp.n_kernels == 4 + CR_NUM); /* and the runtime's */
  const CudaLaunch *l = cp.launches.a;
  CHECK(l[0].stmt == r.block_pf && l[0].mode == CM_BLOCK && l[0].threads == 256);
  CHECK(l[1].stmt == r.thread_pf && l[1].mode == CM_THREAD);
  CHECK(l[2].stmt == r.serial && l[2].mode == CM_SERIAL);
  CHECK(l[3].stmt == r.warp_pf && l[3].mode == CM_WARP);
  /* the block kernel: a block reduction, lane 0 stores the sum, a barrier before it is read */
  const char *k0 = strstr(cp.source, ") k0("), *k1 = strstr(cp.source, ") k1(");
  CHECK(k0 && k1);
  if (k0 && k1) {
    char *text = strndup(k0, (size_t)(k1 - k0));
    CHECK_STR_CONTAINS(text, "pc_block_sum_f(q0, pc_shf)");
    CHECK_STR_CONTAINS(text, "if (pc_lane == 0) p");
    const char *store = strstr(text, "if (pc_lane == 0)"), *bar = strstr(text, "__syncthreads();");
    CHECKF(store && bar && bar > store, "no barrier after the lane-0 store:\n%s", text);
    free(text);
  }
  CHECK_STR_CONTAINS(cp.source, "*r0p = r0;"); /* the serial kernel hands s back */
  /* what the host asks of the device */
  Rec rec = {.base = {.name = "rec", .launch = rec_launch, .download = rec_download, .gemm = rec_gemm, .fill32 = rec_fill,
                      .copy = rec_copy, .alloc = rec_alloc, .release = rec_release, .sync = rec_sync}};
  CuPtr bufs[5] = {0x100000, 0x200000, 0x280000, 0x300000, 0x400000};
  int64_t dims[1] = {3};
  if (cuda_exec(&cp, &rec.base, 0, dims, bufs, 0x800000, NULL, NULL, &err) < 0) CHECKF(0, "exec: %s", err.msg);
  const char *want = "k0<3,256>(B=3,i=0) k0<3,256>(B=3,i=1) k1<1,128> k2<1,1> download(4) k3<1,128> gemm(tn m=2 n=3 k=2) "
                     "fill(+16,2,3f800000) copy(16) copy(16) ";
  CHECKF(!strcmp(rec.log, want), "the device was asked:\n  %s\nnot\n  %s", rec.log, want);
  CHECK(rec.allocs == 1 && rec.releases == 1); /* the overlapping copy's temporary */
  cuda_program_free(&cp);
  kir_free(r.p);
}

/* ---- errors and the byte form ------------------------------------------------ */

static void check_errors(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "bad");
  uint32_t n = kbuf(e, "n", K_I32, KB_INPUT, 0, 0, 1), v = kvar(e, "v", K_I64), k = kvar(e, "k", K_I64);
  uint32_t body = ks_for(p, e->body, KL_PARALLEL, v, kx_i(p, 0), kx_load(p, e, n, kx_i(p, 0)));
  ks_assign(p, body, k, kx_var(p, e, v));
  ks_assign(p, e->body, k, kx_add(p, kx_var(p, e, k), kx_i(p, 1)));
  CudaOptions o = cuda_options_default();
  CudaProgram cp;
  PcError err;
  CHECK(cuda_render(p, &o, &cp, &err) < 0);
  CHECK_STR_CONTAINS(err.msg, "bounds are read from device memory");
  kir_free(p);
  p = kir_new();
  e = kir_entry(p, "bad2");
  v = kvar(e, "v", K_I64);
  k = kvar(e, "k", K_I64);
  body = ks_for(p, e->body, KL_PARALLEL, v, kx_i(p, 0), kx_i(p, 4));
  ks_assign(p, body, k, kx_var(p, e, v));
  ks_assign(p, e->body, k, kx_add(p, kx_var(p, e, k), kx_i(p, 1)));
  CHECK(cuda_render(p, &o, &cp, &err) < 0);
  CHECK_STR_CONTAINS(err.msg, "a parallel loop assigns a variable of the host");
  kir_free(p);
}

static char *printed(const KProgram *p) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  kir_print(p, f);
  fclose(f);
  return s;
}

static void check_bytes(void) {
  Prog r = make_program();
  r.p->entries.a[0].bufs.a[4].operand_only = 1; /* flags travel too */
  r.p->stmts.a[r.serial].origin = kir_origin(r.p, "sum @t.lua:3"); /* and origins, printed as comments */
  size_t len;
  unsigned char *bytes = cuda_kir_write(r.p, &len);
  KProgram *back;
  PcError err;
  CHECK(cuda_kir_read(bytes, len, &back, &err) == 0);
  if (back) {
    char *a = printed(r.p), *b = printed(back);
    CHECK(!strcmp(a, b) && strstr(a, "\"sums\" operand-only") && strstr(a, "# sum @t.lua:3\n  s = "));
    free(a);
    free(b);
    kir_free(back);
  }
  CHECK(cuda_kir_read(bytes, len - 3, &back, &err) < 0); /* cut short */
  CHECK_STR_CONTAINS(err.msg, "damaged");
  for (size_t at = 8; at < len; at += 37) { /* bytes changed here and there: an error or a program, never a crash */
    unsigned char keep = bytes[at];
    bytes[at] ^= 0x5a;
    if (cuda_kir_read(bytes, len, &back, &err) == 0) kir_free(back);
    bytes[at] = keep;
  }
  free(bytes);
  kir_free(r.p);
  /* a call statement survives the round trip; another format is refused by name */
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "attention");
  for (uint32_t i = 0; i < 4; i++) kbuf(e, "x", K_F32, i < 3 ? KB_INPUT : KB_OUTPUT, i < 3 ? i : 0, 0, 64);
  KCall c = {.op = KC_ATTENTION, .buf = {0, 1, 2, 3}, .arg = {kx_i(p, 1), kx_i(p, 4), kx_i(p, 2), kx_i(p, 1), kx_i(p, 8), kx_f(p, 0.25)}};
  ks_call(p, e->body, &c);
  bytes = cuda_kir_write(p, &len);
  CHECK(cuda_kir_read(bytes, len, &back, &err) == 0);
  if (back) {
    char *a = printed(p), *b = printed(back);
    CHECK(!strcmp(a, b) && strstr(a, "call attention("));
    free(a);
    free(b);
    kir_free(back);
  }
  bytes[7] = 1;
  CHECK(cuda_kir_read(bytes, len, &back, &err) < 0);
  CHECK_STR_CONTAINS(err.msg, "compile it again");
  free(bytes);
  kir_free(p);
}

/* ---- bf16 mirrors ------------------------------------------------------------------ */

static void check_ranges(void) {
  CudaRanges r = {0};
  cuda_ranges_add(&r, 10, 20);
  cuda_ranges_add(&r, 30, 40);
  cuda_ranges_add(&r, 20, 30); /* joins both */
  CHECK(r.n == 1 && r.a[0].lo == 10 && r.a[0].hi == 40);
  cuda_ranges_remove(&r, 15, 18); /* splits it */
  CHECK(r.n == 2 && r.a[0].hi == 15 && r.a[1].lo == 18 && r.a[1].hi == 40);
  CHECK(cuda_ranges_cover(&r, 10, 15) && cuda_ranges_cover(&r, 20, 40) && !cuda_ranges_cover(&r, 14, 19));
  CHECK(cuda_ranges_cover(&r, 5, 5) && !cuda_ranges_cover(&r, 0, 11));
  cuda_ranges_add(&r, 0, 5);
  cuda_ranges_remove(&r, 3, 100); /* cuts the first, drops the others */
  CHECK(r.n == 1 && r.a[0].lo == 0 && r.a[0].hi == 3);
  cuda_ranges_add(&r, 50, 60);
  cuda_ranges_add(&r, 45, 70);
  cuda_ranges_add(&r, 10, 20);
  CHECK(r.n == 3 && r.a[1].lo == 10 && r.a[2].lo == 45 && r.a[2].hi == 70);
  vec_free(&r);
}

/* p rendered with the default options; on failure a failed check, and p freed */
static int render(KProgram *p, CudaProgram *cp) {
  CudaOptions o = cuda_options_default();
  PcError err;
  if (cuda_render(p, &o, cp, &err) == 0) return 0;
  CHECKF(0, "render: %s", err.msg);
  kir_free(p);
  return -1;
}

/* a device that counts conversions and records where products read A */
typedef struct {
  CudaDevice base;
  uint32_t to_bf16;
  int conversions, n_gemm;
  CuPtr a[16], c[16], next;
  int c_bf16[16];
  size_t most; /* allocations above this many bytes fail (0: none do) */
} MRec;

static int mrec_launch(CudaDevice *d, uint32_t k, uint32_t grid, uint32_t block, void **params, PcError *err) {
  ((MRec *)d)->conversions += k == ((MRec *)d)->to_bf16;
  return 0;
}
static int mrec_gemm(CudaDevice *d, const CudaGemm *g, PcError *err) {
  MRec *r = (MRec *)d;
  if (r->n_gemm < 16) { /* row-major A, and C */
    r->a[r->n_gemm] = g->b;
    r->c[r->n_gemm] = g->c;
    r->c_bf16[r->n_gemm] = g->c_bf16;
  }
  r->n_gemm++;
  return 0;
}
static int mrec_fill(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) { return 0; }
static void mrec_release(CudaDevice *d, CuPtr p) {} /* its own: rec_release would write into a Rec */
static int mrec_copy(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err) { return 0; }
static int mrec_alloc(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err) {
  MRec *r = (MRec *)d;
  if (r->most && bytes > r->most) return pc_errorf(err, "out of memory");
  *out = r->next;
  r->next += (bytes + 0xffff) & ~(CuPtr)0xffff;
  return 0;
}

/* Entry 0 of cp at B = 3 (its parameter at 0x100000, its output at
 * 0x200000, its arena at 0x300000) on a new recording device, whose
 * allocations start at 0x900000 and fail above `most` bytes (0: never). */
static int mrec_run(const CudaProgram *cp, MRec *rec, size_t most, CudaGemmCtx *gc, PcError *err) {
  *rec = (MRec){.base = {.name = "mrec", .launch = mrec_launch, .gemm = mrec_gemm, .fill32 = mrec_fill, .copy = mrec_copy,
                         .alloc = mrec_alloc,
                         .release = mrec_release, .sync = rec_sync},
                .to_bf16 = cp->runtime_kernel[CR_TO_BF16], .next = 0x900000, .most = most};
  CuPtr params[1] = {0x100000}, outputs[1] = {0x200000}, bufs[16];
  PC_ASSERT(cp->prog->entries.a[0].bufs.n <= 16);
  cuda_buffer_addresses(&cp->prog->entries.a[0], params, NULL, outputs, 0x300000, bufs);
  int64_t dims[1] = {3};
  return cuda_exec(cp, &rec->base, 0, dims, bufs, 0x800000, gc, NULL, err);
}

/* A buffer that a product writes and parallel loops load and store in
 * rows lives in its bf16 mirror:
 *   entry h [B <= 4]; parameter w (8 x 8), arena buffer a (64), output out (64)
 *   a = w[rows 0 .. B] w^T                                   the product, beta 0
 *   parfor p in 0 .. B: vfor j in 0 .. 8: a[p*8 + j] = a[p*8 + j] * 2
 *   parfor p in 0 .. B: vfor j in 0 .. 8: out[p*8 + j] = a[p*8 + j]
 * The product writes C in bf16 into a's mirror, the kernels load a from
 * it (and store it there alone); with no_half, a stays fp32. With a copy
 * from a into out added, a cannot live in its mirror. */
static void check_half(void) {
  for (int copied = 0; copied < 2; copied++) {
    KProgram *p = kir_new();
    KEntry *e = kir_entry(p, "h");
    uint32_t B = kdim(e, "B", 4);
    uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 64), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 64);
    uint32_t a = kbuf(e, "a", K_F32, KB_ARENA, 0, 256, 64);
    KGemm g = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 8), .k = kx_i(p, 8), .alpha = 1, .a = w, .b = w, .c = a,
               .a_off = kx_i(p, 0), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0), .lda = kx_i(p, 8), .ldb = kx_i(p, 8), .ldc = kx_i(p, 8)};
    ks_gemm(p, e->body, &g);
    uint32_t stmt[2];
    for (int i = 0; i < 2; i++) {
      uint32_t pv = kvar(e, "p", K_I64), jv = kvar(e, "j", K_I64);
      stmt[i] = (uint32_t)p->stmts.n;
      uint32_t row = ks_for(p, e->body, KL_PARALLEL, pv, kx_i(p, 0), kx_dim(p, B));
      uint32_t v = ks_for(p, row, KL_VECTOR, jv, kx_i(p, 0), kx_i(p, 8));
      uint32_t at = kx_add(p, kx_mul(p, kx_var(p, e, pv), kx_i(p, 8)), kx_var(p, e, jv));
      if (i == 0) ks_store(p, v, a, at, kx_mul(p, kx_load(p, e, a, at), kx_f(p, 2)));
      else ks_store(p, v, out, at, kx_load(p, e, a, at));
    }
    if (copied) ks_copy(p, e->body, out, kx_i(p, 0), a, kx_i(p, 0), kx_i(p, 8));
    CudaProgram cp;
    if (render(p, &cp) < 0) return;
    CHECKF(cuda_buf_half(&cp, 0, a) == !copied && !cuda_buf_half(&cp, 0, out), "copied %d: a %s", copied,
           cuda_buf_half(&cp, 0, a) ? "lives in its mirror" : "does not live in its mirror");
    if (!copied) CHECK_STR_CONTAINS(cp.source, " ? pc_f32(h");
    for (int no_half = 0; no_half < 2; no_half++) {
      MRec rec;
      PcError err;
      CudaGemmCtx gc = {.precision = CUDA_BF16, .no_half = no_half};
      if (mrec_run(&cp, &rec, 0, &gc, &err) < 0) CHECKF(0, "exec: %s", err.msg);
      int half = !copied && !no_half;
      CuPtr mirror = gc.mirror + (256 - cp.mirror_span[0]) / 2, arena = 0x300000 + 256;
      CHECKF(rec.n_gemm == 1 && rec.c_bf16[0] == half && rec.c[0] == (half ? mirror : arena),
             "copied %d, no_half %d: the product writes %s at %#llx", copied, no_half, rec.c_bf16[0] ? "bf16" : "fp32",
             (unsigned long long)rec.c[0]);
      const CudaLaunch *l = &cp.launches.a[cp.launch_of[stmt[1]]];
      uint64_t values[16];
      void *params[16];
      int64_t dims[1] = {3};
      CuPtr bufs[3] = {0x100000, 0x200000, arena};
      CudaValue vars[8] = {0};
      PC_ASSERT(l->n_args <= 16);
      cuda_pack_args(&cp, l, dims, bufs, vars, 0x800000, gc.mirror ? gc.mirror - cp.mirror_span[0] / 2 : 0, !no_half, values,
                     params);
      int given = 0; /* the loading kernel gets a's mirror */
      for (uint32_t i = 0; i < l->n_args; i++)
        given |= cp.args.a[l->arg0 + i].kind == CA_MIRROR && cp.args.a[l->arg0 + i].id == a && values[i] == mirror;
      CHECKF(given == half, "copied %d, no_half %d: the loading kernel %s a's mirror", copied, no_half, given ? "gets" : "does not get");
      cuda_gemm_ctx_free(&gc, &rec.base);
    }
    cuda_program_free(&cp);
    kir_free(p);
  }
}

/*   entry m [B <= 4], n = 8 on the host; arena buffers a0 .. a6 of 64 elements
 *     parfor p in 0 .. B: vfor j in 0 .. 8: a0[p*8 + j] = 1              rows of 8: mirrored
 *     parfor p in 0 .. B: k = p*n; vfor j in 0 .. n: a1[(k + j) + 4] = 2 rows of n from 4: mirrored
 *     parfor p in 0 .. B: a2[p] = 3                                      rows of 1: mirrored
 *     parfor p in 0 .. B: if p < 2: a3[p] = 4                            conditional: not
 *     parfor p in 0 .. B: vfor j in 0 .. 4: a4[p*8 + j] = 5              rows shorter than their stride: not
 *     parfor p in 0 .. B: vfor j in 0 .. 8: a5[p*8 + j] = 6;
 *                         vfor j in 0 .. 4: a5[p*8 + 2j] = 7             one store not a row: not
 *     parfor p in 0 .. B: vfor j in 0 .. 8: a6[p*8 + j] = 8              no product reads a6: not
 *     then products reading a0 .. a5 (A) with w (B), a fill of a0 between two that read a0, and a
 *     product adding into a2 between two that read a2; last, parfor q in 0 .. B: out[q] = a2[q]
 *   Stores to a0 and a1, which only products read, write the mirror alone; a2's write both. */
static void check_mirrors(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "m");
  uint32_t B = kdim(e, "B", 4);
  uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 64), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 64), a[7];
  for (uint32_t i = 0; i < 7; i++) a[i] = kbuf(e, "a", K_F32, KB_ARENA, 0, 256 * i, 64);
  uint32_t n = kvar(e, "n", K_I64), k = kvar(e, "k", K_I64), pv[7], jv[7];
  for (int i = 0; i < 7; i++) {
    pv[i] = kvar(e, "p", K_I64);
    jv[i] = kvar(e, "j", K_I64);
  }
  ks_assign(p, e->body, n, kx_i(p, 8));
  uint32_t stmt[7], row[7];
  for (int i = 0; i < 7; i++) {
    stmt[i] = (uint32_t)p->stmts.n;
    row[i] = ks_for(p, e->body, KL_PARALLEL, pv[i], kx_i(p, 0), kx_dim(p, B));
  }
#define P(i) kx_var(p, e, pv[i])
#define J(i) kx_var(p, e, jv[i])
  uint32_t v = ks_for(p, row[0], KL_VECTOR, jv[0], kx_i(p, 0), kx_i(p, 8));
  ks_store(p, v, a[0], kx_add(p, kx_mul(p, P(0), kx_i(p, 8)), J(0)), kx_f(p, 1));
  ks_assign(p, row[1], k, kx_mul(p, P(1), kx_var(p, e, n)));
  v = ks_for(p, row[1], KL_VECTOR, jv[1], kx_i(p, 0), kx_var(p, e, n));
  ks_store(p, v, a[1], kx_add(p, kx_add(p, kx_var(p, e, k), J(1)), kx_i(p, 4)), kx_f(p, 2));
  ks_store(p, row[2], a[2], P(2), kx_f(p, 3));
  uint32_t cond = ks_if(p, row[3], kx_op(p, KE_LT, P(3), kx_i(p, 2), 0));
  ks_store(p, cond, a[3], P(3), kx_f(p, 4));
  v = ks_for(p, row[4], KL_VECTOR, jv[4], kx_i(p, 0), kx_i(p, 4));
  ks_store(p, v, a[4], kx_add(p, kx_mul(p, P(4), kx_i(p, 8)), J(4)), kx_f(p, 5));
  v = ks_for(p, row[5], KL_VECTOR, jv[5], kx_i(p, 0), kx_i(p, 8));
  ks_store(p, v, a[5], kx_add(p, kx_mul(p, P(5), kx_i(p, 8)), J(5)), kx_f(p, 6));
  uint32_t j5b = kvar(e, "j", K_I64);
  v = ks_for(p, row[5], KL_VECTOR, j5b, kx_i(p, 0), kx_i(p, 4));
  ks_store(p, v, a[5], kx_add(p, kx_mul(p, P(5), kx_i(p, 8)), kx_mul(p, kx_i(p, 2), kx_var(p, e, j5b))), kx_f(p, 7));
  v = ks_for(p, row[6], KL_VECTOR, jv[6], kx_i(p, 0), kx_i(p, 8));
  ks_store(p, v, a[6], kx_add(p, kx_mul(p, P(6), kx_i(p, 8)), J(6)), kx_f(p, 8));
#undef P
#undef J
  /* out = a_i[rows 0 .. B of 8] w^T: a1's from element 4 */
  for (int i = 0; i < 6; i++) {
    KGemm g = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 8), .k = kx_i(p, i == 2 || i == 3 ? 1 : 8), .alpha = 1, .a = a[i], .b = w,
               .c = out, .a_off = kx_i(p, i == 1 ? 4 : 0), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0),
               .lda = kx_i(p, i == 2 || i == 3 ? 1 : 8), .ldb = kx_i(p, 8), .ldc = kx_i(p, 8)};
    ks_gemm(p, e->body, &g);
    if (i == 0) {
      ks_fill(p, e->body, a[0], kx_i(p, 0), kx_i(p, 8), kx_f(p, 0));
      ks_gemm(p, e->body, &g);
    }
    if (i == 2) { /* a product adding into a2 (so a2 cannot live in its mirror), then one reading it */
      KGemm over = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 1), .k = kx_i(p, 8), .alpha = 1, .beta = 1, .a = w, .b = w, .c = a[2],
                    .a_off = kx_i(p, 0), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0), .lda = kx_i(p, 8), .ldb = kx_i(p, 8),
                    .ldc = kx_i(p, 1)};
      ks_gemm(p, e->body, &over);
      ks_gemm(p, e->body, &g);
    }
  }
  uint32_t qv = kvar(e, "q", K_I64), last = ks_for(p, e->body, KL_PARALLEL, qv, kx_i(p, 0), kx_dim(p, B));
  ks_store(p, last, out, kx_var(p, e, qv), kx_load(p, e, a[2], kx_var(p, e, qv)));
  CudaProgram cp;
  PcError err;
  if (render(p, &cp) < 0) return;
  for (int i = 0; i < 7; i++) {
    const CudaLaunch *l = &cp.launches.a[cp.launch_of[stmt[i]]];
    CHECKF((l->n_m == 1) == (i < 3), "kernel %d: %u mirrors", i, l->n_m);
  }
  const CudaLaunch *l1 = &cp.launches.a[cp.launch_of[stmt[1]]], *l2 = &cp.launches.a[cp.launch_of[stmt[2]]];
  CHECK(l1->n_m && cp.mirrors.a[l1->m0].buf == a[1] && cp.mirrors.a[l1->m0].w != UINT32_MAX && cp.mirrors.a[l1->m0].n_c == 1);
  CHECK(l2->n_m && cp.mirrors.a[l2->m0].w == UINT32_MAX);
  CHECK(l1->n_m && cp.mirrors.a[l1->m0].alone && l2->n_m && !cp.mirrors.a[l2->m0].alone);
  CHECK_STR_CONTAINS(cp.source, "] = pc_bf16(pc_v); else p"); /* a0, a1 */
  CHECK_STR_CONTAINS(cp.source, "] = pc_v; if (h"); /* a2 */
  CHECKF(cp.mirror_span[0] == 0 && cp.mirror_span[1] == 256 * 2 + 4 * 64, "span %llu %llu", (unsigned long long)cp.mirror_span[0], (unsigned long long)cp.mirror_span[1]);
  CHECK_STR_CONTAINS(cp.source, "if (h0) h0[");
  /* what the executor reads: the mirror where rows were mirrored, else a conversion */
  MRec rec;
  CudaGemmCtx gc = {.precision = CUDA_BF16};
  if (mrec_run(&cp, &rec, 0, &gc, &err) < 0) CHECKF(0, "exec: %s", err.msg);
  /* the mirror came first (0x900000): arena byte o's at 0x900000 + o / 2; products' A is cuBLAS's B */
  CHECK(gc.mirror == 0x900000 && gc.mirror_bytes == (256 * 2 + 4 * 64) / 2);
  CHECK(rec.n_gemm == 9 && rec.a[0] == 0x900000 && rec.a[2] == 0x900000 + 256 / 2 + 2 * 4 && rec.a[3] == 0x900000 + 512 / 2);
  for (int i = 1; i < 9; i++)
    if (i != 2 && i != 3) CHECKF(rec.a[i] < 0x900000 || rec.a[i] >= 0x900000 + gc.mirror_bytes, "product %d read a mirror", i);
  /* w once; a0 after the fill and a2 after the product (no longer fresh), a3, a4, a5 */
  CHECKF(rec.conversions == 6, "%d conversions", rec.conversions);
  CHECKF(gc.mirrored == 2 * (3 * 8) + 3 * 1, "%llu elements read from mirrors", (unsigned long long)gc.mirrored);
  cuda_gemm_ctx_free(&gc, &rec.base);
  /* with convert_only, no mirrors: every product's operands converted */
  gc = (CudaGemmCtx){.precision = CUDA_BF16, .convert_only = 1};
  if (mrec_run(&cp, &rec, 0, &gc, &err) < 0) CHECKF(0, "exec: %s", err.msg);
  CHECKF(gc.mirrored == 0 && gc.mirror_bytes == 0 && rec.conversions == 9, "%d conversions", rec.conversions);
  cuda_gemm_ctx_free(&gc, &rec.base);
  /* no memory for the mirror: the same conversions, and the context says why */
  gc = (CudaGemmCtx){.precision = CUDA_BF16};
  CHECKF(mrec_run(&cp, &rec, 256, &gc, &err) == 0, "exec: %s", err.msg);
  CHECKF(gc.mirrored == 0 && gc.mirror_refused == (256 * 2 + 4 * 64) / 2 && rec.conversions == 9, "%d conversions",
         rec.conversions);
  cuda_gemm_ctx_free(&gc, &rec.base);
  cuda_program_free(&cp);
  kir_free(p);
}

/* Copies into rows mirror when they are whole rows, or parts that tile
 * them (the gradient of q, k and v copied into their product's):
 *   parfor p in 0 .. B: copy d0 + p*8 + 4 <- s + p*4, count 4;
 *                       copy d0 + p*8 <- s + p*4, count n  (n = 4)   parts that tile rows of 8: mirrored
 *   parfor p in 0 .. B: copy d1 + p*8 <- s + p*4, count 4;
 *                       copy d1 + p*8 + 5 <- s + p*4, count 4         a gap (8 in all): not
 *   parfor p in 0 .. B: copy d2 + p*8 <- s + p*8, count 8            whole rows: mirrored
 *   then products reading d0, d1, d2 (A) with w (B), and a kernel reading s */
static void check_copy_mirrors(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "c");
  uint32_t B = kdim(e, "B", 4);
  uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 64), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 64);
  uint32_t src = kbuf(e, "s", K_F32, KB_ARENA, 0, 0, 64), d[3];
  for (uint32_t i = 0; i < 3; i++) d[i] = kbuf(e, "d", K_F32, KB_ARENA, 0, 256 * (i + 1), 64);
  uint32_t n = kvar(e, "n", K_I64), pv[3], stmt[3], row[3];
  ks_assign(p, e->body, n, kx_i(p, 4));
  for (int i = 0; i < 3; i++) {
    pv[i] = kvar(e, "p", K_I64);
    stmt[i] = (uint32_t)p->stmts.n;
    row[i] = ks_for(p, e->body, KL_PARALLEL, pv[i], kx_i(p, 0), kx_dim(p, B));
  }
#define ROW(i, c) kx_add(p, kx_mul(p, kx_var(p, e, pv[i]), kx_i(p, 8)), kx_i(p, c))
#define SRC(i, w) kx_mul(p, kx_var(p, e, pv[i]), kx_i(p, w))
  ks_copy(p, row[0], d[0], ROW(0, 4), src, SRC(0, 4), kx_i(p, 4));
  ks_copy(p, row[0], d[0], kx_mul(p, kx_var(p, e, pv[0]), kx_i(p, 8)), src, SRC(0, 4), kx_var(p, e, n));
  ks_copy(p, row[1], d[1], kx_mul(p, kx_var(p, e, pv[1]), kx_i(p, 8)), src, SRC(1, 4), kx_i(p, 4));
  ks_copy(p, row[1], d[1], ROW(1, 5), src, SRC(1, 4), kx_i(p, 4));
  ks_copy(p, row[2], d[2], kx_mul(p, kx_var(p, e, pv[2]), kx_i(p, 8)), src, SRC(2, 8), kx_i(p, 8));
#undef ROW
#undef SRC
  for (int i = 0; i < 3; i++) {
    KGemm g = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 8), .k = kx_i(p, 8), .alpha = 1, .a = d[i], .b = w, .c = out,
               .a_off = kx_i(p, 0), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0), .lda = kx_i(p, 8), .ldb = kx_i(p, 8),
               .ldc = kx_i(p, 8)};
    ks_gemm(p, e->body, &g);
  }
  uint32_t qv = kvar(e, "q", K_I64), last = ks_for(p, e->body, KL_PARALLEL, qv, kx_i(p, 0), kx_dim(p, B));
  ks_store(p, last, out, kx_var(p, e, qv), kx_load(p, e, src, kx_var(p, e, qv)));
  CudaProgram cp;
  if (render(p, &cp) < 0) return;
  for (int i = 0; i < 3; i++) {
    const CudaLaunch *l = &cp.launches.a[cp.launch_of[stmt[i]]];
    CHECKF((l->n_m == 1) == (i != 1), "copy kernel %d: %u mirrors", i, l->n_m);
    if (l->n_m == 1) CHECK(cp.mirrors.a[l->m0].buf == d[i] && cp.mirrors.a[l->m0].alone);
  }
  CHECK_STR_CONTAINS(cp.source, "pc_copy_mirror(");
  MRec rec;
  PcError err;
  CudaGemmCtx gc = {.precision = CUDA_BF16};
  CHECKF(mrec_run(&cp, &rec, 0, &gc, &err) == 0, "%s", err.msg);
  CHECKF(rec.conversions == 2 && gc.mirrored == 2 * 3 * 8, "%d conversions, %llu elements from mirrors", rec.conversions,
         (unsigned long long)gc.mirrored); /* w and d1 convert; B = 3 rows of 8 from d0's and d2's mirrors */
  cuda_gemm_ctx_free(&gc, &rec.base);
  cuda_program_free(&cp);
  kir_free(p);
}

/* graph text lowered with the CUDA schedule into *p and rendered into *cp */
static int lower_render(const char *text, KProgram **p, CudaProgram *cp) {
  PcError err;
  IrGraph *g = NULL;
  if (ir_parse(text, "lowered", &g, &err) < 0 || ir_verify(g, &err) < 0) {
    CHECKF(0, "%s", err.msg);
    ir_graph_free(g);
    return -1;
  }
  *p = kir_new();
  KSchedule s = kschedule_cuda();
  const char *names[1] = {"w"};
  int64_t dim_max[2] = {2, 4};
  int rc = lower_entry(*p, "f", g, dim_max, names, 1, &s, &err);
  ir_graph_free(g);
  CHECKF(rc == 0, "%s", rc ? err.msg : "");
  if (rc) kir_free(*p);
  return rc || render(*p, cp) < 0 ? -1 : 0;
}

/* Whether some kernel of cp stores buffer `name` of p's entry with its mirror; *kernels gets how many
 * generated kernels there are */
static int mirrored(const KProgram *p, const CudaProgram *cp, const char *name, uint32_t *kernels) {
  const KEntry *e = &p->entries.a[0];
  uint32_t b = UINT32_MAX;
  int found = 0;
  for (size_t i = 0; i < e->bufs.n; i++)
    if (!strcmp(e->bufs.a[i].name, name)) b = (uint32_t)i;
  *kernels = 0;
  for (size_t i = 0; i < cp->launches.n; i++) {
    const CudaLaunch *l = &cp->launches.a[i];
    *kernels += l->mode != CM_CALL && l->mode != CM_SERIAL;
    for (uint32_t k = 0; k < l->n_m; k++) found |= cp->mirrors.a[l->m0 + k].buf == b;
  }
  return b != UINT32_MAX && found;
}

/* Row loops merged on a GPU's schedule (merge_rows) keep their mirrors:
 * gelu(x) and gelu(a) over the same rows are one kernel, and h, which a
 * product reads, is stored there with its bf16 mirror as when its loop
 * ran alone (its stores read the merged loop's variable, not a copy of
 * it). So is a rotated value a product reads (wide_rows: the rope's
 * stores run along the row). */
static void check_merged_mirror(void) {
  static const char *merged = "graph merged [B, T] {\n"
                              "  %w = param() {init=\"normal\", std=0.02} : f32[8,8]\n"
                              "  %x = input() : f32[B,T,8]\n"
                              "  %a = input() : f32[B,T,8]\n"
                              "  %y = gelu(%x) : f32[B,T,8]\n"
                              "  %h = gelu(%a) : f32[B,T,8]\n"
                              "  %z = linear(%h, %w) : f32[B,T,8]\n"
                              "  output(%y) {name=\"y\"}\n"
                              "  output(%z) {name=\"z\"}\n"
                              "}\n";
  static const char *rotated = "graph rotated [B, T] {\n"
                               "  %w = param() {init=\"normal\", std=0.02} : f32[8,8]\n"
                               "  %x = input() : f32[B,T,8]\n"
                               "  %ids = input() : i32[B,T]\n"
                               "  %p = positions(%ids) : i32[T]\n"
                               "  %r = rope(%x, %p) {n_head=2, rotary_dims=2, theta=10000.0} : f32[B,T,8]\n"
                               "  %z = linear(%r, %w) : f32[B,T,8]\n"
                               "  output(%z) {name=\"z\"}\n"
                               "}\n";
  KProgram *p;
  CudaProgram cp;
  uint32_t kernels;
  if (lower_render(merged, &p, &cp) == 0) {
    CHECKF(mirrored(p, &cp, "h", &kernels), "h, read by a product, is stored without its mirror in the merged kernel");
    CHECKF(kernels == 1, "gelu(x) and gelu(a): %u kernels, not one", kernels);
    cuda_program_free(&cp);
    kir_free(p);
  }
  if (lower_render(rotated, &p, &cp) == 0) {
    CHECKF(mirrored(p, &cp, "r", &kernels), "r, rotated and read by a product, is stored without its mirror");
    cuda_program_free(&cp);
    kir_free(p);
  }
}

/* An operand-only buffer's mirrored rows are stored in bf16 alone (when
 * the host gives a mirror), and a product that would convert some of them
 * is an error, not a silent read of stale fp32:
 *   parfor p in 0 .. B: vfor j in 0 .. 8: a[p*8 + j] = 1
 *   out = a[rows 0 .. B of 8] w^T     (fresh: from the mirror)
 *   out = a[from 4, B rows of 8] w^T  (half fresh: the error) */
static void check_operand_only(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "o");
  uint32_t B = kdim(e, "B", 4);
  uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 64), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 64);
  uint32_t a = kbuf(e, "a", K_F32, KB_ARENA, 0, 0, 64);
  e->bufs.a[a].operand_only = 1;
  uint32_t pv = kvar(e, "p", K_I64), jv = kvar(e, "j", K_I64);
  uint32_t row = ks_for(p, e->body, KL_PARALLEL, pv, kx_i(p, 0), kx_dim(p, B));
  uint32_t v = ks_for(p, row, KL_VECTOR, jv, kx_i(p, 0), kx_i(p, 8));
  ks_store(p, v, a, kx_add(p, kx_mul(p, kx_var(p, e, pv), kx_i(p, 8)), kx_var(p, e, jv)), kx_f(p, 1));
  for (int k = 0; k < 2; k++) {
    KGemm g = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 8), .k = kx_i(p, 8), .alpha = 1, .a = a, .b = w, .c = out,
               .a_off = kx_i(p, 4 * k), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0), .lda = kx_i(p, 8), .ldb = kx_i(p, 8),
               .ldc = kx_i(p, 8)};
    ks_gemm(p, e->body, &g);
  }
  CudaProgram cp;
  PcError err;
  if (render(p, &cp) < 0) return;
  CHECK_STR_CONTAINS(cp.source, "] = pc_bf16(pc_v); else p");
  MRec rec;
  CudaGemmCtx gc = {.precision = CUDA_BF16};
  CHECK(mrec_run(&cp, &rec, 0, &gc, &err) < 0);
  CHECK_STR_CONTAINS(err.msg, "partly from rows stored in bf16 only");
  CHECK(rec.n_gemm == 1 && rec.a[0] == 0x900000); /* the first product read the mirror */
  cuda_gemm_ctx_free(&gc, &rec.base);
  /* converting every operand, the kernel stores fp32 and both products convert */
  gc = (CudaGemmCtx){.precision = CUDA_BF16, .convert_only = 1};
  CHECK(mrec_run(&cp, &rec, 0, &gc, &err) == 0 && rec.n_gemm == 2);
  cuda_gemm_ctx_free(&gc, &rec.base);
  cuda_program_free(&cp);
  kir_free(p);
}

/* A mirror that a later kernel stores again before any product reads it is not written:
 *   parfor p in 0 .. B: vfor j in 0 .. 8: a[p*8 + j] = 1              mirror overwritten below
 *   (read_between: out = a w^T)                                        then it is read: kept
 *   parfor p in 0 .. B: vfor j in 0 .. 8: a[p*8 + j] = a[p*8 + j] * 2  mirrored
 *   out = a w^T                                                         from the second kernel's mirror */
static void check_overwritten_mirror(void) {
  for (int read_between = 0; read_between < 2; read_between++) {
    KProgram *p = kir_new();
    KEntry *e = kir_entry(p, "o");
    uint32_t B = kdim(e, "B", 4);
    uint32_t w = kbuf(e, "w", K_F32, KB_PARAM, 0, 0, 64), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 64);
    uint32_t a = kbuf(e, "a", K_F32, KB_ARENA, 0, 0, 64);
    uint32_t pv = kvar(e, "p", K_I64), jv = kvar(e, "j", K_I64), p2 = kvar(e, "p2", K_I64), j2 = kvar(e, "j2", K_I64);
    KGemm g = {.tb = 1, .m = kx_dim(p, B), .n = kx_i(p, 8), .k = kx_i(p, 8), .alpha = 1, .a = a, .b = w, .c = out,
               .a_off = kx_i(p, 0), .b_off = kx_i(p, 0), .c_off = kx_i(p, 0), .lda = kx_i(p, 8), .ldb = kx_i(p, 8), .ldc = kx_i(p, 8)};
    uint32_t first = (uint32_t)p->stmts.n;
    uint32_t row = ks_for(p, e->body, KL_PARALLEL, pv, kx_i(p, 0), kx_dim(p, B));
    uint32_t v = ks_for(p, row, KL_VECTOR, jv, kx_i(p, 0), kx_i(p, 8));
    ks_store(p, v, a, kx_add(p, kx_mul(p, kx_var(p, e, pv), kx_i(p, 8)), kx_var(p, e, jv)), kx_f(p, 1));
    if (read_between) ks_gemm(p, e->body, &g);
    uint32_t second = (uint32_t)p->stmts.n;
    row = ks_for(p, e->body, KL_PARALLEL, p2, kx_i(p, 0), kx_dim(p, B));
    v = ks_for(p, row, KL_VECTOR, j2, kx_i(p, 0), kx_i(p, 8));
    uint32_t at = kx_add(p, kx_mul(p, kx_var(p, e, p2), kx_i(p, 8)), kx_var(p, e, j2));
    ks_store(p, v, a, at, kx_mul(p, kx_load(p, e, a, at), kx_f(p, 2)));
    ks_gemm(p, e->body, &g);
    CudaProgram cp;
    PcError err;
    if (render(p, &cp) < 0) return;
    const CudaLaunch *l1 = &cp.launches.a[cp.launch_of[first]], *l2 = &cp.launches.a[cp.launch_of[second]];
    CHECK(l1->n_m == 1 && l2->n_m == 1);
    CHECKF(cp.mirrors.a[l1->m0].overwritten == !read_between, "read between: %d", read_between);
    CHECK(!cp.mirrors.a[l2->m0].overwritten && !cp.mirrors.a[l1->m0].alone);
    /* the first launch gets no mirror address; the products read mirrors, converting only w */
    uint64_t values[16];
    void *params[16];
    CudaValue vars[8] = {{0}};
    CuPtr bufs[3] = {0x100000, 0x200000, 0x300000};
    int64_t dims[1] = {3};
    PC_ASSERT(l1->n_args <= 16);
    cuda_pack_args(&cp, l1, dims, bufs, vars, 0x800000, 0x700000, 1, values, params);
    for (uint32_t i = 0; i < l1->n_args; i++)
      if (cp.args.a[l1->arg0 + i].kind == CA_MIRROR) CHECKF((values[i] != 0) == read_between, "mirror arg %llx", (unsigned long long)values[i]);
    MRec rec;
    CudaGemmCtx gc = {.precision = CUDA_BF16};
    CHECK(mrec_run(&cp, &rec, 0, &gc, &err) == 0 && rec.n_gemm == 1 + read_between);
    CHECKF(gc.converted == 64 && gc.mirrored == 24 * (1 + (uint64_t)read_between), "%llu converted, %llu from mirrors",
           (unsigned long long)gc.converted, (unsigned long long)gc.mirrored);
    cuda_gemm_ctx_free(&gc, &rec.base);
    cuda_program_free(&cp);
    kir_free(p);
  }
}

/* ---- profiles ------------------------------------------------------------------------ */

/* a recording device whose clock reads n^2 ms at its n-th stamp: the op
 * after stamp n - 1 takes 2n - 1 ms */
typedef struct {
  Rec rec;
  size_t stamps;
} TRec;
static int trec_stamp(CudaDevice *d, PcError *err) {
  ((TRec *)d)->stamps++;
  return 0;
}
static int trec_elapsed(CudaDevice *d, float *ms, size_t n, PcError *err) {
  TRec *r = (TRec *)d;
  CHECK(n == r->stamps);
  for (size_t i = 0; i + 1 < n; i++) ms[i] = (float)(2 * i + 1);
  r->stamps = 0;
  return 0;
}

/* make_program's ops in order: k0 twice (the host's loop), k1, k2 (and
 * its read-back), k3, the product, the fill, the overlapping copy (two
 * device copies): 1, 3, 5, .. 15 ms */
static void check_profile(void) {
  Prog r = make_program();
  uint32_t softmax = kir_origin(r.p, "softmax @t.lua:1");
  r.p->stmts.a[r.block_pf].origin = softmax;
  r.p->stmts.a[r.thread_pf].origin = softmax;
  CudaProgram cp;
  if (render(r.p, &cp) < 0) return;
  TRec t = {.rec.base = {.name = "trec", .launch = rec_launch, .download = rec_download, .gemm = rec_gemm,
                         .fill32 = rec_fill, .copy = rec_copy, .alloc = rec_alloc, .release = rec_release,
                         .sync = rec_sync, .stamp = trec_stamp, .elapsed = trec_elapsed}};
  CuPtr bufs[5] = {0x100000, 0x200000, 0x280000, 0x300000, 0x400000};
  int64_t dims[1] = {3};
  CudaProfile pf = {0};
  PcError err;
  for (int call = 0; call < 2; call++) {
    t.rec.len = 0;
    if (cuda_exec(&cp, &t.rec.base, 0, dims, bufs, 0x800000, NULL, &pf, &err) < 0) CHECKF(0, "exec: %s", err.msg);
    pf.calls++;
  }
  CHECK(t.stamps == 0 && !pf.started && pf.calls == 2);
  struct {
    CudaProfKind kind;
    uint32_t kernel, origin;
    uint64_t count;
    double ms;
  } want[] = {{CP_KERNEL, 0, softmax, 4, 8}, {CP_KERNEL, 1, softmax, 2, 10}, {CP_KERNEL, 2, 0, 2, 14},
              {CP_KERNEL, 3, 0, 2, 18},      {CP_GEMM, 0, 0, 2, 22},        {CP_FILL, 0, 0, 2, 26},
              {CP_COPY, 0, 0, 2, 30}};
  CHECKF(pf.rows.n == 7, "%zu rows", pf.rows.n);
  for (size_t i = 0; i < 7 && i < pf.rows.n; i++) {
    const CudaProfRow *q = &pf.rows.a[i];
    CHECKF(q->key.kind == want[i].kind && q->key.kernel == want[i].kernel && q->key.origin == want[i].origin &&
               q->count == want[i].count && q->ms == want[i].ms,
           "row %zu: kind %d k%u origin %u, %llu ops, %g ms", i, q->key.kind, q->key.kernel, q->key.origin,
           (unsigned long long)q->count, q->ms);
  }
  CHECK(pf.ms == 128 && pf.rows.a[4].key.m == 3 && pf.rows.a[4].key.n == 2 && pf.rows.a[4].key.tb == 1);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cuda_profile_print(&pf, &cp, "t", "call", 3, f);
  fclose(f);
  /* per call, the slowest first; the rest in one line; then by graph op */
  CHECK_STR_CONTAINS(text, "2 calls, 64.000 ms of device time a call");
  CHECK_STR_CONTAINS(text, "|---|---:|---:|\n| 15.000 | 23.4% | 1 | copy | (the entry's own) |  | 0 |\n| 13.000 | 20.3% | 1 | fill |");
  CHECK_STR_CONTAINS(text, "| 11.000 | 17.2% | 1 | gemm nt 3x2x2 fp32 | (the entry's own) | 0.0 | 0 |\n| 25.000 | 39.1% | 5 | 4 more rows |");
  CHECK_STR_CONTAINS(text, "| 55.000 | 85.9% | 5 | (the entry's own) |\n| 9.000 | 14.1% | 3 | softmax |\n");
  free(text);
  cuda_profile_free(&pf);
  cuda_program_free(&cp);
  kir_free(r.p);
}

/* make_program counted without a device: what check_program's recording device was asked */
static void check_census(void) {
  Prog r = make_program();
  r.p->stmts.a[r.block_pf].origin = kir_origin(r.p, "softmax @t.lua:1");
  CudaProgram cp;
  if (render(r.p, &cp) < 0) return;
  CudaCensus c;
  PcError err;
  int64_t dims[1] = {3};
  if (cuda_census(&cp, 0, dims, CUDA_FP32, &c, &err) < 0) CHECKF(0, "census: %s", err.msg);
  CHECK(c.launches[CM_BLOCK] == 2 && c.launches[CM_THREAD] == 1 && c.launches[CM_SERIAL] == 1 && c.launches[CM_WARP] == 1);
  CHECK(c.launches[CM_CALL] == 0 && c.launches[CM_RUNTIME] == 0 && c.read_backs == 1);
  CHECK(c.products == 1 && c.flops == 2 * 3 * 2 * 2 && c.fills == 1 && c.fill_bytes == 8 && c.copies == 2 && c.copy_bytes == 32);
  /* traffic, 4 bytes an element. k0, twice: x's 2 x 3 x 1024 loads come to its 4096 elements, the 3 x 1024 loads of
   * sums[p] to its 8, then 3 stores to sums and 3 x 1024 to y; k1 reads 3 sums and writes 3 of z; k2 reads one; k3
   * writes 3 x 32 of y. The product reads 3 x 2 and 2 x 2 and writes 3 x 2; the fill writes 2; the copy moves 4. */
  double k0 = 4.0 * (4096 + 8 + 3 + 3072);
  CHECKF(c.traffic[CP_KERNEL] == 2 * k0 + 4 * (3 + 3) + 4 + 4 * 96, "kernels: %g bytes", c.traffic[CP_KERNEL]);
  CHECK(c.traffic[CP_GEMM] == 4 * (6 + 4 + 6) && c.traffic[CP_FILL] == 8 && c.traffic[CP_COPY] == 32 && c.ops.guesses == 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cuda_census_print(&c, &cp, 2, f);
  fclose(f);
  CHECK_STR_CONTAINS(text, "  5 launches: 1 serial 1 thread 1 warp 2 block\n  1 products");
  CHECK_STR_CONTAINS(text, "  most frequent ops:\n         2  k0 (block)                               softmax @t.lua:1\n");
  CHECK_STR_CONTAINS(text, "  traffic (estimated): 5.795e-05 GB read and written: kernels 5.784e-05, attention 0, products 6.4e-08");
  CHECK_STR_CONTAINS(text, "  most traffic (GB, ops):\n       0.00    2  k0 (block)                               softmax @t.lua:1\n");
  free(text);
  cuda_census_free(&c);
  cuda_program_free(&cp);
  kir_free(r.p);
}

/* A causal loop counts at its middle row; a loop whose bound is read in the kernel counts once, as a guess:
 *   parfor p in 0 .. B:
 *     for j in 0 .. p + 1: y[p * 8 + j] = x[j]
 *   parfor q in 0 .. B:
 *     n = len[q]
 *     for j2 in 0 .. n: y[q * 8 + j2] = 1 */
static void check_traffic(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "t");
  uint32_t B = kdim(e, "B", 5);
  uint32_t x = kbuf(e, "x", K_F32, KB_INPUT, 0, 0, 64), y = kbuf(e, "y", K_F32, KB_OUTPUT, 0, 0, 64);
  uint32_t len = kbuf(e, "len", K_I32, KB_INPUT, 1, 0, 8);
  uint32_t pv = kvar(e, "p", K_I64), j = kvar(e, "j", K_I64), q = kvar(e, "q", K_I64), n = kvar(e, "n", K_I64);
  uint32_t j2 = kvar(e, "j2", K_I64);
  uint32_t row = ks_for(p, e->body, KL_PARALLEL, pv, kx_i(p, 0), kx_dim(p, B));
  uint32_t causal = ks_for(p, row, KL_SERIAL, j, kx_i(p, 0), kx_add(p, kx_var(p, e, pv), kx_i(p, 1)));
  ks_store(p, causal, y, kx_add(p, kx_mul(p, kx_var(p, e, pv), kx_i(p, 8)), kx_var(p, e, j)), kx_load(p, e, x, kx_var(p, e, j)));
  uint32_t row2 = ks_for(p, e->body, KL_PARALLEL, q, kx_i(p, 0), kx_dim(p, B));
  ks_assign(p, row2, n, kx_load(p, e, len, kx_var(p, e, q)));
  uint32_t inner = ks_for(p, row2, KL_SERIAL, j2, kx_i(p, 0), kx_var(p, e, n));
  ks_store(p, inner, y, kx_add(p, kx_mul(p, kx_var(p, e, q), kx_i(p, 8)), kx_var(p, e, j2)), kx_f(p, 1));
  CudaProgram cp;
  if (render(p, &cp) < 0) return;
  CudaCensus c;
  PcError err;
  int64_t dims[1] = {5};
  if (cuda_census(&cp, 0, dims, CUDA_FP32, &c, &err) < 0) CHECKF(0, "census: %s", err.msg);
  /* rows 0 .. 4 store 1 + 2 + .. + 5 = 15 elements (the middle row's 3, five times), loading as many of x; then 5
   * of len read and 5 rows of one store each */
  CHECKF(c.traffic[CP_KERNEL] == 4.0 * (15 + 15) + 4.0 * (5 + 5), "%g bytes", c.traffic[CP_KERNEL]);
  CHECK(c.ops.guesses == 1);
  cuda_census_free(&c);
  cuda_program_free(&cp);
  kir_free(p);
}

/* ---- scalars the host knows ---------------------------------------------------------
 *   for i in 0 .. 3:
 *     n = pos[0]                          (read back the first time only: nothing writes pos)
 *     fill slot + 0, count 1, value 5 + i
 *     m = slot[0]                         (the fill's value: no read-back)
 *     fill out + i, count 1, value itof(n + m)
 *     parfor q in 0 .. B: out[12 + q] = itof(n)   (so that the host runs the loop)
 *   fill big + 0, count 4, value 2.5
 *   f = big[2]                            (inside the fill: no read-back)
 *   parfor q in 0 .. B: alias[q] = f      (alias shares slot's arena bytes)
 *   m = slot[0]                           (written over: read back)
 *   fill out + 8, count 1, value itof(m) + f */
static int krec_download(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err) {
  Rec *r = (Rec *)d;
  int64_t v = 42;
  memcpy(dst, &v, bytes < 8 ? bytes : 8);
  LOG(r, "download ");
  return 0;
}
static int krec_launch(CudaDevice *d, uint32_t k, uint32_t grid, uint32_t block, void **params, PcError *err) {
  Rec *r = (Rec *)d;
  LOG(r, "k%u<%u,%u> ", k, grid, block);
  return 0;
}
static int krec_fill(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) {
  Rec *r = (Rec *)d;
  float f;
  memcpy(&f, &bits, 4);
  LOG(r, "fill(%llx+%llu,%zu,%g) ", (unsigned long long)(dst & ~0xfffffULL) >> 20, (unsigned long long)(dst & 0xfffff), count,
      dst == 0x300000 ? (double)(int32_t)bits : f); /* slot holds an int */
  return 0;
}

static void check_known_scalars(void) {
  KProgram *p = kir_new();
  KEntry *e = kir_entry(p, "t");
  uint32_t B = kdim(e, "B", 4);
  uint32_t pos = kbuf(e, "pos", K_I32, KB_INPUT, 0, 0, 1), out = kbuf(e, "out", K_F32, KB_OUTPUT, 0, 0, 16);
  uint32_t slot = kbuf(e, "slot", K_I32, KB_ARENA, 0, 0, 1), alias = kbuf(e, "alias", K_F32, KB_ARENA, 0, 0, 4);
  uint32_t big = kbuf(e, "big", K_F32, KB_ARENA, 0, 64, 4);
  uint32_t i = kvar(e, "i", K_I64), n = kvar(e, "n", K_I64), m = kvar(e, "m", K_I64), f = kvar(e, "f", K_F32);
  uint32_t q = kvar(e, "q", K_I64);
  uint32_t body = ks_for(p, e->body, KL_SERIAL, i, kx_i(p, 0), kx_i(p, 3));
  ks_assign(p, body, n, kx_load(p, e, pos, kx_i(p, 0)));
  ks_fill(p, body, slot, kx_i(p, 0), kx_i(p, 1), kx_add(p, kx_i(p, 5), kx_var(p, e, i)));
  ks_assign(p, body, m, kx_load(p, e, slot, kx_i(p, 0)));
  ks_fill(p, body, out, kx_var(p, e, i), kx_i(p, 1), kx_op(p, KE_ITOF, kx_add(p, kx_var(p, e, n), kx_var(p, e, m)), 0, 0));
  uint32_t row1 = ks_for(p, body, KL_PARALLEL, q, kx_i(p, 0), kx_dim(p, B));
  ks_store(p, row1, out, kx_add(p, kx_i(p, 12), kx_var(p, e, q)), kx_op(p, KE_ITOF, kx_var(p, e, n), 0, 0));
  ks_fill(p, e->body, big, kx_i(p, 0), kx_i(p, 4), kx_f(p, 2.5));
  ks_assign(p, e->body, f, kx_load(p, e, big, kx_i(p, 2)));
  uint32_t row = ks_for(p, e->body, KL_PARALLEL, q, kx_i(p, 0), kx_dim(p, B));
  ks_store(p, row, alias, kx_var(p, e, q), kx_var(p, e, f));
  ks_assign(p, e->body, m, kx_load(p, e, slot, kx_i(p, 0)));
  ks_fill(p, e->body, out, kx_i(p, 8), kx_i(p, 1), kx_add(p, kx_op(p, KE_ITOF, kx_var(p, e, m), 0, 0), kx_var(p, e, f)));
  CudaProgram cp;
  if (render(p, &cp) < 0) return;
  Rec rec = {.base = {.name = "rec", .launch = krec_launch, .download = krec_download, .fill32 = krec_fill, .alloc = rec_alloc,
                      .release = rec_release, .sync = rec_sync}};
  CuPtr bufs[5] = {0x100000, 0x200000, 0x300000, 0x300000, 0x300100}; /* slot and alias share their bytes */
  int64_t dims[1] = {4};
  PcError err;
  if (cuda_exec(&cp, &rec.base, 0, dims, bufs, 0x800000, NULL, NULL, &err) < 0) CHECKF(0, "exec: %s", err.msg);
  /* k0 loads an int at 0 (pos[0], slot[0]), k1 the loop's rows, k3 the alias's */
  const char *want = "k0<1,1> download fill(3+0,1,5) fill(2+0,1,47) k1<1,128> fill(3+0,1,6) fill(2+4,1,48) k1<1,128> "
                     "fill(3+0,1,7) fill(2+8,1,49) k1<1,128> fill(3+256,4,2.5) k3<1,128> k0<1,1> download fill(2+32,1,44.5) ";
  CHECKF(!strcmp(rec.log, want), "the device was asked:\n  %s\nnot\n  %s", rec.log, want);
  cuda_program_free(&cp);
  kir_free(p);
}

int main(void) {
  check_shapes();
  check_addresses_and_args();
  check_gemm_mapping();
  check_precision_names();
  check_program();
  check_errors();
  check_bytes();
  check_ranges();
  check_mirrors();
  check_copy_mirrors();
  check_merged_mirror();
  check_operand_only();
  check_overwritten_mirror();
  check_half();
  check_profile();
  check_census();
  check_traffic();
  check_known_scalars();
  return check_exit();
}
