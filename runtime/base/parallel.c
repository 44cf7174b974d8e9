#include "runtime/base/parallel.h"

#include <pthread.h>
#include <unistd.h>

enum { MAX_THREADS = 64 };

typedef struct {
  void (*fn)(void *, int64_t, int64_t);
  void *ctx;
  int64_t lo, hi;
} Range;

static void *run_range(void *arg) {
  Range *r = arg;
  r->fn(r->ctx, r->lo, r->hi);
  return NULL;
}

void pc_parallel_for(int threads, int64_t n, int64_t min_per_thread, void (*fn)(void *ctx, int64_t lo, int64_t hi),
                     void *ctx) {
  if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (min_per_thread < 1) min_per_thread = 1;
  if (threads > n / min_per_thread) threads = (int)(n / min_per_thread);
  if (threads <= 1) {
    if (n > 0) fn(ctx, 0, n);
    return;
  }
  Range r[MAX_THREADS];
  pthread_t tid[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int t = 0; t < threads; t++) r[t] = (Range){fn, ctx, n * t / threads, n * (t + 1) / threads};
  for (int t = 1; t < threads; t++) started[t] = !pthread_create(&tid[t], NULL, run_range, &r[t]);
  run_range(&r[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t]) pthread_join(tid[t], NULL);
    else run_range(&r[t]); /* no thread to be had: do its share here */
  }
}
