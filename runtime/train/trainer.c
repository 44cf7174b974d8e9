#include "runtime/train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backends/interp/interp.h"
#include "runtime/base/file.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/loader.h"
#include "runtime/train/optim.h"
#include "runtime/train/schedule.h"

void train_defaults(TrainConfig *c) {
  *c = (TrainConfig){.model = {.seed = 1, .trace_flags = FE_TRACE_LOSS | FE_TRACE_NO_LOGITS},
                     .steps = 100,
                     .batch = 4,
                     .seq = 64,
                     .accum = 1,
                     .lr = 6e-4,
                     .min_lr_ratio = 0.1,
                     .weight_decay = 0.1,
                     .beta1 = 0.9,
                     .beta2 = 0.95,
                     .eps = 1e-8,
                     .clip = 1.0,
                     .warmup = -1, /* 1% of the steps, at least 1 */
                     .decay_embeddings = 1,
                     .eval_every = 0, /* every tenth of the run */
                     .eval_batches = 20,
                     .ckpt_every = 0, /* every tenth of the run */
                     .keep = 3,
                     .log_every = 0,
                     .data_seed = 1,
                     .shuffle = 1,
                     .threads = 0,
                    };
}

/* Everything a run holds; freed by run_free. */
typedef struct {
  const TrainConfig *cfg;
  LoadedModel m;
  DataSplit *train_data, *val_data;
  Loader train_loader, val_loader;
  int has_val;
  AdamW opt;
  AdamWConfig opt_cfg;
  LrSchedule sched;
  const EngineTrain *dev; /* the engine's device optimizer (begun), or NULL: AdamW here */
  int dev_ahead;          /* the device has updated the parameters since the host last fetched them */
  Tensor **grads; /* accumulated over micro-batches (AdamW here) */
  Tensor **spare; /* per train output: its tensor when r->grads does not hold it */
  int *grad_of;   /* per train output: the parameter it is the gradient of, or -1 */
  size_t max_outs;
  Tensor *ids, *targets;
  FILE *metrics;
  char *hparams_json;
  int64_t step, eval_every, ckpt_every, log_every;
  int checkpoints_written;
} Run;

/* The largest resident set so far, in MiB. */
static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run_free(Run *r) {
  if (r->dev) r->dev->end(r->m.engine);
  if (r->grads)
    for (size_t i = 0; i < r->m.params.spec.n; i++) tensor_free(r->grads[i]);
  free(r->grads);
  for (size_t k = 0; r->spare && k < r->max_outs; k++) tensor_free(r->spare[k]);
  free(r->spare);
  free(r->grad_of);
  tensor_free(r->ids);
  tensor_free(r->targets);
  if (r->metrics) fclose(r->metrics);
  adamw_free(&r->opt);
  loader_free(&r->train_loader);
  if (r->has_val) loader_free(&r->val_loader);
  data_split_close(r->train_data);
  data_split_close(r->val_data);
  free(r->hparams_json);
  model_unload(&r->m);
}

/* ---- state.json ---------------------------------------------------------- */

static char *state_json(const Run *r) {
  const TrainConfig *c = r->cfg;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "version", 1);
  cJSON_AddNumberToObject(root, "step", (double)r->step);
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "script", c->model.script);
  cJSON_AddStringToObject(model, "name", r->m.name);
  cJSON_AddItemToObject(root, "hparams", cJSON_Parse(r->hparams_json));
  cJSON *data = cJSON_AddObjectToObject(root, "data");
  cJSON_AddNumberToObject(data, "epoch", (double)r->train_loader.pos.epoch);
  cJSON_AddNumberToObject(data, "index", (double)r->train_loader.pos.index);
  cJSON_AddNumberToObject(data, "seed", (double)c->data_seed);
  cJSON_AddBoolToObject(data, "shuffle", c->shuffle);
  cJSON_AddNumberToObject(data, "batch", (double)c->batch);
  cJSON_AddNumberToObject(data, "seq", (double)c->seq);
  cJSON_AddNumberToObject(data, "accum", (double)c->accum);
  cJSON_AddNumberToObject(data, "train_tokens", (double)data_split_tokens(r->train_data));
  cJSON *opt = cJSON_AddObjectToObject(root, "optimizer");
  cJSON_AddNumberToObject(opt, "updates", (double)r->opt.step);
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  return s;
}

static int64_t json_int(const cJSON *obj, const char *key) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(j) ? (int64_t)j->valuedouble : -1;
}

