/* Hard-case vectors made by scripts/tokenizer-make-fixtures with the PyPI
 * tokenizers and sentencepiece packages (tests/tokenizer/fixtures/vectors):
 * for GPT-2, GPT-NeoX and LLaMA (the real files in shared/data; skipped when
 * absent) and for small fixture tokenizers of every supported layout. Each
 * case checks the ids, the reference's decoding of them, and that the
 * streaming decoder gives the same bytes as the whole-sequence one. */
#include "tests/check.h"
#include "tests/tokenizer/tok_test_util.h"

typedef struct {
  const char *vectors;
  bool shared; /* the tokenizer lives in shared/data/tokenizers */
  const char *tokenizer;
} Suite;

static const Suite suites[] = {
    {"gpt2.jsonl", true, "gpt2/tokenizer.json"},
    {"neox.jsonl", true, "gpt-neox-20b/tokenizer.json"},
    {"llama-model.jsonl", true, "llama2/tokenizer.model"},
    {"tiny-spm-model.jsonl", false, "tiny_spm/tokenizer.model"},
    {"tiny-spm-ws-model.jsonl", false, "tiny_spm_ws/tokenizer.model"},
    {"tiny-spm-rules-model.jsonl", false, "tiny_spm_rules/tokenizer.model"},
    {"tiny-spm-json.jsonl", false, "tiny_spm/tokenizer.json"},
    {"tiny-spm-metaspace.jsonl", false, "tiny_spm/tokenizer-metaspace.json"},
    {"tiny-bytelevel.jsonl", false, "tiny_bytelevel/tokenizer.json"},
    {"tiny-bytelevel-added.jsonl", false, "tiny_bytelevel/tokenizer-added.json"},
};

static void run_case(Tokenizer *t, const char *suite, const cJSON *c, int *ok, int *total) {
  const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
  const cJSON *input = cJSON_GetObjectItem(c, "input");
  TokIds want = {0}, got = {0};
  TokBytes in = {0}, dec = {0}, ref = {0}, streamed = {0};
  PcError err;
  bool good = true;
  tt_unhex(cJSON_GetObjectItem(c, "decoded")->valuestring, &ref);
  unsigned dflags = cJSON_IsTrue(cJSON_GetObjectItem(c, "skip_special")) ? TOK_DECODE_SKIP_SPECIAL : 0;
  if (input) {
    tt_unhex(input->valuestring, &in);
    tt_ids(cJSON_GetObjectItem(c, "ids"), &want);
    CHECK(tok_encode(t, in.a, in.n, 0, &got, &err) == 0);
    if (!tt_same_ids(&got, &want)) {
      fprintf(stderr, "%s: %s: ids differ\n", suite, name);
      tt_print_ids("want", &want);
      tt_print_ids("got ", &got);
      good = false;
    }
  } else {
    tt_ids(cJSON_GetObjectItem(c, "decode"), &want);
  }
  CHECK(tok_decode(t, want.a, want.n, dflags, &dec, &err) == 0);
  if (!tt_same_bytes(&dec, &ref)) {
    fprintf(stderr, "%s: %s: decoded text differs: want \"%.*s\" got \"%.*s\"\n", suite, name, (int)ref.n, ref.a,
            (int)dec.n, dec.a);
    good = false;
  }
  CHECK(tt_stream_decode(t, want.a, want.n, dflags, &streamed) == 0);
  if (!tt_same_bytes(&dec, &streamed)) {
    fprintf(stderr, "%s: %s: streaming decode differs from decode\n", suite, name);
    good = false;
  }
  CHECKF(good, "%s: case %s", suite, name);
  *ok += good;
  ++*total;
  vec_free(&want);
  vec_free(&got);
  vec_free(&in);
  vec_free(&dec);
  vec_free(&ref);
  vec_free(&streamed);
}

static void run_suite(const Suite *s, const char *data) {
  char path[1024];
  if (s->shared && !data) {
    printf("%s: skipped (shared/data is absent)\n", s->vectors);
    return;
  }
  if (s->shared) snprintf(path, sizeof path, "%s/tokenizers/%s", data, s->tokenizer);
  else snprintf(path, sizeof path, FIXTURES "/%s", s->tokenizer);
  Tokenizer *t;
  PcError err;
  if (tok_load(path, &t, &err)) {
    CHECKF(0, "%s", err.msg);
    return;
  }
  snprintf(path, sizeof path, FIXTURES "/vectors/%s", s->vectors);
  char *text = tt_read_file(path, NULL);
  CHECKF(text != NULL, "cannot read %s", path);
  int ok = 0, total = 0;
  for (char *line = text; text && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    cJSON *c = cJSON_Parse(line);
    CHECKF(c != NULL, "%s: bad JSON line", path);
    if (c) run_case(t, s->vectors, c, &ok, &total);
    cJSON_Delete(c);
    if (!nl) break;
    line = nl + 1;
  }
  printf("%s: %d/%d cases match\n", s->vectors, ok, total);
  CHECK(total > 0);
  free(text);
  tok_free(t);
}

int main(void) {
  const char *data = getenv("PONDER_SHARED_DATA");
  FILE *f = data ? fopen(data, "r") : NULL;
  if (f) fclose(f);
  else data = NULL;
  if (!data) printf("note: shared/data is absent: the GPT-2, NeoX and LLaMA vectors are skipped\n");
  for (size_t i = 0; i < sizeof suites / sizeof *suites; i++) run_suite(&suites[i], data);
  return check_exit();
}
