/* Hugging Face tokenizer.json -> Tokenizer. Supported: model BPE (byte
 * fallback, unk, fuse_unk, ignore_merges; merges as "a b" or ["a","b"]);
 * normalizers NFC/NFD/NFKC/NFKD, Prepend, Replace (string patterns),
 * Sequence; pre-tokenizers ByteLevel, Metaspace (or a Sequence of one);
 * decoders ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
 * Sequence; post-processors (for BOS/EOS) TemplateProcessing,
 * RobertaProcessing, BertProcessing, Sequence. Anything else is a one-line
 * "unsupported ..." error rather than a tokenizer that silently differs. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"

#define MAX_ID ((1u << 24) - 1) /* far above any real vocabulary (256k) */
#define SPACE_SYMBOL "\xe2\x96\x81"

static const cJSON *field(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bool is_absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int get_bool(const cJSON *o, const char *key, bool dflt, bool *out, const char *ctx, PcError *err) {
  const cJSON *v = field(o, key);
  if (is_absent(v)) {
    *out = dflt;
    return 0;
  }
  if (!cJSON_IsBool(v)) return pc_errorf(err, "%s.%s: expected true or false", ctx, key);
  *out = cJSON_IsTrue(v);
  return 0;
}

static bool as_id(const cJSON *v, uint32_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= MAX_ID) || d != (double)(uint32_t)d) return false;
  *out = (uint32_t)d;
  return true;
}

static int get_int(const cJSON *o, const char *key, int dflt, int lo, int hi, int *out, const char *ctx, PcError *err) {
  const cJSON *v = field(o, key);
  if (is_absent(v)) {
    *out = dflt;
    return 0;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi || v->valuedouble != (double)(int)v->valuedouble)
    return pc_errorf(err, "%s.%s: expected an integer from %d to %d", ctx, key, lo, hi);
  *out = (int)v->valuedouble;
  return 0;
}

static const char *type_of(const cJSON *o) {
  const cJSON *ty = field(o, "type");
  return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static char *dup_n(const char *s, size_t n) {
  char *p = pc_xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

/* A Replace's "pattern": {"String": "..."} only. */
static int string_pattern(const cJSON *o, const char *ctx, const char **out, PcError *err) {
  const cJSON *p = field(o, "pattern");
  const cJSON *s = cJSON_IsObject(p) ? field(p, "String") : NULL;
  if (cJSON_IsObject(p) && field(p, "Regex")) return pc_errorf(err, "%s: Replace with a regex pattern is not supported", ctx);
  if (!cJSON_IsString(s)) return pc_errorf(err, "%s.pattern: expected {\"String\": ...}", ctx);
  *out = s->valuestring;
  return 0;
}

/* ---- normalizer ---- */

static int load_normalizer(Tokenizer *t, const cJSON *n, const char *ctx, PcError *err) {
  if (is_absent(n)) return 0;
  if (!cJSON_IsObject(n)) return pc_errorf(err, "%s: expected an object or null", ctx);
  const char *ty = type_of(n);
  if (!ty) return pc_errorf(err, "%s: missing \"type\"", ctx);
  static const struct { const char *name; TokNormKind kind; } unicode[] = {
      {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD}};
  for (size_t i = 0; i < sizeof unicode / sizeof *unicode; i++)
    if (!strcmp(ty, unicode[i].name)) {
      vec_push(&t->norms, ((TokNorm){unicode[i].kind, NULL, NULL, 0, 0}));
      return 0;
    }
  if (!strcmp(ty, "Sequence")) {
    const cJSON *list = field(n, "normalizers"), *e;
    if (!cJSON_IsArray(list)) return pc_errorf(err, "%s.normalizers: expected an array", ctx);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char sub[128];
      snprintf(sub, sizeof sub, "%s.normalizers[%d]", ctx, i++);
      if (load_normalizer(t, e, sub, err)) return -1;
    }
    return 0;
  }
  if (!strcmp(ty, "Prepend")) {
    const cJSON *p = field(n, "prepend");
    if (!cJSON_IsString(p)) return pc_errorf(err, "%s.prepend: expected a string", ctx);
    size_t k = strlen(p->valuestring);
    vec_push(&t->norms, ((TokNorm){TOK_NORM_PREPEND, dup_n(p->valuestring, k), NULL, k, 0}));
    return 0;
  }
  if (!strcmp(ty, "Replace")) {
    const char *pat;
    const cJSON *c = field(n, "content");
    if (string_pattern(n, ctx, &pat, err)) return -1;
    if (!cJSON_IsString(c)) return pc_errorf(err, "%s.content: expected a string", ctx);
    size_t a = strlen(pat), b = strlen(c->valuestring);
    vec_push(&t->norms, ((TokNorm){TOK_NORM_REPLACE, dup_n(pat, a), dup_n(c->valuestring, b), a, b}));
    return 0;
  }
  char q[256];
  return pc_errorf(err, "%s: unsupported normalizer '%s'", ctx, tok_quote(q, sizeof q, ty, strlen(ty)));
}

/* ---- pre-tokenizer ---- */

static int metaspace_opts(const cJSON *o, const char *ctx, char repl[4], int *repl_len, int *prepend, PcError *err) {
  const cJSON *r = field(o, "replacement");
  const char *rs = SPACE_SYMBOL;
  if (!is_absent(r)) {
    if (!cJSON_IsString(r)) return pc_errorf(err, "%s.replacement: expected a string", ctx);
    rs = r->valuestring;
  }
  size_t rl = strlen(rs);
  int clen;
  if (rl == 0 || rl > 4 || tok_utf8_decode((const unsigned char *)rs, rl, &clen) < 0 || (size_t)clen != rl)
    return pc_errorf(err, "%s.replacement: expected one character", ctx);
  memcpy(repl, rs, rl);
  *repl_len = (int)rl;
  *prepend = TOK_PREPEND_ALWAYS;
  const cJSON *ps = field(o, "prepend_scheme"), *aps = field(o, "add_prefix_space");
  if (!is_absent(ps)) {
    const char *s = cJSON_IsString(ps) ? ps->valuestring : "";
    if (!strcmp(s, "always")) *prepend = TOK_PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) *prepend = TOK_PREPEND_FIRST;
    else if (!strcmp(s, "never")) *prepend = TOK_PREPEND_NEVER;
    else return pc_errorf(err, "%s.prepend_scheme: expected \"always\", \"first\" or \"never\"", ctx);
  } else if (!is_absent(aps)) {
    if (!cJSON_IsBool(aps)) return pc_errorf(err, "%s.add_prefix_space: expected true or false", ctx);
    *prepend = cJSON_IsTrue(aps) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
  }
  return 0;
}

