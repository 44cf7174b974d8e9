/* Literal-string tries for added tokens and user-defined pieces: nodes are
 * numbers, edges live in one hash map keyed by (node, byte). */
#include "runtime/tokenizer/tok_impl.h"

#include <stdlib.h>

static uint32_t trie_node(TokTrie *t) {
  vec_push(&t->term, -1);
  return (uint32_t)(t->term.n - 1);
}

void tok_trie_add(TokTrie *t, const char *s, size_t n, int32_t val) {
  if (!n) return;
  if (!t->term.n) trie_node(t);
  uint64_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t key = node << 8 | (unsigned char)s[i], child;
    if (!tok_u64map_get(&t->edges, key, &child)) {
      child = trie_node(t);
      tok_u64map_put(&t->edges, key, child);
    }
    node = child;
  }
  t->term.a[node] = val;
  t->first[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
}

size_t tok_trie_longest(const TokTrie *t, const char *s, size_t n, int32_t *val) {
  size_t best = 0;
  uint64_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t child;
    if (!tok_u64map_get(&t->edges, node << 8 | (unsigned char)s[i], &child)) break;
    node = child;
    if (t->term.a[node] >= 0) {
      best = i + 1;
      *val = t->term.a[node];
    }
  }
  return best;
}

void tok_trie_free(TokTrie *t) {
  tok_u64map_free(&t->edges);
  vec_free(&t->term);
}
