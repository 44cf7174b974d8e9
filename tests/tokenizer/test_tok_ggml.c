/* The ggml test vectors (shared/data/tokenizers/testvectors/ggml): 100
 * sentences each with the ids of Hugging Face's GPT-2 and GPT-NeoX-20B
 * tokenizers. Ours must give the same ids for all of them, and decoding
 * them must give the sentence back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tokenizer.h"
#include "tests/check.h"

static int run(const char *data, const char *tokenizer, const char *vectors) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tokenizers/%s", data, tokenizer);
  Tokenizer *t;
  PcError err;
  if (tok_load(path, &t, &err)) {
    CHECKF(0, "%s", err.msg);
    return 0;
  }
  snprintf(path, sizeof path, "%s/tokenizers/testvectors/ggml/%s", data, vectors);
  FILE *f = fopen(path, "r");
  CHECKF(f != NULL, "cannot open %s", path);
  if (!f) {
    tok_free(t);
    return 0;
  }
  char line[8192];
  int total = 0, ok = 0;
  while (fgets(line, sizeof line, f)) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    char *sep = NULL;
    for (char *p = strstr(line, " => "); p; p = strstr(p + 1, " => ")) sep = p;
    if (!sep) continue;
    *sep = 0;
    TokIds want = {0}, got = {0};
    for (char *p = sep + 4; *p;) {
      char *end;
      unsigned long v = strtoul(p, &end, 10);
      if (end == p) break;
      vec_push(&want, (uint32_t)v);
      p = *end == ',' ? end + 1 : end;
    }
    total++;
    CHECK(tok_encode(t, line, strlen(line), 0, &got, &err) == 0);
    bool same = got.n == want.n && !memcmp(got.a, want.a, got.n * sizeof *got.a);
    if (same) ok++;
    else {
      fprintf(stderr, "%s: \"%s\"\n  want:", vectors, line);
      for (size_t i = 0; i < want.n; i++) fprintf(stderr, " %u", want.a[i]);
      fprintf(stderr, "\n  got: ");
      for (size_t i = 0; i < got.n; i++) fprintf(stderr, " %u", got.a[i]);
      fprintf(stderr, "\n");
    }
    TokBytes text = {0};
    CHECK(tok_decode(t, want.a, want.n, 0, &text, &err) == 0);
    CHECKF(text.n == strlen(line) && !memcmp(text.a, line, text.n), "%s: decode of \"%s\" differs", vectors, line);
    vec_free(&text);
    vec_free(&want);
    vec_free(&got);
  }
  fclose(f);
  tok_free(t);
  printf("%s: %d/%d match\n", vectors, ok, total);
  CHECKF(total == 100 && ok == total, "%s: %d/%d", vectors, ok, total);
  return ok;
}

int main(void) {
  const char *data = check_shared_data("the ggml tokenizer test vectors");
  if (!data) return 77;
  run(data, "gpt2/tokenizer.json", "gpt-2.txt");
  run(data, "gpt-neox-20b/tokenizer.json", "gpt-neox.txt");
  return check_exit();
}
