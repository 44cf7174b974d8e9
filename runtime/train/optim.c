#include "runtime/train/optim.h"

#include <math.h>
#include <stdlib.h>

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

void adamw_update(AdamW *o, Params *p, Tensor *const *grads, float grad_scale, double lr, const AdamWConfig *cfg) {
  o->step++;
  double bc1 = 1.0 - pow(cfg->beta1, (double)o->step), bc2 = 1.0 - pow(cfg->beta2, (double)o->step);
  float neg_step = (float)(-lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)cfg->eps;
  float b2 = (float)cfg->beta2, one_minus_b1 = (float)(1.0 - cfg->beta1), one_minus_b2 = (float)(1.0 - cfg->beta2);
  for (size_t i = 0; i < o->n; i++) {
    float decay = adamw_decays(cfg, &p->spec.a[i]) ? (float)(1.0 - lr * cfg->weight_decay) : 1.0f;
    update(tensor_f32(p->value[i]), tensor_f32(o->m[i]), tensor_f32(o->v[i]), tensor_f32(grads[i]),
           tensor_numel(p->value[i]), grad_scale, decay, neg_step, bc2_sqrt, eps, b2, one_minus_b1, one_minus_b2);
  }
}

double grads_global_norm(Tensor *const *grads, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    const float *g = tensor_f32(grads[i]);
    for (int64_t k = 0, e = tensor_numel(grads[i]); k < e; k++) s += (double)g[k] * g[k];
  }
  return sqrt(s);
}

void grads_scale(Tensor *const *grads, size_t n, float by) {
  for (size_t i = 0; i < n; i++) {
    float *g = tensor_f32(grads[i]);
    for (int64_t k = 0, e = tensor_numel(grads[i]); k < e; k++) g[k] *= by;
  }
}
