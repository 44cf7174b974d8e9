/* Pythia (GPT-NeoX) and LLaMA against Hugging Face transformers, on the
 * fixtures of scripts/make-fixtures (small random GPTNeoXForCausalLM and
 * LlamaForCausalLM that exercise every switch: parallel and sequential
 * residual, rotary on a quarter and on all of each head; 2:1 and 4:1
 * grouped-query attention, tied and untied embeddings). On the interpreter:
 * logits within 1e-4 absolute, the loss within 1e-5 relative, the gradient
 * of every parameter within 1e-4 relative (or 1e-6 absolute), element by
 * element in the Hugging Face layout. Also: importing a checkpoint and
 * exporting it again gives back every stored tensor bit for bit (GPT-2
 * too), and a sharded checkpoint loads the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "runtime/cli/model_load.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/grad_check.h"

typedef struct {
  const char *fixture, *script;
} Case;

static const Case cases[] = {
    {"neox-par", "models/pythia.lua"},        {"neox-seq", "models/pythia.lua"},
    {"llama-gqa2-tied", "models/llama.lua"},  {"llama-gqa4", "models/llama.lua"},
};

static Tensor *shifted_targets(const Tensor *ids) {
  Tensor *t = tensor_new(PC_I32, 2, ids->dim);
  int64_t B = ids->dim[0], T = ids->dim[1];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) tensor_i32(t)[b * T + i] = i + 1 < T ? tensor_i32(ids)[b * T + i + 1] : -1;
  return t;
}

/* Logits, loss and gradients of the model in `dir` against the fixture's io. */
static void check_against_hf(const Case *c, const char *dir, const char *label) {
  char io_path[300];
  snprintf(io_path, sizeof io_path, "tests/fixtures/%s/io.safetensors", c->fixture);
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = c->script, .hf = dir, .trace_flags = FE_TRACE_LOSS};
  LoadedModel m;
  IrGraph *train = NULL;
  if (model_load(&mo, &m, &err) < 0 || pc_differentiate(m.graph, &mo.pipeline, &train, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    return;
  }
  StCheckpoint *io;
  Tensor *ids = NULL, *want_logits = NULL, *want_loss = NULL;
  if (st_open(io_path, &io, &err) < 0 || st_read(io, "input_ids", &ids, &err) < 0 ||
      st_read(io, "logits", &want_logits, &err) < 0 || st_read(io, "loss", &want_loss, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    return;
  }
  Tensor *targets = shifted_targets(ids);
  NamedTensor in[2] = {{"ids", ids}, {"targets", targets}};
  GcOutputs out = {0};
  CHECKF(gc_run(train, &m.params, in, 2, &out, &err) == 0, "%s: %s", label, err.msg);
  const Tensor *logits = gc_get(&out, "logits"), *loss = gc_get(&out, "loss");
  double logit_diff = INFINITY, loss_rel = INFINITY;
  if (logits && loss && tensor_same_shape(logits, want_logits)) {
    logit_diff = 0;
    for (int64_t i = 0; i < tensor_numel(want_logits); i++)
      logit_diff = fmax(logit_diff, fabs(tensor_f32(logits)[i] - tensor_f32(want_logits)[i]));
    double ref = tensor_f32(want_loss)[0];
    loss_rel = fabs(tensor_f32(loss)[0] - ref) / fabs(ref);
  }
  CHECKF(logit_diff <= 1e-4, "%s: logits differ from transformers by %g", label, logit_diff);
  CHECKF(loss_rel <= 1e-5, "%s: the loss differs from transformers by %g relative", label, loss_rel);

  double worst_rel = 0, max_diff = 0;
  int checked = 0;
  for (size_t p = 0; p < m.params.spec.n; p++) {
    const ParamSpec *s = &m.params.spec.a[p];
    char gname[512], fname[512];
    snprintf(gname, sizeof gname, "grad:%s", s->name);
    snprintf(fname, sizeof fname, "grad.%s", s->name);
    const Tensor *g = gc_get(&out, gname);
    Tensor *want = NULL, *ours = NULL;
    if (!g || st_read(io, fname, &want, &err) < 0) {
      CHECKF(0, "%s: no gradient for %s", label, s->name);
      continue;
    }
    ours = hf_export(s, g); /* in the Hugging Face layout, as PyTorch's */
    CHECK(tensor_same_shape(ours, want));
    for (int64_t i = 0; i < tensor_numel(want); i++) {
      double a = tensor_f32(ours)[i], b = tensor_f32(want)[i], d = fabs(a - b);
      max_diff = fmax(max_diff, d);
      if (d > 1e-6) worst_rel = fmax(worst_rel, d / fabs(b));
      CHECKF(d <= 1e-6 || d <= 1e-4 * fabs(b), "%s: gradient of %s[%lld] = %.8g, PyTorch %.8g", label, s->name,
             (long long)i, a, b);
    }
    checked++;
    tensor_free(want);
    tensor_free(ours);
  }
  printf("%-26s logits %.1e, loss rel %.1e, %d gradients: max |diff| %.1e, worst rel (|diff| > 1e-6) %.1e\n", label,
         logit_diff, loss_rel, checked, max_diff, worst_rel);
  gc_free(&out);
  st_close(io);
  tensor_free(ids);
  tensor_free(targets);
  tensor_free(want_logits);
  tensor_free(want_loss);
  ir_graph_free(train);
  model_unload(&m);
}

/* Import, then export: every stored tensor comes back bit for bit, and
 * every parameter is stored (tied ones under one name). */
static void check_round_trip(const char *fixture, const char *script) {
  char dir[256], path[300];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", fixture);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  PcError err;
  ModelOpts mo = {.backend = "interp", .script = script, .hf = dir};
  LoadedModel m;
  StCheckpoint *ck;
  if (model_load(&mo, &m, &err) < 0 || st_open(path, &ck, &err) < 0) {
    CHECKF(0, "%s: %s", fixture, err.msg);
    return;
  }
  size_t same = 0;
  for (size_t i = 0; i < st_count(ck); i++) {
    const StTensorInfo *info = st_get(ck, i);
    int p = params_find(&m.params, info->name);
    CHECKF(p >= 0, "%s: the checkpoint's '%s' is no parameter of %s", fixture, info->name, script);
    if (p < 0) continue;
    Tensor *stored, *back = hf_export(&m.params.spec.a[p], m.params.value[p]);
    CHECK(st_read(ck, info->name, &stored, &err) == 0);
    int equal = tensor_same_shape(stored, back) && !memcmp(stored->data, back->data, tensor_bytes(stored));
    CHECKF(equal, "%s: '%s' differs after import and export", fixture, info->name);
    same += equal;
    tensor_free(stored);
    tensor_free(back);
  }
  CHECKF(same == m.params.spec.n, "%s: %zu of %zu parameters exported as stored", fixture, same, m.params.spec.n);
  printf("%-26s import + export: %zu tensors back bit for bit\n", fixture, same);
  st_close(ck);
  model_unload(&m);
}

/* The checkpoint split into two shards with an index, as Hugging Face
 * writes large models. */
static void check_sharded(const Case *c) {
  char dir[] = "/tmp/ponder-models-XXXXXX", src[256], path[512], cmd[1024];
  if (!mkdtemp(dir)) return;
  snprintf(src, sizeof src, "tests/fixtures/%s/model.safetensors", c->fixture);
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
    const char *name = st_get(ck, i)->name;
    CHECK(st_read(ck, name, &t[i], &err) == 0);
    e[i] = (StEntry){name, t[i]};
    fprintf(index, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", name, i < n / 2 ? 1 : 2);
  }
  fputs("}}\n", index);
  fclose(index);
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
  CHECK(st_write(path, e, n / 2, &err) == 0);
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
  CHECK(st_write(path, e + n / 2, n - n / 2, &err) == 0);
  snprintf(cmd, sizeof cmd, "cp tests/fixtures/%s/config.json %s/", c->fixture, dir);
  CHECK(system(cmd) == 0);
  char label[128];
  snprintf(label, sizeof label, "%s (2 shards)", c->fixture);
  check_against_hf(c, dir, label);
  for (size_t i = 0; i < n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  st_close(ck);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", cases[i].fixture);
    check_against_hf(&cases[i], dir, cases[i].fixture);
  }
  check_sharded(&cases[0]);
  check_sharded(&cases[3]);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_round_trip(cases[i].fixture, cases[i].script);
  check_round_trip("gpt2-small", "models/gpt2.lua");
  check_round_trip("gpt2-odd", "models/gpt2.lua");
  return check_exit();
}
