/* The inside of a Tokenizer, shared by the loaders (tok_json.c, tok_spm.c),
 * the encoder (tok_encode.c, tok_bpe.c, tok_pretok.c, tok_normalize.c) and
 * the decoder (tok_decode.c). Not a public header.
 *
 * Both file formats load into one pipeline:
 *   text -> ill-formed UTF-8 replaced -> split on added tokens (raw) ->
 *   normalizers -> split on added tokens (normalized) -> pre-tokenizer ->
 *   BPE on each word (merge pairs by rank) -> ids
 * and decode through per-id byte strings computed at load time. */
#ifndef PC_TOK_IMPL_H
#define PC_TOK_IMPL_H

#include <string.h>

#include "runtime/tokenizer/tok_map.h"
#include "runtime/tokenizer/tokenizer.h"

/* Per-id flags. */
enum {
  TOKF_USED = 1,     /* the id has a piece */
  TOKF_SPECIAL = 2,  /* skipped by TOK_DECODE_SKIP_SPECIAL */
  TOKF_CONTROL = 4,  /* sentencepiece control piece: decodes to nothing */
  TOKF_UNKNOWN = 8,  /* the unknown token */
  TOKF_BYTE = 16,    /* a byte-fallback piece <0xXX> */
};

typedef enum {
  TOK_NORM_NFC,
  TOK_NORM_NFD,
  TOK_NORM_NFKC,
  TOK_NORM_NFKD,
  TOK_NORM_PREPEND, /* a: the prefix, added to non-empty text */
  TOK_NORM_REPLACE, /* every a becomes b */
} TokNormKind;

typedef struct {
  TokNormKind kind;
  char *a, *b;
  size_t na, nb;
} TokNorm;

typedef enum { TOK_PRE_NONE, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE } TokPreKind;
enum { TOK_PREPEND_NEVER, TOK_PREPEND_FIRST, TOK_PREPEND_ALWAYS };

typedef struct {
  TokPreKind kind;
  bool add_prefix_space; /* ByteLevel */
  bool use_regex;        /* ByteLevel: split with the GPT-2 regex */
  char repl[4];          /* Metaspace: the replacement character (UTF-8) */
  int repl_len;
  int prepend; /* Metaspace: TOK_PREPEND_* */
  bool split;  /* Metaspace: words start at each replacement character */
} TokPre;

/* A byte trie of literal strings; lookups return the longest key. */
typedef struct {
  TokU64Map edges; /* node << 8 | byte -> child node */
  VEC(int32_t) term; /* node -> value, or -1 */
  uint8_t first[32]; /* bitmap of the keys' first bytes */
} TokTrie;

void tok_trie_add(TokTrie *t, const char *s, size_t n, int32_t val);
/* Length of the longest key that s[0..n) starts with (0 = none); *val gets its value. */
size_t tok_trie_longest(const TokTrie *t, const char *s, size_t n, int32_t *val);
static inline bool tok_trie_may_start(const TokTrie *t, unsigned char b) {
  return t->first[b >> 3] >> (b & 7) & 1;
}
void tok_trie_free(TokTrie *t);

typedef struct {
  uint32_t id;
  bool lstrip, rstrip, single_word;
} TokAdded;

typedef enum {
  TOK_DEC_BYTELEVEL,
  TOK_DEC_REPLACE, /* a -> b */
  TOK_DEC_BYTEFALLBACK,
  TOK_DEC_FUSE,
  TOK_DEC_STRIP, /* per token (before a Fuse): start/stop characters c */
  TOK_DEC_METASPACE,
} TokDecKind;

typedef struct {
  TokDecKind kind;
  char *a, *b;
  size_t na, nb;
  int start, stop;
  char c;
} TokDecStep;

/* A symbol of a word during BPE. */
enum { TOK_SYM_FROZEN = 1, TOK_SYM_UNKNOWN = 2 };
typedef struct {
  uint32_t id;
  uint32_t off, len; /* bytes of the word it covers (for unknown symbols) */
  uint32_t flags;
} TokSym;

/* Recently encoded words -> ids. */
typedef struct {
  uint32_t *slots;
  size_t mask;
  struct TokCacheEnt {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_n;
  } *ent;
  size_t n, cap;
  TokBytes keys;
  TokIds ids;
} TokCache;

struct Tokenizer {
  const char *kind_name;
  bool is_spm; /* from a tokenizer.model: sentencepiece's rules throughout */

  /* vocabulary: id -> piece, id -> decoded bytes, id -> TOKF_* */
  uint32_t vocab_size;
  uint32_t *piece_off, *piece_len;
  TokBytes pieces;
  uint32_t *dec_off, *dec_len;
  TokBytes dec;
  uint8_t *flags;

