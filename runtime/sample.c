#include "runtime/sample.h"

#include <math.h>

int sample_check(const Sampler *s, int64_t vocab, PcError *err) {
  if (vocab < 1 || vocab > INT32_MAX)
    return pc_errorf(err, "sampling: a vocabulary of %lld tokens is not supported", (long long)vocab);
  if (!(s->temperature >= 0) || isinf(s->temperature))
    return pc_errorf(err, "temperature %g: expected 0 (greedy) or a positive number", s->temperature);
  if (!(s->top_p > 0 && s->top_p <= 1))
    return pc_errorf(err, "top-p %g: expected a number in (0, 1] (1 = off)", s->top_p);
  if (s->top_k < 0 || s->top_k > vocab)
    return pc_errorf(err, "top-k %lld: expected 0 (off) to the vocabulary size %lld", (long long)s->top_k,
                     (long long)vocab);
  return 0;
}

static int bad_logit(const float *logits, int64_t i, PcError *err) {
  return pc_errorf(err, "sampling: the logit of token %lld is %g (expected a finite number or -inf)",
                   (long long)i, (double)logits[i]);
}

/* The ranking: higher logit first, then the lower id. A total order, since
 * ids are distinct. */
static int before(const SampleCand *a, const SampleCand *b) {
  return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void swap(SampleCand *c, size_t i, size_t j) {
  SampleCand t = c[i];
  c[i] = c[j];
  c[j] = t;
}

/* Partitions c[lo..hi) (hi - lo >= 2) around a median-of-three pivot;
 * returns its final place p: c[lo..p) rank before it, c[p+1..hi) after. */
static size_t partition(SampleCand *c, size_t lo, size_t hi) {
  size_t mid = lo + (hi - lo) / 2, last = hi - 1;
  if (before(&c[mid], &c[lo])) swap(c, mid, lo);
  if (before(&c[last], &c[lo])) swap(c, last, lo);
  if (before(&c[mid], &c[last])) swap(c, mid, last); /* now c[last] is the median */
  size_t store = lo;
  for (size_t i = lo; i < last; i++)
    if (before(&c[i], &c[last])) swap(c, i, store++);
  swap(c, store, last);
  return store;
}

/* Rearranges c[0..n) so that c[0..k) are the k first of the ranking. */
static void select_top_k(SampleCand *c, size_t n, size_t k) {
  size_t lo = 0, hi = n;
  while (hi - lo > 1) {
    size_t p = partition(c, lo, hi);
    if (p == k) return;
    if (p > k) hi = p;
    else lo = p + 1;
  }
}

/* Rearranges c[0..n) and returns r >= 1 such that c[0..r) is the shortest
 * prefix of the ranking whose weights sum to at least `need` (> 0). */
static size_t select_nucleus(SampleCand *c, size_t n, double need) {
  size_t lo = 0, hi = n; /* c[0..lo) are in, c[hi..n) are out */
  while (hi - lo > 1) {
    size_t p = partition(c, lo, hi);
    double mass = 0;
    for (size_t i = lo; i < p; i++) mass += c[i].w;
    if (mass >= need) {
      hi = p;
    } else if (mass + c[p].w >= need) {
      return p + 1;
    } else {
      need -= mass + c[p].w;
      lo = p + 1;
    }
  }
  return hi > lo ? lo + 1 : lo; /* lo == hi only when rounding ate the mass */
}

static int by_id(const void *a, const void *b) {
  int32_t x = ((const SampleCand *)a)->id, y = ((const SampleCand *)b)->id;
  return (x > y) - (x < y);
}

static int greedy(const float *logits, int64_t vocab, int32_t *out, PcError *err) {
  int64_t best = 0;
  for (int64_t i = 0; i < vocab; i++) {
    if (isnan(logits[i]) || logits[i] == INFINITY) return bad_logit(logits, i, err);
    if (logits[i] > logits[best]) best = i;
  }
  *out = (int32_t)best;
  return 0;
}

static int draw(const Sampler *s, const float *logits, size_t n, Rng *rng, SampleCand *c, int32_t *out,
                PcError *err) {
  float mx = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isnan(logits[i]) || logits[i] == INFINITY) return bad_logit(logits, (int64_t)i, err);
    c[i] = (SampleCand){(int32_t)i, logits[i], 0};
    if (logits[i] > mx) mx = logits[i];
  }
  if (mx == -INFINITY) return pc_errorf(err, "sampling: every logit is -inf");
  int moved = 0;
  if (s->top_k > 0 && (size_t)s->top_k < n) {
    select_top_k(c, n, (size_t)s->top_k);
    n = (size_t)s->top_k;
    moved = 1;
  }
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += c[i].w = exp(((double)c[i].logit - mx) / s->temperature);
  if (s->top_p < 1) {
    size_t r = select_nucleus(c, n, s->top_p * sum);
    moved = 1;
    if (r < n) {
      n = r;
      sum = 0;
      for (size_t i = 0; i < n; i++) sum += c[i].w;
    }
  }
  if (moved) qsort(c, n, sizeof *c, by_id);
  double u = rng_uniform(rng) * sum, cum = 0;
  size_t last = 0;
  for (size_t i = 0; i < n; i++) {
    if (c[i].w <= 0) continue;
    cum += c[i].w;
    last = i;
    if (u < cum) break;
  }
  *out = c[last].id; /* past the end only by rounding: the last possible token */
  return 0;
}

int sample_token(const Sampler *s, const float *logits, int64_t vocab, Rng *rng, SampleScratch *scratch,
                 int32_t *out, PcError *err) {
  if (sample_check(s, vocab, err)) return -1;
  if (s->temperature == 0) return greedy(logits, vocab, out, err);
  PC_ASSERT(rng);
  SampleScratch local = {0}, *sc = scratch ? scratch : &local;
  vec_reserve(sc, (size_t)vocab);
  int rc = draw(s, logits, (size_t)vocab, rng, sc->a, out, err);
  vec_free(&local);
  return rc;
}
