/* BPE on one word: split it into symbols, merge the adjacent pair of lowest
 * rank (leftmost first among equal ranks) until none is left, emit the ids.
 * Short words scan an array of pair ranks; long ones (a 10 MB line without
 * spaces is one word for sentencepiece) use a heap of (rank, position) and
 * linked symbols, O(n log n). Both orders are the same, so results are too.
 * Recent words and their ids are cached. */
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

#define SPACE_SYMBOL "\xe2\x96\x81"
#define SMALL_WORD 64          /* longest word merged by scanning */
#define CACHE_MAX_KEY 128      /* longest word cached, in bytes */
#define CACHE_SLOTS (1u << 16) /* cache table size; cleared at half load */

/* ---- the word cache ---- */

static int64_t cache_find(const TokCache *c, const char *w, size_t n, uint64_t h) {
  if (!c->slots) return -1;
  for (size_t i = (size_t)h & c->mask;; i = (i + 1) & c->mask) {
    uint32_t e = c->slots[i];
    if (!e) return -1;
    const struct TokCacheEnt *en = &c->ent[e - 1];
    if (en->hash == h && en->key_len == n && !memcmp(c->keys.a + en->key_off, w, n)) return e - 1;
  }
}

static void cache_put(TokCache *c, const char *w, size_t n, uint64_t h, const uint32_t *ids, size_t k) {
  if (!c->slots) {
    c->slots = pc_xcalloc(CACHE_SLOTS, sizeof *c->slots);
    c->mask = CACHE_SLOTS - 1;
  }
  if (c->n >= CACHE_SLOTS / 2) { /* full: start again */
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->n = 0;
    c->keys.n = 0;
    c->ids.n = 0;
  }
  size_t i = (size_t)h & c->mask;
  while (c->slots[i]) i = (i + 1) & c->mask;
  pc_vec_reserve_((void **)&c->ent, &c->cap, c->n + 1, sizeof *c->ent);
  c->ent[c->n] = (struct TokCacheEnt){h, (uint32_t)c->keys.n, (uint32_t)n, (uint32_t)c->ids.n, (uint32_t)k};
  vec_reserve(&c->keys, c->keys.n + n);
  memcpy(c->keys.a + c->keys.n, w, n);
  c->keys.n += n;
  vec_reserve(&c->ids, c->ids.n + k);
  if (k) memcpy(c->ids.a + c->ids.n, ids, k * sizeof *ids);
  c->ids.n += k;
  c->slots[i] = (uint32_t)(++c->n);
}

void tok_cache_free(TokCache *c) {
  free(c->slots);
  free(c->ent);
  vec_free(&c->keys);
  vec_free(&c->ids);
  memset(c, 0, sizeof *c);
}

/* ---- merging ---- */

static inline bool pair_merge(const Tokenizer *t, const TokSym *a, const TokSym *b, uint64_t *v) {
  if ((a->flags | b->flags) & (TOK_SYM_FROZEN | TOK_SYM_UNKNOWN)) return false;
  return tok_u64map_get(&t->merges, (uint64_t)a->id << 32 | b->id, v);
}

static size_t merge_small(const Tokenizer *t, TokSym *s, size_t n) {
  uint32_t rank[SMALL_WORD], merged[SMALL_WORD];
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    rank[i] = pair_merge(t, &s[i], &s[i + 1], &v) ? (uint32_t)(v >> 32) : UINT32_MAX;
    merged[i] = (uint32_t)v;
  }
  while (n > 1) {
    uint32_t best = UINT32_MAX;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < n; i++)
      if (rank[i] < best) best = rank[i], bi = i;
    if (best == UINT32_MAX) break;
    s[bi].id = merged[bi];
    s[bi].len += s[bi + 1].len;
    /* drop symbol bi+1 and pair bi+1 (which started at it) */
    memmove(s + bi + 1, s + bi + 2, (n - bi - 2) * sizeof *s);
    if (bi + 2 < n - 1) {
      memmove(rank + bi + 1, rank + bi + 2, (n - bi - 3) * sizeof *rank);
      memmove(merged + bi + 1, merged + bi + 2, (n - bi - 3) * sizeof *merged);
    }
    n--;
    if (bi > 0) {
      rank[bi - 1] = pair_merge(t, &s[bi - 1], &s[bi], &v) ? (uint32_t)(v >> 32) : UINT32_MAX;
      merged[bi - 1] = (uint32_t)v;
    }
    if (bi + 1 < n) {
      rank[bi] = pair_merge(t, &s[bi], &s[bi + 1], &v) ? (uint32_t)(v >> 32) : UINT32_MAX;
      merged[bi] = (uint32_t)v;
    }
  }
  return n;
}

