/* The llm.c check against PyTorch: ten AdamW steps on one batch of the
 * gpt2-small fixture (lr 1e-2, betas 0.9/0.95, eps 1e-8, weight decay 0.1
 * on matrices and embeddings, none on biases and norms; see
 * docs/fixtures.md) must give PyTorch's ten losses within 1e-4 relative.
 * And the update and the gradient norm, which run on several threads, give
 * the same bits on any number of them. */
#include <math.h>
#include <string.h>

#include "ir/autodiff.h"
#include "runtime/cli/model_load.h"
#include "runtime/safetensors.h"
#include "runtime/train/optim.h"
#include "tests/check.h"
#include "tests/grad_check.h"

/* Parameters of awkward sizes (an empty one, ones that straddle the
 * threads' ranges and the norm's blocks), 1.2M elements in all. */
static void make_params(Params *p, Tensor **grads, uint64_t seed) {
  static const int64_t rows[] = {1, 0, 700, 3, 1025, 64};
  PcError err;
  *p = (Params){0};
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    char name[32];
    snprintf(name, sizeof name, "w%zu", i);
    ParamSpec s = {.name = name, .rank = 2, .dim = {rows[i], 517}, .init = PARAM_INIT_NORMAL, .std = 0.5};
    CHECK(params_add(p, &s, &err) == 0);
  }
  CHECK(params_init(p, seed, &err) == 0);
  Params g = {0};
  for (size_t i = 0; i < p->spec.n; i++) CHECK(params_add(&g, &p->spec.a[i], &err) == 0);
  CHECK(params_init(&g, seed + 1, &err) == 0);
  for (size_t i = 0; i < p->spec.n; i++) grads[i] = g.value[i], g.value[i] = NULL; /* ours now */
  params_free(&g);
}

static void check_threads(void) {
  Params p[2];
  Tensor *grads[2][6];
  make_params(&p[0], grads[0], 7);
  make_params(&p[1], grads[1], 7);
  double serial = 0;
  for (size_t i = 0; i < 6; i++)
    for (int64_t k = 0; k < tensor_numel(grads[0][i]); k++) serial += (double)tensor_f32(grads[0][i])[k] * tensor_f32(grads[0][i])[k];
  double one = grads_global_norm(grads[0], 6, 1);
  CHECKF(fabs(one - sqrt(serial)) <= 1e-12 * one, "norm %.17g vs the plain sum's %.17g", one, sqrt(serial));
  for (int t = 2; t <= 7; t += 5) CHECKF(grads_global_norm(grads[0], 6, t) == one, "the norm differs on %d threads", t);
  AdamW opt[2];
  AdamWConfig cfg = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  PcError err;
  for (int r = 0; r < 2; r++) {
    CHECK(adamw_init(&opt[r], &p[r], &err) == 0);
    opt[r].threads = r ? 3 : 1;
    for (int step = 0; step < 2; step++) adamw_update(&opt[r], &p[r], grads[r], 0.5f, 1e-3, &cfg);
  }
  for (size_t i = 0; i < 6; i++)
    CHECKF(!memcmp(tensor_f32(p[0].value[i]), tensor_f32(p[1].value[i]), (size_t)tensor_numel(p[0].value[i]) * sizeof(float)),
           "parameter %zu differs between 1 and 3 threads", i);
  printf("AdamW and the gradient norm: the same bits on 1, 2, 3 and 7 threads\n");
  for (int r = 0; r < 2; r++) {
    adamw_free(&opt[r]);
    for (size_t i = 0; i < 6; i++) tensor_free(grads[r][i]);
    params_free(&p[r]);
  }
}

int main(void) {
  check_threads();
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = "models/gpt2.lua", .hf = "tests/fixtures/gpt2-small", .trace_flags = FE_TRACE_LOSS};
  LoadedModel m;
  IrGraph *train;
  StCheckpoint *io;
  Tensor *ids, *want;
  if (model_load(&mo, &m, &err) < 0 || ir_autodiff(m.graph, "loss", AD_LOOPS_RECOMPUTE, &train, &err) < 0 ||
      st_open("tests/fixtures/gpt2-small/io.safetensors", &io, &err) < 0 ||
      st_read(io, "input_ids", &ids, &err) < 0 || st_read(io, "adamw_losses", &want, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  st_close(io);
  Tensor *targets = tensor_new(PC_I32, 2, ids->dim);
  int64_t B = ids->dim[0], T = ids->dim[1];
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) tensor_i32(targets)[b * T + t] = t + 1 < T ? tensor_i32(ids)[b * T + t + 1] : -1;

  AdamW opt;
  AdamWConfig cfg = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .decay_embeddings = 1};
  CHECK(adamw_init(&opt, &m.params, &err) == 0);
  size_t np = m.params.spec.n;
  Tensor **grads = calloc(np, sizeof *grads);
  NamedTensor in[2] = {{"ids", ids}, {"targets", targets}};
  double worst = 0;
  for (int step = 0; step < 10; step++) {
    GcOutputs out = {0};
    if (gc_run(train, &m.params, in, 2, &out, &err) < 0) {
      CHECKF(0, "%s", err.msg);
      break;
    }
    double loss = tensor_f32(gc_get(&out, "loss"))[0], ref = tensor_f32(want)[step];
    double rel = fabs(loss - ref) / fabs(ref);
    worst = fmax(worst, rel);
    printf("step %2d: loss %.6f, PyTorch %.6f (rel %.2e)\n", step + 1, loss, ref, rel);
    CHECKF(rel <= 1e-4, "step %d: loss %.7f vs PyTorch %.7f", step + 1, loss, ref);
    for (size_t p = 0; p < np; p++) {
      char name[512];
      snprintf(name, sizeof name, "grad:%s", m.params.spec.a[p].name);
      grads[p] = (Tensor *)gc_get(&out, name);
    }
    adamw_update(&opt, &m.params, grads, 1.0f, 1e-2, &cfg);
    gc_free(&out);
  }
  printf("ten AdamW steps match PyTorch: worst relative loss difference %.2e\n", worst);
  free(grads);
  adamw_free(&opt);
  tensor_free(ids);
  tensor_free(targets);
  tensor_free(want);
  ir_graph_free(train);
  model_unload(&m);
  return check_exit();
}
