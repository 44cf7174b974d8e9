/* Decoding. Each id's bytes are computed at load time (the decoder chain of
 * a tokenizer.json, sentencepiece's piece rules); what depends on position
 * (the first token, a leading space to strip, UTF-8 cut across tokens) is
 * the streaming decoder's state, and tok_decode is that decoder run over
 * the whole sequence, so the two cannot disagree.
 *
 * Ill-formed UTF-8 becomes U+FFFD: one per maximal subpart as tokenizers
 * (String::from_utf8_lossy) does, or one per byte of a byte-piece run as
 * sentencepiece does. */
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

#define SPACE_SYMBOL "\xe2\x96\x81"

/* ---- one token through a tokenizer.json decoder chain ---- */

static void put(TokBytes *o, const char *s, size_t n) {
  vec_reserve(o, o->n + n);
  if (n) memcpy(o->a + o->n, s, n);
  o->n += n;
}

static void replace_all(const char *s, size_t n, const char *a, size_t na, const char *b, size_t nb, TokBytes *o) {
  size_t i = 0;
  while (na && i + na <= n) {
    const char *hit = tok_find(s + i, n - i, a, na);
    if (!hit) break;
    put(o, s + i, (size_t)(hit - (s + i)));
    put(o, b, nb);
    i = (size_t)(hit - s) + na;
  }
  put(o, s + i, n - i);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void step(const TokDecStep *st, bool first, const char *s, size_t n, TokBytes *o) {
  if (!n) return; /* every step keeps an empty token empty */
  switch (st->kind) {
    case TOK_DEC_BYTELEVEL: { /* characters back to bytes, if all of them are byte characters */
      size_t start = o->n;
      for (size_t i = 0; i < n;) {
        int len, b = -1;
        int32_t cp = tok_utf8_decode((const unsigned char *)s + i, n - i, &len);
        if (cp >= 0) b = tok_cp_to_byte(cp);
        if (b < 0) {
          o->n = start;
          put(o, s, n);
          return;
        }
        vec_push(o, (char)b);
        i += (size_t)len;
      }
      return;
    }
    case TOK_DEC_BYTEFALLBACK:
      if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
        vec_push(o, (char)(hexval(s[3]) * 16 + hexval(s[4])));
        return;
      }
      put(o, s, n);
      return;
    case TOK_DEC_REPLACE:
      replace_all(s, n, st->a, st->na, st->b, st->nb, o);
      return;
    case TOK_DEC_METASPACE:
      replace_all(s, n, st->a, st->na, first && st->start != TOK_PREPEND_NEVER ? "" : " ",
                  first && st->start != TOK_PREPEND_NEVER ? 0 : 1, o);
      return;
    case TOK_DEC_STRIP: {
      size_t a = 0, b = n;
      for (int k = 0; k < st->start && a < b && s[a] == st->c; k++) a++;
      for (int k = 0; k < st->stop && b > a && s[b - 1] == st->c; k++) b--;
      put(o, s + a, b - a);
      return;
    }
    case TOK_DEC_FUSE:
      put(o, s, n);
      return;
  }
}

void tok_decode_chain(const Tokenizer *t, const char *piece, size_t n, bool first, TokBytes *out) {
  if (!t->dec_steps.n) {
    put(out, piece, n);
    return;
  }
  TokBytes a = {0}, b = {0};
  put(&a, piece, n);
  for (size_t i = 0; i < t->dec_steps.n; i++) {
    b.n = 0;
    step(&t->dec_steps.a[i], first, a.a, a.n, &b);
    TokBytes tmp = a;
    a = b;
    b = tmp;
  }
  put(out, a.a, a.n);
  vec_free(&a);
  vec_free(&b);
}

/* ---- UTF-8 repair across token boundaries ---- */

static int seq_len(unsigned char lead) {
  return lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
}

/* May c follow the pending bytes of s? (Unicode table 3-7.) */
static bool continues(const TokStream *s, unsigned char c) {
  unsigned char lo = 0x80, hi = 0xbf;
  if (s->npend == 1) {
    unsigned char l = s->pend[0];
    if (l == 0xe0) lo = 0xa0;
    if (l == 0xed) hi = 0x9f;
    if (l == 0xf0) lo = 0x90;
    if (l == 0xf4) hi = 0x8f;
  }
  return c >= lo && c <= hi;
}

static bool per_byte(const TokStream *s) { return s->tok->is_spm; }

static void feed(TokStream *s, unsigned char c, TokBytes *out);

/* The pending bytes cannot complete: replace them. */
static void drop_pending(TokStream *s, TokBytes *out) {
  if (!s->npend) return;
  put(out, TOK_REPLACEMENT, 3);
  if (!per_byte(s)) {
    s->npend = 0;
    return;
  }
  /* sentencepiece: only the first byte is bad; read the rest again */
  unsigned char rest[3];
  int k = s->npend - 1;
  memcpy(rest, s->pend + 1, (size_t)k);
  s->npend = 0;
  for (int i = 0; i < k; i++) feed(s, rest[i], out);
}