/* A binary min-heap of rank << 32 | position. */
static void heap_push(Tokenizer *t, uint64_t x) {
  vec_push(&t->heap, x);
  uint64_t *h = t->heap.a;
  size_t i = t->heap.n - 1;
  while (i > 0 && h[(i - 1) / 2] > x) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = x;
}

static uint64_t heap_pop(Tokenizer *t) {
  uint64_t *h = t->heap.a, top = h[0], x = h[--t->heap.n];
  size_t n = t->heap.n, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1] < h[c]) c++;
    if (h[c] >= x) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = x;
  return top;
}

static void heap_pair(Tokenizer *t, TokSym *s, int32_t l, int32_t r) {
  uint64_t v;
  if (l >= 0 && r >= 0 && pair_merge(t, &s[l], &s[r], &v)) heap_push(t, (v >> 32) << 32 | (uint32_t)l);
}

static size_t merge_heap(Tokenizer *t, TokSym *s, size_t n) {
  vec_reserve(&t->prev, n);
  vec_reserve(&t->next, n);
  int32_t *prev = t->prev.a, *next = t->next.a;
  t->heap.n = 0;
  for (size_t i = 0; i < n; i++) {
    prev[i] = (int32_t)i - 1;
    next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  for (size_t i = 0; i + 1 < n; i++) heap_pair(t, s, (int32_t)i, (int32_t)i + 1);
  while (t->heap.n) {
    uint64_t top = heap_pop(t), v;
    int32_t l = (int32_t)(uint32_t)top, r = next[l];
    if (prev[l] == -2 || r < 0) continue; /* gone, or nothing on its right */
    if (!pair_merge(t, &s[l], &s[r], &v) || v >> 32 != top >> 32) continue; /* stale */
    s[l].id = (uint32_t)v;
    s[l].len += s[r].len;
    prev[r] = -2;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    heap_pair(t, s, prev[l], l);
    heap_pair(t, s, l, next[l]);
  }
  size_t m = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) s[m++] = s[i];
  return m;
}

/* ---- splitting a word into symbols ---- */

static void push_sym(Tokenizer *t, uint32_t id, size_t off, size_t len, uint32_t flags) {
  vec_push(&t->syms, ((TokSym){id, (uint32_t)off, (uint32_t)len, flags}));
}

/* tokenizers' rules for a character missing from the vocabulary: its bytes
 * as <0xXX> pieces, else the unknown token (runs fused if asked), else
 * nothing. *unk_open says whether the last symbol is a fusable unknown. */
static void hf_missing_char(Tokenizer *t, const char *c, size_t off, size_t len, bool *unk_open) {
  if (t->byte_fallback) {
    bool all = true;
    for (size_t k = 0; k < len; k++) all = all && t->byte_tok[(unsigned char)c[k]] >= 0;
    if (all) {
      for (size_t k = 0; k < len; k++) push_sym(t, (uint32_t)t->byte_tok[(unsigned char)c[k]], off + k, 1, 0);
      *unk_open = false;
      return;
    }
  }
  if (t->unk < 0) return;
  if (*unk_open && t->fuse_unk) {
    t->syms.a[t->syms.n - 1].len += (uint32_t)len;
    return;
  }
  push_sym(t, (uint32_t)t->unk, off, len, 0);
  *unk_open = true;
}

static void split_chars(Tokenizer *t, const char *w, size_t n) {
  bool unk_open = false;
  bool frozen = t->frozen.term.n > 0;
  for (size_t i = 0; i < n;) {
    int32_t id;
    size_t len;
    if (frozen && tok_trie_may_start(&t->frozen, (unsigned char)w[i]) &&
        (len = tok_trie_longest(&t->frozen, w + i, n - i, &id)) > 0) {
      push_sym(t, (uint32_t)id, i, len, TOK_SYM_FROZEN);
      unk_open = false;
      i += len;
      continue;
    }
    len = (size_t)tok_utf8_lead_len((unsigned char)w[i]);
    if (len > n - i) len = n - i;
    int64_t v = tok_strmap_get(&t->vocab, w + i, len);
    if (v >= 0) {
      push_sym(t, (uint32_t)v, i, len, 0);
      unk_open = false;
    } else if (t->is_spm) {
      push_sym(t, 0, i, len, TOK_SYM_UNKNOWN); /* resolved after merging, as sentencepiece does */
    } else {
      hf_missing_char(t, w + i, i, len, &unk_open);
    }
    i += len;
  }
}

