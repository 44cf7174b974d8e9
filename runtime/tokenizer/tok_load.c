/* tok_load: tells the file formats apart; the Tokenizer's life cycle and
 * accessors. The formats themselves are in tok_json.c and tok_spm.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

Tokenizer *tok_new(const char *kind_name) {
  Tokenizer *t = pc_xcalloc(1, sizeof *t);
  t->kind_name = kind_name;
  t->unk = t->bos = t->eos = -1;
  for (int b = 0; b < 256; b++) t->byte_sym[b] = t->byte_tok[b] = -1;
  return t;
}

void tok_alloc_ids(Tokenizer *t, uint32_t n) {
  t->vocab_size = n;
  t->piece_off = pc_xcalloc(n, sizeof *t->piece_off);
  t->piece_len = pc_xcalloc(n, sizeof *t->piece_len);
  t->dec_off = pc_xcalloc(n, sizeof *t->dec_off);
  t->dec_len = pc_xcalloc(n, sizeof *t->dec_len);
  t->flags = pc_xcalloc(n, sizeof *t->flags);
  vec_reserve(&t->pieces, 1); /* never NULL, even when every piece is empty */
  vec_reserve(&t->dec, 1);
}

void tok_set_piece(Tokenizer *t, uint32_t id, const char *s, size_t n) {
  PC_ASSERT(id < t->vocab_size && t->pieces.n + n < UINT32_MAX);
  t->piece_off[id] = (uint32_t)t->pieces.n;
  t->piece_len[id] = (uint32_t)n;
  vec_reserve(&t->pieces, t->pieces.n + n);
  if (n) memcpy(t->pieces.a + t->pieces.n, s, n);
  t->pieces.n += n;
  t->flags[id] |= TOKF_USED;
}

/* See split_ws in tok_impl.h. */
static bool pieces_allow_ws_split(const Tokenizer *t) {
  if (tok_strmap_get(&t->vocab, "\xe2\x96\x81", 3) < 0) return false;
  for (size_t e = 0; e < t->vocab.n; e++) {
    const char *p = t->vocab.pool + t->vocab.ent[e].off;
    size_t n = t->vocab.ent[e].len;
    for (size_t i = 1; i + 3 <= n; i++) {
      if (memcmp(p + i, "\xe2\x96\x81", 3)) continue;
      if (i < 3 || memcmp(p + i - 3, "\xe2\x96\x81", 3)) return false;
    }
  }
  return true;
}

void tok_finish(Tokenizer *t) {
  bool whole = t->is_spm || t->pre.kind == TOK_PRE_NONE || (t->pre.kind == TOK_PRE_METASPACE && !t->pre.split);
  t->split_ws = !t->byte_level && whole && pieces_allow_ws_split(t);
  if (t->byte_level) {
    bool all = true;
    for (int b = 0; b < 256; b++) {
      char c[4];
      int k = tok_utf8_encode(tok_byte_to_cp((unsigned char)b), c);
      int64_t id = tok_strmap_get(&t->vocab, c, (size_t)k);
      t->byte_sym[b] = (int32_t)id;
      all = all && id >= 0;
    }
    t->byte_level_fast = all;
  }
}

static int read_file(const char *path, char **data, size_t *n, PcError *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return pc_errorf(err, "%s: cannot open: %s", path, strerror(errno));
  VEC(char) buf = {0};
  for (;;) {
    vec_reserve(&buf, buf.n + 65536);
    size_t got = fread(buf.a + buf.n, 1, buf.cap - buf.n, f);
    buf.n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf.a);
    return pc_errorf(err, "%s: read error", path);
  }
  *data = buf.a;
  *n = buf.n;
  return 0;
}

int tok_load(const char *path, Tokenizer **out, PcError *err) {
  *out = NULL;
  char *data = NULL;
  size_t n = 0;
  if (read_file(path, &data, &n, err)) return -1;
  size_t i = 0;
  if (n >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) i = 3; /* a UTF-8 byte order mark */
  while (i < n && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
  int rc;
  if (n == 0)
    rc = pc_errorf(err, "%s: empty file (expected a tokenizer.json or a SentencePiece tokenizer.model)", path);
  else if (i < n && data[i] == '{')
    rc = tok_load_json_buffer(data, n, path, out, err);
  else
    rc = tok_load_spm_buffer(data, n, path, out, err);
  free(data);
  return rc;
}

void tok_free(Tokenizer *t) {
  if (!t) return;
  free(t->piece_off);
  free(t->piece_len);
  free(t->dec_off);
  free(t->dec_len);
  free(t->flags);
  vec_free(&t->pieces);
  vec_free(&t->dec);
  tok_strmap_free(&t->vocab);
  tok_u64map_free(&t->merges);
  for (size_t i = 0; i < t->norms.n; i++) {
    free(t->norms.a[i].a);
    free(t->norms.a[i].b);
  }
  vec_free(&t->norms);
  vec_free(&t->added);
  tok_trie_free(&t->raw_added);
  tok_trie_free(&t->norm_added);
  tok_trie_free(&t->frozen);
  free(t->spm_trie);
  free(t->spm_rules);
  for (size_t i = 0; i < t->dec_steps.n; i++) {
    free(t->dec_steps.a[i].a);
    free(t->dec_steps.a[i].b);
  }
  vec_free(&t->dec_steps);
  tok_cache_free(&t->cache);
  vec_free(&t->clean);
  vec_free(&t->norm);
  vec_free(&t->norm2);
  vec_free(&t->prebuf);
  vec_free(&t->word);
  vec_free(&t->syms);
  vec_free(&t->heap);
  vec_free(&t->prev);
  vec_free(&t->next);
  free(t);
}

uint32_t tok_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int64_t tok_bos_id(const Tokenizer *t) { return t->bos; }
int64_t tok_eos_id(const Tokenizer *t) { return t->eos; }
int64_t tok_unk_id(const Tokenizer *t) { return t->unk; }
const char *tok_kind_name(const Tokenizer *t) { return t->kind_name; }

bool tok_is_special(const Tokenizer *t, uint32_t id) {
  return id < t->vocab_size && (t->flags[id] & TOKF_SPECIAL);
}

const char *tok_id_to_piece(const Tokenizer *t, uint32_t id, size_t *len) {
  if (id >= t->vocab_size || !(t->flags[id] & TOKF_USED)) return NULL;
  if (len) *len = t->piece_len[id];
  return t->pieces.a + t->piece_off[id];
}

int64_t tok_piece_to_id(const Tokenizer *t, const char *piece, size_t len) {
  int64_t id = tok_strmap_get(&t->vocab, piece, len);
  if (id >= 0) return id;
  for (uint32_t i = 0; i < t->vocab_size; i++) /* added, control and byte pieces */
    if ((t->flags[i] & TOKF_USED) && t->piece_len[i] == len && !memcmp(t->pieces.a + t->piece_off[i], piece, len))
      return i;
  return -1;
}
