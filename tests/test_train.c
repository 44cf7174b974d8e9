/* `ponder train` end to end, on shards this test writes (a learnable
 * Markov chain over 64 tokens):
 *  - resuming is exact: 20 steps, against 10 steps + --resume to 20, and
 *    against a run killed in the middle of a checkpoint write and resumed;
 *  - a diverging run stops with a message, its last checkpoint resumes;
 *    --skip-nonfinite skips instead;
 *  - bad data, bad lengths and mismatched checkpoints are refused with a
 *    one-line message. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/base/file.h"
#include "runtime/rng.h"
#include "runtime/tokenizer/shard.h"
#include "tests/check.h"

static char tmp[64], data[128];
static const char *build;

static void write_split(const char *dir, const char *prefix, uint64_t n, uint64_t seed) {
  PcError err;
  ShardSet *s;
  CHECK(shard_set_open(dir, prefix, 1000000, 2, 64, 0, &s, &err) == 0);
  Rng r = rng_new(seed);
  uint32_t tok = 1;
  for (uint64_t i = 0; i < n; i++) {
    /* mostly tok -> 2 tok + 1 mod 64, sometimes a random jump */
    tok = rng_uniform(&r) < 0.8 ? (2 * tok + 1) % 64 : (uint32_t)(rng_u64(&r) % 64);
    CHECK(shard_set_put(s, &tok, 1, &err) == 0);
  }
  CHECK(shard_set_close(s, &err) == 0);
  shard_set_free(s);
}

typedef struct {
  int code;
  char err[4096];
} Result;

/* Runs `ponder train` with the common settings plus `extra`, into run `name`. */
static Result train(const char *name, const char *extra, const char *env) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "%s %s/ponder train models/gpt2.lua --config tiny --set vocab_size=64 --data %s --out %s/%s "
           "--seq 16 --batch 4 --steps 20 --checkpoint-every 5 --eval-every 10 --eval-batches 2 --threads 1 %s "
           "2>%s/stderr >/dev/null",
           env ? env : "", build, data, tmp, name, extra, tmp);
  int status = system(cmd);
  Result r = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ""};
  char path[256];
  snprintf(path, sizeof path, "%s/stderr", tmp);
  char *text = pc_read_file(path, NULL, NULL);
  snprintf(r.err, sizeof r.err, "%s", text ? text : "");
  free(text);
  return r;
}

/* Exit 1 and `text` in the last line of stderr, which must be the only
 * line unless notes (lines not starting with "ponder") come first. */
static void expect_failure(Result r, const char *what, const char *text) {
  CHECKF(r.code == 1, "%s: exit code %d (want 1); stderr: %s", what, r.code, r.err);
  size_t n = strlen(r.err);
  CHECKF(n && r.err[n - 1] == '\n', "%s: stderr does not end a line: \"%s\"", what, r.err);
  if (n) r.err[n - 1] = 0;
  char *last = strrchr(r.err, '\n');
  last = last ? last + 1 : r.err;
  CHECKF(strstr(last, text) != NULL, "%s: expected \"%s\" in \"%s\"", what, text, last);
  for (char *line = r.err; line < last; line = strchr(line, '\n') + 1)
    CHECKF(strncmp(line, "ponder", 6) != 0, "%s: more than one error line: \"%s\"", what, r.err);
}

/* The "loss" values of steps from..to in a run's metrics.jsonl, as text. */
static void losses(const char *name, int from, int to, char *out, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, name);
  char *text = pc_read_file(path, NULL, NULL);
  out[0] = 0;
  for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
    int step;
    char *loss = strstr(line, "\"loss\": ");
    if (sscanf(line, "{\"step\": %d", &step) != 1 || !loss || step < from || step > to) continue;
    size_t k = strlen(out);
    snprintf(out + k, n - k, "%d:%.*s ", step, (int)strcspn(loss + 8, ",}"), loss + 8);
  }
  free(text);
}

static int exists(const char *name, const char *sub) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s/%s", tmp, name, sub);
  struct stat st;
  return stat(path, &st) == 0;
}

