/* runtime/sample: greedy and its ties, top-k / top-p edge cases against
 * greedy, empirical distributions against probabilities computed here by a
 * plain full sort (a chi-square bound; the seed is fixed, so the test is
 * deterministic), determinism, and config and logit errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sample.h"
#include "tests/check.h"

static int32_t pick(Sampler s, const float *logits, int64_t v, Rng *rng) {
  PcError err;
  int32_t id = -1;
  CHECKF(sample_token(&s, logits, v, rng, NULL, &id, &err) == 0, "%s", err.msg);
  return id;
}

static void test_greedy(void) {
  Sampler g = {.temperature = 0, .top_p = 1};
  float a[] = {0.1f, 3, -1, 2};
  CHECK(pick(g, a, 4, NULL) == 1);
  float ties[] = {1, 5, 2, 5, 5};
  CHECK(pick(g, ties, 5, NULL) == 1);
  float flat[] = {7, 7, 7};
  CHECK(pick(g, flat, 3, NULL) == 0);
  float masked[] = {-INFINITY, -INFINITY, -2};
  CHECK(pick(g, masked, 3, NULL) == 2);
  float none[] = {-INFINITY, -INFINITY};
  CHECK(pick(g, none, 2, NULL) == 0);
  /* greedy ignores top-k / top-p and needs no Rng */
  Sampler g2 = {.temperature = 0, .top_k = 2, .top_p = 0.5};
  CHECK(pick(g2, ties, 5, NULL) == 1);
}

/* Rows of random logits, some with ties and -inf; top_k = 1 and a tiny top_p
 * must give the greedy id whatever the temperature. */
static void test_cuts_equal_greedy(void) {
  Rng data = rng_new(7), rng = rng_new(8);
  float row[300];
  for (int t = 0; t < 200; t++) {
    int v = 1 + (int)(rng_u64(&data) % 300);
    for (int i = 0; i < v; i++) {
      row[i] = (float)(rng_u64(&data) % 8) * 0.5f; /* few distinct values: many ties */
      if (rng_u64(&data) % 10 == 0) row[i] = -INFINITY;
    }
    row[rng_u64(&data) % (unsigned)v] = 0; /* at least one finite logit */
    int32_t want = pick((Sampler){.temperature = 0, .top_p = 1}, row, v, NULL);
    double temp = t % 3 == 0 ? 0.05 : t % 3 == 1 ? 1.0 : 20.0;
    CHECK(pick((Sampler){.temperature = temp, .top_k = 1, .top_p = 1}, row, v, &rng) == want);
    CHECK(pick((Sampler){.temperature = temp, .top_k = 0, .top_p = 1e-9}, row, v, &rng) == want);
    CHECK(pick((Sampler){.temperature = temp, .top_k = v, .top_p = 1e-9}, row, v, &rng) == want);
  }
}

/* The expected distribution, the plain way: rank all tokens by a full sort,
 * cut, softmax, cut, renormalise. */
static const float *rank_logits;
static int by_rank(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  if (rank_logits[x] != rank_logits[y]) return rank_logits[x] > rank_logits[y] ? -1 : 1;
  return (x > y) - (x < y);
}

static void expected(Sampler s, const float *logits, int v, double *p) {
  int *order = malloc((size_t)v * sizeof *order);
  for (int i = 0; i < v; i++) order[i] = i;
  rank_logits = logits;
  qsort(order, (size_t)v, sizeof *order, by_rank);
  int k = s.top_k ? (int)s.top_k : v;
  double sum = 0;
  for (int i = 0; i < v; i++) p[i] = 0;
  for (int r = 0; r < k; r++) sum += p[order[r]] = exp((logits[order[r]] - logits[order[0]]) / s.temperature);
  double cum = 0, kept = 0;
  int n = 0;
  while (n < k && (n == 0 || cum < s.top_p)) cum += p[order[n++]] / sum;
  for (int r = n; r < k; r++) p[order[r]] = 0;
  for (int r = 0; r < n; r++) kept += p[order[r]];
  for (int i = 0; i < v; i++) p[i] /= kept;
  free(order);
}

/* Draws many tokens and compares counts with the expected probabilities:
 * Pearson's chi-square over the bins with p > 0 must stay under df + 6
 * standard deviations (sqrt(2 df)); a token with p = 0 must never come. */
static void check_distribution(const char *name, Sampler s, const float *logits, int v, int draws, uint64_t seed) {
  double *p = calloc((size_t)v, sizeof *p);
  long *count = calloc((size_t)v, sizeof *count);
  expected(s, logits, v, p);
  Rng rng = rng_new(seed);
  SampleScratch scratch = {0};
  PcError err;
  for (int d = 0; d < draws; d++) {
    int32_t id = -1;
    if (sample_token(&s, logits, v, &rng, &scratch, &id, &err)) {
      CHECKF(0, "%s: %s", name, err.msg);
      break;
    }
    CHECK(id >= 0 && id < v);
    if (id >= 0 && id < v) count[id]++;
  }
  double chi2 = 0;
  int bins = 0, impossible = 0;
  for (int i = 0; i < v; i++) {
    if (p[i] > 0) {
      double e = p[i] * draws;
      chi2 += (count[i] - e) * (count[i] - e) / e;
      bins++;
    } else if (count[i]) {
      impossible++;
    }
  }
  int df = bins > 1 ? bins - 1 : 1;
  double bound = df + 6 * sqrt(2.0 * df);
  printf("%-28s %4d bins  chi2 %8.2f  (df %d, bound %.1f)\n", name, bins, chi2, df, bound);
  CHECKF(chi2 < bound, "%s: chi-square %.2f over the bound %.2f", name, chi2, bound);
  CHECKF(!impossible, "%s: %d tokens with probability 0 were drawn", name, impossible);
  vec_free(&scratch);
  free(p);
  free(count);
}

