/* libFuzzer target: the encoder and decoder on arbitrary bytes, with the
 * fixture tokenizers (tests/tokenizer/fixtures, read from the folder in
 * $PONDER_FIXTURES or the current one). The first byte picks the tokenizer
 * and the encode flags. Checked: ids are in the vocabulary; streaming
 * decode equals decode; decode(encode(x)) gives x back for the byte-level
 * and sentencepiece tokenizers (x with ill-formed UTF-8 replaced by U+FFFD,
 * and without U+2581, which sentencepiece shows as a space). */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_utf8.h"
#include "runtime/tokenizer/tokenizer.h"

static const struct {
  const char *path;
  int round_trip;
} files[] = {
    {"tiny_bytelevel/tokenizer.json", 1},
    {"tiny_spm/tokenizer.model", 2},
    {"tiny_spm/tokenizer.json", 0},
    {"tiny_spm/tokenizer-metaspace.json", 0},
    {"tiny_spm_ws/tokenizer.model", 0},
    {"tiny_spm_rules/tokenizer.model", 0},
    {"tiny_bytelevel/tokenizer-added.json", 0},
};
#define NTOK (sizeof files / sizeof *files)
static Tokenizer *toks[NTOK]; /* loaded once: this harness is the process */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *dir = getenv("PONDER_FIXTURES");
  if (!dir) dir = "tests/tokenizer/fixtures";
  for (size_t i = 0; i < NTOK; i++) {
    char path[1024];
    PcError err;
    snprintf(path, sizeof path, "%s/%s", dir, files[i].path);
    if (tok_load(path, &toks[i], &err)) {
      fprintf(stderr, "fuzz_tok_encode: %s (set PONDER_FIXTURES)\n", err.msg);
      exit(1);
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t k = data[0] % NTOK;
  unsigned flags = (data[0] >> 4) & (TOK_ADD_BOS | TOK_ADD_EOS | TOK_SPLIT_SPECIAL);
  Tokenizer *t = toks[k];
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  TokIds ids = {0};
  TokBytes dec = {0}, streamed = {0}, clean = {0};
  PcError err;
  if (tok_encode(t, text, n, flags, &ids, &err)) {
    if ((flags & TOK_ADD_BOS) && tok_bos_id(t) < 0) goto done; /* a documented error */
    if ((flags & TOK_ADD_EOS) && tok_eos_id(t) < 0) goto done;
    abort();
  }
  for (size_t i = 0; i < ids.n; i++)
    if (ids.a[i] >= tok_vocab_size(t)) abort();
  if (tok_decode(t, ids.a, ids.n, 0, &dec, &err)) abort();
  TokStream s;
  tok_stream_init(&s, t, 0);
  for (size_t i = 0; i < ids.n; i++)
    if (tok_stream_push(&s, ids.a[i], &streamed, &err)) abort();
  tok_stream_finish(&s, &streamed);
  if (dec.n != streamed.n || (dec.n && memcmp(dec.a, streamed.a, dec.n))) abort();
  if (tok_utf8_first_invalid(dec.a, dec.n) != dec.n) abort();
  if (files[k].round_trip && !(flags & (TOK_ADD_BOS | TOK_ADD_EOS))) {
    tok_utf8_sanitize(text, n, &clean);
    bool space_symbol = clean.n >= 3 && memmem(clean.a, clean.n, "\xe2\x96\x81", 3);
    if (!(files[k].round_trip == 2 && space_symbol))
      if (dec.n != clean.n || (dec.n && memcmp(dec.a, clean.a, dec.n))) abort();
  }
done:
  vec_free(&ids);
  vec_free(&dec);
  vec_free(&streamed);
  vec_free(&clean);
  return 0;
}
