/* tok_encode: the pipeline of tok_impl.h, in the order of the reference
 * implementations (tokenizers' added-vocabulary split, normalizer,
 * pre-tokenizer, model; sentencepiece's normalizer and model). */
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

/* ---- pre-tokenizers ---- */

static void encode_bytelevel(Tokenizer *t, const char *s, size_t n, TokIds *out) {
  if (t->pre.add_prefix_space && s[0] != ' ') {
    TokBytes *b = &t->prebuf;
    vec_reserve(b, n + 1);
    b->a[0] = ' ';
    memcpy(b->a + 1, s, n);
    b->n = n + 1;
    s = b->a;
    n = b->n;
  }
  if (!t->pre.use_regex) {
    tok_bpe_word(t, s, n, out);
    return;
  }
  for (size_t i = 0; i < n;) {
    size_t j = tok_gpt2_next(s, n, i);
    tok_bpe_word(t, s + i, j - i, out);
    i = j;
  }
}

static void encode_metaspace(Tokenizer *t, const char *s, size_t n, bool at_start, TokIds *out) {
  const char *r = t->pre.repl;
  size_t rl = (size_t)t->pre.repl_len;
  TokBytes *b = &t->prebuf;
  b->n = 0;
  vec_reserve(b, n * rl + rl);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == ' ') {
      memcpy(b->a + b->n, r, rl);
      b->n += rl;
    } else {
      b->a[b->n++] = s[i];
    }
  }
  bool starts = b->n >= rl && !memcmp(b->a, r, rl);
  if (!starts && (t->pre.prepend == TOK_PREPEND_ALWAYS || (t->pre.prepend == TOK_PREPEND_FIRST && at_start))) {
    memmove(b->a + rl, b->a, b->n);
    memcpy(b->a, r, rl);
    b->n += rl;
  }
  if (!t->pre.split) {
    tok_bpe_text(t, b->a, b->n, out);
    return;
  }
  size_t start = 0;
  for (size_t i = 1; i + rl <= b->n; i++) {
    if (!memcmp(b->a + i, r, rl)) {
      tok_bpe_word(t, b->a + start, i - start, out);
      start = i;
    }
  }
  tok_bpe_word(t, b->a + start, b->n - start, out);
}

static void encode_words(Tokenizer *t, const char *s, size_t n, bool at_start, TokIds *out) {
  if (!n) return;
  switch (t->pre.kind) {
    case TOK_PRE_NONE: tok_bpe_text(t, s, n, out); break;
    case TOK_PRE_BYTELEVEL: encode_bytelevel(t, s, n, out); break;
    case TOK_PRE_METASPACE: encode_metaspace(t, s, n, at_start, out); break;
  }
}

/* ---- added tokens ---- */

static bool ws_before(const char *s, size_t i, size_t *start) {
  size_t k = i;
  while (k > 0 && ((unsigned char)s[k - 1] & 0xc0) == 0x80) k--;
  if (k == 0) return false;
  k--;
  while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
  int len;
  if (!tok_is_white_space(tok_utf8_decode((const unsigned char *)s + k, i - k, &len))) return false;
  *start = k;
  return true;
}

static int32_t char_before(const char *s, size_t i) {
  size_t k = i;
  if (!k) return -1;
  do k--;
  while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80);
  int len;
  return tok_utf8_decode((const unsigned char *)s + k, i - k, &len);
}

/* Finds the next added token in s[*pos..n) the way tokenizers does:
 * leftmost-longest, non-overlapping; single_word matches next to word
 * characters are dropped; lstrip/rstrip take in the whitespace around. */
