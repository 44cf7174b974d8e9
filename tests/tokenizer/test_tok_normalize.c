/* The Unicode normalizers work on the runs that may change (tok_normalize.c
 * cuts the text before ASCII characters): on random text full of combining
 * marks, Hangul jamo, compatibility characters and ASCII, the result must be
 * what utf8proc gives for the whole text at once. */
#include <utf8proc.h>

#include "runtime/tokenizer/tok_impl.h"
#include "runtime/tokenizer/tok_utf8.h"
#include "tests/check.h"
#include "tests/tokenizer/tok_test_util.h"

static const uint32_t alphabet[] = {
    'a', 'e', 'A', 'o', ' ', '\n', '1', '.', 0x0301, 0x0308, 0x0327, 0x0323, 0x0302, 0x031b, 0x00e9, 0x00c5,
    0x212b, 0x1100, 0x1161, 0x11a8, 0xac00, 0xfb01, 0xff21, 0x2460, 0x00bd, 0x0b47, 0x0b3e, 0x0915, 0x093c,
    0x1e9b, 0x0345, 0x3099, 0x304b, 0x65e5, 0x1f600, 0x00a0, 0x2126, 0x0041, 0x030a, 0x05b4, 0x05bc,
};

int main(void) {
  static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
  static const int opts[] = {UTF8PROC_COMPOSE, UTF8PROC_DECOMPOSE, UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                             UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
  uint64_t seed = 3;
  int bad = 0, total = 0;
  for (int f = 0; f < 4; f++) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"normalizer\": {\"type\": \"%s\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
             forms[f]);
    Tokenizer *t;
    PcError err;
    CHECKF(tok_load_json_buffer(json, strlen(json), "n.json", &t, &err) == 0, "%s", err.msg);
    for (int k = 0; k < 3000; k++) {
      TokBytes text = {0};
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      size_t len = (seed >> 33) % 40;
      bool ascii_only = k % 7 == 0;
      for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t m = ascii_only ? 8 : sizeof alphabet / sizeof *alphabet;
        char c[4];
        int cl = tok_utf8_encode(alphabet[(seed >> 33) % m], c);
        for (int j = 0; j < cl; j++) vec_push(&text, c[j]);
      }
      size_t n;
      const char *got = tok_normalize(t, text.n ? text.a : "", text.n, &n);
      utf8proc_uint8_t *want = NULL;
      utf8proc_ssize_t wn = utf8proc_map((const utf8proc_uint8_t *)(text.n ? text.a : ""), (utf8proc_ssize_t)text.n,
                                         &want, UTF8PROC_STABLE | opts[f]);
      total++;
      if (wn < 0 || (size_t)wn != n || (n && memcmp(want, got, n))) bad++;
      free(want);
      vec_free(&text);
    }
    tok_free(t);
  }
  printf("%d/%d random texts normalize as utf8proc does on the whole text\n", total - bad, total);
  CHECK(bad == 0);
  return check_exit();
}