static void test_distributions(void) {
  float small[8] = {1.0f, 2.5f, -0.5f, 2.5f, 0.0f, 1.7f, -INFINITY, 3.0f};
  check_distribution("plain", (Sampler){1.0, 0, 1.0}, small, 8, 200000, 1);
  check_distribution("temperature 0.5", (Sampler){0.5, 0, 1.0}, small, 8, 200000, 2);
  check_distribution("temperature 3", (Sampler){3.0, 0, 1.0}, small, 8, 200000, 3);
  check_distribution("top-k 3 (tie at the cut)", (Sampler){1.0, 3, 1.0}, small, 8, 200000, 4);
  check_distribution("top-p 0.6", (Sampler){1.0, 0, 0.6}, small, 8, 200000, 5);
  check_distribution("top-k 5, top-p 0.8, t 0.7", (Sampler){0.7, 5, 0.8}, small, 8, 200000, 6);

  /* a larger vocabulary, where the selections recurse */
  enum { V = 500 };
  float *big = malloc(V * sizeof *big);
  Rng data = rng_new(11);
  for (int i = 0; i < V; i++) big[i] = (float)(rng_normal(&data) * 2.0);
  big[17] = big[234]; /* a tie */
  check_distribution("V 500 top-p 0.5", (Sampler){1.0, 0, 0.5}, big, V, 100000, 7);
  check_distribution("V 500 top-k 100", (Sampler){1.0, 100, 1.0}, big, V, 100000, 8);
  check_distribution("V 500 top-k 200 top-p 0.7", (Sampler){1.5, 200, 0.7}, big, V, 100000, 9);
  free(big);
}

/* The same seed gives the same draws; another seed does not; top_k = V and
 * top_k = 0 draw the same tokens. */
static void test_determinism(void) {
  enum { V = 500, N = 1000 };
  float logits[V];
  Rng data = rng_new(3);
  for (int i = 0; i < V; i++) logits[i] = (float)rng_normal(&data);
  Sampler s = {1.0, 0, 0.95}, all = {1.0, V, 1.0}, off = {1.0, 0, 1.0};
  Rng a = rng_new(42), b = rng_new(42), c = rng_new(43), d = rng_new(5), e = rng_new(5);
  int same = 1, same_c = 1, same_k = 1;
  for (int i = 0; i < N; i++) {
    int32_t x = pick(s, logits, V, &a), y = pick(s, logits, V, &b), z = pick(s, logits, V, &c);
    same &= x == y;
    same_c &= x == z;
    same_k &= pick(all, logits, V, &d) == pick(off, logits, V, &e);
  }
  CHECK(same);
  CHECK(!same_c);
  CHECK(same_k);
}

/* A GPT-2-sized vocabulary: no sort of the whole row, so it is quick. */
static void test_large_vocab(void) {
  enum { V = 50257 };
  float *logits = malloc(V * sizeof *logits);
  Rng data = rng_new(9), rng = rng_new(10);
  for (int i = 0; i < V; i++) logits[i] = (float)(rng_normal(&data) * 3.0);
  SampleScratch scratch = {0};
  PcError err;
  Sampler s = {0.8, 0, 0.9};
  for (int i = 0; i < 200; i++) {
    int32_t id;
    CHECKF(sample_token(&s, logits, V, &rng, &scratch, &id, &err) == 0, "%s", err.msg);
    CHECK(id >= 0 && id < V);
  }
  vec_free(&scratch);
  free(logits);
}

static void expect_error(Sampler s, const float *logits, int64_t v, const char *text) {
  PcError err = {{0}};
  Rng rng = rng_new(1);
  int32_t id;
  CHECKF(sample_token(&s, logits, v, &rng, NULL, &id, &err) == -1, "expected an error with \"%s\"", text);
  CHECK_STR_CONTAINS(err.msg, text);
  CHECK(!strchr(err.msg, '\n'));
}

static void test_errors(void) {
  float l[4] = {0, 1, 2, 3};
  PcError err;
  CHECK(sample_check(&SAMPLER_DEFAULT, 4, &err) == 0);
  expect_error((Sampler){-1, 0, 1}, l, 4, "temperature -1");
  expect_error((Sampler){NAN, 0, 1}, l, 4, "temperature nan");
  expect_error((Sampler){1, 0, 0}, l, 4, "top-p 0");
  expect_error((Sampler){1, 0, 1.5}, l, 4, "top-p 1.5");
  expect_error((Sampler){1, -1, 1}, l, 4, "top-k -1");
  expect_error((Sampler){1, 5, 1}, l, 4, "top-k 5: expected 0 (off) to the vocabulary size 4");
  expect_error((Sampler){1, 0, 1}, l, 0, "vocabulary of 0");
  float nan_row[3] = {0, NAN, 1}, inf_row[3] = {0, INFINITY, 1}, masked[2] = {-INFINITY, -INFINITY};
  expect_error((Sampler){1, 0, 1}, nan_row, 3, "logit of token 1 is nan");
  expect_error((Sampler){0, 0, 1}, nan_row, 3, "logit of token 1 is nan");
  expect_error((Sampler){1, 0, 1}, inf_row, 3, "logit of token 1 is inf");
  expect_error((Sampler){1, 0, 1}, masked, 2, "every logit is -inf");
}

int main(void) {
  test_greedy();
  test_cuts_equal_greedy();
  test_distributions();
  test_determinism();
  test_large_vocab();
  test_errors();
  return check_exit();
}
