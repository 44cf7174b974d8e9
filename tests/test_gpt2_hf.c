/* GPT-2 against Hugging Face transformers: the fixtures made by
 * scripts/make-fixtures hold a random GPT2LMHeadModel (config.json +
 * model.safetensors) and its logits and loss on fixed input ids. The
 * interpreter must give logits within 1e-4 absolute and the loss within
 * 1e-5 relative. Also loads the real HF-saved checkpoint in
 * ../shared/data/models/fake_gpt2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "runtime/cli/model_load.h"
#include "runtime/safetensors.h"
#include "tests/check.h"

/* targets[b, t] = ids[b, t + 1]; the last position is ignored (-1), which
 * is what HF computes with labels = input_ids. */
static Tensor *shifted_targets(const Tensor *ids) {
  Tensor *t = tensor_new(PC_I32, 2, ids->dim);
  int64_t B = ids->dim[0], T = ids->dim[1];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) tensor_i32(t)[b * T + i] = i + 1 < T ? tensor_i32(ids)[b * T + i + 1] : -1;
  return t;
}

/* Checks a model folder against the fixture `name`'s reference outputs. */
static void check_fixture_in(const char *name, const char *dir) {
  char io_path[300];
  snprintf(io_path, sizeof io_path, "tests/fixtures/%s/io.safetensors", name);
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = "models/gpt2.lua", .hf = dir, .trace_flags = FE_TRACE_LOSS};
  LoadedModel m;
  if (model_load(&mo, &m, &err) < 0) {
    CHECKF(0, "%s: %s", name, err.msg);
    return;
  }
  StCheckpoint *io;
  Tensor *ids = NULL, *want_logits = NULL, *want_loss = NULL;
  CHECKF(st_open(io_path, &io, &err) == 0, "%s", err.msg);
  CHECK(st_read(io, "input_ids", &ids, &err) == 0);
  CHECK(st_read(io, "logits", &want_logits, &err) == 0);
  CHECK(st_read(io, "loss", &want_loss, &err) == 0);
  st_close(io);
  Tensor *targets = shifted_targets(ids);
  NamedTensor in[2] = {{"ids", ids}, {"targets", targets}}, out[2];
  size_t n_out;
  CHECKF(interp_run(m.graph, &m.params, in, 2, out, 2, &n_out, &err) == 0, "%s", err.msg);
  CHECK(n_out == 2 && !strcmp(out[0].name, "logits") && !strcmp(out[1].name, "loss"));
  CHECK(tensor_same_shape(out[0].tensor, want_logits));
  double max_diff = 0;
  for (int64_t i = 0; i < tensor_numel(want_logits); i++)
    max_diff = fmax(max_diff, fabs(tensor_f32(out[0].tensor)[i] - tensor_f32(want_logits)[i]));
  double loss = tensor_f32(out[1].tensor)[0], ref = tensor_f32(want_loss)[0];
  double rel = fabs(loss - ref) / fabs(ref);
  printf("%s: max |logits - HF| = %.3g, loss %.7f vs HF %.7f (rel %.3g)\n", name, max_diff, loss, ref, rel);
  CHECKF(max_diff <= 1e-4, "%s: logits differ from transformers by %g", name, max_diff);
  CHECKF(rel <= 1e-5, "%s: loss differs from transformers by %g relative", name, rel);
  for (size_t i = 0; i < n_out; i++) tensor_free(out[i].tensor);
  tensor_free(ids);
  tensor_free(targets);
  tensor_free(want_logits);
  tensor_free(want_loss);
  model_unload(&m);
}

static void check_fixture(const char *name) {
  char dir[256];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
  check_fixture_in(name, dir);
}

/* The same checkpoint split into two shards with an index, as Hugging Face
 * writes large models, must give the same result. */
static void check_sharded(const char *name) {
  char dir[] = "/tmp/ponder-shards-XXXXXX", src[256], path[512];
  if (!mkdtemp(dir)) return;
  snprintf(src, sizeof src, "tests/fixtures/%s/model.safetensors", name);
  PcError err;
  StCheckpoint *ck;
  if (st_open(src, &ck, &err) < 0) {
    CHECKF(0, "%s", err.msg);
    return;
  }
  size_t n = st_count(ck);
  StEntry *e = calloc(n, sizeof *e);
  Tensor **t = calloc(n, sizeof *t);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  FILE *index = fopen(path, "w");
  fputs("{\"metadata\": {}, \"weight_map\": {", index);
  for (size_t i = 0; i < n; i++) {
    const char *tname = st_get(ck, i)->name;
    CHECK(st_read(ck, tname, &t[i], &err) == 0);
    e[i] = (StEntry){tname, t[i]};
    fprintf(index, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", tname, i < n / 2 ? 1 : 2);
  }
  fputs("}}\n", index);
  fclose(index);
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
  CHECK(st_write(path, e, n / 2, &err) == 0);
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
  CHECK(st_write(path, e + n / 2, n - n / 2, &err) == 0);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cp tests/fixtures/%s/config.json %s/", name, dir);
  CHECK(system(cmd) == 0);
  printf("sharded ");
  check_fixture_in(name, dir);
  for (size_t i = 0; i < n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  st_close(ck);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* A real checkpoint written by transformers 4.36 (random weights, n_embd 2,
 * vocab 50257, lm_head tied and not stored). */
static void check_fake_gpt2(void) {
  const char *data = check_shared_data("the fake_gpt2 checkpoint test");
  if (!data) return;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/models/fake_gpt2", data);
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = "models/gpt2.lua", .hf = dir};
  LoadedModel m;
  if (model_load(&mo, &m, &err) < 0) {
    CHECKF(0, "fake_gpt2: %s", err.msg);
    return;
  }
  int64_t shape[2] = {1, 5};
  Tensor *ids = tensor_new(PC_I32, 2, shape);
  int32_t prompt[5] = {464, 2068, 7586, 21831, 50256};
  memcpy(ids->data, prompt, sizeof prompt);
  NamedTensor in[1] = {{"ids", ids}}, out[1];
  size_t n_out;
  CHECKF(interp_run(m.graph, &m.params, in, 1, out, 1, &n_out, &err) == 0, "%s", err.msg);
  const Tensor *logits = out[0].tensor;
  CHECK(logits->rank == 3 && logits->dim[0] == 1 && logits->dim[1] == 5 && logits->dim[2] == 50257);
  int finite = 1;
  for (int64_t i = 0; i < tensor_numel(logits); i++) finite &= isfinite(tensor_f32(logits)[i]);
  CHECK(finite);
  int wte = params_find(&m.params, "transformer.wte.weight");
  CHECK(wte >= 0 && m.params.value[wte]->dim[0] == 50257 && m.params.value[wte]->dim[1] == 2);
  printf("fake_gpt2: loaded %lld parameters, logits [1,5,50257] finite\n", (long long)params_count(&m.params));
  tensor_free(out[0].tensor);
  tensor_free(ids);
  model_unload(&m);
}

int main(void) {
  check_fixture("gpt2-small");
  check_fixture("gpt2-odd");
  check_sharded("gpt2-small");
  check_fake_gpt2();
  return check_exit();
}
