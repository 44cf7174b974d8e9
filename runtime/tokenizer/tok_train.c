/* BPE training. Each distinct word is an array of symbol ids with a count;
 * pair counts live in a map, the pairs in a max-heap whose stale entries are
 * re-pushed when popped (counts of old pairs only ever go down; new pairs
 * are pushed after each merge). Each pair lists the words it occurs in, so
 * a merge touches only those words: their pairs are uncounted, the word is
 * rewritten, and its pairs are counted again. */
#include "runtime/tokenizer/tok_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

typedef struct {
  uint32_t off, len; /* symbols in TokTrainer.syms */
  uint64_t count;
} Word;

typedef struct {
  uint64_t count;
  uint32_t a, b;
  uint32_t last_word; /* the last word added to `words`, to skip repeats */
  uint32_t pushed_at; /* the merge step that last pushed it */
  VEC(uint32_t) words;
} Pair;

typedef struct {
  uint64_t count;
  uint32_t a, b;
} HeapEnt;

typedef VEC(uint32_t) U32s;

struct TokTrainer {
  TokTrainOptions opt;
  TokStrMap word_ids; /* word bytes -> index in words */
  VEC(Word) words;
  VEC(uint32_t) syms;
  TokBytes clean;
  uint64_t nwords;
  /* training state */
  TokU64Map pair_ids; /* a << 32 | b -> index in pairs */
  VEC(Pair) pairs;
  VEC(HeapEnt) heap;
  VEC(uint32_t) fresh; /* pairs made by the current merge */
  VEC(uint32_t) tmp;
  VEC(uint32_t) stamp; /* per word: the merge step that last rewrote it */
  /* tokens: id -> string (byte-level characters) */
  TokBytes tok_text;
  VEC(uint32_t) tok_off;
  TokStrMap tok_ids;
};

static const char *const default_specials[] = {"<|endoftext|>"};

TokTrainer *tok_trainer_new(const TokTrainOptions *opt) {
  TokTrainer *tr = pc_xcalloc(1, sizeof *tr);
  tr->opt = *opt;
  if (!tr->opt.specials) {
    tr->opt.specials = default_specials;
    tr->opt.nspecials = 1;
  }
  return tr;
}

uint64_t tok_trainer_words(const TokTrainer *tr) { return tr->nwords; }

static void count_word(TokTrainer *tr, const char *w, size_t n) {
  int64_t k = tok_strmap_get(&tr->word_ids, w, n);
  if (k < 0) {
    k = (int64_t)tr->words.n;
    tok_strmap_put(&tr->word_ids, w, n, (uint32_t)k);
    vec_push(&tr->words, ((Word){0, 0, 0}));
  }
  tr->words.a[k].count++;
  tr->nwords++;
}

static void feed_plain(TokTrainer *tr, const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t j = tok_gpt2_next(s, n, i);
    count_word(tr, s + i, j - i);
    i = j;
  }
}

void tok_trainer_feed(TokTrainer *tr, const char *text, size_t n) {
  if (!n) return;
  if (tok_utf8_first_invalid(text, n) < n) {
    tr->clean.n = 0;
    tok_utf8_sanitize(text, n, &tr->clean);
    text = tr->clean.a;
    n = tr->clean.n;
  }
  /* cut out the special tokens: they are not words. next[k] is where
   * special k occurs next (n: nowhere); it is looked for again only once
   * the text before start has passed it. */
  size_t ns = tr->opt.nspecials, start = 0;
  size_t *next = pc_xmalloc((ns ? ns : 1) * sizeof *next);
  for (size_t k = 0; k < ns; k++) next[k] = SIZE_MAX;
  for (;;) {
    size_t best = n, blen = 0;
    for (size_t k = 0; k < ns; k++) {
      size_t sl = strlen(tr->opt.specials[k]);
      if (!sl) continue;
      if (next[k] == SIZE_MAX || next[k] < start) {
        const char *hit = tok_find(text + start, n - start, tr->opt.specials[k], sl);
        next[k] = hit ? (size_t)(hit - text) : n;
      }
      if (next[k] < best) best = next[k], blen = sl;
    }
    feed_plain(tr, text + start, best - start);
    if (best == n) break;
    start = best + blen;
  }
  free(next);
}

