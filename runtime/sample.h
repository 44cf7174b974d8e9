/* Picking the next token from one row of logits.
 *
 *   Sampler s = {.temperature = 0.8, .top_k = 40, .top_p = 0.95};
 *   if (sample_check(&s, V, &err)) ...;          // once, before generating
 *   SampleScratch scratch = {0};
 *   Rng rng = rng_new(seed);
 *   int32_t id;
 *   sample_token(&s, logits, V, &rng, &scratch, &id, &err);
 *   vec_free(&scratch);
 *
 * Exact semantics, in this order:
 *  - temperature == 0 (greedy): the argmax of the logits, the lowest id on
 *    ties; top_k and top_p are ignored and the Rng is not used (may be NULL).
 *  - Otherwise the tokens are ranked by logit, highest first, ties broken by
 *    the lower id (one total order, used for every cut below).
 *  - top_k > 0: only the top_k first tokens of that ranking stay.
 *  - The kept logits are divided by temperature and softmaxed.
 *  - top_p < 1 (nucleus): of the kept tokens, only the shortest prefix of the
 *    ranking whose cumulative probability is >= top_p stays (always at least
 *    one token); the rest is dropped and the probabilities renormalised.
 *  - One rng_uniform draw u picks the token: the kept tokens are walked in id
 *    order and the first whose cumulative probability exceeds u is taken.
 *    So exactly one number is drawn per sampled token, top_k == V is the same
 *    as top_k == 0 and top_p == 1 is the same as no nucleus.
 * Logits may be -inf (a token that is never picked, unless greedy and every
 * logit is -inf); NaN or +inf is an error, as is every logit -inf when
 * sampling.
 *
 * Cost: O(V) expected time. Top-k is a partial selection; the nucleus is a
 * weighted selection (quickselect on the cumulative mass), so neither sorts
 * the vocabulary; only the kept tokens are sorted (by id) for the draw. */
#ifndef PC_SAMPLE_H
#define PC_SAMPLE_H

#include <stdint.h>
#include <stdlib.h> /* free, for vec_free */

#include "runtime/base/err.h"
#include "runtime/base/mem.h"
#include "runtime/rng.h"

typedef struct {
  double temperature; /* 0: greedy; > 0: the logits are divided by it */
  int64_t top_k;      /* 0: off; else keep the top_k most likely tokens (<= V) */
  double top_p;       /* 1: off; else the nucleus mass, in (0, 1] */
} Sampler;

#define SAMPLER_DEFAULT ((Sampler){.temperature = 1.0, .top_k = 0, .top_p = 1.0})

/* Work space of V entries, reused across calls; owned by the caller. */
typedef struct {
  int32_t id;
  float logit;
  double w; /* exp((logit - max) / temperature) */
} SampleCand;
typedef VEC(SampleCand) SampleScratch;

/* Checks s against a vocabulary of `vocab` tokens: temperature >= 0, top_p
 * in (0, 1], 0 <= top_k <= vocab. Returns -1 with a one-line message. */
int sample_check(const Sampler *s, int64_t vocab, PcError *err);

/* Picks a token from logits[0..vocab) as described above. scratch may be
 * NULL (then it allocates for this call only). Returns 0 and the id in *out,
 * or -1 with a message (a bad config or bad logits). */
int sample_token(const Sampler *s, const float *logits, int64_t vocab, Rng *rng, SampleScratch *scratch,
                 int32_t *out, PcError *err);

#endif
