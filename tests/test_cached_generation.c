/* Cached generation is exact: for K = 0 and K = 3 (and top-k mixing and
 * latest-only pondering), the logits from the K+1 KV caches equal those of
 * recomputing the whole sequence, within 1e-4, at every one of 64
 * generated tokens (sampled, so the sequence wanders). GPT-2, and Pythia
 * and LLaMA, whose rotary positions come from pc.positions (pos, pos+1,
 * ... when decoding). */
#include <math.h>
#include <stdlib.h>

#include "runtime/cli/decoder.h"
#include "runtime/rng.h"
#include "runtime/sample.h"
#include "tests/check.h"

static void check(const char *script, const char *label, const char *const *sets, size_t n_sets) {
  ModelOpts mo = {.backend = "interp", .script = script, .config = "tiny", .seed = 3};
  char buf[8][64];
  for (size_t i = 0; i < n_sets; i++) {
    snprintf(buf[i], sizeof buf[i], "%s", sets[i]);
    vec_push(&mo.sets, buf[i]);
  }
  PcError err;
  LoadedModel m;
  Decoder cached, full;
  if (model_load(&mo, &m, &err) < 0 || decoder_open(&cached, &m, 1, &err) < 0 || decoder_open(&full, &m, 0, &err) < 0) {
    CHECKF(0, "%s: %s", label, err.msg);
    model_opts_free(&mo);
    return;
  }
  int64_t V = m.vocab;
  float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
  uint32_t ids[80] = {5, 17, 3, 80, 41, 41, 9, 60};
  size_t n = 8;
  Rng rng = rng_new(11);
  Sampler sampler = {.temperature = 1.0, .top_p = 1.0};
  double worst = 0;
  for (int step = 0; step < 64; step++) {
    if (decoder_next(&cached, ids, n, a, &err) < 0 || decoder_next(&full, ids, n, b, &err) < 0) {
      CHECKF(0, "%s: step %d: %s", label, step, err.msg);
      break;
    }
    double d = 0;
    for (int64_t v = 0; v < V; v++) d = fmax(d, fabs(a[v] - b[v]));
    worst = fmax(worst, d);
    CHECKF(d <= 1e-4, "%s: token %d: cached logits differ by %g", label, step + 1, d);
    int32_t next;
    CHECK(sample_token(&sampler, a, V, &rng, NULL, &next, &err) == 0);
    ids[n++] = (uint32_t)next;
  }
  printf("%-18s %-30s 64 tokens: cached vs recomputed logits, worst difference %.2e\n", script, label, worst);
  free(a);
  free(b);
  decoder_close(&cached);
  decoder_close(&full);
  model_unload(&m);
  model_opts_free(&mo);
}

int main(void) {
  const char *k0[] = {"n_positions=128", "initializer_range=0.3"};
  const char *k3[] = {"n_positions=128", "initializer_range=0.3", "ponderinglm=true", "pondering_steps=3",
                      "scale_embeds=true"};
  const char *top[] = {"n_positions=128", "initializer_range=0.3", "ponderinglm=true", "pondering_steps=3",
                       "ponder_topk=10", "ponder_accumulate=false"};
  check("models/gpt2.lua", "K = 0", k0, 2);
  check("models/gpt2.lua", "K = 3 (scale_embeds)", k3, 5);
  check("models/gpt2.lua", "K = 3 (top-10, latest only)", top, 6);
  /* Pythia: parallel residual, rotary on a quarter of each head */
  const char *neox[] = {"max_position_embeddings=128", "initializer_range=0.3", "ponderinglm=true",
                        "pondering_steps=3", "scale_embeds=true", "mutiply_pondering_steps=true"};
  check("models/pythia.lua", "K = 0", neox, 2);
  check("models/pythia.lua", "K = 3 (scale_embeds, multiply)", neox, 6);
  /* LLaMA: grouped-query attention, whole-head rotary */
  const char *llama[] = {"max_position_embeddings=128", "initializer_range=0.3", "ponderinglm=true",
                         "pondering_steps=3", "scale_embeds=true"};
  check("models/llama.lua", "K = 0", llama, 2);
  check("models/llama.lua", "K = 3 (scale_embeds)", llama, 5);
  return check_exit();
}
