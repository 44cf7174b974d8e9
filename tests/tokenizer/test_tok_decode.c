/* Decoding: any id sequence decodes without crashing, the streaming decoder
 * gives the same bytes as tok_decode, incomplete UTF-8 is held back until it
 * completes, ill-formed UTF-8 becomes U+FFFD by the documented rule, and
 * encode -> decode gives back valid UTF-8 input. */
#include "tests/check.h"
#include "runtime/tokenizer/tok_utf8.h"
#include "tests/tokenizer/tok_test_util.h"

typedef struct {
  const char *path;
  bool shared;
  bool round_trip; /* decode(encode(x)) == x for valid UTF-8 x (in NFC) */
} Tok;

static const Tok toks[] = {
    {"tiny_bytelevel/tokenizer.json", false, true},
    {"tiny_spm/tokenizer.model", false, true},
    {"tiny_spm/tokenizer.json", false, false}, /* tokenizers' legacy Prepend: "▁" after a special token */
    {"tiny_spm/tokenizer-metaspace.json", false, false}, /* tokenizers drops a leading space here */
    {"tiny_spm_ws/tokenizer.model", false, false}, /* removes extra whitespace, has unknown pieces */
    {"gpt2/tokenizer.json", true, true},
    {"gpt-neox-20b/tokenizer.json", true, true},
    {"llama2/tokenizer.model", true, true},
};

static const char *const texts[] = {
    "",
    "Hello world",
    " leading space and  two  spaces, trailing ",
    "tabs\tand\nnewlines\n\n\r\n",
    "digits 1234567890 and 3.14",
    "emoji 🎉👍🏽👨‍👩‍👧 and CJK 日本語 한국어",
    "Ünïcödé in NFC: café naïve",
    "a<|endoftext|>b and <s> and </s>",
    "long aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void random_sequences(const Tokenizer *t, const char *name) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  uint32_t v = tok_vocab_size(t);
  int bad = 0;
  for (int k = 0; k < 300; k++) {
    TokIds ids = {0};
    size_t n = rng_next(&seed) % 40;
    for (size_t i = 0; i < n; i++) {
      uint64_t r = rng_next(&seed);
      /* favour low ids (bytes, specials) and the top of the vocabulary */
      uint32_t id = r % 4 == 0 ? (uint32_t)(r >> 8) % (v < 300 ? v : 300) : r % 4 == 1 ? v - 1 - (uint32_t)(r >> 8) % 30 : (uint32_t)(r >> 8) % v;
      vec_push(&ids, id);
    }
    for (unsigned flags = 0; flags < 4; flags++) {
      TokBytes a = {0}, b = {0};
      PcError err;
      CHECK(tok_decode(t, ids.a, ids.n, flags, &a, &err) == 0);
      CHECK(tt_stream_decode(t, ids.a, ids.n, flags, &b) == 0);
      if (!tt_same_bytes(&a, &b)) bad++;
      if (!(flags & TOK_DECODE_RAW)) CHECKF(tok_utf8_first_invalid(a.a, a.n) == a.n, "%s: decode is not valid UTF-8", name);
      vec_free(&a);
      vec_free(&b);
    }
    vec_free(&ids);
  }
  CHECKF(bad == 0, "%s: %d random sequences decode differently when streamed", name, bad);
}

static void round_trips(Tokenizer *t, const Tok *k) {
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    TokIds ids = {0};
    TokBytes back = {0}, streamed = {0};
    PcError err;
    size_t n = strlen(texts[i]);
    CHECK(tok_encode(t, texts[i], n, 0, &ids, &err) == 0);
    CHECK(tok_decode(t, ids.a, ids.n, 0, &back, &err) == 0);
    CHECK(tt_stream_decode(t, ids.a, ids.n, 0, &streamed) == 0);
    CHECKF(tt_same_bytes(&back, &streamed), "%s: streamed decode of text %zu differs", k->path, i);
    if (k->round_trip)
      CHECKF(back.n == n && (!n || !memcmp(back.a, texts[i], n)), "%s: round trip of \"%s\" gave \"%.*s\"", k->path, texts[i],
             (int)back.n, back.a);
    vec_free(&ids);
    vec_free(&back);
    vec_free(&streamed);
  }
}

