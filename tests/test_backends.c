/* The compiled backends against the reference interpreter: for each model
 * (GPT-2, and Pythia and LLaMA when their scripts are present) with K = 0
 * and K = 3 pondering, every entry — train (the loss and every gradient),
 * eval, logits, and decode with KV caches (a prefill, then single tokens) —
 * must agree within 1e-4 of each output's largest magnitude; and test
 * models: one whose split leaves a piece unused (its gradient keeps zeros
 * where no slice lands), one whose product is added into a copy of a value
 * read again later (K = 0 and K = 3). GPT-2 K = 3 also with the loop's activations saved
 * for the backward (`--save-loop-activations`: stacks that start unfilled,
 * only those the gradient reads). The backend
 * (argument 1, default c) is compiled in-process, as `ponder --backend`
 * does: the C backend through cc. */
#include "tests/backend_equiv.h"
#include "tests/check.h"

static void check_model(const EquivCase *c, const char *backend, AdLoopMode mode) {
  char buf[8][64];
  ModelOpts base;
  if (equiv_opts(c, &base, buf) < 0) return;
  ModelOpts compiled = base;
  compiled.backend = backend;
  compiled.pipeline.loop_mode = mode;
  PcError err;
  LoadedModel ref, got;
  if (model_load(&base, &ref, &err) < 0) {
    CHECKF(0, "%s: %s", c->label, err.msg);
  } else {
    if (model_load(&compiled, &got, &err) < 0) {
      CHECKF(0, "%s: %s: %s", c->label, backend, err.msg);
    } else {
      equiv_models(c->label, mode == AD_LOOPS_SAVE ? "saved activations" : backend, &ref, &got);
      model_unload(&got);
    }
    model_unload(&ref);
  }
  vec_free(&base.sets);
}

int main(int argc, char **argv) {
  size_t n;
  const EquivCase *cases = equiv_cases(&n);
  const char *backend = argc > 1 ? argv[1] : "c";
  for (size_t i = 0; i < n; i++) check_model(&cases[i], backend, AD_LOOPS_RECOMPUTE);
  check_model(&cases[1], backend, AD_LOOPS_SAVE); /* gpt2 tiny, K = 3 */
  /* slices whose gradients leave a gap, and ones that cover (tests/models/split_unused.lua) */
  static const EquivCase split = {"split, a piece unused", "tests/models/split_unused.lua", "tiny", NULL, 0};
  check_model(&split, backend, AD_LOOPS_RECOMPUTE);
  /* products added into their sum's buffer, over a copy (tests/models/product_sum.lua) */
  static const char *const k3[] = {"ponderinglm=true", "pondering_steps=3"};
  static const EquivCase sum0 = {"product summed, K = 0", "tests/models/product_sum.lua", "tiny", NULL, 0};
  static const EquivCase sum3 = {"product summed, K = 3", "tests/models/product_sum.lua", "tiny", k3, 2};
  check_model(&sum0, backend, AD_LOOPS_RECOMPUTE);
  check_model(&sum3, backend, AD_LOOPS_RECOMPUTE);
  return check_exit();
}
