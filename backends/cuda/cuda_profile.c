/* Device time by op: rows found by their key through a small hash table,
 * filled from the device's stamps when a call finishes. */
#include "backends/cuda/cuda_profile.h"

#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_library.h"

static int same_key(const CudaProfKey *a, const CudaProfKey *b) {
  return a->kind == b->kind && a->kernel == b->kernel && a->origin == b->origin && a->fn == b->fn &&
         a->precision == b->precision && a->ta == b->ta && a->tb == b->tb && a->m == b->m && a->n == b->n && a->k == b->k;
}

static uint64_t key_hash(const CudaProfKey *k) {
  uint64_t v[] = {(uint64_t)k->kind << 40 ^ (uint64_t)k->kernel << 8 ^ (uint64_t)k->precision,
                  k->origin, (uint64_t)(uintptr_t)k->fn, (uint64_t)k->m, (uint64_t)k->n, (uint64_t)k->k,
                  (uint64_t)(k->ta * 2 + k->tb)};
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) h = (h ^ v[i]) * 1099511628211ull;
  return h ^ h >> 29;
}

static void index_put(CudaProfile *pf, uint32_t row) {
  size_t mask = pf->index_cap - 1, i = key_hash(&pf->rows.a[row].key) & mask;
  while (pf->index[i]) i = (i + 1) & mask;
  pf->index[i] = row + 1;
}

static uint32_t row_of(CudaProfile *pf, const CudaProfKey *key) {
  if (pf->index_cap) {
    size_t mask = pf->index_cap - 1;
    for (size_t i = key_hash(key) & mask; pf->index[i]; i = (i + 1) & mask)
      if (same_key(&pf->rows.a[pf->index[i] - 1].key, key)) return pf->index[i] - 1;
  }
  vec_push(&pf->rows, ((CudaProfRow){.key = *key}));
  if (2 * pf->rows.n > pf->index_cap) { /* grow and place every row again */
    free(pf->index);
    pf->index_cap = pf->index_cap ? 2 * pf->index_cap : 64;
    pf->index = pc_xcalloc(pf->index_cap, sizeof *pf->index);
    for (uint32_t r = 0; r < pf->rows.n; r++) index_put(pf, r);
  } else {
    index_put(pf, (uint32_t)(pf->rows.n - 1));
  }
  return (uint32_t)(pf->rows.n - 1);
}

int cuda_profile_start(CudaProfile *pf, CudaDevice *d, PcError *err) {
  PC_ASSERT(d->stamp && !pf->started);
  pf->started = 1;
  pf->marks.n = 0;
  return d->stamp(d, err);
}

int cuda_profile_mark(CudaProfile *pf, CudaDevice *d, const CudaProfKey *key, double bytes, PcError *err) {
  PC_ASSERT(pf->started);
  uint32_t row = row_of(pf, key);
  pf->rows.a[row].bytes += bytes;
  vec_push(&pf->marks, row);
  return d->stamp(d, err);
}

int cuda_profile_finish(CudaProfile *pf, CudaDevice *d, PcError *err) {
  PC_ASSERT(pf->started);
  pf->started = 0;
  size_t n = pf->marks.n;
  float *ms = pc_xcalloc(n + 1, sizeof *ms);
  int rc = d->elapsed(d, ms, n + 1, err);
  for (size_t i = 0; !rc && i < n; i++) {
    CudaProfRow *r = &pf->rows.a[pf->marks.a[i]];
    r->count++;
    r->ms += ms[i];
    pf->ms += ms[i];
  }
  free(ms);
  return rc;
}

void cuda_profile_free(CudaProfile *pf) {
  vec_free(&pf->rows);
  vec_free(&pf->marks);
  free(pf->index);
  *pf = (CudaProfile){0};
}

/* ---- the table ------------------------------------------------------------------- */

void cuda_profile_what(const CudaProgram *cp, const CudaProfKey *k, char *out, size_t cap) {
  switch (k->kind) {
  case CP_KERNEL: {
    unsigned char *modes = cuda_kernel_modes(cp);
    snprintf(out, cap, "k%u (%s)", k->kernel, cuda_mode_name(k->kernel < cp->n_kernels ? modes[k->kernel] : CM_RUNTIME));
    free(modes);
    break;
  }
  case CP_CALL: snprintf(out, cap, "%s (k%u)", k->fn, k->kernel); break;
  case CP_RUNTIME: snprintf(out, cap, "%s", k->fn); break;
  case CP_GEMM:
    snprintf(out, cap, "gemm %c%c %lldx%lldx%lld %s", k->ta ? 't' : 'n', k->tb ? 't' : 'n', (long long)k->m, (long long)k->n,
             (long long)k->k, cuda_precision_name(k->precision));
    break;
  case CP_CONVERT: snprintf(out, cap, "bf16 conversion (%s)", cuda_runtime_info(CR_TO_BF16)->fn); break;
  case CP_FILL: snprintf(out, cap, "fill"); break;
  case CP_COPY: snprintf(out, cap, "copy"); break;
  case CP_KIND_NUM: PC_BUG("cuda profile: no kind");
  }
}

typedef struct {
  double v;
  uint32_t row;
} Ranked;

static int by_rank(const void *a, const void *b) {
  const Ranked *x = a, *y = b;
  return x->v < y->v ? 1 : x->v > y->v ? -1 : x->row < y->row ? -1 : x->row > y->row;
}