static const char *json_show(const cJSON *j, char *buf, size_t n) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  snprintf(buf, n, "%s", s ? s : "(absent)");
  free(s);
  return buf;
}

/* The checkpoint must come from the same model and data settings. */
static int check_state(const Run *r, const char *ckpt, const cJSON *st, PcError *err) {
  cJSON *now_hp = cJSON_Parse(r->hparams_json);
  const cJSON *then_hp = cJSON_GetObjectItemCaseSensitive(st, "hparams"), *it;
  int rc = 0;
  char a[128], b[128];
  if (!cJSON_IsObject(then_hp)) rc = pc_errorf(err, "%s/state.json: no hparams", ckpt);
  cJSON_ArrayForEach(it, now_hp) {
    if (rc) break;
    const cJSON *then = cJSON_GetObjectItemCaseSensitive(then_hp, it->string);
    if (!then || !cJSON_Compare(then, it, 1))
      rc = pc_errorf(err, "%s was made with %s = %s, but this run has %s = %s", ckpt, it->string,
                     json_show(then, a, sizeof a), it->string, json_show(it, b, sizeof b));
  }
  cJSON_Delete(now_hp);
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(st, "data");
  const struct {
    const char *key, *flag;
    int64_t now;
  } same[] = {{"batch", "--batch", r->cfg->batch},
              {"seq", "--seq", r->cfg->seq},
              {"accum", "--accum", r->cfg->accum},
              {"seed", "--data-seed", (int64_t)r->cfg->data_seed},
              {"train_tokens", "--data (its token count)", (int64_t)data_split_tokens(r->train_data)}};
  for (size_t i = 0; !rc && i < sizeof same / sizeof *same; i++)
    if (json_int(data, same[i].key) != same[i].now)
      rc = pc_errorf(err, "%s was made with %s %lld, but this run has %lld (resuming exactly needs the same)", ckpt,
                     same[i].flag, (long long)json_int(data, same[i].key), (long long)same[i].now);
  const cJSON *shuffle = cJSON_GetObjectItemCaseSensitive(data, "shuffle");
  if (!rc && cJSON_IsBool(shuffle) && cJSON_IsTrue(shuffle) != (r->cfg->shuffle != 0))
    rc = pc_errorf(err, "%s was made with%s --shuffle; resuming exactly needs the same", ckpt, r->cfg->shuffle ? "out" : "");
  return rc;
}

/* metrics.jsonl keeps only the lines up to `step` (a resumed run rewrites the rest). */
static int truncate_metrics(const char *path, int64_t step, PcError *err) {
  char *text = pc_read_file(path, NULL, NULL);
  if (!text) return 0;
  VEC(char) kept = {0};
  for (char *line = text, *next; *line; line = next) {
    next = strchr(line, '\n');
    if (!next) break; /* a partial last line: drop it */
    *next++ = 0;
    cJSON *j = cJSON_Parse(line);
    int64_t s = json_int(j, "step");
    cJSON_Delete(j);
    if (s < 0 || s > step) continue;
    size_t n = strlen(line);
    vec_reserve(&kept, kept.n + n + 2);
    memcpy(kept.a + kept.n, line, n);
    kept.n += n;
    kept.a[kept.n++] = '\n';
  }
  vec_push(&kept, '\0');
  int rc = pc_write_file_atomic(path, kept.a, kept.n - 1, err);
  free(kept.a);
  free(text);
  return rc;
}

static int resume(Run *r, PcError *err) {
  char ckpt[4096];
  if (!ckpt_latest(r->cfg->out, ckpt, sizeof ckpt))
    return pc_errorf(err, "%s: no checkpoint to resume from", r->cfg->out);
  char *text = ckpt_state(ckpt, err);
  if (!text) return -1;
  cJSON *st = cJSON_Parse(text);
  free(text);
  int rc = st ? check_state(r, ckpt, st, err) : pc_errorf(err, "%s/state.json: not JSON", ckpt);
  if (!rc) rc = ckpt_load(ckpt, &r->m.params, &r->opt, err);
  if (!rc) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(st, "data");
    r->step = json_int(st, "step");
    r->opt.step = json_int(cJSON_GetObjectItemCaseSensitive(st, "optimizer"), "updates");
    loader_seek(&r->train_loader, (LoaderPos){(uint64_t)json_int(data, "epoch"), (uint64_t)json_int(data, "index")});
    if (r->step < 0 || r->opt.step < 0) rc = pc_errorf(err, "%s/state.json: no step", ckpt);
  }
  cJSON_Delete(st);
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", r->cfg->out);
  if (!rc) rc = truncate_metrics(path, r->step, err);
  if (!rc) printf("resuming %s from %s (step %lld)\n", r->cfg->out, ckpt, (long long)r->step);
  return rc;
}

