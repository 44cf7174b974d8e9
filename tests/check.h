/* A minimal test harness: CHECK records a failure with file:line and goes
 * on; a test's main returns check_exit(). Exit 77 means "skipped" to CTest. */
#ifndef PC_TEST_CHECK_H
#define PC_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* one counter for the whole test program, which may be several files
 * (backend_equiv.c records its failures here too) */
__attribute__((weak)) int check_failures;

#define CHECK(c)                                                         \
  do {                                                                   \
    if (!(c)) {                                                          \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      check_failures++;                                                  \
    }                                                                    \
  } while (0)

#define CHECKF(c, ...)                                         \
  do {                                                         \
    if (!(c)) {                                                \
      fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                            \
      fputc('\n', stderr);                                     \
      check_failures++;                                        \
    }                                                          \
  } while (0)

#define CHECK_STR_CONTAINS(hay, needle) \
  CHECKF(strstr((hay), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (hay))

static inline int check_exit(void) {
  if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
  return check_failures ? 1 : 0;
}

/* The shared data folder (../shared/data next to the repository), or NULL
 * with a message saying the test skips because it is absent. */
static inline const char *check_shared_data(const char *what) {
  const char *d = getenv("PONDER_SHARED_DATA");
  if (d) {
    FILE *f = fopen(d, "r");
    if (f) {
      fclose(f);
      return d;
    }
  }
  printf("SKIP: %s needs ../shared/data (set PONDER_SHARED_DATA); it is absent here\n", what);
  return NULL;
}

#endif
