/* Normalizers: the tokenizer.json ones (NFC, NFD, NFKC, NFKD with utf8proc;
 * Prepend; Replace) and sentencepiece's (dummy prefix, whitespace). */
#include "runtime/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define SPACE_SYMBOL "\xe2\x96\x81" /* U+2581, sentencepiece's visible space */

static void append(TokBytes *out, const char *s, size_t n) {
  vec_reserve(out, out->n + n);
  if (n) memcpy(out->a + out->n, s, n);
  out->n += n;
}

/* True when the text cannot change under the normalizer: strings of code
 * points below U+0300 are in NFC, and ASCII is in every normal form. */
static bool unicode_unchanged(TokNormKind k, const char *s, size_t n) {
  unsigned char limit = k == TOK_NORM_NFC ? 0xcc : 0x80;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= limit) return false;
  return true;
}

static bool apply(const TokNorm *nm, const char *s, size_t n, TokBytes *out) {
  switch (nm->kind) {
    case TOK_NORM_NFC:
    case TOK_NORM_NFD:
    case TOK_NORM_NFKC:
    case TOK_NORM_NFKD: {
      if (unicode_unchanged(nm->kind, s, n)) return false;
      int opt = UTF8PROC_STABLE;
      opt |= nm->kind == TOK_NORM_NFC || nm->kind == TOK_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
      if (nm->kind == TOK_NORM_NFKC || nm->kind == TOK_NORM_NFKD) opt |= UTF8PROC_COMPAT;
      utf8proc_uint8_t *dst = NULL;
      utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
      if (m < 0) { /* cannot happen on valid UTF-8; leave the text as it is */
        free(dst);
        return false;
      }
      append(out, (const char *)dst, (size_t)m);
      free(dst);
      return true;
    }
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

void tok_spm_normalize(Tokenizer *t, const char *s, size_t n) {
  TokBytes *out = &t->norm;
  out->n = 0;
  size_t i = 0;
  if (t->spm_remove_ws)
    while (i < n && s[i] == ' ') i++;
  if (i == n) return;
  if (t->spm_dummy_prefix) append(out, t->spm_escape_ws ? SPACE_SYMBOL : " ", t->spm_escape_ws ? 3 : 1);
  bool prev_space = t->spm_remove_ws;
  for (; i < n; i++) {
    if (s[i] == ' ') {
      if (prev_space) continue;
      append(out, t->spm_escape_ws ? SPACE_SYMBOL : " ", t->spm_escape_ws ? 3 : 1);
      prev_space = t->spm_remove_ws;
    } else {
      vec_push(out, s[i]);
      prev_space = false;
    }
  }
  if (t->spm_remove_ws) {
    const char *sp = t->spm_escape_ws ? SPACE_SYMBOL : " ";
    size_t k = t->spm_escape_ws ? 3 : 1;
    while (out->n >= k && !memcmp(out->a + out->n - k, sp, k)) out->n -= k;
  }
}
