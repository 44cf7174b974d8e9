/* SentencePiece tokenizer.model (a ModelProto in protobuf wire format, read
 * here without a protobuf library) -> Tokenizer.
 *
 * Only what encoding and decoding need is read: the pieces (string, score,
 * type), trainer_spec (model_type, byte_fallback, the unk/bos/eos pieces,
 * unk_surface) and normalizer_spec (its precompiled character map, e.g.
 * nmt_nfkc's; add_dummy_prefix, remove_extra_whitespaces,
 * escape_whitespaces). BPE models only; no denormalizer.
 *
 * sentencepiece's BPE merges the adjacent pair whose concatenation is a
 * piece with the highest score, leftmost first. That is BPE with merge pairs
 * ranked by the score of their result (equal scores, equal ranks), which is
 * how the pairs are built below. */
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

#define MAX_PIECES (1u << 24)

enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER_DEFINED = 4, PT_UNUSED = 5, PT_BYTE = 6 };

/* ---- protobuf wire format ---- */

typedef struct {
  const unsigned char *p, *end;
} Pb;

typedef struct {
  uint32_t num;
  int wire;
  uint64_t v;              /* varint and fixed values */
  const unsigned char *data; /* length-delimited */
  size_t len;
} PbField;

static bool pb_varint(Pb *b, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end) return false;
    unsigned char c = *b->p++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* 1: a field was read; 0: end of the message; -1: malformed. */
