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
  char prefix[512], old[sizeof e->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
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