/* ---- setup --------------------------------------------------------------- */

static int copy_file(const char *from, const char *to, PcError *err) {
  FILE *in = fopen(from, "rb");
  if (!in) return pc_errorf(err, "%s: %s", from, strerror(errno));
  FILE *out = fopen(to, "wb");
  if (!out) {
    fclose(in);
    return pc_errorf(err, "%s: %s", to, strerror(errno));
  }
  char buf[65536];
  size_t n;
  int bad = 0;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) bad |= fwrite(buf, 1, n, out) != n;
  fclose(in);
  if (fclose(out) || bad) return pc_errorf(err, "%s: cannot write", to);
  return 0;
}

/* The tokenizer named by --tokenizer or by the data's manifest.json, copied
 * into the run folder so that `ponder generate` finds it there. */
static int keep_tokenizer(const TrainConfig *c, PcError *err) {
  char manifest_tok[4096] = "";
  const char *src = c->tokenizer;
  if (!src) {
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", c->data);
    char *text = pc_read_file(path, NULL, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tokenizer");
    if (cJSON_IsString(t)) snprintf(manifest_tok, sizeof manifest_tok, "%s", t->valuestring);
    cJSON_Delete(j);
    free(text);
    if (!manifest_tok[0] || access(manifest_tok, R_OK) != 0) return 0;
    src = manifest_tok;
  }
  size_t n = strlen(src);
  const char *name = n >= 6 && !strcmp(src + n - 6, ".model") ? "tokenizer.model" : "tokenizer.json";
  char to[4200];
  snprintf(to, sizeof to, "%s/%s", c->out, name);
  return copy_file(src, to, err);
}

static int setup(Run *r, PcError *err) {
  const TrainConfig *c = r->cfg;
  if (c->steps < 1 || c->batch < 1 || c->seq < 1 || c->accum < 1)
    return pc_errorf(err, "--steps, --batch, --seq and --accum must be at least 1");
  if (mkdir(c->out, 0755) < 0 && errno != EEXIST) return pc_errorf(err, "%s: cannot create: %s", c->out, strerror(errno));
  char ckpt[4096];
  if (!c->resume && ckpt_latest(c->out, ckpt, sizeof ckpt))
    return pc_errorf(err, "%s already holds checkpoints (%s): pass --resume to continue it, or choose another --out",
                     c->out, ckpt);
  if (model_load(&c->model, &r->m, err) < 0) return -1;
  int64_t ctx = r->m.context, vocab = r->m.vocab;
  if (ctx && c->seq > ctx)
    return pc_errorf(err, "--seq %lld is longer than the model's context of %lld tokens", (long long)c->seq, (long long)ctx);
  r->hparams_json = pc_xstrdup(r->m.hparams_json);

  if (data_split_open(c->data, "train", &r->train_data, err) < 0) return -1;
  if (data_split_vocab(r->train_data) > (uint32_t)vocab)
    return pc_errorf(err, "%s: the data's tokenizer has %u tokens but the model's vocabulary is %lld (set vocab_size)",
                     c->data, data_split_vocab(r->train_data), (long long)vocab);
  if (loader_init(&r->train_loader, r->train_data, c->batch, c->seq, c->shuffle, c->data_seed, err) < 0)
    return pc_error_prefix(err, "%s", c->data);
  const char *val = c->val ? c->val : c->data;
  if (data_split_open(val, "val", &r->val_data, err) < 0) return -1;
  if (data_split_nshards(r->val_data)) {
    if (loader_init(&r->val_loader, r->val_data, c->batch, c->seq, 0, 0, err) < 0)
      return pc_error_prefix(err, "%s (validation)", val);
    r->has_val = 1;
  }

  if (adamw_init(&r->opt, &r->m.params, err) < 0) return -1;
  r->opt.threads = c->threads;
  r->opt_cfg = (AdamWConfig){c->beta1, c->beta2, c->eps, c->weight_decay, c->decay_embeddings};
  int64_t warmup = c->warmup >= 0 ? c->warmup : (c->steps / 100 > 0 ? c->steps / 100 : 1);
  r->sched = (LrSchedule){c->lr, c->lr * c->min_lr_ratio, warmup, c->steps};
  r->eval_every = c->eval_every > 0 ? c->eval_every : (c->steps >= 10 ? c->steps / 10 : 1);
  r->ckpt_every = c->ckpt_every > 0 ? c->ckpt_every : (c->steps >= 10 ? c->steps / 10 : 1);
  r->log_every = c->log_every > 0 ? c->log_every : (c->steps >= 20 ? c->steps / 20 : 1);
  int64_t shape[2] = {c->batch, c->seq};
  r->ids = tensor_new(PC_I32, 2, shape);
  r->targets = tensor_new(PC_I32, 2, shape);
  r->grads = pc_xcalloc(r->m.params.spec.n + 1, sizeof *r->grads);
  r->max_outs = r->m.params.spec.n + 8;
  r->spare = pc_xcalloc(r->max_outs, sizeof *r->spare);
  r->grad_of = pc_xmalloc(sizeof *r->grad_of * r->max_outs);
  for (size_t k = 0; k < r->max_outs; k++) r->grad_of[k] = -1;
  if (c->threads > 0) interp_set_threads(c->threads);

  if (c->resume && resume(r, err) < 0) return -1;
  if (!c->resume && keep_tokenizer(c, err) < 0) return -1;
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", c->out);
  if (!(r->metrics = fopen(path, c->resume ? "a" : "w"))) return pc_errorf(err, "%s: %s", path, strerror(errno));
  if (r->m.engine->train) { /* the parameters and moments (resumed or new) go to the device, and stay there */
    size_t n = r->m.params.spec.n;
    unsigned char *decays = pc_xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) decays[i] = (unsigned char)adamw_decays(&r->opt_cfg, &r->m.params.spec.a[i]);
    int rc = r->m.engine->train->begin(r->m.engine, &r->m.params, r->opt.m, r->opt.v, decays, err);
    free(decays);
    if (rc < 0) return -1;
    r->dev = r->m.engine->train;
  }
  return 0;
}

