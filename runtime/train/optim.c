#include "runtime/train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "runtime/base/parallel.h"

int adamw_init(AdamW *o, const Params *p, PcError *err) {
  *o = (AdamW){.n = p->spec.n};
  o->m = pc_xcalloc(o->n + 1, sizeof *o->m);
  o->v = pc_xcalloc(o->n + 1, sizeof *o->v);
  for (size_t i = 0; i < o->n; i++) {
    const ParamSpec *s = &p->spec.a[i];
    o->m[i] = tensor_new(PC_F32, s->rank, s->dim);
    o->v[i] = tensor_new(PC_F32, s->rank, s->dim);
    if (!o->m[i] || !o->v[i]) {
      adamw_free(o);
      return pc_errorf(err, "out of memory for the optimizer state of '%s'", s->name);
    }
  }
  return 0;
}

void adamw_free(AdamW *o) {
  for (size_t i = 0; i < o->n; i++) {
    tensor_free(o->m[i]);
    tensor_free(o->v[i]);
  }
  free(o->m);
  free(o->v);
  *o = (AdamW){0};
}

int adamw_decays(const AdamWConfig *cfg, const ParamSpec *s) {
  return s->rank >= 2 && (!s->embedding || cfg->decay_embeddings);
}

/* The order of float operations follows PyTorch's _single_tensor_adamw, so
 * that our steps match it to rounding:
 *   p *= 1 - lr wd;  m = m + (1 - b1)(g - m);  v = v b2 + (1 - b2) g g;
 *   p += (-lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
/* One tensor's update; restrict lets the loop vectorize. */
static void update(float *restrict w, float *restrict m, float *restrict v, const float *restrict g, int64_t n,
                   float grad_scale, float decay, float neg_step, float bc2_sqrt, float eps, float b2,
                   float one_minus_b1, float one_minus_b2) {
  for (int64_t k = 0; k < n; k++) {
    float gk = g[k] * grad_scale;
    w[k] *= decay;
    m[k] += one_minus_b1 * (gk - m[k]);
    v[k] = v[k] * b2 + one_minus_b2 * gk * gk;
    float denom = sqrtf(v[k]) / bc2_sqrt + eps;
    w[k] += neg_step * m[k] / denom;
  }
}

/* The update over the parameters' elements laid end to end, a range per
 * thread: each element's arithmetic is the same whatever the split. */
typedef struct {
  AdamW *o;
  Params *p;
  Tensor *const *grads;
  const int64_t *start; /* first element of each parameter; start[n] = all */
  const float *decay;
  float grad_scale, neg_step, bc2_sqrt, eps, b2, one_minus_b1, one_minus_b2;
} UpdateJob;

static void update_range(void *ctx, int64_t lo, int64_t hi) {
  const UpdateJob *j = ctx;
  for (size_t i = 0; lo < hi;) {
    while (j->start[i + 1] <= lo) i++; /* the parameter holding lo */
    int64_t a = lo - j->start[i], b = (hi < j->start[i + 1] ? hi : j->start[i + 1]) - j->start[i];
    update(tensor_f32(j->p->value[i]) + a, tensor_f32(j->o->m[i]) + a, tensor_f32(j->o->v[i]) + a,
           tensor_f32(j->grads[i]) + a, b - a, j->grad_scale, j->decay[i], j->neg_step, j->bc2_sqrt, j->eps, j->b2,
           j->one_minus_b1, j->one_minus_b2);
    lo = j->start[i] + b;
  }
}

/* Per-thread ranges of at least this many elements (below, a thread costs
 * more than it saves). */
enum { MIN_PER_THREAD = 1 << 16 };