static int pb_next(Pb *b, PbField *f) {
  if (b->p == b->end) return 0;
  uint64_t key;
  if (!pb_varint(b, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX) return -1;
  f->num = (uint32_t)(key >> 3);
  f->wire = (int)(key & 7);
  switch (f->wire) {
    case 0: return pb_varint(b, &f->v) ? 1 : -1;
    case 1:
    case 5: {
      size_t n = f->wire == 1 ? 8 : 4;
      if ((size_t)(b->end - b->p) < n) return -1;
      f->v = 0;
      for (size_t i = 0; i < n; i++) f->v |= (uint64_t)b->p[i] << (8 * i);
      b->p += n;
      return 1;
    }
    case 2: {
      uint64_t n;
      if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return -1;
      f->data = b->p;
      f->len = (size_t)n;
      b->p += n;
      return 1;
    }
    default: return -1; /* groups (3, 4) and undefined wire types */
  }
}

/* ---- the model ---- */

typedef struct {
  const char *piece;
  size_t len;
  float score;
  int type;
} Piece;
typedef VEC(Piece) Pieces;

typedef struct {
  Pieces pieces;
  int model_type; /* 1 unigram, 2 BPE, 3 word, 4 char */
  bool byte_fallback, ws_suffix;
  bool dummy_prefix, remove_ws, escape_ws;
  const char *norm_name;
  size_t norm_name_len, charsmap_len, denorm_charsmap_len;
  const unsigned char *charsmap;
  const char *unk_piece, *bos_piece, *eos_piece, *unk_surface;
  size_t unk_len, bos_len, eos_len, surface_len;
} Model;

static int parse_piece(const PbField *f, Piece *out, PcError *err) {
  Pb b = {f->data, f->data + f->len};
  PbField g = {0}; /* pb_next fills the fields its wire type has */
  int r;
  *out = (Piece){NULL, 0, 0.0f, PT_NORMAL};
  while ((r = pb_next(&b, &g)) > 0) {
    if (g.num == 1 && g.wire == 2) {
      out->piece = (const char *)g.data;
      out->len = g.len;
    } else if (g.num == 2 && g.wire == 5) {
      uint32_t u = (uint32_t)g.v;
      memcpy(&out->score, &u, 4);
    } else if (g.num == 3 && g.wire == 0) {
      out->type = (int)g.v;
    }
  }
  if (r < 0) return pc_errorf(err, "malformed protobuf in a piece");
  return 0;
}

static int parse_trainer(const PbField *f, Model *m, PcError *err) {
  Pb b = {f->data, f->data + f->len};
  PbField g = {0}; /* pb_next fills the fields its wire type has */
  int r;
  while ((r = pb_next(&b, &g)) > 0) {
    if (g.wire == 0) {
      if (g.num == 3) m->model_type = (int)g.v;
      if (g.num == 35) m->byte_fallback = g.v != 0;
      if (g.num == 24) m->ws_suffix = g.v != 0;
    } else if (g.wire == 2) {
      const char *s = (const char *)g.data;
      if (g.num == 44) m->unk_surface = s, m->surface_len = g.len;
      if (g.num == 45) m->unk_piece = s, m->unk_len = g.len;
      if (g.num == 46) m->bos_piece = s, m->bos_len = g.len;
      if (g.num == 47) m->eos_piece = s, m->eos_len = g.len;
    }
  }
  if (r < 0) return pc_errorf(err, "malformed protobuf in trainer_spec");
  return 0;
}

static int parse_normalizer(const PbField *f, Model *m, bool denorm, PcError *err) {
  Pb b = {f->data, f->data + f->len};
  PbField g = {0}; /* pb_next fills the fields its wire type has */
  int r;
  while ((r = pb_next(&b, &g)) > 0) {
    if (denorm) {
      if (g.num == 2 && g.wire == 2) m->denorm_charsmap_len = g.len;
      continue;
    }
    if (g.num == 1 && g.wire == 2) m->norm_name = (const char *)g.data, m->norm_name_len = g.len;
    if (g.num == 2 && g.wire == 2) m->charsmap = g.data, m->charsmap_len = g.len;
    if (g.num == 3 && g.wire == 0) m->dummy_prefix = g.v != 0;
    if (g.num == 4 && g.wire == 0) m->remove_ws = g.v != 0;
    if (g.num == 5 && g.wire == 0) m->escape_ws = g.v != 0;
  }
  if (r < 0) return pc_errorf(err, "malformed protobuf in %s", denorm ? "denormalizer_spec" : "normalizer_spec");
  return 0;
}

static int parse_model(const void *data, size_t n, Model *m, PcError *err) {
  /* proto2 defaults */
  m->model_type = 1;
  m->dummy_prefix = m->remove_ws = m->escape_ws = true;
  m->unk_piece = "<unk>", m->unk_len = 5;
  m->bos_piece = "<s>", m->bos_len = 3;
  m->eos_piece = "</s>", m->eos_len = 4;
  m->unk_surface = " \xe2\x81\x87 ", m->surface_len = 5;
  Pb b = {data, (const unsigned char *)data + n};
  PbField f = {0};
  int r;
  while ((r = pb_next(&b, &f)) > 0) {
    if (f.wire != 2) continue;
    if (f.num == 1) {
      if (m->pieces.n >= MAX_PIECES) return pc_errorf(err, "more than %u pieces", MAX_PIECES);
      Piece p;
      if (parse_piece(&f, &p, err)) return -1;
      vec_push(&m->pieces, p);
    } else if (f.num == 2) {
      if (parse_trainer(&f, m, err)) return -1;
    } else if (f.num == 3 || f.num == 5) {
      if (parse_normalizer(&f, m, f.num == 5, err)) return -1;
    }
  }
  if (r < 0) return pc_errorf(err, "not a SentencePiece model (malformed protobuf)");
  if (!m->pieces.n) return pc_errorf(err, "not a SentencePiece model (no pieces)");
  return 0;
}

static int check_model(const Model *m, PcError *err) {
  static const char *const types[] = {"?", "unigram", "BPE", "word", "char"};
  if (m->model_type != 2)
    return pc_errorf(err, "SentencePiece model type '%s' is not supported (only BPE)",
                     m->model_type >= 1 && m->model_type <= 4 ? types[m->model_type] : "unknown");
  if (m->ws_suffix) return pc_errorf(err, "treat_whitespace_as_suffix is not supported");
  if (m->denorm_charsmap_len) return pc_errorf(err, "a denormalizer is not supported");
  for (size_t i = 0; i < m->pieces.n; i++) {
    const Piece *p = &m->pieces.a[i];
    if (!p->len) return pc_errorf(err, "piece %zu is empty", i);
    if (p->type < PT_NORMAL || p->type > PT_BYTE) return pc_errorf(err, "piece %zu has unknown type %d", i, p->type);
  }
  return 0;
}

static int byte_of(const Piece *p) {
  static const char hex[] = "0123456789ABCDEF";
  if (p->len != 6 || memcmp(p->piece, "<0x", 3) || p->piece[5] != '>') return -1;
  const char *h = strchr(hex, p->piece[3]), *l = strchr(hex, p->piece[4]);
  if (!h || !l || !*h || !*l) return -1;
  return (int)((h - hex) * 16 + (l - hex));
}

static bool in_pieces(int type) { return type == PT_NORMAL || type == PT_USER_DEFINED || type == PT_UNUSED; }

static int by_score(const void *a, const void *b, void *ctx) {
  const Piece *p = ctx;
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  if (p[x].score != p[y].score) return p[x].score > p[y].score ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* rank[id] for pieces that merges can make: the dense rank of their score. */
static uint32_t *rank_pieces(const Pieces *ps) {
  uint32_t *order = pc_xmalloc(pc_mul_size(ps->n, sizeof *order)), m = 0;
  for (uint32_t i = 0; i < ps->n; i++)
    if (in_pieces(ps->a[i].type)) order[m++] = i;
  qsort_r(order, m, sizeof *order, by_score, ps->a);
  uint32_t *rank = pc_xcalloc(ps->n, sizeof *rank), r = 0;
  for (uint32_t k = 0; k < m; k++) {
    if (k && ps->a[order[k]].score != ps->a[order[k - 1]].score) r++;
    rank[order[k]] = r;
  }
  free(order);
  return rank;
}

static int build(Tokenizer *t, const Model *m, PcError *err) {
  const Pieces *ps = &m->pieces;
  uint32_t n = (uint32_t)ps->n;
  tok_alloc_ids(t, n);
  TokStrMap all = {0};
  int rc = 0;
  char q[256];
  for (uint32_t id = 0; id < n && !rc; id++) {
    const Piece *p = &ps->a[id];
    if (!tok_strmap_put(&all, p->piece, p->len, id))
      rc = pc_errorf(err, "piece '%s' is defined twice", tok_quote(q, sizeof q, p->piece, p->len));
    tok_set_piece(t, id, p->piece, p->len);
    if (in_pieces(p->type)) tok_strmap_put(&t->vocab, p->piece, p->len, id);
    if (p->type == PT_USER_DEFINED) tok_trie_add(&t->frozen, p->piece, p->len, (int32_t)id);
    if (p->type == PT_CONTROL) t->flags[id] |= TOKF_CONTROL | TOKF_SPECIAL;
    if (p->type == PT_UNKNOWN) {
      t->flags[id] |= TOKF_UNKNOWN | TOKF_SPECIAL;
      if (t->unk < 0 || (p->len == m->unk_len && !memcmp(p->piece, m->unk_piece, p->len))) t->unk = id;
    }
    if (p->type == PT_BYTE) {
      int b = byte_of(p);
      if (b < 0) rc = pc_errorf(err, "byte piece %u is '%s', not <0xXX>", id, tok_quote(q, sizeof q, p->piece, p->len));
      else t->byte_tok[b] = (int32_t)id, t->flags[id] |= TOKF_BYTE;
    }
  }
  if (!rc) {
    int64_t bos = tok_strmap_get(&all, m->bos_piece, m->bos_len), eos = tok_strmap_get(&all, m->eos_piece, m->eos_len);
    if (bos >= 0 && ps->a[bos].type == PT_CONTROL) t->bos = bos;
    if (eos >= 0 && ps->a[eos].type == PT_CONTROL) t->eos = eos;
  }
  tok_strmap_free(&all);
  if (rc) return rc;

  /* merge pairs: every split of a piece into two pieces */
  uint32_t *rank = rank_pieces(ps);
  for (uint32_t id = 0; id < n; id++) {
    const Piece *p = &ps->a[id];
    if (!in_pieces(p->type)) continue;
    for (size_t k = 1; k < p->len; k++) {
      if (((unsigned char)p->piece[k] & 0xc0) == 0x80) continue; /* inside a character */
      int64_t l = tok_strmap_get(&t->vocab, p->piece, k), r = tok_strmap_get(&t->vocab, p->piece + k, p->len - k);
      if (l >= 0 && r >= 0) tok_u64map_put(&t->merges, (uint64_t)l << 32 | (uint64_t)r, (uint64_t)rank[id] << 32 | id);
    }
  }
  free(rank);

  /* decoded bytes of each id (sentencepiece's DecodeSentencePiece) */
  for (uint32_t id = 0; id < n; id++) {
    const Piece *p = &ps->a[id];
    t->dec_off[id] = (uint32_t)t->dec.n;
    if (p->type == PT_BYTE) {
      vec_push(&t->dec, (char)byte_of(p));
    } else if (p->type == PT_UNKNOWN) {
      vec_reserve(&t->dec, t->dec.n + m->surface_len);
      memcpy(t->dec.a + t->dec.n, m->unk_surface, m->surface_len);
      t->dec.n += m->surface_len;
    } else if (p->type != PT_CONTROL) {
      for (size_t i = 0; i < p->len; i++) {
        if (i + 3 <= p->len && !memcmp(p->piece + i, "\xe2\x96\x81", 3)) {
          vec_push(&t->dec, ' ');
          i += 2;
        } else {
          vec_push(&t->dec, p->piece[i]);
        }
      }
    }
    t->dec_len[id] = (uint32_t)(t->dec.n - t->dec_off[id]);
  }

  if (m->charsmap_len && tok_spm_set_charsmap(t, m->charsmap, m->charsmap_len, err)) return -1;
  t->is_spm = true;
  t->byte_fallback = m->byte_fallback;
  t->spm_dummy_prefix = m->dummy_prefix;
  t->spm_remove_ws = m->remove_ws;
  t->spm_escape_ws = m->escape_ws;
  t->spm_strip = m->remove_ws ? 2 : m->dummy_prefix ? 1 : 0;
  tok_finish(t);
  return 0;
}

int tok_load_spm_buffer(const void *data, size_t n, const char *name, Tokenizer **out, PcError *err) {
  *out = NULL;
  Model m = {0};
  Tokenizer *t = NULL;
  int rc = parse_model(data, n, &m, err);
  if (!rc) rc = check_model(&m, err);
  if (!rc) {
    t = tok_new("SentencePiece BPE (tokenizer.model)");
    rc = build(t, &m, err);
  }
  vec_free(&m.pieces);
  if (rc) {
    tok_free(t);
    return pc_error_prefix(err, "%s", name);
  }
  *out = t;
  return 0;
}
