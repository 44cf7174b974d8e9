/* A parallel loop for the runtime's own bandwidth-bound passes (the
 * optimizer, the gradient norm): [0, n) cut into one contiguous range per
 * thread, the caller's thread among them. */
#ifndef PC_PARALLEL_H
#define PC_PARALLEL_H

#include <stdint.h>

/* Calls fn(ctx, lo, hi) on ranges covering [0, n) from up to `threads`
 * threads (<= 0: one per online core); ranges smaller than min_per_thread
 * are not worth a thread, so a small n runs inline. Returns when all are done. */
void pc_parallel_for(int threads, int64_t n, int64_t min_per_thread, void (*fn)(void *ctx, int64_t lo, int64_t hi),
                     void *ctx);

#endif
