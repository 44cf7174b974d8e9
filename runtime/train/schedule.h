/* The learning-rate schedule: linear warm-up from 0 to the peak over
 * `warmup` steps, then cosine decay to min_lr at `total` steps (constant
 * after). Steps count from 1. */
#ifndef PC_SCHEDULE_H
#define PC_SCHEDULE_H

#include <stdint.h>

typedef struct {
  double peak, min_lr;
  int64_t warmup, total;
} LrSchedule;

double lr_at(const LrSchedule *s, int64_t step);

#endif
