/* sentencepiece's normalizer: a precompiled character map (rules such as
 * nmt_nfkc's, compiled into a darts-clone double-array trie plus
 * NUL-separated replacement strings), user-defined pieces kept as they are,
 * then whitespace: extra spaces removed, spaces escaped as U+2581, a dummy
 * U+2581 prefix. Read as sentencepiece's normalizer.cc does it; the trie is
 * walked with bounds checks, since the file may be damaged. */
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

#define SPACE_SYMBOL "\xe2\x96\x81"
#define MAX_RESULTS 32 /* sentencepiece keeps the first 32 prefix matches */

static void append(TokBytes *out, const char *s, size_t n) {
  vec_reserve(out, out->n + n);
  if (n) memcpy(out->a + out->n, s, n);
  out->n += n;
}

int tok_spm_set_charsmap(Tokenizer *t, const unsigned char *blob, size_t n, PcError *err) {
  if (n <= 4) return pc_errorf(err, "precompiled character map of %zu bytes is too short", n);
  uint32_t trie = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
  if (trie >= n - 4 || trie % 4 || trie == 0) return pc_errorf(err, "precompiled character map: bad trie size %u", trie);
  t->spm_trie_n = trie / 4;
  t->spm_trie = pc_xmalloc(trie);
  for (size_t i = 0; i < t->spm_trie_n; i++) {
    const unsigned char *p = blob + 4 + 4 * i;
    t->spm_trie[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  }
  t->spm_rules_n = n - 4 - trie;
  t->spm_rules = pc_xmalloc(t->spm_rules_n);
  memcpy(t->spm_rules, blob + 4 + trie, t->spm_rules_n);
  return 0;
}

/* darts-clone units */
static uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xff); }
static bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }

/* The longest rule s starts with (among the first 32 matches): its length,
 * 0 when none; *rep and *rep_n get the replacement. */
static size_t charsmap_match(const Tokenizer *t, const unsigned char *s, size_t n, const char **rep, size_t *rep_n) {
  const uint32_t *u = t->spm_trie;
  size_t nu = t->spm_trie_n, node = unit_offset(u[0]), best = 0, value = 0;
  int results = 0;
  for (size_t i = 0; i < n && node < nu; i++) {
    node ^= s[i];
    if (node >= nu || unit_label(u[node]) != s[i]) break;
    uint32_t unit = u[node];
    node ^= unit_offset(unit);
    if (node >= nu) break;
    if (unit_has_leaf(unit) && results++ < MAX_RESULTS) {
      best = i + 1;
      value = u[node] & ((1u << 31) - 1);
    }
  }
  if (!best || value >= t->spm_rules_n) return 0;
  *rep = t->spm_rules + value;
  *rep_n = strnlen(*rep, t->spm_rules_n - value);
  return best;
}

/* One step of the input: what it becomes and how many bytes it takes. */
static size_t normalize_prefix(const Tokenizer *t, const char *s, size_t n, const char **rep, size_t *rep_n) {
  int32_t id;
  size_t len;
  if (t->frozen.term.n && tok_trie_may_start(&t->frozen, (unsigned char)s[0]) &&
      (len = tok_trie_longest(&t->frozen, s, n, &id)) > 0) {
    *rep = s;
    *rep_n = len;
    return len;
  }
  if (t->spm_trie && (len = charsmap_match(t, (const unsigned char *)s, n, rep, rep_n)) > 0) return len;
  int clen;
  tok_utf8_decode((const unsigned char *)s, n, &clen); /* the text is valid UTF-8 here */
  *rep = s;
  *rep_n = (size_t)clen;
  return (size_t)clen;
}

/* The same without a character map or user-defined pieces (LLaMA's
 * identity normalizer): byte by byte. */
static void normalize_plain(Tokenizer *t, const char *s, size_t n, const char *space, size_t space_n) {
  TokBytes *out = &t->norm;
  size_t i = 0;
  if (t->spm_remove_ws)
    while (i < n && s[i] == ' ') i++;
  if (i == n) return;
  vec_reserve(out, 3 * (n - i) + 3);
  if (t->spm_dummy_prefix) append(out, space, space_n);
  bool prev_space = t->spm_remove_ws;
  for (; i < n; i++) {
    if (s[i] != ' ') {
      out->a[out->n++] = s[i];
      prev_space = false;
    } else if (!prev_space) {
      memcpy(out->a + out->n, space, space_n);
      out->n += space_n;
      prev_space = t->spm_remove_ws;
    }
  }
}

void tok_spm_normalize(Tokenizer *t, const char *s, size_t n) {
  TokBytes *out = &t->norm;
  out->n = 0;
  const char *space = t->spm_escape_ws ? SPACE_SYMBOL : " ";
  size_t space_n = t->spm_escape_ws ? 3 : 1, i = 0;
  const char *rep;
  size_t rep_n;
  if (!t->spm_trie && !t->frozen.term.n) {
    normalize_plain(t, s, n, space, space_n);
    if (t->spm_remove_ws)
      while (out->n >= space_n && !memcmp(out->a + out->n - space_n, space, space_n)) out->n -= space_n;
    return;
  }
  if (t->spm_remove_ws) { /* leading spaces */
    while (i < n) {
      size_t k = normalize_prefix(t, s + i, n - i, &rep, &rep_n);
      if (rep_n != 1 || rep[0] != ' ') break;
      i += k;
    }
  }
  if (i == n) return;
  if (t->spm_dummy_prefix) append(out, space, space_n);
  bool prev_space = t->spm_remove_ws;
  while (i < n) {
    i += normalize_prefix(t, s + i, n - i, &rep, &rep_n);
    if (prev_space)
      while (rep_n && rep[0] == ' ') rep++, rep_n--;
    if (rep_n) {
      for (size_t k = 0; k < rep_n; k++) {
        if (rep[k] == ' ' && t->spm_escape_ws) append(out, SPACE_SYMBOL, 3);
        else vec_push(out, rep[k]);
      }
      prev_space = rep[rep_n - 1] == ' ';
    }
    if (!t->spm_remove_ws) prev_space = false;
  }
  if (t->spm_remove_ws)
    while (out->n >= space_n && !memcmp(out->a + out->n - space_n, space, space_n)) out->n -= space_n;
}