static int load_pretok(Tokenizer *t, const cJSON *p, const char *ctx, PcError *err) {
  if (is_absent(p)) return 0;
  if (!cJSON_IsObject(p)) return pc_errorf(err, "%s: expected an object or null", ctx);
  const char *ty = type_of(p);
  if (!ty) return pc_errorf(err, "%s: missing \"type\"", ctx);
  if (!strcmp(ty, "Sequence")) {
    const cJSON *list = field(p, "pretokenizers");
    if (!cJSON_IsArray(list)) return pc_errorf(err, "%s.pretokenizers: expected an array", ctx);
    if (cJSON_GetArraySize(list) != 1)
      return pc_errorf(err, "%s: a Sequence of %d pre-tokenizers is not supported (only of one)", ctx,
                       cJSON_GetArraySize(list));
    char sub[128];
    snprintf(sub, sizeof sub, "%s.pretokenizers[0]", ctx);
    return load_pretok(t, cJSON_GetArrayItem(list, 0), sub, err);
  }
  if (!strcmp(ty, "ByteLevel")) {
    t->pre.kind = TOK_PRE_BYTELEVEL;
    if (get_bool(p, "add_prefix_space", true, &t->pre.add_prefix_space, ctx, err) ||
        get_bool(p, "use_regex", true, &t->pre.use_regex, ctx, err))
      return -1;
    return 0;
  }
  if (!strcmp(ty, "Metaspace")) {
    t->pre.kind = TOK_PRE_METASPACE;
    if (metaspace_opts(p, ctx, t->pre.repl, &t->pre.repl_len, &t->pre.prepend, err)) return -1;
    return get_bool(p, "split", true, &t->pre.split, ctx, err);
  }
  char q[256];
  return pc_errorf(err, "%s: unsupported pre_tokenizer '%s'", ctx, tok_quote(q, sizeof q, ty, strlen(ty)));
}

/* ---- decoder ---- */