  /* model */
  TokStrMap vocab;    /* piece -> id (model pieces; with added tokens for lookups) */
  TokU64Map merges;   /* left << 32 | right -> rank << 32 | merged id */
  int32_t byte_sym[256]; /* byte-level: id of each byte's character, -1 when absent */
  bool byte_level;       /* words are mapped through the GPT-2 byte-to-unicode table */
  bool byte_level_fast;  /* ... and all 256 byte characters are in the vocabulary */
  int32_t byte_tok[256]; /* id of <0xXX>, -1 when absent */
  bool byte_fallback, fuse_unk, ignore_merges;
  int64_t unk, bos, eos;
  /* No piece has U+2581 after another character, so BPE never merges across
   * the start of a "▁word": long SentencePiece-style text can be cut there
   * into short, cacheable words with the same result. */
  bool split_ws;

  /* pipeline */
  VEC(TokNorm) norms;
  TokPre pre;
  VEC(TokAdded) added;
  TokTrie raw_added, norm_added; /* values index `added` */
  TokTrie frozen;                /* sentencepiece user-defined pieces; values are ids */
  bool spm_dummy_prefix, spm_remove_ws, spm_escape_ws;
  uint32_t *spm_trie; /* precompiled character map: darts-clone double array */
  size_t spm_trie_n;
  char *spm_rules; /* ... and its NUL-separated replacement strings */
  size_t spm_rules_n;

  /* decoding */
  VEC(TokDecStep) dec_steps;
  bool dec_join_space;      /* no decoder: tokens are joined with spaces */
  bool dec_metaspace_first; /* Metaspace decoder: the first token drops its U+2581s */
  char dec_meta_repl[4];
  int dec_meta_repl_len;
  uint8_t dec_strip_left; /* Strip after Fuse: leading dec_strip_char bytes dropped */
  char dec_strip_char;
  uint8_t spm_strip;      /* sentencepiece: 1 drops the first leading space, 2 all */

  /* scratch reused by tok_encode */
  TokCache cache;
  TokBytes clean, norm, norm2, prebuf, word;
  VEC(TokSym) syms;
  VEC(uint64_t) heap;
  VEC(int32_t) prev, next;
};

/* The first place of pat (np > 0) in s[0..n), or NULL; memchr for the
 * first byte, then memcmp (memmem is quadratic under AddressSanitizer). */
static inline const char *tok_find(const char *s, size_t n, const char *pat, size_t np) {
  const char *end = s + n;
  while ((size_t)(end - s) >= np) {
    const char *c = memchr(s, pat[0], (size_t)(end - s) - np + 1);
    if (!c) return NULL;
    if (!memcmp(c, pat, np)) return c;
    s = c + 1;
  }
  return NULL;
}

/* tok_load.c */
Tokenizer *tok_new(const char *kind_name);
/* Sizes the per-id arrays for n ids (all unused). */
void tok_alloc_ids(Tokenizer *t, uint32_t n);
void tok_set_piece(Tokenizer *t, uint32_t id, const char *s, size_t n);
/* Fills byte_sym/byte_tok and checks ids; run by both loaders at the end. */
void tok_finish(Tokenizer *t);

/* tok_bytelevel.c: GPT-2's byte <-> unicode table. */
uint32_t tok_byte_to_cp(unsigned char b);
/* -1 when cp is not one of the 256 characters. */
int tok_cp_to_byte(int32_t cp);

/* tok_pretok.c */
/* End of the GPT-2 regex match that starts at s[i] (i < n). */
size_t tok_gpt2_next(const char *s, size_t n, size_t i);

/* tok_normalize.c: the result is s itself or t->norm. */
const char *tok_normalize(Tokenizer *t, const char *s, size_t n, size_t *out_n);
/* Applies the normalizers to a short string (an added token's content). */
void tok_normalize_into(Tokenizer *t, const char *s, size_t n, TokBytes *out);

/* tok_spm_norm.c: sentencepiece's normalizer into t->norm. */
void tok_spm_normalize(Tokenizer *t, const char *s, size_t n);
/* Takes a precompiled character map (the normalizer_spec's blob); -1 when it is malformed. */
int tok_spm_set_charsmap(Tokenizer *t, const unsigned char *blob, size_t n, PcError *err);

/* tok_bpe.c: encodes one word (already byte-level mapped or not, as the
 * tokenizer says) and appends its ids. */
void tok_bpe_word(Tokenizer *t, const char *w, size_t n, TokIds *out);
/* The same for text that may hold many "▁words" (see split_ws). */
void tok_bpe_text(Tokenizer *t, const char *s, size_t n, TokIds *out);
void tok_cache_free(TokCache *c);

/* tok_decode.c: the bytes of one token as decoded in position `first`. */
void tok_decode_chain(const Tokenizer *t, const char *piece, size_t n, bool first, TokBytes *out);

#endif
