#include "runtime/tokenizer/tok_map.h"

#include <stdlib.h>

#include "runtime/base/err.h"
#include "runtime/base/mem.h"

int64_t tok_strmap_get(const TokStrMap *m, const char *s, size_t n) {
  if (!m->slots) return -1;
  uint64_t h = tok_hash_bytes(s, n);
  for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
    uint32_t e = m->slots[i];
    if (!e) return -1;
    const struct TokStrEntry *en = &m->ent[e - 1];
    if (en->hash == h && en->len == n && !memcmp(m->pool + en->off, s, n)) return en->val;
  }
}

static void strmap_grow(TokStrMap *m) {
  size_t size = m->slots ? (m->mask + 1) * 2 : 64;
  free(m->slots);
  m->slots = pc_xcalloc(size, sizeof *m->slots);
  m->mask = size - 1;
  for (size_t e = 0; e < m->n; e++) {
    size_t i = (size_t)m->ent[e].hash & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = (uint32_t)(e + 1);
  }
}

bool tok_strmap_put(TokStrMap *m, const char *s, size_t n, uint32_t val) {
  if (!m->slots || (m->n + 1) * 2 > m->mask + 1) strmap_grow(m);
  uint64_t h = tok_hash_bytes(s, n);
  size_t i = (size_t)h & m->mask;
  for (;; i = (i + 1) & m->mask) {
    uint32_t e = m->slots[i];
    if (!e) break;
    struct TokStrEntry *en = &m->ent[e - 1];
    if (en->hash == h && en->len == n && !memcmp(m->pool + en->off, s, n)) {
      en->val = val;
      return false;
    }
  }
  PC_ASSERT(n < UINT32_MAX && m->pool_n + n < UINT32_MAX);
  pc_vec_reserve_((void **)&m->pool, &m->pool_cap, m->pool_n + n, 1);
  if (n) memcpy(m->pool + m->pool_n, s, n);
  pc_vec_reserve_((void **)&m->ent, &m->cap, m->n + 1, sizeof *m->ent);
  m->ent[m->n] = (struct TokStrEntry){h, (uint32_t)m->pool_n, (uint32_t)n, val};
  m->pool_n += n;
  m->slots[i] = (uint32_t)(++m->n);
  return true;
}

void tok_strmap_free(TokStrMap *m) {
  free(m->slots);
  free(m->ent);
  free(m->pool);
  memset(m, 0, sizeof *m);
}

static void u64map_grow(TokU64Map *m) {
  size_t old = m->keys ? m->mask + 1 : 0, size = old ? old * 2 : 64;
  uint64_t *ok = m->keys, *ov = m->vals;
  m->keys = pc_xmalloc(pc_mul_size(size, sizeof *m->keys));
  m->vals = pc_xmalloc(pc_mul_size(size, sizeof *m->vals));
  memset(m->keys, 0xff, size * sizeof *m->keys);
  m->mask = size - 1;
  m->shift = 64;
  for (size_t s = size; s > 1; s >>= 1) m->shift--;
  for (size_t j = 0; j < old; j++) {
    if (ok[j] == UINT64_MAX) continue;
    size_t i = tok_u64map_slot(m, ok[j]);
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & m->mask;
    m->keys[i] = ok[j];
    m->vals[i] = ov[j];
  }
  free(ok);
  free(ov);
}

void tok_u64map_put(TokU64Map *m, uint64_t key, uint64_t val) {
  PC_ASSERT(key != UINT64_MAX);
  if (!m->keys || (m->n + 1) * 2 > m->mask + 1) u64map_grow(m);
  size_t i = tok_u64map_slot(m, key);
  while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & m->mask;
  if (m->keys[i] == UINT64_MAX) m->n++;
  m->keys[i] = key;
  m->vals[i] = val;
}

void tok_u64map_free(TokU64Map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}
