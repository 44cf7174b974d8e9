/* Helpers shared by the tokenizer tests: files, hex, id lists, paths. */
#ifndef PC_TOK_TEST_UTIL_H
#define PC_TOK_TEST_UTIL_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tokenizer.h"

#define FIXTURES "tests/tokenizer/fixtures"

/* The whole file, NUL-terminated, or NULL. */
static inline char *tt_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  TokBytes b = {0};
  for (;;) {
    vec_reserve(&b, b.n + 65536);
    size_t got = fread(b.a + b.n, 1, b.cap - b.n - 1, f);
    b.n += got;
    if (!got) break;
  }
  fclose(f);
  b.a[b.n] = 0;
  if (n) *n = b.n;
  return b.a;
}

static inline int tt_hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static inline void tt_unhex(const char *h, TokBytes *out) {
  out->n = 0;
  for (size_t i = 0; h[i] && h[i + 1]; i += 2) vec_push(out, (char)(tt_hexval(h[i]) * 16 + tt_hexval(h[i + 1])));
}

static inline void tt_ids(const cJSON *arr, TokIds *out) {
  out->n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) vec_push(out, (uint32_t)e->valuedouble);
}

static inline int tt_same_ids(const TokIds *a, const TokIds *b) {
  return a->n == b->n && (!a->n || !memcmp(a->a, b->a, a->n * sizeof *a->a));
}

static inline int tt_same_bytes(const TokBytes *a, const TokBytes *b) {
  return a->n == b->n && (!a->n || !memcmp(a->a, b->a, a->n));
}

static inline void tt_print_ids(const char *label, const TokIds *ids) {
  fprintf(stderr, "  %s:", label);
  for (size_t i = 0; i < ids->n && i < 64; i++) fprintf(stderr, " %u", ids->a[i]);
  fprintf(stderr, "%s\n", ids->n > 64 ? " ..." : "");
}

/* Decodes ids one at a time through the streaming decoder. */
static inline int tt_stream_decode(const Tokenizer *t, const uint32_t *ids, size_t n, unsigned flags, TokBytes *out) {
  TokStream s;
  PcError err;
  tok_stream_init(&s, t, flags);
  for (size_t i = 0; i < n; i++)
    if (tok_stream_push(&s, ids[i], out, &err)) return -1;
  tok_stream_finish(&s, out);
  return 0;
}

#endif
