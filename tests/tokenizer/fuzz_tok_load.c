/* libFuzzer target: the tokenizer.json and tokenizer.model loaders. Whatever
 * loads must also encode and decode without trouble. Built and run by
 * scripts/fuzz-tokenizer (clang -fsanitize=fuzzer,address,undefined). The
 * first input byte picks the loader: even JSON, odd SentencePiece. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  Tokenizer *t = NULL;
  PcError err;
  int rc = data[0] & 1 ? tok_load_spm_buffer(data + 1, size - 1, "fuzz.model", &t, &err)
                       : tok_load_json_buffer((const char *)data + 1, size - 1, "fuzz.json", &t, &err);
  if (rc) {
    if (!err.msg[0] || strchr(err.msg, '\n')) abort(); /* errors are one non-empty line */
    return 0;
  }
  static const char text[] = "Hello <|endoftext|> world\xe2\x96\x81 caf\xc3\xa9 \xf0\x9f\x8e\x89 12345 \xff\n\t  end";
  TokIds ids = {0};
  TokBytes out = {0};
  tok_encode(t, text, sizeof text - 1, 0, &ids, &err);
  tok_encode(t, (const char *)data, size, TOK_SPLIT_SPECIAL, &ids, &err);
  for (size_t i = 0; i < ids.n; i++)
    if (ids.a[i] >= tok_vocab_size(t)) abort(); /* encode gives only ids of the vocabulary */
  for (size_t i = 0; i + 1 < size && i < 64; i += 2) vec_push(&ids, (uint32_t)(data[i] | data[i + 1] << 8) % tok_vocab_size(t));
  tok_decode(t, ids.a, ids.n, 0, &out, &err);
  tok_decode(t, ids.a, ids.n, TOK_DECODE_SKIP_SPECIAL | TOK_DECODE_RAW, &out, &err);
  for (uint32_t id = 0; id < tok_vocab_size(t) && id < 1000; id++) {
    size_t n;
    const char *p = tok_id_to_piece(t, id, &n);
    if (p && tok_piece_to_id(t, p, n) < 0) abort();
  }
  vec_free(&ids);
  vec_free(&out);
  tok_free(t);
  return 0;
}
