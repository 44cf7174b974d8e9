/* The tokenizer.json normalizers: NFC, NFD, NFKC, NFKD (utf8proc), Prepend,
 * Replace. sentencepiece's are in tok_spm_norm.c. */
#include "runtime/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static void append(TokBytes *out, const char *s, size_t n) {
  vec_reserve(out, out->n + n);
  if (n) memcpy(out->a + out->n, s, n);
  out->n += n;
}

/* The bytes from which a character may change: below U+0300 every string is
 * in NFC; ASCII is in every normal form. */
static unsigned char unicode_limit(TokNormKind k) { return k == TOK_NORM_NFC ? 0xcc : 0x80; }

static bool unicode_map(TokNormKind k, const char *s, size_t n, TokBytes *out) {
  int opt = UTF8PROC_STABLE;
  opt |= k == TOK_NORM_NFC || k == TOK_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
  if (k == TOK_NORM_NFKC || k == TOK_NORM_NFKD) opt |= UTF8PROC_COMPAT;
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
  if (m < 0) { /* cannot happen on valid UTF-8; keep the text */
    free(dst);
    append(out, s, n);
    return false;
  }
  append(out, (const char *)dst, (size_t)m);
  free(dst);
  return true;
}

/* Normalizes only the runs that may change. The text is cut before ASCII
 * characters: an ASCII character is a starter that is never the second of
 * a composition and stops canonical reordering, so what precedes it
 * normalizes on its own. A run is an ASCII character (it may take combining
 * marks) with the non-ASCII characters after it. */
static bool apply_unicode(TokNormKind k, const char *str, size_t n, TokBytes *out) {
  const unsigned char *s = (const unsigned char *)str, lim = unicode_limit(k);
  size_t i = 0, done = 0;
  while (i < n && s[i] < lim) i++;
  if (i == n) return false;
  while (i < n) {
    size_t a = i, b = i;
    while (a > done && s[a] >= 0x80) a--; /* back to the run's ASCII start */
    for (;;) {                            /* on over runs that may change */
      while (b < n && s[b] >= 0x80) b++;
      if (b >= n) break;
      size_t c = b + 1;
      bool dirty = false;
      for (; c < n && s[c] >= 0x80; c++) dirty = dirty || s[c] >= lim;
      if (!dirty) break;
      b = c;
    }
    append(out, str + done, a - done);
    unicode_map(k, str + a, b - a, out);
    done = b;
    for (i = b; i < n && s[i] < lim; i++) {
    }
  }
  append(out, str + done, n - done);
  return true;
}

static bool apply(const TokNorm *nm, const char *s, size_t n, TokBytes *out) {
  switch (nm->kind) {
    case TOK_NORM_NFC:
    case TOK_NORM_NFD:
    case TOK_NORM_NFKC:
    case TOK_NORM_NFKD:
      return apply_unicode(nm->kind, s, n, out);
    case TOK_NORM_PREPEND:
      if (!n) return false;
      append(out, nm->a, nm->na);
      append(out, s, n);
      return true;
    case TOK_NORM_REPLACE: {
      if (!nm->na || n < nm->na) return false;
      const char *p = s, *end = s + n;
      bool changed = false;
      while ((size_t)(end - p) >= nm->na) {
        const char *hit = tok_find(p, (size_t)(end - p), nm->a, nm->na);
        if (!hit) break;
        append(out, p, (size_t)(hit - p));
        append(out, nm->b, nm->nb);
        p = hit + nm->na;
        changed = true;
      }
      if (!changed) return false;
      append(out, p, (size_t)(end - p));
      return true;
    }
  }
  return false;
}

const char *tok_normalize(Tokenizer *t, const char *s, size_t n, size_t *out_n) {
  TokBytes *bufs[2] = {&t->norm, &t->norm2};
  int cur = 0;
  for (size_t i = 0; i < t->norms.n; i++) {
    TokBytes *dst = bufs[cur];
    dst->n = 0;
    if (apply(&t->norms.a[i], s, n, dst)) {
      s = dst->a;
      n = dst->n;
      cur ^= 1;
    }
  }
  *out_n = n;
  return s;
}

void tok_normalize_into(Tokenizer *t, const char *s, size_t n, TokBytes *out) {
  size_t m;
  const char *r = tok_normalize(t, s, n, &m);
  append(out, r, m);
}
