/* GPT-2's pre-tokenizer regex, written out by hand:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every character falls in one alternative, so matches tile the text and
 * the matcher only needs "where does the match starting at i end". */
#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

static inline int class_at(const unsigned char *s, size_t n, size_t i, int *len) {
  unsigned char b = s[i];
  if (b < 0x80) {
    *len = 1;
    if ((unsigned)((b | 32) - 'a') < 26u) return TOK_CL_LETTER;
    if ((unsigned)(b - '0') < 10u) return TOK_CL_NUMBER;
    if (b == ' ' || (b >= 9 && b <= 13)) return TOK_CL_SPACE;
    return TOK_CL_OTHER;
  }
  return tok_char_class(tok_utf8_decode(s + i, n - i, len));
}

size_t tok_gpt2_next(const char *str, size_t n, size_t i) {
  const unsigned char *s = (const unsigned char *)str;
  int len;
  if (s[i] == '\'' && i + 1 < n) { /* contractions, lower case only */
    unsigned char c = s[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
    if (i + 2 < n) {
      unsigned char d = s[i + 2];
      if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) return i + 3;
    }
  }
  size_t j = i;
  int cls = class_at(s, n, j, &len);
  if (s[i] == ' ' && i + 1 < n) { /* " ?" before a letter, number or other run */
    int len2, cls2 = class_at(s, n, i + 1, &len2);
    if (cls2 != TOK_CL_SPACE) {
      j = i + 1;
      cls = cls2;
      len = len2;
    }
  }
  if (cls != TOK_CL_SPACE) {
    for (j += (size_t)len; j < n && class_at(s, n, j, &len) == cls; j += (size_t)len) {
    }
    return j;
  }
  /* A whitespace run: at the end of the text all of it; before other text
   * all but its last character (\s+(?!\S)), which then starts the next
   * match; a lone whitespace character before text is a match of its own. */
  size_t last = i;
  for (j = i; j < n && class_at(s, n, j, &len) == TOK_CL_SPACE; j += (size_t)len) last = j;
  if (j == n) return n;
  return last > i ? last : j;
}