static void out_of_range(const Tokenizer *t, const char *name) {
  uint32_t ids[] = {0, tok_vocab_size(t)};
  TokBytes out = {0};
  PcError err;
  CHECKF(tok_decode(t, ids, 2, 0, &out, &err) == -1, "%s: an id past the vocabulary decodes", name);
  CHECK_STR_CONTAINS(err.msg, "out of range");
  CHECK(out.n == 0);
  TokStream s;
  tok_stream_init(&s, t, 0);
  CHECK(tok_stream_push(&s, 0xffffffffu, &out, &err) == -1);
  vec_free(&out);
}

/* GPT-2 writes "🎉" (F0 9F 8E 89) as more than one token: the stream holds the
 * first part back; a cut character becomes one U+FFFD; raw mode gives the
 * bytes. */
static void held_back(Tokenizer *t) {
  TokIds ids = {0};
  TokBytes out = {0};
  PcError err;
  CHECK(tok_encode(t, "\xf0\x9f\x8e\x89", 4, 0, &ids, &err) == 0);
  int64_t a = tok_piece_to_id(t, "a", 1);
  CHECK(ids.n >= 2 && a >= 0);
  if (ids.n < 2 || a < 0) return;
  TokStream s;
  tok_stream_init(&s, t, 0);
  for (size_t i = 0; i + 1 < ids.n; i++) CHECK(tok_stream_push(&s, ids.a[i], &out, &err) == 0);
  CHECKF(out.n == 0, "part of a character came out early");
  CHECK(tok_stream_push(&s, ids.a[ids.n - 1], &out, &err) == 0);
  CHECK(out.n == 4 && !memcmp(out.a, "\xf0\x9f\x8e\x89", 4));
  tok_stream_finish(&s, &out);
  CHECK(out.n == 4);

  TokBytes raw = {0};
  ids.a[ids.n - 1] = (uint32_t)a; /* the last part replaced by "a" */
  out.n = 0;
  CHECK(tok_decode(t, ids.a, ids.n, 0, &out, &err) == 0);
  CHECKF(out.n == 4 && !memcmp(out.a, "\xef\xbf\xbd" "a", 4), "a cut character is one U+FFFD");
  out.n = 0;
  CHECK(tok_decode(t, ids.a, ids.n - 1, 0, &out, &err) == 0);
  CHECKF(out.n == 3 && !memcmp(out.a, "\xef\xbf\xbd", 3), "a character cut at the end is one U+FFFD");
  CHECK(tok_decode(t, ids.a, ids.n, TOK_DECODE_RAW, &raw, &err) == 0);
  CHECK(raw.n >= 2 && (unsigned char)raw.a[0] == 0xf0 && raw.a[raw.n - 1] == 'a');
  vec_free(&raw);
  vec_free(&out);
  vec_free(&ids);
}

/* sentencepiece replaces each byte of bad byte pieces: <0xE2><0x82> is two U+FFFD. */
static void spm_bytes(const Tokenizer *t) {
  int64_t e2 = tok_piece_to_id(t, "<0xE2>", 6), b82 = tok_piece_to_id(t, "<0x82>", 6);
  CHECK(e2 >= 0 && b82 >= 0);
  if (e2 < 0 || b82 < 0) return;
  uint32_t ids[] = {(uint32_t)e2, (uint32_t)b82};
  TokBytes out = {0};
  PcError err;
  CHECK(tok_decode(t, ids, 2, 0, &out, &err) == 0);
  CHECKF(out.n == 6 && !memcmp(out.a, "\xef\xbf\xbd\xef\xbf\xbd", 6), "each bad byte piece is one U+FFFD");
  vec_free(&out);
}

int main(void) {
  const char *data = getenv("PONDER_SHARED_DATA");
  FILE *f = data ? fopen(data, "r") : NULL;
  if (f) fclose(f);
  else data = NULL;
  for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
    char path[1024];
    if (toks[i].shared && !data) {
      printf("%s: skipped (shared/data is absent)\n", toks[i].path);
      continue;
    }
    if (toks[i].shared) snprintf(path, sizeof path, "%s/tokenizers/%s", data, toks[i].path);
    else snprintf(path, sizeof path, FIXTURES "/%s", toks[i].path);
    Tokenizer *t;
    PcError err;
    if (tok_load(path, &t, &err)) {
      CHECKF(0, "%s", err.msg);
      continue;
    }
    random_sequences(t, toks[i].path);
    round_trips(t, &toks[i]);
    out_of_range(t, toks[i].path);
    if (!strcmp(toks[i].path, "gpt2/tokenizer.json")) held_back(t);
    if (!strcmp(toks[i].path, "tiny_spm/tokenizer.model")) spm_bytes(t);
    printf("%s: ok\n", toks[i].path);
    tok_free(t);
  }
  return check_exit();
}
