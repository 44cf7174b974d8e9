/* Pondering against an independent PyTorch implementation of DESIGN
 * section 1 (scripts/make-fixtures): on the gpt2-small weights and inputs,
 * for K = 0, 1, 3 and each knob, and on Pythia (neox-par, K = 3 with
 * scale_embeds and mutiply_pondering_steps, loaded as a PonderingLM
 * checkpoint: its config.json sets the knobs) and LLaMA (llama-gqa4, K = 3
 * with scale_embeds), the logits, the loss and the gradient of every
 * parameter must match within 1e-4 relative (1e-6 absolute for tiny
 * gradients), in both ways of differentiating the ponder loop, fused and
 * unfused. The fused training graph must hold no [B, T, vocab] value, and
 * agree with the unfused one within 1e-5 relative. */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "compiler/pipeline.h"
#include "runtime/base/file.h"
#include "runtime/hf_import.h"
#include "runtime/cli/model_load.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/grad_check.h"

typedef struct {
  const char *name, *script, *base;
  const char *head;    /* W_out, the matrix the vocabulary ops read */
  int pondering_ckpt;  /* load it as a PonderingLM checkpoint (knobs from its config.json) */
} Fixture;

#define GPT2(name) {name, "models/gpt2.lua", "gpt2-small", "transformer.wte.weight", 0}
static const Fixture fixtures[] = {
    GPT2("ponder-k0"),        GPT2("ponder-k1"),    GPT2("ponder-k3"),        GPT2("ponder-k3-scale"),
    GPT2("ponder-k3-scale-mult"), GPT2("ponder-k1-mult"), GPT2("ponder-k3-tau"), GPT2("ponder-k3-latest"),
    GPT2("ponder-k3-top8"),
    {"neox-ponder-k3-scale-mult", "models/pythia.lua", "neox-par", "embed_out.weight", 1},
    {"llama-ponder-k3-scale", "models/llama.lua", "llama-gqa4", "lm_head.weight", 0},
};
#undef GPT2

static char pondering_dir[] = "/tmp/ponder-pondering-XXXXXX";

/* A PonderingLM Pythia checkpoint made from the fixture's base: its
 * config.json in the transformers 4 form Pythia's checkpoints have
 * (rotary_pct and rotary_emb_base rather than rope_parameters) plus
 * PonderingLM's keys (ponderinglm, pondering_steps, scale_embeds,
 * mutiply_pondering_steps, checkpoint_num_layers), and the weights plus
 * the unused `adapter` its pondering class saves. */
static int make_pondering_ckpt(const Fixture *f) {
  char path[512];
  PcError err;
  if (!mkdtemp(pondering_dir)) return -1;
  snprintf(path, sizeof path, "tests/fixtures/%s/config.json", f->base);
  char *text = pc_read_file(path, NULL, &err);
  cJSON *cfg = text ? cJSON_Parse(text) : NULL;
  free(text);
  snprintf(path, sizeof path, "tests/fixtures/%s/ponder.json", f->name);
  text = pc_read_file(path, NULL, &err);
  cJSON *knobs = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!cfg || !knobs) return -1;
  cJSON *rope = cJSON_DetachItemFromObject(cfg, "rope_parameters");
  cJSON_AddNumberToObject(cfg, "rotary_pct", cJSON_GetObjectItem(rope, "partial_rotary_factor")->valuedouble);
  cJSON_AddNumberToObject(cfg, "rotary_emb_base", cJSON_GetObjectItem(rope, "rope_theta")->valuedouble);
  cJSON_Delete(rope);
  cJSON_AddBoolToObject(cfg, "ponderinglm", 1);
  cJSON_AddNumberToObject(cfg, "pondering_steps", cJSON_GetObjectItem(knobs, "steps")->valuedouble);
  cJSON_AddBoolToObject(cfg, "scale_embeds", cJSON_IsTrue(cJSON_GetObjectItem(knobs, "scale_embeds")));
  cJSON_AddBoolToObject(cfg, "mutiply_pondering_steps", cJSON_IsTrue(cJSON_GetObjectItem(knobs, "multiply_steps")));
  cJSON_AddNumberToObject(cfg, "checkpoint_num_layers", 100);
  char *out = cJSON_Print(cfg);
  snprintf(path, sizeof path, "%s/config.json", pondering_dir);
  FILE *fp = fopen(path, "w");
  fputs(out, fp);
  fclose(fp);
  free(out);
  int64_t C = (int64_t)cJSON_GetObjectItem(cfg, "hidden_size")->valuedouble;
  cJSON_Delete(cfg);
  cJSON_Delete(knobs);

  StCheckpoint *ck;
  snprintf(path, sizeof path, "tests/fixtures/%s/model.safetensors", f->base);
  if (st_open(path, &ck, &err) < 0) return -1;
  size_t n = st_count(ck);
  StEntry *e = calloc(n + 1, sizeof *e);
  Tensor **t = calloc(n + 1, sizeof *t);
  for (size_t i = 0; i < n; i++) {
    CHECK(st_read(ck, st_get(ck, i)->name, &t[i], &err) == 0);
    e[i] = (StEntry){st_get(ck, i)->name, t[i]};
  }
  t[n] = tensor_new(PC_F32, 2, (int64_t[]){C, 2 * C});
  e[n] = (StEntry){"adapter.weight", t[n]};
  snprintf(path, sizeof path, "%s/model.safetensors", pondering_dir);
  int rc = st_write(path, e, n + 1, &err);
  for (size_t i = 0; i <= n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  st_close(ck);
  return rc;
}

