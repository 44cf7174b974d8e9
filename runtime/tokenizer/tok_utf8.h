/* UTF-8 for the tokenizer: decoding with the Unicode "maximal subpart" rule
 * for ill-formed input (what Python's errors="replace" and Rust's
 * from_utf8_lossy do), encoding, and the character classes of the GPT-2
 * pre-tokenizer regex (\p{L}, \p{N}, \s), from utf8proc. */
#ifndef PC_TOK_UTF8_H
#define PC_TOK_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/tokenizer/tokenizer.h"

#define TOK_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Decodes the character at s[0..n), n > 0. Returns its code point and sets
 * *len; for an ill-formed sequence returns -1 and sets *len to the length of
 * its maximal subpart (at least 1), the bytes one U+FFFD replaces. */
int32_t tok_utf8_decode(const unsigned char *s, size_t n, int *len);
/* Writes cp (< 0x110000) as UTF-8; returns the length. */
int tok_utf8_encode(uint32_t cp, char out[4]);
/* Offset of the first ill-formed sequence, or n when s is valid UTF-8. */
size_t tok_utf8_first_invalid(const char *s, size_t n);
/* Appends s to out with each maximal ill-formed subpart replaced by U+FFFD. */
void tok_utf8_sanitize(const char *s, size_t n, TokBytes *out);
/* Number of bytes of a character starting with lead byte b (1 for bytes that
 * cannot start one). */
static inline int tok_utf8_lead_len(unsigned char b) {
  return b < 0xc0 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : b < 0xf8 ? 4 : 1;
}

/* Writes s[0..n) into buf for a one-line error message: control bytes and
 * quotes escaped, cut after about 60 bytes. Returns buf. */
const char *tok_quote(char *buf, size_t cap, const char *s, size_t n);

/* Character classes of the GPT-2 regex. */
enum { TOK_CL_OTHER, TOK_CL_LETTER, TOK_CL_NUMBER, TOK_CL_SPACE };
int tok_char_class(int32_t cp);
/* Unicode White_Space (what \s matches in the reference regex engine). */
bool tok_is_white_space(int32_t cp);
/* Letters, numbers and '_': the word characters of added tokens' single_word. */
bool tok_is_word_char(int32_t cp);

#endif