/* ---- one step -------------------------------------------------------------- */

/* Runs the micro-batches of one step; leaves the mean gradients in r->grads.
 * The entry writes the first micro-batch's gradients into r->grads and
 * later ones into spare tensors that are added to them: after the first
 * step, no gradient-sized allocation. */
static int accumulate(Run *r, double *loss, PcError *err) {
  NamedTensor in[2] = {{"ids", r->ids}, {"targets", r->targets}};
  NamedTensor *out = pc_xcalloc(r->max_outs, sizeof *out);
  double sum = 0;
  int rc = 0;
  for (int64_t micro = 0; micro < r->cfg->accum && !rc; micro++) {
    loader_next(&r->train_loader, tensor_i32(r->ids), tensor_i32(r->targets));
    for (size_t k = 0; k < r->max_outs; k++) {
      int p = r->grad_of[k];
      out[k] = (NamedTensor){.tensor = micro == 0 && p >= 0 ? r->grads[p] : r->spare[k]};
    }
    size_t n_out;
    rc = r->m.engine->run(r->m.engine, ENTRY_TRAIN, &r->m.params, in, 2, out, r->max_outs, &n_out, err);
    for (size_t k = 0; k < n_out; k++) { /* the tensors the engine made are ours now */
      const char *name = out[k].name;
      int p = strncmp(name, "grad:", 5) ? -1 : params_find(&r->m.params, name + 5);
      r->grad_of[k] = p;
      if (micro == 0 && p >= 0) r->grads[p] = out[k].tensor;
      else r->spare[k] = out[k].tensor;
      if (rc) continue;
      if (!strcmp(name, "loss")) sum += tensor_f32(out[k].tensor)[0];
      if (micro > 0 && p >= 0) {
        float *acc = tensor_f32(r->grads[p]);
        const float *g = tensor_f32(out[k].tensor);
        for (int64_t e = 0, n = tensor_numel(out[k].tensor); e < n; e++) acc[e] += g[e];
      }
    }
  }
  free(out);
  if (rc) return -1;
  size_t np = r->m.params.spec.n;
  if (r->cfg->accum > 1) grads_scale(r->grads, np, (float)(1.0 / (double)r->cfg->accum));
  *loss = sum / (double)r->cfg->accum;
  return 0;
}