static int load_decoder(Tokenizer *t, const cJSON *d, const char *ctx, PcError *err) {
  if (!cJSON_IsObject(d)) return pc_errorf(err, "%s: expected an object or null", ctx);
  const char *ty = type_of(d);
  if (!ty) return pc_errorf(err, "%s: missing \"type\"", ctx);
  TokDecStep st = {0};
  if (!strcmp(ty, "Sequence")) {
    const cJSON *list = field(d, "decoders"), *e;
    if (!cJSON_IsArray(list)) return pc_errorf(err, "%s.decoders: expected an array", ctx);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char sub[128];
      snprintf(sub, sizeof sub, "%s.decoders[%d]", ctx, i++);
      if (load_decoder(t, e, sub, err)) return -1;
    }
    return 0;
  } else if (!strcmp(ty, "ByteLevel")) {
    st.kind = TOK_DEC_BYTELEVEL;
  } else if (!strcmp(ty, "ByteFallback")) {
    st.kind = TOK_DEC_BYTEFALLBACK;
  } else if (!strcmp(ty, "Fuse")) {
    st.kind = TOK_DEC_FUSE;
  } else if (!strcmp(ty, "Replace")) {
    const char *pat;
    const cJSON *c = field(d, "content");
    if (string_pattern(d, ctx, &pat, err)) return -1;
    if (!cJSON_IsString(c)) return pc_errorf(err, "%s.content: expected a string", ctx);
    st.kind = TOK_DEC_REPLACE;
    st.na = strlen(pat);
    st.nb = strlen(c->valuestring);
    st.a = dup_n(pat, st.na);
    st.b = dup_n(c->valuestring, st.nb);
  } else if (!strcmp(ty, "Strip")) {
    const cJSON *c = field(d, "content");
    if (!cJSON_IsString(c) || strlen(c->valuestring) != 1)
      return pc_errorf(err, "%s.content: expected one ASCII character", ctx);
    st.kind = TOK_DEC_STRIP;
    st.c = c->valuestring[0];
    if (get_int(d, "start", 0, 0, 255, &st.start, ctx, err) || get_int(d, "stop", 0, 0, 255, &st.stop, ctx, err))
      return -1;
  } else if (!strcmp(ty, "Metaspace")) {
    char repl[4];
    int rl, prepend;
    if (metaspace_opts(d, ctx, repl, &rl, &prepend, err)) return -1;
    st.kind = TOK_DEC_METASPACE;
    st.a = dup_n(repl, (size_t)rl);
    st.na = (size_t)rl;
    st.start = prepend;
  } else {
    char q[256];
    return pc_errorf(err, "%s: unsupported decoder '%s'", ctx, tok_quote(q, sizeof q, ty, strlen(ty)));
  }
  vec_push(&t->dec_steps, st);
  return 0;
}

/* Steps after a Fuse see one string: a Strip there strips the start of the
 * whole text, which the streaming decoder does. */
static int finish_decoder(Tokenizer *t, PcError *err) {
  bool fused = false;
  size_t k = 0;
  for (size_t i = 0; i < t->dec_steps.n; i++) {
    TokDecStep st = t->dec_steps.a[i];
    if (st.kind == TOK_DEC_FUSE) {
      fused = true;
      continue;
    }
    if (fused && st.kind == TOK_DEC_STRIP) {
      if (st.stop) return pc_errorf(err, "decoder: Strip with \"stop\" after Fuse is not supported");
      t->dec_strip_left = (uint8_t)st.start;
      t->dec_strip_char = st.c;
      continue;
    }
    if (st.kind == TOK_DEC_METASPACE && st.start != TOK_PREPEND_NEVER) t->dec_metaspace_first = true;
    t->dec_steps.a[k++] = st;
  }
  t->dec_steps.n = k;
  return 0;
}

/* ---- post-processor: where BOS and EOS come from ---- */

static int64_t special_id(const cJSON *specials, const char *name) {
  const cJSON *s = field(specials, name);
  const cJSON *ids = cJSON_IsObject(s) ? field(s, "ids") : NULL;
  uint32_t id;
  if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) >= 1 && as_id(cJSON_GetArrayItem(ids, 0), &id)) return id;
  return -1;
}

