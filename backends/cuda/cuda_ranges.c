/* Sets of [lo, hi) ranges, kept sorted and disjoint (adjacent ranges
 * merge): what the executor knows to be converted or mirrored. A call
 * holds a few hundred at most, so a linear walk is enough. */
#include "backends/cuda/cuda_device.h"

#include <string.h>

static void insert(CudaRanges *r, size_t at, CudaRange x) {
  vec_push(r, x);
  memmove(r->a + at + 1, r->a + at, (r->n - 1 - at) * sizeof *r->a);
  r->a[at] = x;
}

static void erase(CudaRanges *r, size_t at, size_t n) {
  if (!n) return; /* r->a may be NULL */
  memmove(r->a + at, r->a + at + n, (r->n - at - n) * sizeof *r->a);
  r->n -= n;
}

void cuda_ranges_add(CudaRanges *r, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return;
  size_t i = 0;
  while (i < r->n && r->a[i].hi < lo) i++; /* the first range touching or after [lo, hi) */
  size_t j = i;
  while (j < r->n && r->a[j].lo <= hi) { /* every range touching it merges */
    if (r->a[j].lo < lo) lo = r->a[j].lo;
    if (r->a[j].hi > hi) hi = r->a[j].hi;
    j++;
  }
  erase(r, i, j - i);
  insert(r, i, (CudaRange){lo, hi});
}

void cuda_ranges_remove(CudaRanges *r, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return;
  for (size_t i = 0; i < r->n;) {
    CudaRange x = r->a[i];
    if (x.hi <= lo || x.lo >= hi) {
      i++;
      continue;
    }
    erase(r, i, 1);
    if (x.hi > hi) insert(r, i, (CudaRange){hi, x.hi});
    if (x.lo < lo) insert(r, i++, (CudaRange){x.lo, lo});
    if (x.hi > hi) i++;
  }
}

int cuda_ranges_meet(const CudaRanges *r, uint64_t lo, uint64_t hi) {
  for (size_t i = 0; i < r->n; i++)
    if (r->a[i].lo < hi && lo < r->a[i].hi) return 1;
  return 0;
}

int cuda_ranges_cover(const CudaRanges *r, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return 1;
  for (size_t i = 0; i < r->n; i++)
    if (r->a[i].lo <= lo && hi <= r->a[i].hi) return 1;
  return 0;
}
