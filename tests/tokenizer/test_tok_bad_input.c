/* Bad input gives a clear one-line error or a defined result, never a
 * crash: malformed and truncated tokenizer.json and tokenizer.model files,
 * unsupported model types, invalid UTF-8 text, a 10 MB line, an empty
 * training corpus. */
#include <time.h>
#include <unistd.h>

#include "runtime/tokenizer/tok_train.h"
#include "tests/check.h"
#include "tests/tokenizer/tok_test_util.h"

static void expect_json_error(const char *json, const char *needle) {
  Tokenizer *t = NULL;
  PcError err = {{0}};
  int rc = tok_load_json_buffer(json, strlen(json), "bad.json", &t, &err);
  CHECKF(rc == -1 && t == NULL, "loaded: %.60s", json);
  CHECK_STR_CONTAINS(err.msg, needle);
  CHECKF(!strchr(err.msg, '\n'), "multi-line error: %s", err.msg);
  tok_free(t);
}

static void bad_json(void) {
  expect_json_error("{", "truncated JSON");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []", "truncated JSON");
  expect_json_error("{\n  \"model\": nope\n}", "bad.json:2:");
  expect_json_error("[1, 2]", "expected a JSON object");
  expect_json_error("{}", "no \"model\"");
  expect_json_error("{\"model\": 5}", "model: expected an object");
  expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "unsupported model type 'WordPiece'");
  expect_json_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "unsupported model type 'Unigram'");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", "model.vocab: expected an object");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "empty vocabulary");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "model.vocab['a']");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", "model.vocab['a']");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []}}", "model.vocab['a']");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 9000000}, \"merges\": []}}", "sparse");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                    "merges[0]: 'c' is not in the vocabulary");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                    "merges[0]: 'their concatenation' is not in the vocabulary");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}", "merges[0]");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", "merges[0]");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 3}}", "model.merges");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}",
                    "unk_token");
  expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], "
                    "\"continuing_subword_prefix\": \"##\"}}",
                    "continuing_subword_prefix");
  expect_json_error("{\"pre_tokenizer\": {\"type\": \"Split\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "unsupported pre_tokenizer 'Split'");
  expect_json_error("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "unsupported normalizer 'Lowercase'");
  expect_json_error("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"BertNormalizer\"}]},"
                    " \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "normalizer.normalizers[1]: unsupported normalizer 'BertNormalizer'");
  expect_json_error("{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "unsupported decoder 'WordPiece'");
  expect_json_error("{\"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}], \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "added_tokens[0].id");
  expect_json_error("{\"added_tokens\": [{\"id\": 1, \"content\": 7}], \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "added_tokens[0].content");
  expect_json_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                    "replacement: expected one character");

  /* a minimal valid file, with every id used, loads and works */
  const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", \"b\"]]}}";
  Tokenizer *t;
  PcError err;
  CHECKF(tok_load_json_buffer(ok, strlen(ok), "ok.json", &t, &err) == 0, "%s", err.msg);
  if (t) {
    TokIds ids = {0};
    CHECK(tok_encode(t, "abxab", 5, 0, &ids, &err) == 0); /* x is unknown and dropped, as tokenizers does */
    CHECK(ids.n == 2 && ids.a[0] == 2 && ids.a[1] == 2);
    TokBytes out = {0};
    CHECK(tok_decode(t, ids.a, ids.n, 0, &out, &err) == 0);
    CHECK(out.n == 5 && !memcmp(out.a, "ab ab", 5)); /* no decoder: pieces joined by spaces */
    CHECK(tok_encode(t, "ab", 2, TOK_ADD_BOS, &ids, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "no beginning-of-sequence token");
    vec_free(&ids);
    vec_free(&out);
    tok_free(t);
  }
}

/* Every prefix of a real file fails cleanly (or, for the whole, loads). */
static void truncations(const char *path, size_t step) {
  size_t n;
  char *data = tt_read_file(path, &n);
  CHECKF(data != NULL, "cannot read %s", path);
  if (!data) return;
  int loaded = 0;
  for (size_t k = 0; k < n; k += step) {
    Tokenizer *t = NULL;
    PcError err;
    int rc = data[0] == '{' ? tok_load_json_buffer(data, k, path, &t, &err) : tok_load_spm_buffer(data, k, path, &t, &err);
    if (rc == 0) loaded++;
    else CHECKF(err.msg[0] && !strchr(err.msg, '\n'), "%s cut at %zu: bad message", path, k);
    tok_free(t);
  }
  /* a protobuf cut between two pieces is still a (smaller) model; JSON never is */
  if (data[0] == '{') CHECKF(loaded == 0, "%s: %d truncated copies loaded", path, loaded);
  free(data);
}

static void bad_spm(void) {
  Tokenizer *t = NULL;
  PcError err;
  const unsigned char garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK(tok_load_spm_buffer(garbage, sizeof garbage, "g.model", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "not a SentencePiece model");
  CHECK(tok_load_spm_buffer("", 0, "e.model", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "no pieces");
  /* one piece "a", trainer_spec {model_type: UNIGRAM} */
  const unsigned char unigram[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x01};
  CHECK(tok_load_spm_buffer(unigram, sizeof unigram, "u.model", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "model type 'unigram' is not supported");
  /* the same as BPE loads; then with a broken precompiled character map it does not */
  const unsigned char bpe[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x02};
  CHECKF(tok_load_spm_buffer(bpe, sizeof bpe, "b.model", &t, &err) == 0, "%s", err.msg);
  tok_free(t);
  const unsigned char nfkc[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x02,
                                0x1a, 0x0a, 0x0a, 0x04, 'n', 'f', 'k', 'c', 0x12, 0x02, 0x01, 0x02};
  CHECK(tok_load_spm_buffer(nfkc, sizeof nfkc, "n.model", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "precompiled character map of 2 bytes is too short");
  const unsigned char dup[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x02};
  CHECK(tok_load_spm_buffer(dup, sizeof dup, "d.model", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "defined twice");
  const unsigned char group[] = {0x0b, 0x0c};
  CHECK(tok_load_spm_buffer(group, sizeof group, "w.model", &t, &err) == -1);

  CHECK(tok_load("/nonexistent/tokenizer.json", &t, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "cannot open");
  CHECK(tok_load("tests/tokenizer", &t, &err) == -1); /* a folder */
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Invalid UTF-8 reads as U+FFFD, or fails with TOK_STRICT_UTF8; a 10 MB
 * line encodes (and decodes back) in reasonable time. */
static void bad_text(const char *path, int kinds) {
  Tokenizer *t;
  PcError err;
  if (tok_load(path, &t, &err)) {
    CHECKF(0, "%s", err.msg);
    return;
  }
  TokIds a = {0}, b = {0};
  const char bad[] = "ab\xff\xfe cd\xe2\x82";
  const char fixed[] = "ab\xef\xbf\xbd\xef\xbf\xbd cd\xef\xbf\xbd";
  CHECK(tok_encode(t, bad, sizeof bad - 1, 0, &a, &err) == 0);
  CHECK(tok_encode(t, fixed, sizeof fixed - 1, 0, &b, &err) == 0);
  CHECKF(tt_same_ids(&a, &b), "%s: invalid UTF-8 is not read as U+FFFD", path);
  a.n = 0;
  CHECK(tok_encode(t, bad, sizeof bad - 1, TOK_STRICT_UTF8, &a, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "invalid UTF-8 at byte 2");

  size_t n = 10u << 20;
  char *line = pc_xmalloc(n);
  uint64_t seed = 42;
  for (size_t k = 0; k < 3; k++) {
    if (!(kinds >> k & 1)) continue;
    /* one letter repeated; random letters (no spaces); random words */
    for (size_t i = 0; i < n; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      char c = (char)('a' + (seed >> 33) % 26);
      line[i] = k == 0 ? 'a' : k == 2 && (seed >> 40) % 7 == 0 ? ' ' : c;
    }
    double s = now();
    a.n = 0;
    CHECK(tok_encode(t, line, n, 0, &a, &err) == 0);
    TokBytes back = {0};
    CHECK(tok_decode(t, a.a, a.n, 0, &back, &err) == 0);
    double took = now() - s;
    CHECKF(back.n == n && !memcmp(back.a, line, n), "%s: a 10 MB line (kind %zu) does not round-trip", path, k);
    printf("%s: 10 MB line (kind %zu): %zu tokens in %.2f s\n", path, k, a.n, took);
    vec_free(&back);
  }
  free(line);
  vec_free(&a);
  vec_free(&b);
  tok_free(t);
}

static void bad_training(void) {
  TokTrainOptions o = {.vocab_size = 300};
  TokTrainer *tr = tok_trainer_new(&o);
  TokBytes json = {0};
  PcError err;
  CHECK(tok_trainer_finish(tr, &json, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "the corpus is empty");
  tok_trainer_free(tr);
  o.vocab_size = 100;
  tr = tok_trainer_new(&o);
  tok_trainer_feed(tr, "some text", 9);
  CHECK(tok_trainer_finish(tr, &json, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "below the alphabet");
  tok_trainer_free(tr);
  vec_free(&json);
}

int main(void) {
  bad_json();
  bad_spm();
  bad_training();
  truncations(FIXTURES "/tiny_bytelevel/tokenizer.json", 97);
  truncations(FIXTURES "/tiny_spm/tokenizer.json", 89);
  truncations(FIXTURES "/tiny_spm/tokenizer.model", 7);
  bad_text(FIXTURES "/tiny_bytelevel/tokenizer.json", 7);
  bad_text(FIXTURES "/tiny_spm/tokenizer.model", 7);
  bad_text(FIXTURES "/tiny_spm/tokenizer.json", 7);
  const char *data = getenv("PONDER_SHARED_DATA");
  if (data && access(data, R_OK) == 0) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/gpt2/tokenizer.json", data);
    truncations(path, 100003);
    bad_text(path, 1); /* the real vocabularies: the repeated letter only, to keep the test short */
    snprintf(path, sizeof path, "%s/tokenizers/llama2/tokenizer.model", data);
    truncations(path, 20011);
    bad_text(path, 1);
  } else {
    printf("note: shared/data is absent: GPT-2 and LLaMA bad-input checks skipped\n");
  }
  return check_exit();
}
