/* OpenBLAS sgemm rates for scripts/bench-cpu, compiled by it on the fly:
 *   cc -O2 sgemm.c $(pkg-config --cflags --libs openblas) -o sgemm
 *   ./sgemm THREADS [MIN_REPS MIN_SECONDS] < shapes
 * Each input line is "TA TB M N K" (TA, TB: N or T), C[M x N] = op(A)[M x K] op(B)[K x N],
 * row-major, fresh random operands. One untimed call, then calls until MIN_REPS have
 * run and MIN_SECONDS have passed (at most 50). Prints the OpenBLAS configuration,
 * then per shape "TA TB M N K median_GFLOP/s best_GFLOP/s reps". */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *openblas_get_config(void);
void openblas_set_num_threads(int);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *random_matrix(size_t n, unsigned *seed) {
  float *p = malloc(n * sizeof *p);
  if (!p) { fprintf(stderr, "sgemm: out of memory\n"); exit(1); }
  for (size_t i = 0; i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    p[i] = (float)((*seed >> 8) * (1.0 / 16777216.0)) - 0.5f;
  }
  return p;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  int min_reps = argc > 2 ? atoi(argv[2]) : 3;
  double min_seconds = argc > 3 ? atof(argv[3]) : 0.3;
  openblas_set_num_threads(threads);
  printf("config %s\n", openblas_get_config());
  char ta, tb;
  long M, N, K;
  unsigned seed = 1;
  while (scanf(" %c %c %ld %ld %ld", &ta, &tb, &M, &N, &K) == 5) {
    float *A = random_matrix((size_t)M * K, &seed), *B = random_matrix((size_t)K * N, &seed);
    float *C = calloc((size_t)M * N, sizeof *C);
    int lda = ta == 'T' ? M : K, ldb = tb == 'T' ? K : N;
    enum CBLAS_TRANSPOSE opa = ta == 'T' ? CblasTrans : CblasNoTrans, opb = tb == 'T' ? CblasTrans : CblasNoTrans;
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    double t[50], total = 0;
    int n = 0;
    while (n < 50 && (n < min_reps || total < min_seconds)) {
      double t0 = now();
      cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
      t[n] = now() - t0;
      total += t[n++];
    }
    qsort(t, n, sizeof *t, cmp);
    double median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), flop = 2.0 * M * N * K;
    printf("%c %c %ld %ld %ld %.2f %.2f %d\n", ta, tb, M, N, K, flop / median / 1e9, flop / t[0] / 1e9, n);
    fflush(stdout);
    free(A), free(B), free(C);
  }
  return 0;
}