static void feed(TokStream *s, unsigned char c, TokBytes *out) {
  if (s->npend) {
    if (continues(s, c)) {
      s->pend[s->npend++] = c;
      if (s->npend == seq_len(s->pend[0])) {
        put(out, (const char *)s->pend, s->npend);
        s->npend = 0;
      }
      return;
    }
    drop_pending(s, out);
    if (s->npend) { /* per byte: the re-read bytes are pending again */
      feed(s, c, out);
      return;
    }
  }
  if (c < 0x80) vec_push(out, (char)c);
  else if (seq_len(c)) s->pend[s->npend++] = c;
  else put(out, TOK_REPLACEMENT, 3);
}

static void emit(TokStream *s, const char *b, size_t n, TokBytes *out) {
  const Tokenizer *t = s->tok;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)b[i];
    if (s->strip_left) {
      if (c == (unsigned char)t->dec_strip_char) {
        s->strip_left--;
        continue;
      }
      s->strip_left = 0;
    }
    s->any_text = true;
    if (s->flags & TOK_DECODE_RAW) vec_push(out, (char)c);
    else if (!s->npend && c < 0x80) vec_push(out, (char)c);
    else feed(s, c, out);
  }
}

static void flush(TokStream *s, TokBytes *out) {
  while (s->npend) drop_pending(s, out);
}

/* ---- the streaming decoder ---- */

void tok_stream_init(TokStream *s, const Tokenizer *t, unsigned flags) {
  memset(s, 0, sizeof *s);
  s->tok = t;
  s->flags = flags;
  s->strip_left = t->dec_strip_left;
  s->spm_bos_ws = true;
}

/* sentencepiece's rules (DecodeSentencePiece): control pieces show nothing,
 * the unknown piece shows its surface, byte pieces are bytes, and while no
 * text has come out a leading U+2581 of the first piece is dropped. */
static void push_spm(TokStream *s, uint32_t id, TokBytes *out) {
  const Tokenizer *t = s->tok;
  uint8_t f = t->flags[id];
  const char *d = t->dec.a + t->dec_off[id];
  size_t dn = t->dec_len[id];
  if (f & TOKF_BYTE) {
    emit(s, d, dn, out);
    return;
  }
  flush(s, out);
  if (s->spm_bos_ws_seen || s->any_text) s->spm_bos_ws = false;
  s->spm_bos_ws_seen = false;
  if (f & (TOKF_CONTROL | TOKF_UNKNOWN)) {
    emit(s, d, dn, out);
    return;
  }
  const char *p = t->pieces.a + t->piece_off[id];
  if (s->spm_bos_ws && t->spm_strip && t->piece_len[id] >= 3 && !memcmp(p, SPACE_SYMBOL, 3)) {
    d++, dn--; /* the piece's U+2581 is the decoded text's first byte, a space */
    s->spm_bos_ws_seen = t->spm_strip == 1;
  }
  emit(s, d, dn, out);
}

int tok_stream_push(TokStream *s, uint32_t id, TokBytes *out, PcError *err) {
  const Tokenizer *t = s->tok;
  if (id >= t->vocab_size) return pc_errorf(err, "token id %u is out of range (vocabulary of %u)", id, t->vocab_size);
  uint8_t f = t->flags[id];
  if (!(f & TOKF_USED)) return 0;
  if ((s->flags & TOK_DECODE_SKIP_SPECIAL) && (f & TOKF_SPECIAL)) return 0;
  if (t->is_spm) {
    push_spm(s, id, out);
  } else {
    if (t->dec_join_space && s->ntokens) emit(s, " ", 1, out);
    if (!s->ntokens && t->dec_metaspace_first) {
      TokBytes tmp = {0};
      tok_decode_chain(t, t->pieces.a + t->piece_off[id], t->piece_len[id], true, &tmp);
      emit(s, tmp.a, tmp.n, out);
      vec_free(&tmp);
    } else {
      emit(s, t->dec.a + t->dec_off[id], t->dec_len[id], out);
    }
  }
  s->ntokens++;
  return 0;
}

void tok_stream_finish(TokStream *s, TokBytes *out) { flush(s, out); }

int tok_decode(const Tokenizer *t, const uint32_t *ids, size_t n, unsigned flags, TokBytes *out, PcError *err) {
  for (size_t i = 0; i < n; i++) /* check first: on error nothing is appended */
    if (ids[i] >= t->vocab_size)
      return pc_errorf(err, "token id %u (at position %zu) is out of range (vocabulary of %u)", ids[i], i,
                       t->vocab_size);
  TokStream s;
  tok_stream_init(&s, t, flags);
  for (size_t i = 0; i < n; i++) tok_stream_push(&s, ids[i], out, err);
  tok_stream_finish(&s, out);
  return 0;
}