static void load_post(Tokenizer *t, const cJSON *p) {
  const char *ty = cJSON_IsObject(p) ? type_of(p) : NULL;
  if (!ty) return;
  if (!strcmp(ty, "Sequence")) {
    const cJSON *e, *list = field(p, "processors");
    if (cJSON_IsArray(list)) cJSON_ArrayForEach(e, list) load_post(t, e);
  } else if (!strcmp(ty, "TemplateProcessing")) {
    const cJSON *single = field(p, "single"), *specials = field(p, "special_tokens"), *e;
    if (!cJSON_IsArray(single)) return;
    bool seen_a = false;
    cJSON_ArrayForEach(e, single) {
      const cJSON *st = field(e, "SpecialToken"), *seq = field(e, "Sequence");
      if (cJSON_IsObject(seq)) seen_a = true;
      const cJSON *name = cJSON_IsObject(st) ? field(st, "id") : NULL;
      if (!cJSON_IsString(name)) continue;
      int64_t id = special_id(specials, name->valuestring);
      if (id < 0 || id >= t->vocab_size) continue;
      if (!seen_a && t->bos < 0) t->bos = id;
      if (seen_a && t->eos < 0) t->eos = id;
    }
  } else if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
    const cJSON *cls = field(p, "cls"), *sep = field(p, "sep");
    uint32_t id;
    if (cJSON_IsArray(cls) && as_id(cJSON_GetArrayItem(cls, 1), &id) && id < t->vocab_size && t->bos < 0) t->bos = id;
    if (cJSON_IsArray(sep) && as_id(cJSON_GetArrayItem(sep, 1), &id) && id < t->vocab_size && t->eos < 0) t->eos = id;
  }
}

static int64_t find_named(const Tokenizer *t, const char *const *names) {
  for (; *names; names++) {
    int64_t id = tok_piece_to_id(t, *names, strlen(*names));
    if (id >= 0) return id;
  }
  return -1;
}

static void guess_bos_eos(Tokenizer *t) {
  static const char *const eos[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", NULL};
  static const char *const bos[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>", NULL};
  if (t->eos < 0) t->eos = find_named(t, eos);
  if (t->bos < 0) t->bos = find_named(t, bos);
}

/* ---- model and added tokens ---- */

typedef struct {
  uint32_t id;
  const char *content;
  bool special, normalized, lstrip, rstrip, single_word;
} AddedSpec;
typedef VEC(AddedSpec) AddedSpecs;

static int load_added_specs(const cJSON *list, AddedSpecs *out, uint32_t *max_id, PcError *err) {
  if (is_absent(list)) return 0;
  if (!cJSON_IsArray(list)) return pc_errorf(err, "added_tokens: expected an array");
  const cJSON *e;
  int i = 0;
  cJSON_ArrayForEach(e, list) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "added_tokens[%d]", i++);
    AddedSpec a = {0};
    const cJSON *c = field(e, "content");
    if (!cJSON_IsObject(e)) return pc_errorf(err, "%s: expected an object", ctx);
    if (!as_id(field(e, "id"), &a.id)) return pc_errorf(err, "%s.id: expected an integer from 0 to %u", ctx, MAX_ID);
    if (!cJSON_IsString(c)) return pc_errorf(err, "%s.content: expected a string", ctx);
    a.content = c->valuestring;
    if (get_bool(e, "special", false, &a.special, ctx, err) ||
        get_bool(e, "normalized", !a.special, &a.normalized, ctx, err) ||
        get_bool(e, "lstrip", false, &a.lstrip, ctx, err) || get_bool(e, "rstrip", false, &a.rstrip, ctx, err) ||
        get_bool(e, "single_word", false, &a.single_word, ctx, err))
      return -1;
    if (a.id > *max_id) *max_id = a.id;
    vec_push(out, a);
  }
  return 0;
}

static int check_affix(const cJSON *m, const char *key, PcError *err) {
  const cJSON *v = field(m, key);
  if (is_absent(v) || (cJSON_IsString(v) && !v->valuestring[0])) return 0;
  return pc_errorf(err, "model.%s: a non-empty %s is not supported", key, key);
}