/* accumulate() with the device optimizer: the gradients stay on the device. */
static int accumulate_on_device(Run *r, double *loss, PcError *err) {
  NamedTensor in[2] = {{"ids", r->ids}, {"targets", r->targets}};
  double sum = 0;
  for (int64_t micro = 0; micro < r->cfg->accum; micro++) {
    loader_next(&r->train_loader, tensor_i32(r->ids), tensor_i32(r->targets));
    double l;
    if (r->dev->micro(r->m.engine, in, 2, micro, r->cfg->accum, &l, err) < 0) return -1;
    sum += l;
  }
  *loss = sum / (double)r->cfg->accum;
  return 0;
}

/* The host's parameters and moments from the device, when it is ahead. */
static int fetch(Run *r, PcError *err) {
  if (!r->dev || !r->dev_ahead) return 0;
  if (r->dev->fetch(r->m.engine, &r->m.params, r->opt.m, r->opt.v, err) < 0) return -1;
  r->dev_ahead = 0;
  return 0;
}

static int evaluate(Run *r, double *val_loss, PcError *err) {
  loader_seek(&r->val_loader, (LoaderPos){0, 0});
  int64_t batches = r->cfg->eval_batches;
  uint64_t available = r->val_loader.n_chunks / (uint64_t)r->cfg->batch;
  if (available < (uint64_t)batches) batches = available ? (int64_t)available : 1;
  double sum = 0;
  NamedTensor in[2] = {{"ids", r->ids}, {"targets", r->targets}};
  for (int64_t b = 0; b < batches; b++) {
    loader_next(&r->val_loader, tensor_i32(r->ids), tensor_i32(r->targets));
    size_t n_out;
    NamedTensor out[4] = {{0}};
    if (r->m.engine->run(r->m.engine, ENTRY_EVAL, &r->m.params, in, 2, out, 4, &n_out, err) < 0) return -1;
    for (size_t k = 0; k < n_out; k++) {
      if (!strcmp(out[k].name, "loss")) sum += tensor_f32(out[k].tensor)[0];
      tensor_free(out[k].tensor);
    }
  }
  *val_loss = sum / (double)batches;
  return 0;
}

/* %g, but NaN and Inf without a sign or a platform spelling. */
static const char *show(double v, char *buf, size_t n) {
  if (isnan(v)) snprintf(buf, n, "NaN");
  else if (isinf(v)) snprintf(buf, n, "%sInf", v < 0 ? "-" : "");
  else snprintf(buf, n, "%g", v);
  return buf;
}

static void json_number(FILE *f, const char *key, double v) {
  if (isfinite(v))
    fprintf(f, ", \"%s\": %.9g", key, v);
  else
    fprintf(f, ", \"%s\": null", key);
}

static void progress(const Run *r, double loss, double lr, double norm, double tok_s, double ms, double eta, int tty) {
  int eta_s = (int)eta;
  char line[256];
  snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.0f ms/step | ETA %d:%02d:%02d",
           (long long)r->step, (long long)r->cfg->steps, loss, lr, norm, tok_s, ms, eta_s / 3600, eta_s / 60 % 60, eta_s % 60);
  if (tty)
    fprintf(stderr, "\r\033[K%s", line);
  else if (r->step % r->log_every == 0 || r->step == r->cfg->steps)
    printf("%s\n", line);
  fflush(tty ? stderr : stdout);
}

static int checkpoint(Run *r, PcError *err) {
  if (fetch(r, err) < 0) return -1;
  char *state = state_json(r);
  char *config = pc_xstrdup(r->hparams_json);
  r->checkpoints_written++;
  CkptWrite w = {config, state, (int)r->cfg->keep, r->cfg->crash_in_checkpoint == r->checkpoints_written};
  int rc = ckpt_save(r->cfg->out, r->step, &r->m.params, &r->opt, &w, err);
  free(state);
  free(config);
  return rc;
}

