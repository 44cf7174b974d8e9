#include "runtime/tokenizer/tok_utf8.h"

#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

int32_t tok_utf8_decode(const unsigned char *s, size_t n, int *len) {
  unsigned char b = s[0];
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  int need;
  unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  int32_t cp;
  if (b >= 0xc2 && b <= 0xdf) {
    need = 1;
    cp = b & 0x1f;
  } else if (b >= 0xe0 && b <= 0xef) {
    need = 2;
    cp = b & 0x0f;
    if (b == 0xe0) lo = 0xa0;
    if (b == 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    need = 3;
    cp = b & 0x07;
    if (b == 0xf0) lo = 0x90;
    if (b == 0xf4) hi = 0x8f;
  } else {
    *len = 1;
    return -1;
  }
  for (int i = 1; i <= need; i++) {
    if ((size_t)i >= n || s[i] < lo || s[i] > hi) {
      *len = i;
      return -1;
    }
    cp = (cp << 6) | (s[i] & 0x3f);
    lo = 0x80;
    hi = 0xbf;
  }
  *len = need + 1;
  return cp;
}

int tok_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

size_t tok_utf8_first_invalid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    /* ASCII runs, eight bytes at a time */
    while (i + 8 <= n) {
      uint64_t v;
      memcpy(&v, u + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    int len;
    if (tok_utf8_decode(u + i, n - i, &len) < 0) return i;
    i += (size_t)len;
  }
  return n;
}

void tok_utf8_sanitize(const char *s, size_t n, TokBytes *out) {
  size_t i = 0;
  while (i < n) {
    size_t bad = i + tok_utf8_first_invalid(s + i, n - i);
    vec_reserve(out, out->n + (bad - i) + 3);
    memcpy(out->a + out->n, s + i, bad - i);
    out->n += bad - i;
    if (bad == n) break;
    int len;
    tok_utf8_decode((const unsigned char *)s + bad, n - bad, &len);
    memcpy(out->a + out->n, TOK_REPLACEMENT, 3);
    out->n += 3;
    i = bad + (size_t)len;
  }
}

bool tok_is_white_space(int32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
  if (cp < 0x85) return false;
  switch (cp) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f:
    case 0x205f: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200a;
  }
}

int tok_char_class(int32_t cp) {
  if (tok_is_white_space(cp)) return TOK_CL_SPACE;
  if (cp < 0) return TOK_CL_OTHER;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      return TOK_CL_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return TOK_CL_NUMBER;
    default:
      return TOK_CL_OTHER;
  }
}

bool tok_is_word_char(int32_t cp) {
  if (cp == '_') return true;
  int c = tok_char_class(cp);
  return c == TOK_CL_LETTER || c == TOK_CL_NUMBER;
}

const char *tok_quote(char *buf, size_t cap, const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 60) {
      memcpy(buf + k, "...", 3);
      k += 3;
      break;
    }
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
    else buf[k++] = (char)c;
  }
  buf[k < cap ? k : cap - 1] = 0;
  return buf;
}
