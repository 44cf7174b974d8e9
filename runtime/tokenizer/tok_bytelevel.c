/* GPT-2's byte-level alphabet: each byte is shown as a printable character so
 * that vocabularies are text. Printable bytes (! to ~, ¡ to ¬, ® to ÿ) stand
 * for themselves; the other 68 take U+0100 onwards in byte order. */
#include "runtime/tokenizer/tok_impl.h"

static bool printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t tok_byte_to_cp(unsigned char b) {
  if (printable(b)) return b;
  if (b <= 32) return 256u + b;
  if (b <= 160) return 256u + 33 + (b - 127u);
  return 256u + 33 + 34; /* 173, the soft hyphen */
}

int tok_cp_to_byte(int32_t cp) {
  if (cp < 0) return -1;
  if (cp < 256) return printable((unsigned)cp) ? cp : -1;
  if (cp < 256 + 33) return cp - 256;
  if (cp < 256 + 33 + 34) return cp - 256 - 33 + 127;
  if (cp == 256 + 33 + 34) return 173;
  return -1;
}