static int load_merges(Tokenizer *t, const cJSON *list, PcError *err) {
  if (!cJSON_IsArray(list)) return pc_errorf(err, "model.merges: expected an array");
  TokBytes buf = {0};
  uint32_t rank = 0;
  const cJSON *e;
  int rc = 0;
  cJSON_ArrayForEach(e, list) {
    const char *a, *b;
    size_t na, nb;
    if (cJSON_IsString(e)) {
      a = e->valuestring;
      const char *sp = strchr(a, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        rc = pc_errorf(err, "model.merges[%u]: expected two tokens separated by one space", rank);
        break;
      }
      na = (size_t)(sp - a);
      b = sp + 1;
      nb = strlen(b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
      a = cJSON_GetArrayItem(e, 0)->valuestring;
      b = cJSON_GetArrayItem(e, 1)->valuestring;
      na = strlen(a);
      nb = strlen(b);
    } else {
      rc = pc_errorf(err, "model.merges[%u]: expected \"a b\" or [\"a\", \"b\"]", rank);
      break;
    }
    int64_t ia = tok_strmap_get(&t->vocab, a, na), ib = tok_strmap_get(&t->vocab, b, nb);
    buf.n = 0;
    vec_reserve(&buf, na + nb);
    memcpy(buf.a, a, na);
    memcpy(buf.a + na, b, nb);
    int64_t im = tok_strmap_get(&t->vocab, buf.a, na + nb);
    if (ia < 0 || ib < 0 || im < 0) {
      char q[256];
      const char *miss = ia < 0 ? tok_quote(q, sizeof q, a, na) : ib < 0 ? tok_quote(q, sizeof q, b, nb) : "their concatenation";
      rc = pc_errorf(err, "model.merges[%u]: '%s' is not in the vocabulary", rank, miss);
      break;
    }
    tok_u64map_put(&t->merges, (uint64_t)ia << 32 | (uint64_t)ib, (uint64_t)rank << 32 | (uint64_t)im);
    rank++;
  }
  vec_free(&buf);
  return rc;
}

static int load_model(Tokenizer *t, const cJSON *root, const cJSON *m, PcError *err) {
  if (!cJSON_IsObject(m)) return pc_errorf(err, "model: expected an object");
  const char *ty = type_of(m);
  char q[256];
  if (ty && strcmp(ty, "BPE"))
    return pc_errorf(err, "model: unsupported model type '%s' (only BPE is supported)", tok_quote(q, sizeof q, ty, strlen(ty)));
  if (!ty && !field(m, "merges")) return pc_errorf(err, "model: missing \"type\" (only BPE is supported)");
  const cJSON *vocab = field(m, "vocab"), *e;
  if (!cJSON_IsObject(vocab)) return pc_errorf(err, "model.vocab: expected an object of token: id");

  uint32_t max_id = 0, count = 0;
  cJSON_ArrayForEach(e, vocab) {
    uint32_t id;
    char q[256];
    if (!as_id(e, &id))
      return pc_errorf(err, "model.vocab['%s']: expected an integer from 0 to %u",
                       tok_quote(q, sizeof q, e->string, strlen(e->string)), MAX_ID);
    if (id > max_id) max_id = id;
    count++;
  }
  AddedSpecs added = {0};
  if (load_added_specs(field(root, "added_tokens"), &added, &max_id, err)) {
    vec_free(&added);
    return -1;
  }
  count += (uint32_t)added.n;
  if (count == 0) {
    vec_free(&added);
    return pc_errorf(err, "model.vocab: empty vocabulary");
  }
  if (max_id >= 2 * count + 1024) {
    vec_free(&added);
    return pc_errorf(err, "token ids are sparse: the largest is %u but there are only %u tokens", max_id, count);
  }
  tok_alloc_ids(t, max_id + 1);
  cJSON_ArrayForEach(e, vocab) {
    uint32_t id = 0;
    as_id(e, &id);
    size_t n = strlen(e->string);
    tok_strmap_put(&t->vocab, e->string, n, id);
    tok_set_piece(t, id, e->string, n);
  }
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_tok[b] = (int32_t)tok_strmap_get(&t->vocab, name, 6);
    if (t->byte_tok[b] >= 0) t->flags[t->byte_tok[b]] |= TOKF_BYTE;
  }

  int rc = 0;
  const cJSON *unk = field(m, "unk_token");
  if (!is_absent(unk)) {
    if (!cJSON_IsString(unk)) rc = pc_errorf(err, "model.unk_token: expected a string or null");
    else if ((t->unk = tok_strmap_get(&t->vocab, unk->valuestring, strlen(unk->valuestring))) < 0) {
      char q[256];
      rc = pc_errorf(err, "model.unk_token: '%s' is not in the vocabulary",
                     tok_quote(q, sizeof q, unk->valuestring, strlen(unk->valuestring)));
    }
    else t->flags[t->unk] |= TOKF_UNKNOWN;
  }
  if (!rc) rc = get_bool(m, "byte_fallback", false, &t->byte_fallback, "model", err);
  if (!rc) rc = get_bool(m, "fuse_unk", false, &t->fuse_unk, "model", err);
  if (!rc) rc = get_bool(m, "ignore_merges", false, &t->ignore_merges, "model", err);
  if (!rc) rc = check_affix(m, "continuing_subword_prefix", err);
  if (!rc) rc = check_affix(m, "end_of_word_suffix", err);
  if (!rc) rc = load_merges(t, field(m, "merges"), err);

  /* Added tokens: their content is the piece of their id; normalized ones
   * are matched after the normalizer, and decoded, in their normalized
   * form (tokenizers' id_to_token gives that form too). */
  TokBytes norm = {0};
  for (size_t i = 0; !rc && i < added.n; i++) {
    AddedSpec *a = &added.a[i];
    size_t n = strlen(a->content);
    norm.n = 0;
    if (a->normalized && n) tok_normalize_into(t, a->content, n, &norm);
    if (a->normalized && n) tok_set_piece(t, a->id, norm.a, norm.n);
    else tok_set_piece(t, a->id, a->content, n);
    if (a->special) t->flags[a->id] |= TOKF_SPECIAL;
    if (!n) continue;
    vec_push(&t->added, ((TokAdded){a->id, a->lstrip, a->rstrip, a->single_word}));
    int32_t k = (int32_t)t->added.n - 1;
    if (a->normalized) tok_trie_add(&t->norm_added, norm.a, norm.n, k);
    else tok_trie_add(&t->raw_added, a->content, n, k);
  }
  vec_free(&norm);
  vec_free(&added);
  return rc;
}

