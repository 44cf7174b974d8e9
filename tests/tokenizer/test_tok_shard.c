/* Token shards: written by a ShardSet (split across files), read back by
 * shard_open with the same tokens; damaged files are refused with a
 * message naming the problem. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/tokenizer/shard.h"
#include "tests/check.h"
#include "tests/tokenizer/tok_test_util.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void round_trip(uint32_t width, uint32_t vocab) {
  ShardSet *s;
  PcError err;
  CHECK(shard_set_open(dir, width == 2 ? "w2" : "w4", 1000, width, vocab, 7, &s, &err) == 0);
  TokIds all = {0};
  uint64_t seed = 1;
  for (int doc = 0; doc < 25; doc++) { /* 25 documents of 0..199 tokens */
    TokIds ids = {0};
    seed = seed * 6364136223846793005ull + 1;
    size_t n = (seed >> 33) % 200;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 6364136223846793005ull + 1;
      vec_push(&ids, (uint32_t)((seed >> 30) % vocab));
    }
    vec_push(&ids, 7);
    CHECK(shard_set_put(s, ids.a, ids.n, &err) == 0);
    for (size_t i = 0; i < ids.n; i++) vec_push(&all, ids.a[i]);
    vec_free(&ids);
  }
  CHECK(shard_set_close(s, &err) == 0);
  CHECK(shard_set_tokens(s) == all.n);
  size_t files = shard_set_nfiles(s);
  CHECK(files == (all.n + 999) / 1000);
  size_t at = 0;
  for (size_t i = 0; i < files; i++) {
    uint64_t count;
    char path[512];
    path_of(path, sizeof path, shard_set_file(s, i, &count));
    Shard sh;
    CHECKF(shard_open(path, &sh, &err) == 0, "%s", err.msg);
    CHECK(sh.count == count && sh.token_bytes == width && sh.vocab_size == vocab && sh.eos_id == 7);
    CHECK(count == 1000 || i == files - 1);
    CHECK(shard_check_tokens(&sh, &err) == 0);
    uint32_t *buf = pc_xmalloc(sh.count * sizeof *buf + 1);
    CHECK(shard_read(&sh, 0, buf, sh.count, &err) == 0);
    for (uint64_t k = 0; k < sh.count; k++) CHECKF(buf[k] == all.a[at + k] && shard_get(&sh, k) == buf[k], "token %llu", (unsigned long long)k);
    at += sh.count;
    CHECK(shard_read(&sh, sh.count, buf, 1, &err) == -1);
    free(buf);
    shard_close(&sh);
  }
  CHECK(at == all.n);
  shard_set_free(s);
  vec_free(&all);
}

static void write_raw(const char *name, const void *data, size_t n) {
  char path[512];
  path_of(path, sizeof path, name);
  FILE *f = fopen(path, "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

static void expect_bad(const char *name, const char *needle) {
  char path[512];
  path_of(path, sizeof path, name);
  Shard s;
  PcError err;
  CHECKF(shard_open(path, &s, &err) == -1, "%s opened", name);
  CHECK_STR_CONTAINS(err.msg, needle);
  CHECK_STR_CONTAINS(err.msg, name);
}

static void damaged(void) {
  /* a good shard of 3 uint16 tokens, then variations */
  ShardWriter *w;
  PcError err;
  char path[512];
  path_of(path, sizeof path, "good.bin");
  uint32_t ids[] = {1, 2, 65535};
  CHECK(shard_writer_open(path, 2, 0, -1, &w, &err) == 0);
  CHECK(shard_writer_put(w, ids, 3, &err) == 0);
  CHECK(shard_writer_close(w, &err) == 0);
  size_t n;
  char *good = tt_read_file(path, &n);
  CHECK(good && n == 64 + 6);
  if (!good) return;
  Shard s;
  CHECK(shard_open(path, &s, &err) == 0 && s.count == 3 && s.eos_id == -1 && shard_get(&s, 2) == 65535);
  shard_close(&s);

  write_raw("short.bin", good, 40);
  expect_bad("short.bin", "truncated header");
  write_raw("cut.bin", good, n - 1);
  expect_bad("cut.bin", "truncated: the header says 3 tokens");
  char more[80];
  memcpy(more, good, n);
  memcpy(more + n, "xx", 2);
  write_raw("long.bin", more, n + 2);
  expect_bad("long.bin", "2 bytes after the 3 tokens");
  char bad[70];
  memcpy(bad, good, n);
  bad[0] = 'X';
  write_raw("magic.bin", bad, n);
  expect_bad("magic.bin", "not a token shard");
  memcpy(bad, good, n);
  bad[8] = 9;
  write_raw("version.bin", bad, n);
  expect_bad("version.bin", "unsupported shard version 9");
  memcpy(bad, good, n);
  bad[16] = 3;
  write_raw("width.bin", bad, n);
  expect_bad("width.bin", "bad token width 3");
  memcpy(bad, good, n);
  bad[20] = 10; /* vocabulary of 10: the tokens are outside it */
  write_raw("vocab.bin", bad, n);
  path_of(path, sizeof path, "vocab.bin");
  CHECK(shard_open(path, &s, &err) == 0);
  CHECK(shard_check_tokens(&s, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "outside the vocabulary");
  shard_close(&s);
  write_raw("empty.bin", "", 0);
  expect_bad("empty.bin", "truncated header");
  free(good);

  /* uint16 cannot hold 70000 */
  path_of(path, sizeof path, "wide.bin");
  uint32_t big = 70000;
  CHECK(shard_writer_open(path, 2, 0, -1, &w, &err) == 0);
  CHECK(shard_writer_put(w, &big, 1, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "does not fit in uint16");
  shard_writer_abort(w);
  CHECK(access(path, F_OK) != 0);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/pc_shard_test_XXXXXX");
  if (!mkdtemp(dir)) {
    printf("SKIP: cannot make a temporary folder\n");
    return 77;
  }
  round_trip(2, 50257);
  round_trip(4, 128256);
  damaged();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return check_exit();
}