static void check_resume(void) {
  char a[2048], b[2048], c[2048];
  Result r = train("A", "", NULL);
  CHECKF(r.code == 0, "run A failed: %s", r.err);
  r = train("B", "--stop-at 10", NULL);
  CHECKF(r.code == 0 && exists("B", "ckpt-00000010"), "run B (to step 10) failed: %s", r.err);
  r = train("B", "--resume", NULL);
  CHECKF(r.code == 0, "run B --resume failed: %s", r.err);
  losses("A", 1, 20, a, sizeof a);
  losses("B", 1, 20, b, sizeof b);
  CHECKF(strlen(a) > 100 && !strcmp(a, b), "resumed losses differ:\n  uninterrupted %s\n  resumed       %s", a, b);

  /* killed inside the second checkpoint (step 10): ckpt 5 stays, resume redoes 6.. */
  r = train("C", "", "PONDER_FAULT_CHECKPOINT=2");
  CHECKF(r.code == 128 + 9, "run C should have been killed, got exit %d: %s", r.code, r.err);
  CHECK(exists("C", "ckpt-00000005") && !exists("C", "ckpt-00000010") && exists("C", ".ckpt-00000010.tmp"));
  r = train("C", "--resume", NULL);
  CHECKF(r.code == 0, "run C --resume failed: %s", r.err);
  CHECK(!exists("C", ".ckpt-00000010.tmp") && exists("C", "ckpt-00000020"));
  losses("C", 1, 20, c, sizeof c);
  CHECKF(!strcmp(a, c), "losses after a crash and resume differ:\n  uninterrupted %s\n  resumed       %s", a, c);
  printf("resume: 20 steps == 10 + resume == crash at 10 + resume (%s...)\n", a + strlen(a) - 30);
}

static void check_divergence(void) {
  Result r = train("D", "--lr 1e4 --warmup 0 --clip 0 --checkpoint-every 2", NULL);
  expect_failure(r, "diverging run", "the loss is");
  CHECK(strstr(r.err, "is intact") != NULL);
  /* the last checkpoint loads and runs, and a resume picks it up */
  char ckpt[256], cmd[1024];
  char *at = strstr(r.err, "checkpoint (");
  snprintf(ckpt, sizeof ckpt, "%.*s", at ? (int)strcspn(at + 12, ")") : 0, at ? at + 12 : "");
  snprintf(cmd, sizeof cmd, "%s/ponder forward models/gpt2.lua --hf %s --ids '1 2 3' >/dev/null 2>&1", build, ckpt);
  CHECKF(*ckpt && system(cmd) == 0, "the last checkpoint (%s) does not load", ckpt);
  /* resumed from it, the run diverges again at the same step, exactly */
  char resumed_at[64];
  const char *step = strstr(r.err, "step ");
  snprintf(resumed_at, sizeof resumed_at, "%.*s", step ? (int)strcspn(step, ":") : 0, step ? step : "");
  CHECK(strlen(resumed_at) > 5);
  r = train("D", "--resume --lr 1e4 --warmup 0 --clip 0 --checkpoint-every 2", NULL);
  expect_failure(r, "resumed diverging run", resumed_at);

  r = train("E", "--lr 1e4 --warmup 0 --clip 0 --skip-nonfinite --steps 40", NULL);
  expect_failure(r, "skipping run", "10 non-finite steps in a row");
  char path[256];
  snprintf(path, sizeof path, "%s/E/metrics.jsonl", tmp);
  char *text = pc_read_file(path, NULL, NULL);
  CHECK(text && strstr(text, "\"skipped\": true"));
  free(text);
}

static void check_refusals(void) {
  char extra[512];
  expect_failure(train("F", "--resume", NULL), "resume with nothing", "no checkpoint to resume from");
  expect_failure(train("A", "", NULL), "reuse a run folder", "already holds checkpoints");
  expect_failure(train("A", "--resume --set n_layer=3", NULL), "other config", "was made with n_layer = 2, but this run has n_layer = 3");
  expect_failure(train("A", "--resume --seq 8", NULL), "other seq", "was made with --seq 16");
  expect_failure(train("G", "--seq 65", NULL), "seq > context", "--seq 65 is longer than the model's context of 64 tokens");
  expect_failure(train("G", "--set n_positions=30000 --seq 25000", NULL), "seq > data", "sequence length 25000 needs 25001 tokens in one shard");

  char bad[256];
  snprintf(bad, sizeof bad, "%s/nothing", tmp);
  snprintf(extra, sizeof extra, "--data %s", bad);
  expect_failure(train("G", extra, NULL), "missing data", "No such file or directory");
  snprintf(bad, sizeof bad, "%s/empty", tmp);
  mkdir(bad, 0755);
  write_split(bad, "train", 0, 1);
  snprintf(extra, sizeof extra, "--data %s", bad);
  expect_failure(train("G", extra, NULL), "empty data", "no train shards");
  char path[300];
  snprintf(path, sizeof path, "%s/train_000000.bin", bad);
  CHECK(pc_write_file_atomic(path, "PCTOKENS but not really a shard", 30, NULL) == 0);
  expect_failure(train("G", extra, NULL), "corrupt shard", "train_000000.bin");
}

int main(void) {
  build = getenv("PONDER_BUILD");
  if (!build) build = "build";
  snprintf(tmp, sizeof tmp, "/tmp/ponder-train-XXXXXX");
  if (!mkdtemp(tmp)) return 1;
  snprintf(data, sizeof data, "%s/data", tmp);
  mkdir(data, 0755);
  write_split(data, "train", 20000, 1);
  write_split(data, "val", 2000, 2);
  check_resume();
  check_divergence();
  check_refusals();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  CHECK(system(cmd) == 0);
  return check_exit();
}