/* ---- the whole file ---- */

static int load_root(Tokenizer *t, const cJSON *root, PcError *err) {
  if (!cJSON_IsObject(root)) return pc_errorf(err, "expected a JSON object at the top level");
  if (!field(root, "model")) return pc_errorf(err, "no \"model\": not a Hugging Face tokenizer.json");
  /* the normalizer first: normalized added tokens are stored normalized */
  if (load_normalizer(t, field(root, "normalizer"), "normalizer", err)) return -1;
  if (load_pretok(t, field(root, "pre_tokenizer"), "pre_tokenizer", err)) return -1;
  if (load_model(t, root, field(root, "model"), err)) return -1;
  const cJSON *dec = field(root, "decoder");
  if (is_absent(dec)) t->dec_join_space = true;
  else if (load_decoder(t, dec, "decoder", err) || finish_decoder(t, err)) return -1;
  load_post(t, field(root, "post_processor"));
  guess_bos_eos(t);
  t->byte_level = t->pre.kind == TOK_PRE_BYTELEVEL;
  t->kind_name = t->byte_level ? "byte-level BPE (tokenizer.json)" : "BPE (tokenizer.json)";
  tok_finish(t);
  for (uint32_t id = 0; id < t->vocab_size; id++) {
    if (!(t->flags[id] & TOKF_USED)) continue;
    PC_ASSERT(t->dec.n < UINT32_MAX);
    t->dec_off[id] = (uint32_t)t->dec.n;
    tok_decode_chain(t, t->pieces.a + t->piece_off[id], t->piece_len[id], false, &t->dec);
    t->dec_len[id] = (uint32_t)(t->dec.n - t->dec_off[id]);
  }
  return 0;
}

static void where(const char *data, size_t n, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off && i < n; i++) {
    if (data[i] == '\n') {
      ++*line;
      *col = 1;
    } else {
      ++*col;
    }
  }
}

int tok_load_json_buffer(const char *data, size_t n, const char *name, Tokenizer **out, PcError *err) {
  *out = NULL;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(data, n, &end, 0);
  if (!root) {
    size_t off = end && end >= data ? (size_t)(end - data) : 0;
    size_t rest = off + 1; /* cJSON points at the last byte when it ran out of text */
    while (rest < n && (data[rest] == ' ' || data[rest] == '\n' || data[rest] == '\r' || data[rest] == '\t')) rest++;
    if (rest >= n) return pc_errorf(err, "%s: truncated JSON (the text ends inside a value)", name);
    int line, col;
    where(data, n, off, &line, &col);
    return pc_errorf(err, "%s:%d:%d: invalid JSON", name, line, col);
  }
  Tokenizer *t = tok_new("BPE (tokenizer.json)");
  int rc = load_root(t, root, err);
  cJSON_Delete(root);
  if (rc) {
    tok_free(t);
    return pc_error_prefix(err, "%s", name);
  }
  *out = t;
  return 0;
}