int train_run(const TrainConfig *c, PcError *err) {
  Run r = {.cfg = c};
  int rc = setup(&r, err);
  int tty = isatty(fileno(stderr));
  if (!rc)
    printf("training %s (%.2fM parameters) on %s: %llu tokens, %lld steps of %lld x %lld x %lld tokens\n",
           r.m.name, params_count(&r.m.params) / 1e6, c->data,
           (unsigned long long)data_split_tokens(r.train_data), (long long)c->steps, (long long)c->accum,
           (long long)c->batch, (long long)c->seq);
  double t_start = now();
  int64_t first = r.step, bad_in_a_row = 0;
  int64_t last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
  while (!rc && r.step < last) {
    double t0 = now(), loss;
    r.step++;
    double lr = lr_at(&r.sched, r.step);
    double norm;
    if (r.dev) {
      if ((rc = accumulate_on_device(&r, &loss, err)) < 0 || (rc = r.dev->norm(r.m.engine, &norm, err)) < 0) break;
    } else {
      if ((rc = accumulate(&r, &loss, err)) < 0) break;
      norm = grads_global_norm(r.grads, r.m.params.spec.n, c->threads);
    }
    double ms = (now() - t0) * 1e3;
    if (!isfinite(loss) || !isfinite(norm)) {
      fprintf(r.metrics, "{\"step\": %lld, \"skipped\": true", (long long)r.step);
      json_number(r.metrics, "loss", loss);
      json_number(r.metrics, "grad_norm", norm);
      fprintf(r.metrics, "}\n");
      fflush(r.metrics);
      if (tty) fputc('\n', stderr);
      char last[4096] = "none";
      ckpt_latest(c->out, last, sizeof last);
      char a[32], b[32];
      if (!c->skip_nonfinite) {
        rc = pc_errorf(err, "step %lld: the loss is %s (gradient norm %s); stopping. The last checkpoint (%s) is intact; "
                       "lower --lr, or pass --skip-nonfinite to skip such steps", (long long)r.step,
                       show(loss, a, sizeof a), show(norm, b, sizeof b), last);
        break;
      }
      fprintf(stderr, "step %lld: the loss is %s (gradient norm %s): step skipped\n", (long long)r.step,
              show(loss, a, sizeof a), show(norm, b, sizeof b));
      if (++bad_in_a_row >= 10) {
        rc = pc_errorf(err, "step %lld: 10 non-finite steps in a row; stopping (last checkpoint: %s)", (long long)r.step, last);
        break;
      }
      continue;
    }
    bad_in_a_row = 0;
    float clip_scale = c->clip > 0 && norm > c->clip ? (float)(c->clip / norm) : 1.0f;
    if (r.dev) {
      AdamWStep s;
      adamw_next(&r.opt, lr, &r.opt_cfg, clip_scale, &s);
      if ((rc = r.dev->update(r.m.engine, &s, err)) < 0) break;
      r.dev_ahead = 1;
    } else {
      adamw_update(&r.opt, &r.m.params, r.grads, clip_scale, lr, &r.opt_cfg);
    }
    ms = (now() - t0) * 1e3;
    double tok_s = (double)(c->batch * c->seq * c->accum) / (ms / 1e3);
    double eta = (now() - t_start) / (double)(r.step - first) * (double)(c->steps - r.step);
    fprintf(r.metrics, "{\"step\": %lld", (long long)r.step);
    json_number(r.metrics, "loss", loss);
    json_number(r.metrics, "lr", lr);
    json_number(r.metrics, "grad_norm", norm);
    json_number(r.metrics, "tokens_per_s", tok_s);
    json_number(r.metrics, "ms", ms);
    json_number(r.metrics, "peak_rss_mb", peak_rss_mb());
    fprintf(r.metrics, "}\n");
    fflush(r.metrics);
    progress(&r, loss, lr, norm, tok_s, ms, eta, tty);
    if (r.has_val && (r.step % r.eval_every == 0 || r.step == c->steps)) {
      double val_loss;
      if ((rc = evaluate(&r, &val_loss, err)) < 0) break;
      fprintf(r.metrics, "{\"step\": %lld", (long long)r.step);
      json_number(r.metrics, "val_loss", val_loss);
      fprintf(r.metrics, "}\n");
      fflush(r.metrics);
      if (tty) fputc('\n', stderr);
      printf("step %lld: validation loss %.4f\n", (long long)r.step, val_loss);
    }
    if (r.step % r.ckpt_every == 0 || r.step == last) rc = checkpoint(&r, err);
  }
  if (!rc) rc = fetch(&r, err); /* the host has the trained values in the end */
  if (tty && !rc) fputc('\n', stderr);
  if (!rc && r.step < c->steps)
    printf("stopped at step %lld of %lld as asked; --resume continues it\n", (long long)r.step, (long long)c->steps);
  else if (!rc)
    printf("done: %lld steps in %.1f s; peak memory %.0f MiB; checkpoints in %s\n", (long long)(r.step - first),
           now() - t_start, peak_rss_mb(), c->out);
  run_free(&r);
  return rc;
}