static bool next_added(const Tokenizer *t, const TokTrie *tr, const char *s, size_t n, size_t *pos, size_t floor,
                       unsigned flags, size_t *ms, size_t *me, uint32_t *id) {
  if (!tr->term.n) return false;
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = *pos; i < n; i++) {
    if (!tok_trie_may_start(tr, u[i])) continue;
    int32_t k;
    size_t len = tok_trie_longest(tr, s + i, n - i, &k);
    if (!len) continue;
    const TokAdded *a = &t->added.a[k];
    size_t start = i, stop = i + len;
    if ((flags & TOK_SPLIT_SPECIAL) && (t->flags[a->id] & TOKF_SPECIAL)) {
      i = stop - 1;
      continue;
    }
    if (a->single_word) {
      int clen;
      bool word_left = start > 0 && tok_is_word_char(char_before(s, start));
      bool word_right = stop < n && tok_is_word_char(tok_utf8_decode(u + stop, n - stop, &clen));
      if (word_left || word_right) {
        i = stop - 1;
        continue;
      }
    }
    if (a->lstrip) {
      size_t k2;
      while (start > floor && ws_before(s, start, &k2)) start = k2;
    }
    if (a->rstrip) {
      int clen;
      while (stop < n && tok_is_white_space(tok_utf8_decode(u + stop, n - stop, &clen))) stop += (size_t)clen;
    }
    *ms = start;
    *me = stop;
    *id = a->id;
    *pos = stop;
    return true;
  }
  return false;
}

/* A piece between raw added tokens, normalized: split on the normalized
 * added tokens, then pre-tokenize. */
static void encode_normalized(Tokenizer *t, const char *s, size_t n, bool at_start, unsigned flags, TokIds *out) {
  size_t pos = 0, gap = 0, ms, me;
  uint32_t id;
  while (next_added(t, &t->norm_added, s, n, &pos, gap, flags, &ms, &me, &id)) {
    encode_words(t, s + gap, ms - gap, at_start && gap == 0, out);
    vec_push(out, id);
    gap = me;
  }
  encode_words(t, s + gap, n - gap, at_start && gap == 0, out);
}

static void encode_segment(Tokenizer *t, const char *s, size_t n, bool at_start, unsigned flags, TokIds *out) {
  if (!n) return;
  size_t m;
  const char *norm = tok_normalize(t, s, n, &m);
  encode_normalized(t, norm, m, at_start, flags, out);
}

static void encode_hf(Tokenizer *t, const char *s, size_t n, unsigned flags, TokIds *out) {
  size_t pos = 0, gap = 0, ms, me;
  uint32_t id;
  while (next_added(t, &t->raw_added, s, n, &pos, gap, flags, &ms, &me, &id)) {
    encode_segment(t, s + gap, ms - gap, gap == 0, flags, out);
    vec_push(out, id);
    gap = me;
  }
  encode_segment(t, s + gap, n - gap, gap == 0, flags, out);
}

int tok_encode(Tokenizer *t, const char *text, size_t len, unsigned flags, TokIds *out, PcError *err) {
  if (!len) text = ""; /* never arithmetic on a NULL pointer below */
  size_t bad = tok_utf8_first_invalid(text, len);
  if (bad < len) {
    if (flags & TOK_STRICT_UTF8) return pc_errorf(err, "invalid UTF-8 at byte %zu of the input", bad);
    t->clean.n = 0;
    tok_utf8_sanitize(text, len, &t->clean);
    text = t->clean.a;
    len = t->clean.n;
  }
  if (flags & TOK_ADD_BOS) {
    if (t->bos < 0) return pc_errorf(err, "this tokenizer has no beginning-of-sequence token");
    vec_push(out, (uint32_t)t->bos);
  }
  if (flags & TOK_ADD_EOS && t->eos < 0) return pc_errorf(err, "this tokenizer has no end-of-sequence token");
  if (t->is_spm) {
    tok_spm_normalize(t, text, len);
    tok_bpe_text(t, t->norm.a, t->norm.n, out);
  } else {
    encode_hf(t, text, len, flags, out);
  }
  if (flags & TOK_ADD_EOS) vec_push(out, (uint32_t)t->eos);
  return 0;
}