/* sentencepiece: unknown characters become their bytes' pieces (byte
 * fallback) or the unknown id, one for each run. */
static void emit(Tokenizer *t, const char *w, const TokSym *s, size_t n, TokIds *out) {
  bool prev_unk = false;
  for (size_t i = 0; i < n; i++) {
    if (!(s[i].flags & TOK_SYM_UNKNOWN)) {
      vec_push(out, s[i].id);
      prev_unk = false;
      continue;
    }
    if (t->byte_fallback) {
      for (uint32_t k = 0; k < s[i].len; k++) {
        int32_t b = t->byte_tok[(unsigned char)w[s[i].off + k]];
        if (b >= 0) vec_push(out, (uint32_t)b);
        else if (t->unk >= 0) vec_push(out, (uint32_t)t->unk);
      }
    } else if (!prev_unk && t->unk >= 0) {
      vec_push(out, (uint32_t)t->unk);
    }
    prev_unk = true;
  }
}

void tok_bpe_word(Tokenizer *t, const char *w, size_t n, TokIds *out) {
  if (!n) return;
  uint64_t h = 0;
  bool cacheable = n <= CACHE_MAX_KEY;
  if (cacheable) {
    h = tok_hash_bytes(w, n);
    int64_t e = cache_find(&t->cache, w, n, h);
    if (e >= 0) {
      const struct TokCacheEnt *en = &t->cache.ent[e];
      vec_reserve(out, out->n + en->ids_n);
      memcpy(out->a + out->n, t->cache.ids.a + en->ids_off, en->ids_n * sizeof *out->a);
      out->n += en->ids_n;
      return;
    }
  }
  size_t out_start = out->n;
  const char *text = w; /* what the symbols' offsets point into */
  size_t text_n = n;
  t->syms.n = 0;
  if (t->byte_level && (!t->byte_level_fast || t->ignore_merges)) {
    t->word.n = 0;
    for (size_t i = 0; i < n; i++) {
      char c[4];
      int k = tok_utf8_encode(tok_byte_to_cp((unsigned char)w[i]), c);
      vec_reserve(&t->word, t->word.n + 4);
      memcpy(t->word.a + t->word.n, c, (size_t)k);
      t->word.n += (size_t)k;
    }
    text = t->word.a;
    text_n = t->word.n;
  }
  int64_t whole = t->ignore_merges ? tok_strmap_get(&t->vocab, text, text_n) : -1;
  if (whole >= 0) {
    vec_push(out, (uint32_t)whole);
  } else {
    if (t->byte_level_fast) {
      vec_reserve(&t->syms, n);
      for (size_t i = 0; i < n; i++)
        t->syms.a[i] = (TokSym){(uint32_t)t->byte_sym[(unsigned char)w[i]], (uint32_t)i, 1, 0};
      t->syms.n = n;
    } else {
      split_chars(t, text, text_n);
    }
    size_t m = t->syms.n <= SMALL_WORD ? merge_small(t, t->syms.a, t->syms.n) : merge_heap(t, t->syms.a, t->syms.n);
    emit(t, text, t->syms.a, m, out);
  }
  if (cacheable) cache_put(&t->cache, w, n, h, out->n > out_start ? out->a + out_start : NULL, out->n - out_start);
}

void tok_bpe_text(Tokenizer *t, const char *s, size_t n, TokIds *out) {
  if (!n) return;
  if (!t->split_ws) {
    tok_bpe_word(t, s, n, out);
    return;
  }
  size_t start = 0;
  for (size_t i = 3; i + 3 <= n; i++) {
    /* a U+2581 whose previous character is not one starts a word */
    if (!memcmp(s + i, SPACE_SYMBOL, 3) && memcmp(s + i - 3, SPACE_SYMBOL, 3)) {
      tok_bpe_word(t, s + start, i - start, out);
      start = i;
      i += 2;
    }
  }
  tok_bpe_word(t, s + start, n - start, out);
}
