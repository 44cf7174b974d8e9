/* Hash maps for the tokenizer: byte strings -> uint32 (the vocabulary) and
 * uint64 -> uint64 (merge pairs, code points). Open addressing, power-of-two
 * tables, grown at 1/2 load; nothing is ever removed except by clearing. */
#ifndef PC_TOK_MAP_H
#define PC_TOK_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t tok_mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

/* A fast hash of a byte string (not for adversarial keys). */
static inline uint64_t tok_hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xbf58476d1ce4e5b9ull);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, s, 8);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= (uint64_t)s[i] << (8 * i);
  return tok_mix64(h ^ v);
}

/* Byte string -> uint32. Keys are copied into the map's own pool. */
typedef struct {
  uint32_t *slots; /* 0 = empty, else entry index + 1 */
  size_t mask;
  struct TokStrEntry {
    uint64_t hash;
    uint32_t off, len, val;
  } *ent;
  size_t n, cap;
  char *pool;
  size_t pool_n, pool_cap;
} TokStrMap;

/* Returns the value, or -1 when absent. */
int64_t tok_strmap_get(const TokStrMap *m, const char *s, size_t n);
/* Inserts or overwrites; returns true when the key was new. */
bool tok_strmap_put(TokStrMap *m, const char *s, size_t n, uint32_t val);
void tok_strmap_free(TokStrMap *m);

/* uint64 -> uint64. The key UINT64_MAX is reserved (marks empty slots). */
typedef struct {
  uint64_t *keys;
  uint64_t *vals;
  size_t mask, n;
  int shift; /* 64 - log2(table size): slots come from the top bits of a product */
} TokU64Map;

static inline size_t tok_u64map_slot(const TokU64Map *m, uint64_t key) {
  return (size_t)((key * 0x9e3779b97f4a7c15ull) >> m->shift);
}

static inline bool tok_u64map_get(const TokU64Map *m, uint64_t key, uint64_t *val) {
  if (!m->keys) return false;
  size_t i = tok_u64map_slot(m, key);
  for (;;) {
    uint64_t k = m->keys[i];
    if (k == key) {
      *val = m->vals[i];
      return true;
    }
    if (k == UINT64_MAX) return false;
    i = (i + 1) & m->mask;
  }
}
/* Inserts or overwrites. */
void tok_u64map_put(TokU64Map *m, uint64_t key, uint64_t val);
void tok_u64map_free(TokU64Map *m);

#endif
