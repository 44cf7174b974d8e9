/* Shared by the backend-equivalence tests (backend_equiv.h). */
#include "tests/backend_equiv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cli/decoder.h"
#include "tests/check.h"

static const char *const k0[] = {"initializer_range=0.2"};
static const char *const k3[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};
static const char *const k3top[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "ponder_topk=5",
                                    "ponder_accumulate=false"};
static const char *const pk0[] = {"ponderinglm=false"};
static const char *const pk3[] = {"ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};

static const EquivCase cases[] = {
    {"gpt2 tiny, K = 0", "models/gpt2.lua", "tiny", k0, 1},
    {"gpt2 tiny, K = 3", "models/gpt2.lua", "tiny", k3, 4},
    {"gpt2 tiny, K = 3, top-5, latest only", "models/gpt2.lua", "tiny", k3top, 5},
    {"pythia tiny, K = 0", "models/pythia.lua", "tiny", pk0, 1},
    {"pythia tiny, K = 3", "models/pythia.lua", "tiny", pk3, 3},
    {"llama tiny, K = 0", "models/llama.lua", "tiny", pk0, 1},
    {"llama tiny, K = 3", "models/llama.lua", "tiny", pk3, 3},
};

const EquivCase *equiv_cases(size_t *n) {
  *n = sizeof cases / sizeof cases[0];
  return cases;
}

int equiv_opts(const EquivCase *c, ModelOpts *o, char (*buf)[64]) {
  if (access(c->script, R_OK) != 0) {
    printf("SKIP %s: %s is not here\n", c->label, c->script);
    return -1;
  }
  *o = (ModelOpts){.script = c->script, .config = c->config, .seed = 3, .max_batch = 2, .max_seq = 16};
  for (size_t i = 0; i < c->n_sets; i++) { /* copies: the option parser writes into them */
    snprintf(buf[i], 64, "%s", c->sets[i]);
    vec_push(&o->sets, buf[i]);
  }
  return 0;
}

#define MAX_OUT 512

/* worst |a - b| / max|a| over the outputs of one entry, matched by name */
static double compare(const NamedTensor *a, size_t na, const NamedTensor *b, size_t nb, const char **worst_name) {
  double worst = 0;
  for (size_t i = 0; i < na; i++) {
    const Tensor *x = a[i].tensor, *y = NULL;
    for (size_t j = 0; j < nb; j++)
      if (!strcmp(b[j].name, a[i].name)) y = b[j].tensor;
    if (!y || !tensor_same_shape(x, y)) {
      *worst_name = a[i].name;
      return INFINITY;
    }
    double scale = 0;
    for (int64_t e = 0; e < tensor_numel(x); e++) scale = fmax(scale, fabs(tensor_f32(x)[e]));
    for (int64_t e = 0; e < tensor_numel(x); e++) {
      double d = fabs(tensor_f32(x)[e] - tensor_f32(y)[e]) / (scale > 0 ? scale : 1);
      if (!(d <= worst)) {
        worst = d;
        *worst_name = a[i].name;
      }
    }
  }
  return worst;
}

static void free_outputs(NamedTensor *o, size_t n) {
  for (size_t i = 0; i < n; i++) tensor_free(o[i].tensor);
}

/* ids and targets of 2 x 16 rows: ids[i] = f(i) */
static void make_inputs(int64_t vocab, int repeat, Tensor **ids, Tensor **tg) {
  int64_t shape[2] = {2, 16};
  *ids = tensor_new(PC_I32, 2, shape);
  *tg = tensor_new(PC_I32, 2, shape);
  for (int i = 0; i < 32; i++) {
    tensor_i32(*ids)[i] = ((repeat ? i % 11 : i) * 37 + 5) % (int32_t)vocab;
    tensor_i32(*tg)[i] = i % 16 == 15 ? -1 : (i * 11 + 3) % (int32_t)vocab;
  }
}

/* entry k of got against ref on inputs in, within tol; prints its figure */
static void check_entry(const char *label, const char *how, LoadedModel *ref, LoadedModel *got, EntryKind k,
                        const NamedTensor *in, double tol) {
  PcError err;
  NamedTensor *a = calloc(MAX_OUT, sizeof *a), *b = calloc(MAX_OUT, sizeof *b);
  size_t na = 0, nb = 0;
  const char *worst_name = "";
  if (ref->engine->run(ref->engine, k, &ref->params, in, 2, a, MAX_OUT, &na, &err) < 0 ||
      got->engine->run(got->engine, k, &got->params, in, 2, b, MAX_OUT, &nb, &err) < 0) {
    CHECKF(0, "%s: %s: %s", label, entry_name(k), err.msg);
  } else {
    double worst = compare(a, na, b, nb, &worst_name);
    CHECKF(na == nb && worst <= tol, "%s (%s): %s: %s differs by %g", label, how, entry_name(k), worst_name, worst);
    printf(" %s %.1e (%zu outputs)", entry_name(k), worst, na);
  }
  free_outputs(a, na);
  free_outputs(b, nb);
  free(a);
  free(b);
}

void equiv_train_repeated_ids(const char *label, const char *how, LoadedModel *ref, LoadedModel *got, double tol) {
  Tensor *ids, *tg;
  make_inputs(ref->vocab, 1, &ids, &tg);
  NamedTensor in[2] = {{"ids", ids}, {"targets", tg}};
  printf("%-36s %s, ids repeating:", label, how);
  check_entry(label, how, ref, got, ENTRY_TRAIN, in, tol);
  printf("\n");
  tensor_free(ids);
  tensor_free(tg);
}

/* Parameters that start as zeros or ones (biases, norm weights) moved off
 * them, the same in every model of a case: a backend that drops a bias or
 * a norm's weight is seen in the forward too. */
static void move_off_constants(Params *p) {
  for (size_t i = 0; i < p->spec.n; i++) {
    ParamInit init = p->spec.a[i].init;
    if (init != PARAM_INIT_ZEROS && init != PARAM_INIT_ONES) continue;
    float *x = tensor_f32(p->value[i]);
    uint64_t s = 0x9e3779b97f4a7c15ull * (i + 1);
    for (int64_t e = 0; e < tensor_numel(p->value[i]); e++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      x[e] = (init == PARAM_INIT_ONES ? 1.f : 0.f) + 0.1f * ((float)(s >> 40) / (float)(1 << 24) * 2.f - 1.f);
    }
  }
  params_changed(p);
}

/* Every entry of got against ref, on the same inputs and parameters. */
void equiv_models_within(const char *label, const char *how, LoadedModel *ref, LoadedModel *got, const double *tol) {
  PcError err;
  Tensor *ids, *tg;
  move_off_constants(&ref->params);
  move_off_constants(&got->params);
  make_inputs(ref->vocab, 0, &ids, &tg);
  NamedTensor in[2] = {{"ids", ids}, {"targets", tg}};
  printf("%-36s %s:", label, how);
  for (EntryKind k = ENTRY_TRAIN; k <= ENTRY_LOGITS; k++) check_entry(label, how, ref, got, k, in, tol[k]);
  /* decode: a prompt of 5, then 3 tokens one at a time */
  Decoder da, db;
  if (decoder_open(&da, ref, 1, &err) < 0) {
    CHECKF(0, "%s: decode: %s", label, err.msg);
  } else if (decoder_open(&db, got, 1, &err) < 0) {
    CHECKF(0, "%s: decode: %s", label, err.msg);
    decoder_close(&da);
  } else {
    float *ra = malloc(sizeof(float) * (size_t)ref->vocab), *rb = malloc(sizeof(float) * (size_t)ref->vocab);
    uint32_t toks[8] = {1, 7, 3, 9, 4, 2, 8, 5};
    double worst = 0;
    for (size_t n = 5; n <= 8; n++) {
      if (decoder_next(&da, toks, n, ra, &err) < 0 || decoder_next(&db, toks, n, rb, &err) < 0) {
        CHECKF(0, "%s: decode: %s", label, err.msg);
        break;
      }
      double scale = 0;
      for (int64_t v = 0; v < ref->vocab; v++) scale = fmax(scale, fabs(ra[v]));
      for (int64_t v = 0; v < ref->vocab; v++) worst = fmax(worst, fabs(ra[v] - rb[v]) / scale);
    }
    CHECKF(worst <= tol[ENTRY_DECODE], "%s (%s): decode differs by %g", label, how, worst);
    printf(" decode %.1e\n", worst);
    free(ra);
    free(rb);
    decoder_close(&da);
    decoder_close(&db);
  }
  tensor_free(ids);
  tensor_free(tg);
}

void equiv_models(const char *label, const char *how, LoadedModel *ref, LoadedModel *got) {
  static const double tol[ENTRY_COUNT] = {1e-4, 1e-4, 1e-4, 1e-4};
  equiv_models_within(label, how, ref, got, tol);
}
