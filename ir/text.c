#include "ir/text.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int ir_text_word_char(int c) { return isalnum(c) || c == '_' || c == '.' || c == '-'; }

int ir_text_is_bare_word(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!ir_text_word_char((unsigned char)*s)) return 0;
  return 1;
}

int ir_text_is_bare_loc(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (isspace((unsigned char)*s) || *s == '"' || *s == '{' || *s == '}' || (unsigned char)*s < 32) return 0;
  return 1;
}

void ir_text_print_quoted(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c == '\t')
      fputs("\\t", f);
    else if (c < 32 || c == 127)
      fprintf(f, "\\x%02x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

void ir_text_print_double(FILE *f, double x) {
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, x);
    if (strtod(buf, NULL) == x) break;
  }
  /* Keep a float looking like one, so `1` reads as a float attribute. */
  if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
  fputs(buf, f);
}
