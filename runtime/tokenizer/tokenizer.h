/* Tokenizers behind one opaque handle: Hugging Face tokenizer.json (BPE:
 * byte-level as in GPT-2 and GPT-NeoX/Pythia, SentencePiece-style with byte
 * fallback as in LLaMA) and SentencePiece tokenizer.model (BPE).
 *
 *   Tokenizer *t; PcError err;
 *   if (tok_load("tokenizer.json", &t, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *   TokIds ids = {0};
 *   tok_encode(t, text, len, 0, &ids, &err);      // appends to ids
 *   TokBytes text = {0};
 *   tok_decode(t, ids.a, ids.n, 0, &text, &err);  // appends to text
 *   vec_free(&ids); vec_free(&text); tok_free(t);
 *
 * Encoding follows the reference tokenizer of the file (the PyPI `tokenizers`
 * package for tokenizer.json, `sentencepiece` for tokenizer.model). Input that
 * is not valid UTF-8 is read as Python's bytes.decode("utf-8", "replace")
 * does: each maximal ill-formed subsequence becomes U+FFFD. Decoding gives
 * UTF-8 text (ill-formed byte sequences become U+FFFD the same way) unless
 * TOK_DECODE_RAW asks for the raw bytes. docs/tokenizers.md has the details.
 *
 * A Tokenizer keeps a cache of recently encoded words, so tok_encode needs a
 * non-const handle: use one Tokenizer per thread. Decoding is const. */
#ifndef PC_TOKENIZER_H
#define PC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* free, for vec_free */

#include "runtime/base/err.h"
#include "runtime/base/mem.h"

typedef struct Tokenizer Tokenizer;
typedef VEC(uint32_t) TokIds;
typedef VEC(char) TokBytes;

/* Loads a tokenizer.json or a SentencePiece tokenizer.model (told apart by
 * content, not by name). On failure returns -1 with a one-line message. */
int tok_load(const char *path, Tokenizer **out, PcError *err);
/* The same from memory; `name` only labels error messages. */
int tok_load_json_buffer(const char *data, size_t n, const char *name, Tokenizer **out, PcError *err);
int tok_load_spm_buffer(const void *data, size_t n, const char *name, Tokenizer **out, PcError *err);
void tok_free(Tokenizer *t);

/* Encode flags. Special tokens written in the text ("<|endoftext|>") are
 * matched as their ids, as the reference does, unless TOK_SPLIT_SPECIAL. */
enum {
  TOK_ADD_BOS = 1 << 0,       /* prepend tok_bos_id (an error if there is none) */
  TOK_ADD_EOS = 1 << 1,       /* append tok_eos_id (an error if there is none) */
  TOK_SPLIT_SPECIAL = 1 << 2, /* treat special tokens in the text as plain text */
  TOK_STRICT_UTF8 = 1 << 3,   /* ill-formed UTF-8 input is an error instead of U+FFFD */
};
int tok_encode(Tokenizer *t, const char *text, size_t len, unsigned flags, TokIds *out, PcError *err);

/* Decode flags. */
enum {
  TOK_DECODE_SKIP_SPECIAL = 1 << 0, /* drop special tokens (<|endoftext|>, <s>) */
  TOK_DECODE_RAW = 1 << 1,          /* raw bytes: no U+FFFD for ill-formed UTF-8 */
};
/* Appends the text of ids to out. An id outside the vocabulary is an error;
 * nothing else is. */
int tok_decode(const Tokenizer *t, const uint32_t *ids, size_t n, unsigned flags, TokBytes *out,
               PcError *err);

/* Streaming decoder: pushing ids one at a time appends exactly the bytes that
 * tok_decode gives for the whole sequence, once tok_stream_finish has run.
 * Incomplete UTF-8 at the end of a token is held back until it completes. */
typedef struct TokStream {
  const Tokenizer *tok;
  unsigned flags;
  uint64_t ntokens;      /* visible tokens so far */
  unsigned char pend[4]; /* an incomplete UTF-8 sequence held back */
  uint8_t npend;
  uint8_t strip_left;    /* leading bytes a Strip decoder still removes */
  bool spm_bos_ws;       /* sentencepiece: a leading U+2581 may still be dropped */
  bool spm_bos_ws_seen;
  bool any_text;         /* some bytes were produced (or are pending) */
} TokStream;
void tok_stream_init(TokStream *s, const Tokenizer *t, unsigned flags);
int tok_stream_push(TokStream *s, uint32_t id, TokBytes *out, PcError *err);
void tok_stream_finish(TokStream *s, TokBytes *out);

/* Ids run from 0 to tok_vocab_size() - 1; a few may be unused (no piece). */
uint32_t tok_vocab_size(const Tokenizer *t);
/* -1 when the tokenizer has none. For tokenizer.json files these come from
 * the post-processor template or well-known names (docs/tokenizers.md). */
int64_t tok_bos_id(const Tokenizer *t);
int64_t tok_eos_id(const Tokenizer *t);
int64_t tok_unk_id(const Tokenizer *t);
/* The token as the vocabulary spells it ("Ġworld", "▁the", "<0x0A>"), or
 * NULL for an id out of range or unused. *len gets its length in bytes. */
const char *tok_id_to_piece(const Tokenizer *t, uint32_t id, size_t *len);
/* -1 when the string is not a token of the vocabulary. */
int64_t tok_piece_to_id(const Tokenizer *t, const char *piece, size_t len);
bool tok_is_special(const Tokenizer *t, uint32_t id);
/* "byte-level BPE (tokenizer.json)", "SentencePiece BPE (tokenizer.model)", ... */
const char *tok_kind_name(const Tokenizer *t);

#endif
