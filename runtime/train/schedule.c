#include "runtime/train/schedule.h"

#include <math.h>

double lr_at(const LrSchedule *s, int64_t step) {
  if (step <= s->warmup) return s->peak * (double)step / (double)(s->warmup ? s->warmup : 1);
  if (step >= s->total) return s->min_lr;
  double t = (double)(step - s->warmup) / (double)(s->total - s->warmup);
  return s->min_lr + 0.5 * (s->peak - s->min_lr) * (1.0 + cos(M_PI * t));
}
