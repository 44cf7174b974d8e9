/* Gradients against PyTorch: for the gpt2-small and gpt2-odd fixtures,
 * the gradient of the loss with respect to every parameter, from our
 * autodiff on the interpreter, must match PyTorch's within 1e-4 relative or
 * 1e-6 absolute, element by element. Both loop modes give the same result
 * (GPT-2 has no loop; the pondering tests cover loops). */
#include <math.h>
#include <stdlib.h>

#include "ir/autodiff.h"
#include "runtime/cli/model_load.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/grad_check.h"

static Tensor *shifted_targets(const Tensor *ids) {
  Tensor *t = tensor_new(PC_I32, 2, ids->dim);
  int64_t B = ids->dim[0], T = ids->dim[1];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) tensor_i32(t)[b * T + i] = i + 1 < T ? tensor_i32(ids)[b * T + i + 1] : -1;
  return t;
}

/* Element (i) of our gradient in the Hugging Face layout. */
static float ours_in_hf_layout(const ParamSpec *s, const Tensor *g, int64_t i) {
  if (!s->hf_layout) return tensor_f32(g)[i];
  int64_t out = s->dim[0], r = i / out, c = i % out; /* HF stores [in, out] */
  return tensor_f32(g)[c * s->dim[1] + r];
}

static void check_fixture(const char *name) {
  char dir[256], io_path[300];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
  snprintf(io_path, sizeof io_path, "%s/io.safetensors", dir);
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = "models/gpt2.lua", .hf = dir, .trace_flags = FE_TRACE_LOSS};
  LoadedModel m;
  if (model_load(&mo, &m, &err) < 0) {
    CHECKF(0, "%s: %s", name, err.msg);
    return;
  }
  IrGraph *train;
  if (ir_autodiff(m.graph, "loss", AD_LOOPS_RECOMPUTE, &train, &err) < 0) {
    CHECKF(0, "%s: %s", name, err.msg);
    model_unload(&m);
    return;
  }
  StCheckpoint *io;
  Tensor *ids = NULL, *want_loss = NULL;
  CHECKF(st_open(io_path, &io, &err) == 0, "%s", err.msg);
  CHECK(st_read(io, "input_ids", &ids, &err) == 0 && st_read(io, "loss", &want_loss, &err) == 0);
  Tensor *targets = shifted_targets(ids);
  NamedTensor in[2] = {{"ids", ids}, {"targets", targets}};
  GcOutputs out = {0};
  CHECKF(gc_run(train, &m.params, in, 2, &out, &err) == 0, "%s", err.msg);
  const Tensor *loss = gc_get(&out, "loss");
  CHECK(loss && fabs(tensor_f32(loss)[0] - tensor_f32(want_loss)[0]) <= 1e-5 * fabs(tensor_f32(want_loss)[0]));

  double worst_rel = 0, max_diff = 0, max_grad = 0;
  const char *worst = "";
  int checked = 0;
  for (size_t p = 0; p < m.params.spec.n; p++) {
    const ParamSpec *s = &m.params.spec.a[p];
    char gname[512], fname[512];
    snprintf(gname, sizeof gname, "grad:%s", s->name);
    snprintf(fname, sizeof fname, "grad.%s", s->name);
    const Tensor *g = gc_get(&out, gname);
    Tensor *want = NULL;
    if (!g || st_read(io, fname, &want, &err) < 0) {
      CHECKF(0, "%s: no gradient for %s", name, s->name);
      continue;
    }
    CHECK(tensor_numel(g) == tensor_numel(want));
    for (int64_t i = 0; i < tensor_numel(want); i++) {
      double a = ours_in_hf_layout(s, g, i), b = tensor_f32(want)[i], d = fabs(a - b);
      double rel = d / fmax(fabs(b), 1e-30);
      max_diff = fmax(max_diff, d);
      max_grad = fmax(max_grad, fabs(b));
      if (d > 1e-6 && rel > worst_rel) {
        worst_rel = rel;
        worst = s->name;
      }
      CHECKF(d <= 1e-6 || rel <= 1e-4, "%s: %s[%lld] = %.8g, PyTorch %.8g", name, s->name, (long long)i, a, b);
    }
    checked++;
    tensor_free(want);
  }
  printf("%s: %d parameter gradients match PyTorch: max |diff| %.3g (largest gradient %.3g); "
         "worst relative where |diff| > 1e-6: %.3g (%s)\n", name, checked, max_diff, max_grad, worst_rel, *worst ? worst : "none");
  gc_free(&out);
  st_close(io);
  tensor_free(ids);
  tensor_free(targets);
  tensor_free(want_loss);
  ir_graph_free(train);
  model_unload(&m);
}

int main(void) {
  check_fixture("gpt2-small");
  check_fixture("gpt2-odd");
  return check_exit();
}
