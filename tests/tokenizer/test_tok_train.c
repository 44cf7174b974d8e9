/* The BPE trainer: a small synthetic corpus trains into a tokenizer.json
 * that loads and round-trips; with shared/data, training on the first
 * 200000 bytes of Tiny Shakespeare gives exactly the committed
 * tiny_bytelevel/tokenizer.json (the trainer is deterministic), and encoding
 * with it gives the ids the PyPI tokenizers package gave with the same file
 * (fixtures/train/expected.jsonl, from scripts/tokenizer-make-fixtures). */
#include <unistd.h>

#include "runtime/tokenizer/tok_train.h"
#include "tests/check.h"
#include "tests/tokenizer/tok_test_util.h"

static void synthetic(void) {
  static const char *const words[] = {"the", "cat", "sat", "on", "mat", "and", "dog", "ran", "to", "a", "big", "red", "hat"};
  TokBytes corpus = {0};
  uint64_t seed = 5;
  for (int i = 0; i < 20000; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    const char *w = words[(seed >> 33) % 13];
    if (i % 3 == 0) w = "the";
    if (i) vec_push(&corpus, (seed >> 20) % 11 == 0 ? '\n' : ' ');
    for (const char *p = w; *p; p++) vec_push(&corpus, *p);
  }
  static const char *const specials[] = {"<|endoftext|>", "<|pad|>"};
  TokTrainOptions o = {.vocab_size = 300, .min_frequency = 2, .specials = specials, .nspecials = 2};
  TokTrainer *tr = tok_trainer_new(&o);
  tok_trainer_feed(tr, corpus.a, corpus.n);
  tok_trainer_feed(tr, "<|endoftext|>", 13); /* special tokens are not words */
  TokBytes json = {0};
  PcError err;
  CHECKF(tok_trainer_finish(tr, &json, &err) == 0, "%s", err.msg);
  CHECK(tok_trainer_words(tr) > 20000);
  tok_trainer_free(tr);
  Tokenizer *t;
  CHECKF(tok_load_json_buffer(json.a, json.n, "trained.json", &t, &err) == 0, "%s", err.msg);
  if (!t) return;
  CHECK(tok_vocab_size(t) <= 300 && tok_vocab_size(t) > 258);
  size_t n;
  const char *p = tok_id_to_piece(t, 0, &n);
  CHECK(p && n == 13 && !memcmp(p, "<|endoftext|>", 13) && tok_is_special(t, 0) && tok_is_special(t, 1));
  CHECK(tok_eos_id(t) == 0);
  CHECKF(tok_piece_to_id(t, "\xc4\xa0the", 5) >= 0, "' the' (Ġthe) was not learned");
  const char *text = "the cat sat on the mat<|endoftext|>the dog ran 🎉\n";
  TokIds ids = {0};
  TokBytes back = {0};
  CHECK(tok_encode(t, text, strlen(text), 0, &ids, &err) == 0);
  CHECK(tok_decode(t, ids.a, ids.n, 0, &back, &err) == 0);
  CHECK(back.n == strlen(text) && !memcmp(back.a, text, back.n));
  CHECKF(ids.n < 25, "%zu tokens: merges were not used", ids.n);
  vec_free(&ids);
  vec_free(&back);
  vec_free(&json);
  vec_free(&corpus);
  tok_free(t);
}

static void against_reference(const char *data) {
  char path[1024];
  snprintf(path, sizeof path, "%s/text/tinyshakespeare/input.txt", data);
  size_t n;
  char *text = tt_read_file(path, &n);
  char *opts = tt_read_file(FIXTURES "/train/options.json", NULL);
  CHECKF(text && opts, "cannot read the corpus or the options");
  if (!text || !opts) return;
  cJSON *o = cJSON_Parse(opts);
  size_t bytes = (size_t)cJSON_GetObjectItem(o, "corpus_bytes")->valuedouble;
  const char *specials[8];
  size_t ns = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(o, "specials")) if (ns < 8) specials[ns++] = e->valuestring;
  TokTrainOptions to = {.vocab_size = (uint32_t)cJSON_GetObjectItem(o, "vocab_size")->valuedouble,
                        .min_frequency = (uint64_t)cJSON_GetObjectItem(o, "min_frequency")->valuedouble,
                        .specials = specials,
                        .nspecials = ns};
  TokTrainer *tr = tok_trainer_new(&to);
  tok_trainer_feed(tr, text, bytes < n ? bytes : n);
  TokBytes json = {0};
  PcError err;
  CHECKF(tok_trainer_finish(tr, &json, &err) == 0, "%s", err.msg);
  tok_trainer_free(tr);
  size_t cn;
  char *committed = tt_read_file(FIXTURES "/tiny_bytelevel/tokenizer.json", &cn);
  CHECKF(committed && cn == json.n && !memcmp(committed, json.a, cn),
         "training differs from the committed tiny_bytelevel/tokenizer.json (rerun scripts/tokenizer-make-fixtures "
         "if the trainer changed on purpose)");
  Tokenizer *t;
  CHECKF(tok_load_json_buffer(json.a, json.n, "trained.json", &t, &err) == 0, "%s", err.msg);
  char *expected = tt_read_file(FIXTURES "/train/expected.jsonl", NULL);
  int ok = 0, total = 0;
  for (char *line = expected; t && line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    cJSON *c = cJSON_Parse(line);
    TokBytes in = {0};
    TokIds want = {0}, got = {0};
    tt_unhex(cJSON_GetObjectItem(c, "input")->valuestring, &in);
    tt_ids(cJSON_GetObjectItem(c, "ids"), &want);
    CHECK(tok_encode(t, in.a, in.n, 0, &got, &err) == 0);
    bool same = tt_same_ids(&want, &got);
    CHECKF(same, "trained tokenizer: case %s differs from tokenizers", cJSON_GetObjectItem(c, "name")->valuestring);
    ok += same;
    total++;
    vec_free(&in);
    vec_free(&want);
    vec_free(&got);
    cJSON_Delete(c);
    if (!nl) break;
    line = nl + 1;
  }
  printf("trained on %zu bytes: %d/%d encodings match tokenizers\n", bytes, ok, total);
  CHECK(total > 0);
  free(expected);
  free(committed);
  free(text);
  free(opts);
  cJSON_Delete(o);
  vec_free(&json);
  tok_free(t);
}

int main(void) {
  synthetic();
  const char *data = getenv("PONDER_SHARED_DATA");
  if (data && access(data, R_OK) == 0) against_reference(data);
  else printf("note: shared/data is absent: the trainer's check against tokenizers is skipped\n");
  return check_exit();
}
