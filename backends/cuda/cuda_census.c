/* The census device: a CudaDevice that counts what it is asked and hands
 * out made-up addresses, never touching memory. */
#include "backends/cuda/cuda_census.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  CudaDevice base;
  CudaCensus *c;
  unsigned char *mode; /* per kernel of the program: its CudaMode (cuda_kernel_modes) */
  uint32_t n_kernels;
  CuPtr next;          /* the next made-up address */
  size_t stamps;
} Counter;

static int count_launch(CudaDevice *d, uint32_t k, uint32_t grid, uint32_t block, void **params, PcError *err) {
  Counter *t = (Counter *)d;
  t->c->launches[k < t->n_kernels ? t->mode[k] : CM_RUNTIME]++;
  return 0;
}

static int count_download(CudaDevice *d, void *dst, CuPtr src, size_t bytes, PcError *err) {
  memset(dst, 0, bytes); /* a value read back: 0 */
  ((Counter *)d)->c->read_backs++;
  return 0;
}

static int count_gemm(CudaDevice *d, const CudaGemm *g, PcError *err) {
  CudaCensus *c = ((Counter *)d)->c;
  c->products++;
  c->flops += 2.0 * g->m * g->n * g->k;
  return 0;
}

static int count_fill(CudaDevice *d, CuPtr dst, uint32_t bits, size_t count, PcError *err) {
  ((Counter *)d)->c->fills++;
  ((Counter *)d)->c->fill_bytes += 4.0 * count;
  return 0;
}

static int count_copy(CudaDevice *d, CuPtr dst, CuPtr src, size_t bytes, PcError *err) {
  ((Counter *)d)->c->copies++;
  ((Counter *)d)->c->copy_bytes += (double)bytes;
  return 0;
}

static int count_alloc(CudaDevice *d, size_t bytes, CuPtr *out, PcError *err) {
  Counter *t = (Counter *)d;
  *out = t->next;
  t->next += (bytes + 255) & ~(size_t)255;
  return 0;
}

static void count_release(CudaDevice *d, CuPtr p) {}
static int count_sync(CudaDevice *d, PcError *err) { return 0; }
static int count_stamp(CudaDevice *d, PcError *err) {
  ((Counter *)d)->stamps++;
  return 0;
}
static int count_elapsed(CudaDevice *d, float *ms, size_t n, PcError *err) {
  memset(ms, 0, sizeof *ms * (n ? n - 1 : 0)); /* counts, not times */
  ((Counter *)d)->stamps = 0;
  return 0;
}

/* the address of every buffer: made-up device memory for the caller's, the arena's after them */
static CuPtr *addresses(Counter *t, const KEntry *e) {
  size_t n[3] = {0, 0, 0}; /* parameters, inputs, outputs */
  for (size_t i = 0; i < e->bufs.n; i++)
    if (e->bufs.a[i].kind != KB_ARENA && e->bufs.a[i].index + 1 > n[e->bufs.a[i].kind]) n[e->bufs.a[i].kind] = e->bufs.a[i].index + 1;
  CuPtr *mine[3], *out = pc_xcalloc(e->bufs.n + 1, sizeof *out);
  for (int k = 0; k < 3; k++) mine[k] = pc_xcalloc(n[k] + 1, sizeof *mine[k]);
  for (size_t i = 0; i < e->bufs.n; i++) {
    const KBuf *b = &e->bufs.a[i];
    if (b->kind != KB_ARENA && !mine[b->kind][b->index]) count_alloc(&t->base, 4 * b->numel, &mine[b->kind][b->index], NULL);
  }
  CuPtr arena;
  count_alloc(&t->base, e->arena_bytes, &arena, NULL);
  cuda_buffer_addresses(e, mine[KB_PARAM], mine[KB_INPUT], mine[KB_OUTPUT], arena, out);
  for (int k = 0; k < 3; k++) free(mine[k]);
  return out;
}

int cuda_census(const CudaProgram *cp, uint32_t entry, const int64_t *dims, CudaPrecision p, CudaCensus *out, PcError *err) {
  *out = (CudaCensus){0};
  const KEntry *e = &cp->prog->entries.a[entry];
  Counter t = {.base = {.name = "census", .alloc = count_alloc, .release = count_release, .download = count_download,
                        .copy = count_copy, .fill32 = count_fill, .launch = count_launch, .gemm = count_gemm,
                        .sync = count_sync, .stamp = count_stamp, .elapsed = count_elapsed},
               .c = out, .mode = cuda_kernel_modes(cp), .n_kernels = cp->n_kernels, .next = (CuPtr)1 << 40};
  CuPtr *bufs = addresses(&t, e), slots;
  count_alloc(&t.base, 8 * (e->vars.n + 1), &slots, NULL);
  CudaGemmCtx gc = {.precision = p};
  int rc = cuda_exec(cp, &t.base, entry, dims, bufs, slots, &gc, &out->ops, err);
  if (!rc) out->ops.calls = 1;
  out->converted = gc.converted;
  out->converted_params = gc.converted_params;
  out->mirrored = gc.mirrored;
  out->arena_bytes = e->arena_bytes;
  out->mirror_bytes = gc.mirror_bytes;
  out->scratch_bytes = cuda_gemm_ctx_bytes(&gc) - gc.mirror_bytes;
  for (size_t i = 0; i < out->ops.rows.n; i++) {
    const CudaProfRow *r = &out->ops.rows.a[i];
    double flops = r->key.kind == CP_GEMM ? 2.0 * r->key.m * r->key.n * r->key.k * (double)r->count : 0;
    double mem_ms = r->bytes / (CENSUS_GBS * 1e6), math_ms = flops / (CENSUS_TFLOPS * 1e9);
    out->traffic[r->key.kind] += r->bytes;
    out->bound_ms += mem_ms > math_ms ? mem_ms : math_ms;
  }
  cuda_gemm_ctx_free(&gc, &t.base);
  free(bufs);
  free(t.mode);
  return rc;
}

