/* Shared by the backend-equivalence tests: a compiled backend's model
 * against the reference interpreter's, entry by entry. */
#ifndef PC_TESTS_BACKEND_EQUIV_H
#define PC_TESTS_BACKEND_EQUIV_H

#include "runtime/cli/model_load.h"

/* One model of the suite: a script, config and hyperparameter overrides. */
typedef struct {
  const char *label, *script, *config;
  const char *const *sets;
  size_t n_sets;
} EquivCase;

/* GPT-2 (K = 0, K = 3, K = 3 top-5 latest-only), Pythia and LLaMA (K = 0,
 * K = 3), all tiny; *n gets the count. */
const EquivCase *equiv_cases(size_t *n);

/* The interpreter's options for a case (seed 3, batch <= 2, 16 tokens);
 * buf holds the overrides' copies. 0, or -1 (printing SKIP) when the
 * script is not here. Free with vec_free(&o->sets). */
int equiv_opts(const EquivCase *c, ModelOpts *o, char (*buf)[64]);

/* Every entry of got (train: loss and every gradient, eval, logits, and
 * cached decode) against ref on the same inputs and parameters, within 1e-4
 * of each output's largest magnitude; prints a line, records failures.
 * Parameters initialised to zeros or ones (biases, norm weights) are first
 * given other values, the same in both. */
void equiv_models(const char *label, const char *how, LoadedModel *ref, LoadedModel *got);
/* the same within tol[entry kind] of each output's largest magnitude */
void equiv_models_within(const char *label, const char *how, LoadedModel *ref, LoadedModel *got, const double *tol);
/* The train entry (the loss and every gradient) on ids that repeat (each
 * row's id again 11 rows on, so an embedding gradient adds several rows
 * into one), within tol of each output's largest magnitude. */
void equiv_train_repeated_ids(const char *label, const char *how, LoadedModel *ref, LoadedModel *got, double tol);

#endif
