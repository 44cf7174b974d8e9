/* Byte-level BPE training (GPT-2 style): words are counted with the GPT-2
 * pre-tokenizer, the most frequent adjacent pair is merged until the
 * vocabulary is full, and the result is a tokenizer.json that both our
 * loader and the PyPI `tokenizers` package read and encode identically.
 *
 *   TokTrainOptions o = {.vocab_size = 8000, .min_frequency = 2};
 *   TokTrainer *tr = tok_trainer_new(&o);
 *   tok_trainer_feed(tr, text, len);           // as often as needed
 *   TokBytes json = {0};
 *   if (tok_trainer_finish(tr, &json, &err)) ...
 *
 * Deterministic: ties between pairs of equal count go to the pair of
 * smaller ids (left, then right). */
#ifndef PC_TOK_TRAIN_H
#define PC_TOK_TRAIN_H

#include "runtime/tokenizer/tokenizer.h"

typedef struct {
  uint32_t vocab_size;    /* specials + 256 byte tokens + merges */
  uint64_t min_frequency; /* pairs seen fewer times are not merged (0 and 1: any) */
  const char *const *specials; /* special tokens, ids 0..n-1; default {"<|endoftext|>"} */
  size_t nspecials;
} TokTrainOptions;

typedef struct TokTrainer TokTrainer;

TokTrainer *tok_trainer_new(const TokTrainOptions *opt);
/* Counts the words of some text. Special tokens in it are not counted. */
void tok_trainer_feed(TokTrainer *tr, const char *text, size_t n);
/* Words counted so far (with repeats). */
uint64_t tok_trainer_words(const TokTrainer *tr);
/* Trains and appends the tokenizer.json text to json. Fails on an empty
 * corpus or a vocab_size below the alphabet. */
int tok_trainer_finish(TokTrainer *tr, TokBytes *json, PcError *err);
void tok_trainer_free(TokTrainer *tr);

#endif