void adamw_next(AdamW *o, double lr, const AdamWConfig *cfg, float grad_scale, AdamWStep *s) {
  o->step++;
  double bc1 = 1.0 - pow(cfg->beta1, (double)o->step), bc2 = 1.0 - pow(cfg->beta2, (double)o->step);
  *s = (AdamWStep){.grad_scale = grad_scale,
                   .decay = (float)(1.0 - lr * cfg->weight_decay),
                   .neg_step = (float)(-lr / bc1),
                   .bc2_sqrt = (float)sqrt(bc2),
                   .eps = (float)cfg->eps,
                   .b2 = (float)cfg->beta2,
                   .one_minus_b1 = (float)(1.0 - cfg->beta1),
                   .one_minus_b2 = (float)(1.0 - cfg->beta2)};
}

void adamw_update(AdamW *o, Params *p, Tensor *const *grads, float grad_scale, double lr, const AdamWConfig *cfg) {
  AdamWStep s;
  adamw_next(o, lr, cfg, grad_scale, &s);
  int64_t *start = pc_xmalloc((o->n + 1) * sizeof *start);
  float *decay = pc_xmalloc((o->n + 1) * sizeof *decay);
  start[0] = 0;
  for (size_t i = 0; i < o->n; i++) {
    start[i + 1] = start[i] + tensor_numel(p->value[i]);
    decay[i] = adamw_decays(cfg, &p->spec.a[i]) ? s.decay : 1.0f;
  }
  UpdateJob j = {o, p, grads, start, decay, s.grad_scale, s.neg_step, s.bc2_sqrt, s.eps, s.b2, s.one_minus_b1, s.one_minus_b2};
  pc_parallel_for(o->threads, start[o->n], MIN_PER_THREAD, update_range, &j);
  free(start);
  free(decay);
  params_changed(p);
}

/* The sum of squares in fixed blocks of the gradients laid end to end, each
 * block summed in order, then the blocks in order: the same double whatever
 * the number of threads (a resumed run may use another --threads). */
enum { NORM_BLOCK = 1 << 18 };

typedef struct {
  Tensor *const *grads;
  size_t n;
  const int64_t *start;
  double *block_sum;
} NormJob;

static void norm_blocks(void *ctx, int64_t first, int64_t end) {
  const NormJob *j = ctx;
  size_t i = 0;
  for (int64_t blk = first; blk < end; blk++) {
    int64_t lo = blk * NORM_BLOCK, hi = lo + NORM_BLOCK < j->start[j->n] ? lo + NORM_BLOCK : j->start[j->n];
    double s = 0;
    while (lo < hi) {
      while (j->start[i + 1] <= lo) i++; /* the gradient holding lo */
      const float *g = tensor_f32(j->grads[i]);
      int64_t a = lo - j->start[i], b = (hi < j->start[i + 1] ? hi : j->start[i + 1]) - j->start[i];
      for (int64_t k = a; k < b; k++) s += (double)g[k] * g[k];
      lo = j->start[i] + b;
    }
    j->block_sum[blk] = s;
  }
}

double grads_global_norm(Tensor *const *grads, size_t n, int threads) {
  int64_t *start = pc_xmalloc((n + 1) * sizeof *start);
  start[0] = 0;
  for (size_t i = 0; i < n; i++) start[i + 1] = start[i] + tensor_numel(grads[i]);
  int64_t blocks = (start[n] + NORM_BLOCK - 1) / NORM_BLOCK;
  NormJob j = {grads, n, start, pc_xcalloc((size_t)blocks + 1, sizeof(double))};
  pc_parallel_for(threads, blocks, MIN_PER_THREAD / NORM_BLOCK + 1, norm_blocks, &j);
  double s = 0;
  for (int64_t b = 0; b < blocks; b++) s += j.block_sum[b];
  free(j.block_sum);
  free(start);
  return sqrt(s);
}

void grads_scale(Tensor *const *grads, size_t n, float by) {
  for (size_t i = 0; i < n; i++) {
    float *g = tensor_f32(grads[i]);
    for (int64_t k = 0, e = tensor_numel(grads[i]); k < e; k++) g[k] *= by;
  }
}
