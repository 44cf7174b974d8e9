/* Two error channels (docs/architecture.md):
 *  - user errors (bad script, bad file, bad flag) are values: a function
 *    fills a PcError and returns -1; callers print err.msg on one line;
 *  - internal bugs abort with file and line through PC_BUG / PC_ASSERT. */
#ifndef PC_ERR_H
#define PC_ERR_H

#include <stdarg.h>

typedef struct PcError {
  char msg[1024];
} PcError;

/* Fills e (if non-NULL) and returns -1 so callers can `return pc_errorf(...)`. */
int pc_errorf(PcError *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pc_verrorf(PcError *e, const char *fmt, va_list ap);
/* Prepends "prefix: " to an error already set, to add context on the way up. */
int pc_error_prefix(PcError *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

_Noreturn void pc_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define PC_BUG(...) pc_bug(__FILE__, __LINE__, __VA_ARGS__)
#define PC_ASSERT(c) ((c) ? (void)0 : pc_bug(__FILE__, __LINE__, "assertion failed: %s", #c))

#endif