void cuda_census_free(CudaCensus *c) { cuda_profile_free(&c->ops); }

/* the max_rows ops launched most (by_count) or moving the most bytes */
static void print_rows(const CudaCensus *c, const CudaProgram *cp, int by_count, size_t max_rows, FILE *f) {
  VEC(CudaProfRow) rows = {0}; /* ranked by ms: the count or the bytes */
  for (size_t i = 0; i < c->ops.rows.n; i++) {
    CudaProfRow r = c->ops.rows.a[i];
    r.ms = by_count ? (double)r.count : r.bytes;
    vec_push(&rows, r);
  }
  uint32_t *order = cuda_profile_order(rows.a, rows.n, 0);
  if (rows.n) fprintf(f, by_count ? "  most frequent ops:\n" : "  most traffic (GB, ops):\n");
  for (size_t i = 0; i < rows.n && i < max_rows; i++) {
    const CudaProfRow *r = &rows.a[order[i]];
    char what[160], n[32];
    cuda_profile_what(cp, &r->key, what, sizeof what);
    const char *o = kir_origin_text(cp->prog, r->key.origin);
    if (by_count) snprintf(n, sizeof n, "%6llu", (unsigned long long)r->count);
    else snprintf(n, sizeof n, "%7.2f %4llu", r->bytes / 1e9, (unsigned long long)r->count);
    fprintf(f, "    %s  %-40s %s\n", n, what, *o ? o : "(the entry's own)");
  }
  free(order);
  vec_free(&rows);
}

void cuda_census_print(const CudaCensus *c, const CudaProgram *cp, size_t max_rows, FILE *f) {
  uint64_t launches = 0;
  for (int m = 0; m < CM_NUM; m++) launches += c->launches[m];
  fprintf(f, "  %llu launches:", (unsigned long long)launches);
  for (int m = 0; m < CM_NUM; m++)
    if (c->launches[m]) fprintf(f, " %llu %s", (unsigned long long)c->launches[m], cuda_mode_name((CudaMode)m));
  fprintf(f, "\n  %llu products, %.2f TFLOP; bf16 operands: %.3g G elements converted (%.3g G of parameters, again only "
             "once they change), %.3g G read from mirrors\n",
          (unsigned long long)c->products, c->flops / 1e12, c->converted / 1e9, c->converted_params / 1e9, c->mirrored / 1e9);
  fprintf(f, "  %llu fills (%.3g MiB), %llu copies (%.3g MiB), %llu value%s read back\n", (unsigned long long)c->fills,
          c->fill_bytes / 1048576.0, (unsigned long long)c->copies, c->copy_bytes / 1048576.0,
          (unsigned long long)c->read_backs, c->read_backs == 1 ? "" : "s");
  fprintf(f, "  device memory: arena %.3g GiB, bf16 mirror %.3g GiB, bf16 copies of parameters and scratch %.3g GiB\n",
          c->arena_bytes / 1073741824.0, c->mirror_bytes / 1073741824.0, c->scratch_bytes / 1073741824.0);
  double total = 0;
  for (int k = 0; k < CP_KIND_NUM; k++) total += c->traffic[k];
  fprintf(f, "  traffic (estimated): %.4g GB read and written: kernels %.4g, attention %.4g, products %.4g, bf16 conversions "
             "%.3g, fills and copies %.3g",
          total / 1e9, c->traffic[CP_KERNEL] / 1e9, c->traffic[CP_CALL] / 1e9, c->traffic[CP_GEMM] / 1e9,
          c->traffic[CP_CONVERT] / 1e9, (c->traffic[CP_FILL] + c->traffic[CP_COPY]) / 1e9);
  if (c->ops.guesses) fprintf(f, " (%llu launches with a loop counted once: its bound is not the host's)", (unsigned long long)c->ops.guesses);
  fprintf(f, "\n  on an %s (%.0f GB/s, %.1f bf16 TFLOP/s): at least %.2f ms, each op at the longer of its bytes and its "
             "FLOPs (launch gaps not counted)\n",
          CENSUS_CHIP, CENSUS_GBS, CENSUS_TFLOPS, c->bound_ms);
  print_rows(c, cp, 1, max_rows, f);
  print_rows(c, cp, 0, max_rows, f);
}