/* ---- the heap: most frequent first, then smaller (a, b) ---- */

static bool before(const HeapEnt *x, const HeapEnt *y) {
  if (x->count != y->count) return x->count > y->count;
  if (x->a != y->a) return x->a < y->a;
  return x->b < y->b;
}

static void heap_push(TokTrainer *tr, HeapEnt e) {
  vec_push(&tr->heap, e);
  HeapEnt *h = tr->heap.a;
  size_t i = tr->heap.n - 1;
  while (i > 0 && before(&e, &h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = e;
}

static HeapEnt heap_pop(TokTrainer *tr) {
  HeapEnt *h = tr->heap.a, top = h[0], x = h[--tr->heap.n];
  size_t n = tr->heap.n, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && before(&h[c + 1], &h[c])) c++;
    if (!before(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = x;
  return top;
}

/* ---- pairs ---- */

static uint32_t pair_index(TokTrainer *tr, uint32_t a, uint32_t b) {
  uint64_t key = (uint64_t)a << 32 | b, v;
  if (tok_u64map_get(&tr->pair_ids, key, &v)) return (uint32_t)v;
  Pair p = {0};
  p.a = a;
  p.b = b;
  p.last_word = UINT32_MAX;
  p.pushed_at = UINT32_MAX;
  vec_push(&tr->pairs, p);
  tok_u64map_put(&tr->pair_ids, key, tr->pairs.n - 1);
  return (uint32_t)(tr->pairs.n - 1);
}

static void count_pairs(TokTrainer *tr, uint32_t w, bool add, uint32_t fresh_id, uint32_t step) {
  Word *wd = &tr->words.a[w];
  const uint32_t *s = tr->syms.a + wd->off;
  for (uint32_t i = 0; i + 1 < wd->len; i++) {
    uint32_t k = pair_index(tr, s[i], s[i + 1]);
    Pair *p = &tr->pairs.a[k];
    if (!add) {
      p->count -= wd->count;
      continue;
    }
    p->count += wd->count;
    if (p->last_word != w) {
      p->last_word = w;
      vec_push(&p->words, w);
    }
    if ((s[i] == fresh_id || s[i + 1] == fresh_id) && p->pushed_at != step) {
      p->pushed_at = step;
      vec_push(&tr->fresh, k);
    }
  }
}

/* ---- tokens ---- */

static uint32_t add_token(TokTrainer *tr, const char *s, size_t n) {
  int64_t id = tok_strmap_get(&tr->tok_ids, s, n);
  if (id >= 0) return (uint32_t)id;
  id = (int64_t)tr->tok_off.n;
  vec_push(&tr->tok_off, (uint32_t)tr->tok_text.n);
  vec_reserve(&tr->tok_text, tr->tok_text.n + n);
  memcpy(tr->tok_text.a + tr->tok_text.n, s, n);
  tr->tok_text.n += n;
  tok_strmap_put(&tr->tok_ids, s, n, (uint32_t)id);
  return (uint32_t)id;
}

static const char *tok_str(const TokTrainer *tr, uint32_t id, size_t *n) {
  size_t end = id + 1 < tr->tok_off.n ? tr->tok_off.a[id + 1] : tr->tok_text.n;
  *n = end - tr->tok_off.a[id];
  return tr->tok_text.a + tr->tok_off.a[id];
}

/* ---- JSON output ---- */

static void out_str(TokBytes *o, const char *s, size_t n) {
  vec_push(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      vec_push(o, '\\');
      vec_push(o, (char)c);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      for (int k = 0; k < 6; k++) vec_push(o, esc[k]);
    } else {
      vec_push(o, (char)c);
    }
  }
  vec_push(o, '"');
}

static void out_lit(TokBytes *o, const char *s) {
  size_t n = strlen(s);
  vec_reserve(o, o->n + n);
  memcpy(o->a + o->n, s, n);
  o->n += n;
}

static void write_json(const TokTrainer *tr, const U32s *merges, TokBytes *o) {
  char num[32];
  out_lit(o, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
  for (size_t k = 0; k < tr->opt.nspecials; k++) {
    snprintf(num, sizeof num, "%zu", k);
    out_lit(o, k ? ",\n    {\"id\": " : "\n    {\"id\": ");
    out_lit(o, num);
    out_lit(o, ", \"content\": ");
    out_str(o, tr->opt.specials[k], strlen(tr->opt.specials[k]));
    out_lit(o, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
               "\"special\": true}");
  }
  out_lit(o, "\n  ],\n  \"normalizer\": null,\n"
             "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
             "\"use_regex\": true},\n"
             "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
             "\"use_regex\": true},\n"
             "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
             "\"use_regex\": true},\n"
             "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
             "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
             "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
             "    \"vocab\": {");
  for (uint32_t id = 0; id < tr->tok_off.n; id++) {
    size_t n;
    const char *s = tok_str(tr, id, &n);
    out_lit(o, id ? ",\n      " : "\n      ");
    out_str(o, s, n);
    snprintf(num, sizeof num, ": %u", id);
    out_lit(o, num);
  }
  out_lit(o, "\n    },\n    \"merges\": [");
  for (size_t k = 0; k < merges->n; k += 2) {
    size_t na, nb;
    const char *a = tok_str(tr, merges->a[k], &na), *b = tok_str(tr, merges->a[k + 1], &nb);
    out_lit(o, k ? ",\n      " : "\n      ");
    /* "a b": byte-level tokens never hold a space (it is shown as U+0120) */
    TokBytes m = {0};
    vec_reserve(&m, na + nb + 1);
    memcpy(m.a, a, na);
    m.a[na] = ' ';
    memcpy(m.a + na + 1, b, nb);
    out_str(o, m.a, na + nb + 1);
    vec_free(&m);
  }
  out_lit(o, "\n    ]\n  }\n}\n");
}

/* ---- training ---- */

static void merge_pair(TokTrainer *tr, uint32_t pk, uint32_t x, uint32_t step) {
  uint32_t a = tr->pairs.a[pk].a, b = tr->pairs.a[pk].b;
  /* the list may grow while we walk it (x can pair with itself): copy it */
  tr->tmp.n = 0;
  for (size_t i = 0; i < tr->pairs.a[pk].words.n; i++) vec_push(&tr->tmp, tr->pairs.a[pk].words.a[i]);
  for (size_t i = 0; i < tr->tmp.n; i++) {
    uint32_t w = tr->tmp.a[i];
    if (tr->stamp.a[w] == step) continue;
    Word *wd = &tr->words.a[w];
    uint32_t *s = tr->syms.a + wd->off;
    bool has = false;
    for (uint32_t k = 0; k + 1 < wd->len && !has; k++) has = s[k] == a && s[k + 1] == b;
    if (!has) continue;
    tr->stamp.a[w] = step;
    count_pairs(tr, w, false, x, step);
    uint32_t j = 0;
    for (uint32_t k = 0; k < wd->len; k++) {
      if (k + 1 < wd->len && s[k] == a && s[k + 1] == b) {
        s[j++] = x;
        k++;
      } else {
        s[j++] = s[k];
      }
    }
    wd->len = j;
    count_pairs(tr, w, true, x, step);
  }
  /* the pair's word list is spent: its words no longer hold it */
  vec_free(&tr->pairs.a[pk].words);
  tr->pairs.a[pk].last_word = UINT32_MAX;
}

int tok_trainer_finish(TokTrainer *tr, TokBytes *json, PcError *err) {
  size_t alpha = tr->opt.nspecials + 256;
  if (tr->opt.vocab_size < alpha)
    return pc_errorf(err, "vocab size %u is below the alphabet: %zu special token(s) + 256 bytes = %zu",
                     tr->opt.vocab_size, tr->opt.nspecials, alpha);
  if (!tr->nwords) return pc_errorf(err, "the corpus is empty: there is no text to train on");
  for (size_t k = 0; k < tr->opt.nspecials; k++) {
    const char *sp = tr->opt.specials[k];
    if (!sp[0] || tok_utf8_first_invalid(sp, strlen(sp)) < strlen(sp))
      return pc_errorf(err, "special token %zu is empty or not UTF-8", k);
    if (tok_strmap_get(&tr->tok_ids, sp, strlen(sp)) >= 0) return pc_errorf(err, "special token '%s' is given twice", sp);
    add_token(tr, sp, strlen(sp));
  }
  /* the alphabet: the 256 byte characters in code point order */
  uint32_t byte_id[256];
  for (uint32_t cp = 0; cp < 512; cp++) {
    int b = tok_cp_to_byte((int32_t)cp);
    if (b < 0) continue;
    char c[4];
    int n = tok_utf8_encode(cp, c);
    int64_t existing = tok_strmap_get(&tr->tok_ids, c, (size_t)n);
    if (existing >= 0) return pc_errorf(err, "special token '%.*s' is also a byte character", n, c);
    byte_id[b] = add_token(tr, c, (size_t)n);
  }
  /* words -> symbols */
  for (size_t i = 0; i < tr->word_ids.n; i++) {
    const struct TokStrEntry *e = &tr->word_ids.ent[i];
    Word *w = &tr->words.a[e->val];
    w->off = (uint32_t)tr->syms.n;
    w->len = e->len;
    for (uint32_t k = 0; k < e->len; k++) vec_push(&tr->syms, byte_id[(unsigned char)tr->word_ids.pool[e->off + k]]);
  }
  vec_reserve(&tr->stamp, tr->words.n);
  tr->stamp.n = tr->words.n;
  memset(tr->stamp.a, 0xff, tr->stamp.n * sizeof *tr->stamp.a);
  for (uint32_t w = 0; w < tr->words.n; w++) count_pairs(tr, w, true, UINT32_MAX, UINT32_MAX - 1);
  for (size_t k = 0; k < tr->pairs.n; k++)
    if (tr->pairs.a[k].count) heap_push(tr, (HeapEnt){tr->pairs.a[k].count, tr->pairs.a[k].a, tr->pairs.a[k].b});
  tr->fresh.n = 0;

  U32s merges = {0}; /* pairs of token ids */
  uint64_t min_freq = tr->opt.min_frequency ? tr->opt.min_frequency : 1;
  uint32_t step = 0;
  TokBytes cat = {0};
  while (tr->tok_off.n < tr->opt.vocab_size && tr->heap.n) {
    HeapEnt e = heap_pop(tr);
    uint64_t key = (uint64_t)e.a << 32 | e.b, pk = 0;
    tok_u64map_get(&tr->pair_ids, key, &pk);
    uint64_t cur = tr->pairs.a[pk].count;
    if (cur != e.count) { /* stale: counted again since */
      if (cur) heap_push(tr, (HeapEnt){cur, e.a, e.b});
      continue;
    }
    if (cur < min_freq) break;
    size_t na, nb;
    const char *sa = tok_str(tr, e.a, &na), *sb = tok_str(tr, e.b, &nb);
    cat.n = 0;
    vec_reserve(&cat, na + nb);
    memcpy(cat.a, sa, na);
    memcpy(cat.a + na, sb, nb);
    cat.n = na + nb;
    uint32_t x = add_token(tr, cat.a, cat.n);
    vec_push(&merges, e.a);
    vec_push(&merges, e.b);
    tr->fresh.n = 0;
    merge_pair(tr, (uint32_t)pk, x, step);
    for (size_t i = 0; i < tr->fresh.n; i++) {
      Pair *p = &tr->pairs.a[tr->fresh.a[i]];
      if (p->count) heap_push(tr, (HeapEnt){p->count, p->a, p->b});
    }
    step++;
  }
  vec_free(&cat);
  write_json(tr, &merges, json);
  vec_free(&merges);
  return 0;
}

void tok_trainer_free(TokTrainer *tr) {
  if (!tr) return;
  tok_strmap_free(&tr->word_ids);
  vec_free(&tr->words);
  vec_free(&tr->syms);
  vec_free(&tr->clean);
  tok_u64map_free(&tr->pair_ids);
  for (size_t i = 0; i < tr->pairs.n; i++) vec_free(&tr->pairs.a[i].words);
  vec_free(&tr->pairs);
  vec_free(&tr->heap);
  vec_free(&tr->fresh);
  vec_free(&tr->tmp);
  vec_free(&tr->stamp);
  vec_free(&tr->tok_text);
  vec_free(&tr->tok_off);
  tok_strmap_free(&tr->tok_ids);
  free(tr);
}