uint32_t *cuda_profile_order(const CudaProfRow *rows, size_t n, int by_count) {
  Ranked *r = pc_xcalloc(n + 1, sizeof *r);
  for (size_t i = 0; i < n; i++) r[i] = (Ranked){by_count ? (double)rows[i].count : rows[i].ms, (uint32_t)i};
  qsort(r, n, sizeof *r, by_rank);
  uint32_t *order = pc_xcalloc(n + 1, sizeof *order);
  for (size_t i = 0; i < n; i++) order[i] = r[i].row;
  free(r);
  return order;
}

/* the graph op of an origin, without its location: "linear" of "linear @models/gpt2.lua:47" */
static size_t op_len(const char *origin) {
  const char *at = strstr(origin, " @");
  return at ? (size_t)(at - origin) : strlen(origin);
}

static void print_by_op(const CudaProfile *pf, const CudaProgram *cp, FILE *f) {
  size_t with_origin = 0;
  for (size_t i = 0; i < pf->rows.n; i++) with_origin += pf->rows.a[i].key.origin != 0;
  if (!with_origin) return; /* the optimizer's: its rows are its ops */
  VEC(CudaProfRow) ops = {0}; /* key.origin: a representative origin; count: ops */
  for (size_t i = 0; i < pf->rows.n; i++) {
    const CudaProfRow *r = &pf->rows.a[i];
    const char *o = r->key.kind == CP_RUNTIME ? r->key.fn : kir_origin_text(cp->prog, r->key.origin);
    size_t j;
    for (j = 0; j < ops.n; j++) {
      const CudaProfRow *q = &ops.a[j];
      const char *p = q->key.kind == CP_RUNTIME ? q->key.fn : kir_origin_text(cp->prog, q->key.origin);
      if (op_len(p) == op_len(o) && !memcmp(p, o, op_len(o))) break;
    }
    if (j == ops.n) vec_push(&ops, ((CudaProfRow){.key = r->key}));
    ops.a[j].count += r->count;
    ops.a[j].ms += r->ms;
  }
  uint32_t *order = cuda_profile_order((const CudaProfRow *)ops.a, ops.n, 0);
  fprintf(f, "\nby graph op:\n\n| ms a call | %% | ops a call | graph op |\n|---:|---:|---:|---|\n");
  for (size_t i = 0; i < ops.n; i++) {
    const CudaProfRow *q = &ops.a[order[i]];
    const char *o = q->key.kind == CP_RUNTIME ? q->key.fn : kir_origin_text(cp->prog, q->key.origin);
    if (!*o) o = "(the entry's own)";
    fprintf(f, "| %.3f | %.1f%% | %.4g | %.*s |\n", q->ms / pf->calls, pf->ms > 0 ? 100 * q->ms / pf->ms : 0,
            (double)q->count / pf->calls, (int)op_len(o), o);
  }
  free(order);
  vec_free(&ops);
}

void cuda_profile_print(const CudaProfile *pf, const CudaProgram *cp, const char *title, const char *unit, size_t max_rows,
                        FILE *f) {
  if (!pf->calls) return;
  double per_call = pf->ms / pf->calls;
  fprintf(f, "\n### cuda profile: %s: %llu %s%s, %.3f ms of device time a %s\n\n", title, (unsigned long long)pf->calls, unit,
          pf->calls == 1 ? "" : "s", per_call, unit);
  fprintf(f, "| ms a call | %% | ops a call | what | graph op | TFLOP/s | GB/s |\n|---:|---:|---:|---|---|---:|---:|\n");
  uint32_t *order = cuda_profile_order(pf->rows.a, pf->rows.n, 0);
  double rest_ms = 0;
  uint64_t rest_ops = 0;
  for (size_t i = 0; i < pf->rows.n; i++) {
    const CudaProfRow *r = &pf->rows.a[order[i]];
    if (i >= max_rows) {
      rest_ms += r->ms;
      rest_ops += r->count;
      continue;
    }
    char w[160], rate[32] = "", bandwidth[32] = "";
    cuda_profile_what(cp, &r->key, w, sizeof w);
    if (r->key.kind == CP_GEMM && r->ms > 0)
      snprintf(rate, sizeof rate, "%.1f", 2.0 * r->key.m * r->key.n * r->key.k * r->count / (r->ms * 1e-3) / 1e12);
    if (r->bytes > 0 && r->ms > 0) snprintf(bandwidth, sizeof bandwidth, "%.0f", r->bytes / (r->ms * 1e-3) / 1e9);
    const char *o = kir_origin_text(cp->prog, r->key.origin);
    fprintf(f, "| %.3f | %.1f%% | %.4g | %s | %s | %s | %s |\n", r->ms / pf->calls, pf->ms > 0 ? 100 * r->ms / pf->ms : 0,
            (double)r->count / pf->calls, w, *o ? o : r->key.kind == CP_RUNTIME ? "(runtime)" : "(the entry's own)", rate,
            bandwidth);
  }
  if (rest_ops)
    fprintf(f, "| %.3f | %.1f%% | %.4g | %zu more rows | | | |\n", rest_ms / pf->calls, pf->ms > 0 ? 100 * rest_ms / pf->ms : 0,
            (double)rest_ops / pf->calls, pf->rows.n - max_rows);
  free(order);
  print_by_op(pf, cp, f);
}