/* --set strings from ponder.json (owned by the caller's buffer). */
static int knob_sets(const char *name, char buf[8][64], ModelOpts *mo) {
  char path[256];
  snprintf(path, sizeof path, "tests/fixtures/%s/ponder.json", name);
  char *text = pc_read_file(path, NULL, NULL);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!j) return -1;
#define GET(k) cJSON_GetObjectItemCaseSensitive(j, k)
  snprintf(buf[0], 64, "ponderinglm=true");
  snprintf(buf[1], 64, "pondering_steps=%d", (int)GET("steps")->valuedouble);
  snprintf(buf[2], 64, "scale_embeds=%s", cJSON_IsTrue(GET("scale_embeds")) ? "true" : "false");
  snprintf(buf[3], 64, "mutiply_pondering_steps=%s", cJSON_IsTrue(GET("multiply_steps")) ? "true" : "false");
  snprintf(buf[4], 64, "ponder_tau=%.17g", GET("tau")->valuedouble);
  snprintf(buf[5], 64, "ponder_topk=%d", (int)GET("topk")->valuedouble);
  snprintf(buf[6], 64, "ponder_accumulate=%s", cJSON_IsTrue(GET("accumulate")) ? "true" : "false");
#undef GET
  cJSON_Delete(j);
  for (int i = 0; i < 7; i++) vec_push(&mo->sets, buf[i]);
  return 0;
}

static double max_rel(const Tensor *a, const Tensor *b, double atol) {
  double worst = 0;
  for (int64_t i = 0; i < tensor_numel(b); i++) {
    double d = fabs(tensor_f32(a)[i] - tensor_f32(b)[i]);
    if (d > atol) worst = fmax(worst, d / fabs(tensor_f32(b)[i]));
  }
  return worst;
}

/* Whether some node makes a [B, T, V] value: one that reads the vocabulary
 * matrix and gives rows of vocabulary width, or a softmax or cross entropy
 * over them. */
static int has_vocab_sized_value(const IrGraph *g, const char *matrix) {
  uint32_t w = ir_find_param(g, matrix);
  int64_t V = ir_type(g, w)->shape.dim[0];
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    IrOp op = n->op;
    if (op == IR_SOFTMAX || op == IR_SOFTMAX_TOPK || op == IR_CROSS_ENTROPY || op == IR_CROSS_ENTROPY_GRAD) return 1;
    int reads = 0;
    for (uint32_t k = 0; k < n->n_in; k++) reads |= ir_in(g, n, k) == w;
    for (uint32_t k = 0; reads && k < n->n_out; k++) {
      const IrShape *s = &ir_type(g, n->out + k)->shape;
      if (s->rank >= 2 && IR_IS_SYM(s->dim[0]) && s->dim[s->rank - 1] == V) return 1;
    }
  }
  return 0;
}

