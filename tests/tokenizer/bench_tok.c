/* Encoding throughput, for scripts/bench-tokenizer (not a test: timings do
 * not belong in tests).
 *   bench_tok TOKENIZER TEXTFILE [--repeat N] [--lines] [--ids OUT]
 * Encodes the whole file in one call (or each line with --lines) N times
 * (default 3) on one thread and prints one JSON line with the median time
 * and MB/s; --ids writes the ids of the first run, one line per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/tokenizer/tokenizer.h"
#include "tests/tokenizer/tok_test_util.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_tok TOKENIZER TEXTFILE [--repeat N] [--lines] [--ids OUT]\n");
    return 2;
  }
  int repeat = 3;
  bool lines = false;
  const char *ids_out = NULL;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--lines")) lines = true;
    else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_out = argv[++i];
    else {
      fprintf(stderr, "bench_tok: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (repeat < 1) repeat = 1;
  Tokenizer *t;
  PcError err;
  double t0 = now();
  if (tok_load(argv[1], &t, &err)) {
    fprintf(stderr, "bench_tok: %s\n", err.msg);
    return 1;
  }
  double load_s = now() - t0;
  size_t n;
  char *text = tt_read_file(argv[2], &n);
  if (!text) {
    fprintf(stderr, "bench_tok: cannot read %s\n", argv[2]);
    return 1;
  }
  double *times = calloc((size_t)repeat, sizeof *times);
  TokIds ids = {0};
  size_t ntok = 0;
  FILE *out = ids_out ? fopen(ids_out, "w") : NULL;
  for (int r = 0; r < repeat; r++) {
    ntok = 0;
    double s = now();
    if (lines) {
      for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - text) : n;
        ids.n = 0;
        tok_encode(t, text + i, end - i, 0, &ids, &err);
        ntok += ids.n;
        if (r == 0 && out) {
          for (size_t k = 0; k < ids.n; k++) fprintf(out, k ? " %u" : "%u", ids.a[k]);
          fputc('\n', out);
        }
        i = end + 1;
      }
    } else {
      ids.n = 0;
      tok_encode(t, text, n, 0, &ids, &err);
      ntok = ids.n;
      if (r == 0 && out) {
        for (size_t k = 0; k < ids.n; k++) fprintf(out, k ? " %u" : "%u", ids.a[k]);
        fputc('\n', out);
      }
    }
    times[r] = now() - s;
  }
  if (out) fclose(out);
  qsort(times, (size_t)repeat, sizeof *times, cmp_double);
  double med = times[repeat / 2];
  printf("{\"bytes\": %zu, \"tokens\": %zu, \"load_s\": %.4f, \"best_s\": %.4f, \"median_s\": %.4f, \"mb_per_s\": %.3f}\n",
         n, ntok, load_s, times[0], med, (double)n / 1e6 / med);
  free(times);
  free(text);
  vec_free(&ids);
  tok_free(t);
  return 0;
}
