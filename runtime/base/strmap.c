#include "runtime/base/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/base/mem.h"

uint64_t pc_hash_bytes(const void *p, size_t n) {
  /* FNV-1a, 64-bit */
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

static size_t find_slot(char *const *keys, size_t cap, const char *key, size_t len) {
  size_t i = (size_t)pc_hash_bytes(key, len) & (cap - 1);
  while (keys[i] && !(strlen(keys[i]) == len && !memcmp(keys[i], key, len))) i = (i + 1) & (cap - 1);
  return i;
}

int strmap_get(const StrMap *m, const char *key, size_t len, uint32_t *val) {
  if (!m->cap) return 0;
  size_t i = find_slot(m->keys, m->cap, key, len);
  if (!m->keys[i]) return 0;
  *val = m->vals[i];
  return 1;
}

static void grow(StrMap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  char **keys = pc_xcalloc(cap, sizeof *keys);
  uint32_t *vals = pc_xcalloc(cap, sizeof *vals);
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t j = find_slot(keys, cap, m->keys[i], strlen(m->keys[i]));
    keys[j] = m->keys[i];
    vals[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
}

void strmap_put(StrMap *m, const char *key, size_t len, uint32_t val) {
  if ((m->count + 1) * 4 >= m->cap * 3) grow(m);
  size_t i = find_slot(m->keys, m->cap, key, len);
  if (!m->keys[i]) {
    char *k = pc_xmalloc(len + 1);
    memcpy(k, key, len);
    k[len] = 0;
    m->keys[i] = k;
    m->count++;
  }
  m->vals[i] = val;
}

void strmap_free(StrMap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys);
  free(m->vals);
  *m = (StrMap){0};
}