static void check(const Fixture *f, AdLoopMode mode, int fused, GcOutputs *keep) {
  const char *name = f->name;
  char sets[8][64], io_path[256], base[256];
  snprintf(base, sizeof base, "tests/fixtures/%s", f->base);
  ModelOpts mo = {.backend = "interp", .script = f->script, .hf = f->pondering_ckpt ? pondering_dir : base,
                  .trace_flags = FE_TRACE_LOSS | (fused ? FE_TRACE_NO_LOGITS : 0),
                  .pipeline = {.no_fuse = !fused, .loop_mode = mode}};
  if (!f->pondering_ckpt && knob_sets(name, sets, &mo) < 0) {
    CHECKF(0, "%s: cannot read ponder.json", name);
    return;
  }
  PcError err;
  LoadedModel m;
  IrGraph *train = NULL;
  if (model_load(&mo, &m, &err) < 0 || pc_differentiate(m.graph, &mo.pipeline, &train, &err) < 0) {
    CHECKF(0, "%s: %s", name, err.msg);
    model_opts_free(&mo);
    return;
  }
  snprintf(io_path, sizeof io_path, "tests/fixtures/%s/io.safetensors", name);
  StCheckpoint *io;
  Tensor *ids, *want_logits, *want_loss;
  CHECK(st_open(io_path, &io, &err) == 0 && st_read(io, "input_ids", &ids, &err) == 0 &&
        st_read(io, "logits", &want_logits, &err) == 0 && st_read(io, "loss", &want_loss, &err) == 0);
  Tensor *targets = tensor_new(PC_I32, 2, ids->dim);
  int64_t B = ids->dim[0], T = ids->dim[1];
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) tensor_i32(targets)[b * T + t] = t + 1 < T ? tensor_i32(ids)[b * T + t + 1] : -1;
  NamedTensor in[2] = {{"ids", ids}, {"targets", targets}};
  GcOutputs out = {0};
  CHECKF(gc_run(train, &m.params, in, 2, &out, &err) == 0, "%s: %s", name, err.msg);
  double logit_diff = 0;
  const Tensor *logits = gc_get(&out, "logits");
  for (int64_t i = 0; logits && i < tensor_numel(want_logits); i++)
    logit_diff = fmax(logit_diff, fabs(tensor_f32(logits)[i] - tensor_f32(want_logits)[i]));
  if (fused) CHECKF(!has_vocab_sized_value(train, f->head), "%s: the fused training graph has a [B,T,vocab] value", name);
  double loss = tensor_f32(gc_get(&out, "loss"))[0], ref = tensor_f32(want_loss)[0];
  double loss_rel = fabs(loss - ref) / fabs(ref), grad_rel = 0;
  CHECKF(logit_diff <= 1e-4, "%s: logits differ from PyTorch by %g", name, logit_diff);
  CHECKF(loss_rel <= 1e-4, "%s: loss %.7f vs PyTorch %.7f", name, loss, ref);
  for (size_t p = 0; p < m.params.spec.n; p++) {
    const ParamSpec *s = &m.params.spec.a[p];
    char gname[512], fname[512];
    snprintf(gname, sizeof gname, "grad:%s", s->name);
    snprintf(fname, sizeof fname, "grad.%s", s->name);
    Tensor *want = NULL, *ours = NULL;
    const Tensor *g = gc_get(&out, gname);
    if (!g || st_read(io, fname, &want, &err) < 0) {
      CHECKF(0, "%s: no gradient for %s", name, s->name);
      continue;
    }
    ours = hf_export(s, g); /* in the Hugging Face layout, as PyTorch's */
    double r = max_rel(ours, want, 1e-6);
    grad_rel = fmax(grad_rel, r);
    CHECKF(r <= 1e-4, "%s: gradient of %s differs from PyTorch by %g relative", name, s->name, r);
    tensor_free(want);
    tensor_free(ours);
  }
  double vs_unfused = 0;
  if (keep && keep->n) { /* the unfused run of the same fixture, kept by the caller */
    for (size_t i = 0; i < out.n; i++) {
      const Tensor *other = gc_get(keep, out.out[i].name);
      if (!other) continue;
      for (int64_t e = 0; e < tensor_numel(other); e++) {
        double a = tensor_f32(out.out[i].tensor)[e], b = tensor_f32(other)[e];
        if (fabs(a - b) > 1e-7 && fabs(a - b) / fabs(b) > vs_unfused) {
          vs_unfused = fabs(a - b) / fabs(b);
          if (vs_unfused > 1e-5) printf("  %s[%lld]: fused %.9g, unfused %.9g\n", out.out[i].name, (long long)e, a, b);
        }
      }
    }
    CHECKF(vs_unfused <= 1e-5, "%s: fused and unfused differ by %g relative", name, vs_unfused);
  }
  printf("%-26s %-9s %-7s logits %.1e, loss rel %.1e, gradients rel %.1e", name,
         mode == AD_LOOPS_SAVE ? "save" : "recompute", fused ? "fused" : "unfused", logit_diff, loss_rel, grad_rel);
  if (keep && keep->n) printf(", vs unfused %.1e", vs_unfused);
  printf("\n");
  if (keep && !keep->n) {
    *keep = out; /* the caller compares the fused run with it */
    gc_keep_names(keep);
  }
  else
    gc_free(&out);
  st_close(io);
  tensor_free(ids);
  tensor_free(targets);
  tensor_free(want_logits);
  tensor_free(want_loss);
  ir_graph_free(train);
  model_unload(&m);
  model_opts_free(&mo);
}

int main(void) {
  size_t n = sizeof fixtures / sizeof *fixtures;
  for (size_t i = 0; i < n; i++)
    if (fixtures[i].pondering_ckpt) CHECKF(make_pondering_ckpt(&fixtures[i]) == 0, "cannot make a PonderingLM checkpoint");
  for (size_t i = 0; i < n; i++) {
    GcOutputs unfused = {0};
    check(&fixtures[i], AD_LOOPS_RECOMPUTE, 0, &unfused);
    check(&fixtures[i], AD_LOOPS_RECOMPUTE, 1, &unfused);
    gc_free(&unfused);
  }
  check(&fixtures[2], AD_LOOPS_SAVE, 1, NULL);     /* ponder-k3 */
  check(&fixtures[8], AD_LOOPS_SAVE, 1, NULL);     /* ponder-k3-top8 */
  check(&fixtures[n - 1], AD_LOOPS_SAVE, 1, NULL); /* llama-ponder-k3-scale */
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", pondering_dir);
  if (pondering_dir[strlen(pondering_dir) - 1] != 'X') CHECK(system(cmd) == 0);
  return check_exit();
}
