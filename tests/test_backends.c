/* The compiled backends against the reference interpreter: for each model
 * (GPT-2, and Pythia and LLaMA when their scripts are present) with K = 0
 * and K = 3 pondering, every entry — train (the loss and every gradient),
 * eval, logits, and decode with KV caches (a prefill, then single tokens) —
 * must agree within 1e-4 of each output's largest magnitude. The C backend
 * is compiled in-process (cc), as `ponder --backend c` does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cli/decoder.h"
#include "runtime/cli/model_load.h"
#include "tests/check.h"

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

static void check_model(const char *label, const char *script, const char *config, const char *const *sets, size_t n_sets,
                        const char *backend) {
  if (access(script, R_OK) != 0) {
    printf("SKIP %s: %s is not here\n", label, script);
    return;
  }
  char buf[8][64];
  ModelOpts base = {.script = script, .config = config, .seed = 3, .max_batch = 2, .max_seq = 16};
  for (size_t i = 0; i < n_sets; i++) {
    snprintf(buf[i], sizeof buf[i], "%s", sets[i]);
    vec_push(&base.sets, buf[i]);
  }
  ModelOpts compiled = base;
  compiled.backend = backend;
  PcError err;
  LoadedModel ref, got;
  if (model_load(&base, &ref, &err) < 0 || model_load(&compiled, &got, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    vec_free(&base.sets);
    return;
  }
  int64_t shape[2] = {2, 16};
  Tensor *ids = tensor_new(PC_I32, 2, shape), *tg = tensor_new(PC_I32, 2, shape);
  for (int i = 0; i < 32; i++) {
    tensor_i32(ids)[i] = (i * 37 + 5) % (int32_t)ref.vocab;
    tensor_i32(tg)[i] = i % 16 == 15 ? -1 : (i * 11 + 3) % (int32_t)ref.vocab;
  }
  NamedTensor in[2] = {{"ids", ids}, {"targets", tg}};
  printf("%-34s %s:", label, backend);
  for (EntryKind k = ENTRY_TRAIN; k <= ENTRY_LOGITS; k++) {
    NamedTensor *a = calloc(MAX_OUT, sizeof *a), *b = calloc(MAX_OUT, sizeof *b);
    size_t na = 0, nb = 0;
    const char *worst_name = "";
    if (ref.engine->run(ref.engine, k, &ref.params, in, 2, a, MAX_OUT, &na, &err) < 0 ||
        got.engine->run(got.engine, k, &got.params, in, 2, b, MAX_OUT, &nb, &err) < 0) {
      CHECKF(0, "%s: %s: %s", label, entry_name(k), err.msg);
    } else {
      double worst = compare(a, na, b, nb, &worst_name);
      CHECKF(na == nb && worst <= 1e-4, "%s: %s: %s differs by %g", label, entry_name(k), worst_name, worst);
      printf(" %s %.1e (%zu outputs)", entry_name(k), worst, na);
    }
    free_outputs(a, na);
    free_outputs(b, nb);
    free(a);
    free(b);
  }
  /* decode: a prompt of 5, then 3 tokens one at a time */
  Decoder da, db;
  if (decoder_open(&da, &ref, 1, &err) < 0 || decoder_open(&db, &got, 1, &err) < 0) {
    CHECKF(0, "%s: decode: %s", label, err.msg);
  } else {
    float *ra = malloc(sizeof(float) * (size_t)ref.vocab), *rb = malloc(sizeof(float) * (size_t)ref.vocab);
    uint32_t toks[8] = {1, 7, 3, 9, 4, 2, 8, 5};
    double worst = 0;
    for (size_t n = 5; n <= 8; n++) {
      if (decoder_next(&da, toks, n, ra, &err) < 0 || decoder_next(&db, toks, n, rb, &err) < 0) {
        CHECKF(0, "%s: decode: %s", label, err.msg);
        break;
      }
      double scale = 0;
      for (int64_t v = 0; v < ref.vocab; v++) scale = fmax(scale, fabs(ra[v]));
      for (int64_t v = 0; v < ref.vocab; v++) worst = fmax(worst, fabs(ra[v] - rb[v]) / scale);
    }
    CHECKF(worst <= 1e-4, "%s: decode differs by %g", label, worst);
    printf(" decode %.1e\n", worst);
    free(ra);
    free(rb);
    decoder_close(&da);
    decoder_close(&db);
  }
  tensor_free(ids);
  tensor_free(tg);
  model_unload(&ref);
  model_unload(&got);
  vec_free(&base.sets);
}

int main(int argc, char **argv) {
  const char *backend = argc > 1 ? argv[1] : "c";
  const char *k0[] = {"initializer_range=0.2"};
  const char *k3[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};
  const char *k3top[] = {"initializer_range=0.2", "ponderinglm=true", "pondering_steps=3", "ponder_topk=5",
                         "ponder_accumulate=false"};
  check_model("gpt2 tiny, K = 0", "models/gpt2.lua", "tiny", k0, 1, backend);
  check_model("gpt2 tiny, K = 3", "models/gpt2.lua", "tiny", k3, 4, backend);
  check_model("gpt2 tiny, K = 3, top-5, latest only", "models/gpt2.lua", "tiny", k3top, 5, backend);
  const char *pk0[] = {"ponderinglm=false"};
  const char *pk3[] = {"ponderinglm=true", "pondering_steps=3", "scale_embeds=true"};
  check_model("pythia tiny, K = 0", "models/pythia.lua", "tiny", pk0, 1, backend);
  check_model("pythia tiny, K = 3", "models/pythia.lua", "tiny", pk3, 3, backend);
  check_model("llama tiny, K = 0", "models/llama.lua", "tiny", pk0, 1, backend);
  check_model("llama tiny, K = 3", "models/llama.lua", "tiny", pk3, 3, backend);
  return check_exit();
}
