/* AdamW as PyTorch's torch.optim.AdamW computes it (the single-tensor path),
 * with decoupled weight decay on matrices only: none on biases and norm
 * weights, and on embedding tables only when asked. Gradient helpers: the
 * global norm and clipping by it. */
#ifndef PC_OPTIM_H
#define PC_OPTIM_H

#include "runtime/cli/engine.h"
#include "runtime/params.h"

typedef struct {
  double beta1, beta2, eps, weight_decay;
  int decay_embeddings;
} AdamWConfig;

typedef struct {
  Tensor **m, **v; /* first and second moments, one per parameter */
  size_t n;
  int64_t step;    /* updates done */
  int threads;     /* for the update (0: one per core); the result does not depend on it */
} AdamW;

int adamw_init(AdamW *o, const Params *p, PcError *err);
void adamw_free(AdamW *o);
/* Whether weight decay applies to a parameter. */
int adamw_decays(const AdamWConfig *cfg, const ParamSpec *s);
/* Counts the next update and gives its numbers (AdamWStep, engine.h: what
 * every element gets) for learning rate lr and the gradients times
 * grad_scale (clipping; 1 for none). adamw_update calls it; a device
 * optimizer (Engine.train) applies the same numbers. */
void adamw_next(AdamW *o, double lr, const AdamWConfig *cfg, float grad_scale, AdamWStep *s);
/* One update of every parameter with learning rate lr, from the gradients
 * times grad_scale (clipping; 1 for none), computed as PyTorch does after
 * scaling the gradients in place. */
void adamw_update(AdamW *o, Params *p, Tensor *const *grads, float grad_scale, double lr, const AdamWConfig *cfg);

/* sqrt of the sum of squares of all gradients (accumulated in double, in an
 * order that does not depend on threads; 0: one per core). */
double grads_global_norm(Tensor *const *grads, size_t n, int threads);
void grads_scale(Tensor *const *grads, size_t n, float by);

#endif
