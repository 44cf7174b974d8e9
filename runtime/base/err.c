#include "runtime/base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pc_verrorf(PcError *e, const char *fmt, va_list ap) {
  if (e) vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  return -1;
}

int pc_errorf(PcError *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pc_verrorf(e, fmt, ap);
  va_end(ap);
  return -1;
}

int pc_error_prefix(PcError *e, const char *fmt, ...) {
  if (!e) return -1;
  char old[sizeof e->msg];
  memcpy(old, e->msg, sizeof old);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof e->msg) {
    size_t used = (size_t)n, room = sizeof e->msg - used;
    /* ": " then as much of the old message as fits */
    if (room > 2) {
      memcpy(e->msg + used, ": ", 2);
      size_t k = strnlen(old, room - 3);
      memcpy(e->msg + used + 2, old, k);
      e->msg[used + 2 + k] = 0;
    }
  }
  return -1;
}

void pc_bug(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "pondercc internal error at %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}
