#include "runtime/base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(size_t n) {
  fprintf(stderr, "pondercc: out of memory allocating %zu bytes\n", n);
  abort();
}

void *pc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) out_of_memory(n);
  return p;
}

void *pc_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) out_of_memory(pc_mul_size(count, size));
  return p;
}

void *pc_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) out_of_memory(n);
  return q;
}

char *pc_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(pc_xmalloc(n), s, n);
}

size_t pc_mul_size(size_t a, size_t b) {
  if (b && a > SIZE_MAX / b) {
    fprintf(stderr, "pondercc: size overflow (%zu x %zu)\n", a, b);
    abort();
  }
  return a * b;
}

void pc_vec_reserve_(void **a, size_t *cap, size_t want, size_t elem) {
  if (want <= *cap) return;
  size_t c = *cap ? *cap : 8;
  while (c < want) c = pc_mul_size(c, 2);
  *a = pc_xrealloc(*a, pc_mul_size(c, elem));
  *cap = c;
}
