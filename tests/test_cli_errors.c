/* Bad input never crashes: each case runs a real command and expects a
 * non-zero exit (not a signal) and a one-line message on stderr containing
 * a given text. Bad checkpoints are written into a temporary folder from
 * the gpt2-small fixture. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "tests/check.h"

static char tmp[256];
static const char *build;
static int cases;

/* Runs cmd with stderr captured; checks exit status 1 or 2, one line, text. */
static void expect_error(const char *cmd, const char *text) {
  char full[4096], out[4096] = "";
  cases++;
  snprintf(full, sizeof full, "%s 2>&1 >/dev/null", cmd);
  FILE *p = popen(full, "r");
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = 0;
  int status = pclose(p);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  CHECKF(code == 1 || code == 2, "%s: exit code %d (want 1 or 2)\n  stderr: %s", cmd, code, out);
  CHECKF(strstr(out, text) != NULL, "%s:\n  expected \"%s\"\n  got      \"%s\"", cmd, text, out);
  char *nl = strchr(out, '\n');
  CHECKF(nl && nl[1] == 0, "%s: the message is not exactly one line: \"%s\"", cmd, out);
}

static void copy_file(const char *from, const char *to) {
  char cmd[4608]; /* two paths of up to 2048 */
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
  CHECK(system(cmd) == 0);
}

/* A folder with gpt2-small's config.json and the given model.safetensors bytes. */
static void make_dir(const char *name, const void *bytes, size_t n) {
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/%s", tmp, name);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/config.json", dir);
  copy_file("tests/fixtures/gpt2-small/config.json", path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  FILE *f = fopen(path, "wb");
  fwrite(bytes, 1, n, f);
  fclose(f);
}

static void make_header_file(const char *name, const char *json, size_t data_bytes) {
  size_t hl = strlen(json), n = 8 + hl + data_bytes;
  unsigned char *buf = calloc(1, n);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, hl);
  make_dir(name, buf, n);
  free(buf);
}

/* gpt2-small's checkpoint with one tensor dropped or reshaped. */
static void make_edited(const char *name, const char *victim, int drop) {
  PcError err;
  StCheckpoint *ck;
  CHECKF(st_open("tests/fixtures/gpt2-small/model.safetensors", &ck, &err) == 0, "%s", err.msg);
  size_t n = st_count(ck), k = 0;
  StEntry *e = calloc(n, sizeof *e);
  Tensor **t = calloc(n, sizeof *t);
  for (size_t i = 0; i < n; i++) {
    const StTensorInfo *info = st_get(ck, i);
    CHECK(st_read(ck, info->name, &t[i], &err) == 0);
    if (!strcmp(info->name, victim)) {
      if (drop) continue;
      t[i]->dim[0] -= 1; /* one row short: a valid file, the wrong shape */
    }
    e[k++] = (StEntry){info->name, t[i]};
  }
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/%s", tmp, name);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/config.json", dir);
  copy_file("tests/fixtures/gpt2-small/config.json", path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  CHECKF(st_write(path, e, k, &err) == 0, "%s", err.msg);
  for (size_t i = 0; i < n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  st_close(ck);
}

int main(void) {
  build = getenv("PONDER_BUILD");
  if (!build) build = "build";
  snprintf(tmp, sizeof tmp, "/tmp/ponder-cli-XXXXXX");
  if (!mkdtemp(tmp)) return 1;
  char cmd[2048];
#define RUN(fmt, ...) (snprintf(cmd, sizeof cmd, fmt, __VA_ARGS__), cmd)

  /* model scripts */
  expect_error(RUN("%s/pondercc tests/models/bad/syntax.lua", build), "tests/models/bad/syntax.lua:4: unexpected symbol near '='");
  expect_error(RUN("%s/pondercc tests/models/bad/runtime.lua", build),
               "tests/models/bad/runtime.lua:4: attempt to call a nil value (global 'undefined_function')");
  expect_error(RUN("%s/pondercc tests/models/bad/shape.lua", build),
               "tests/models/bad/shape.lua:8: layernorm: input [B,T,32] vs weight [16]");
  expect_error(RUN("%s/pondercc tests/models/bad/hparam.lua", build), "tests/models/bad/hparam.lua:4: unknown hyperparameter 'n_embed'");
  expect_error(RUN("%s/pondercc tests/models/bad/no-forward.lua", build), "the model has no forward function");
  expect_error(RUN("%s/pondercc tests/models/bad/not-logits.lua", build), "forward must return the logits tensor");
  expect_error(RUN("%s/pondercc tests/models/bad/missing.lua", build), "tests/models/bad/missing.lua: cannot read the model script");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config huge", build),
               "models/gpt2.lua: unknown config 'huge' (configs: tiny, mini, 124m, 355m, 774m, 1558m)");
  expect_error(RUN("%s/pondercc models/gpt2.lua --set n_layers=3", build), "has no hyperparameter 'n_layers'");
  expect_error(RUN("%s/pondercc models/gpt2.lua --set n_layer=three", build), "--set n_layer=three: expected a number");
  expect_error(RUN("%s/pondercc models/gpt2.lua --set n_layer=2.5", build), "to a number, but it is an integer");
  expect_error(RUN("%s/pondercc models/gpt2.lua --emit xyz", build), "--emit xyz: expected ir, hparams");
  expect_error(RUN("%s/pondercc", build), "expected one MODEL.lua");

  /* pondering knobs */
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --ponder -1", build),
               "models/gpt2.lua:67: ponder: pondering_steps = -1 must be 0 or more");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --ponder 100", build),
               "ponder: pondering_steps = 100 is absurdly large (at most 64)");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --ponder 3 --set ponder_tau=0", build),
               "ponder: ponder_tau = 0.0 must be positive");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --ponder 3 --set ponder_tau=-1.5", build),
               "ponder: ponder_tau = -1.5 must be positive");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --ponder 3 --set ponder_topk=97", build),
               "ponder_topk = 97 must be between 0 (the whole vocabulary) and the vocabulary size 96");
  expect_error(RUN("%s/pondercc models/gpt2.lua --ponder three", build), "--ponder three: expected the number of pondering steps");
  expect_error(RUN("%s/ponder generate models/gpt2.lua --config tiny --ponder 3 --ids --prompt-ids '%s'", build,
                   "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 "
                   "36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65"),
               "the prompt has 65 tokens but the model's context is 64");

  /* checkpoints */
  unsigned char *st = NULL;
  size_t st_len = 0;
  FILE *f = fopen("tests/fixtures/gpt2-small/model.safetensors", "rb");
  CHECK(f);
  if (f) {
    fseek(f, 0, SEEK_END);
    st_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    st = malloc(st_len);
    CHECK(fread(st, 1, st_len, f) == st_len);
    fclose(f);
  }
  make_dir("truncated", st, st_len / 2);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/truncated", build, tmp), "point past the end of the file");
  make_dir("tiny-file", st, 5);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/tiny-file", build, tmp), "model.safetensors");
  make_header_file("past-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/past-end", build, tmp), "point past the end of the file");
  make_header_file("not-json", "this is not json at all", 8);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/not-json", build, tmp), "not valid JSON");
  make_edited("missing-tensor", "transformer.h.1.ln_2.bias", 1);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/missing-tensor", build, tmp),
               "missing tensor 'transformer.h.1.ln_2.bias'");
  make_edited("wrong-shape", "transformer.h.0.mlp.c_fc.weight", 0);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/wrong-shape", build, tmp),
               "tensor 'transformer.h.0.mlp.c_fc.weight' is [31,128] but the model needs [32,128]");
  free(st);

  /* config.json and prompts */
  char dir[512];
  snprintf(dir, sizeof dir, "%s/llama", tmp);
  mkdir(dir, 0755);
  f = fopen(RUN("%s/config.json", dir), "w");
  fputs("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}", f);
  fclose(f);
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s", build, dir),
               "architecture LlamaForCausalLM is not handled by models/gpt2.lua (it handles GPT2LMHeadModel)");
  expect_error(RUN("%s/ponder forward models/gpt2.lua --hf %s/nowhere", build, tmp), "config.json: No such file or directory");
  expect_error(RUN("%s/ponder forward models/gpt2.lua --config tiny --ids '1 2 500'", build),
               "token id 500 is outside the vocabulary of 96");
  expect_error(RUN("%s/ponder forward models/gpt2.lua --config tiny --set n_positions=4 --ids '1 2 3 4 5'", build),
               "the prompt has 5 tokens but the model's context is 4");
  expect_error(RUN("%s/ponder forward models/gpt2.lua --ids 'one two'", build), "--ids: expected token ids");
  expect_error(RUN("%s/ponder frobnicate", build), "unknown command 'frobnicate'");

  /* backends, targets, output paths and compiled libraries */
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --backend fast -o %s/a.so", build, tmp),
               "--backend fast: expected interp, c or llvm");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --backend interp -o %s/a.so", build, tmp),
               "--backend interp: pondercc compiles with the llvm (default) or c backend");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny --target tpu -o %s/a.so", build, tmp),
               "--target tpu: expected cpu or cuda");
  expect_error(RUN("%s/pondercc models/gpt2.lua --config tiny -o %s/no-such-dir/a.so", build, tmp),
               "no-such-dir/a.so: cannot write into");
  expect_error(RUN("%s/ponder forward models/gpt2.lua --config tiny --backend fast", build), "--backend fast: expected interp, c or llvm");
  char so[512];
  snprintf(so, sizeof so, "%s/tiny.so", tmp);
  CHECK(system(RUN("%s/pondercc models/gpt2.lua --config tiny --entries logits -o %s 2>/dev/null", build, so)) == 0);
  expect_error(RUN("%s/ponder forward %s --hf tests/fixtures/gpt2-small", build, so),
               "tensor 'transformer.wpe.weight' is [32,32] but the model needs [64,32]");
  expect_error(RUN("%s/ponder forward %s --set n_layer=3", build, so), "--set (or --ponder) cannot change a compiled library");
  expect_error(RUN("%s/ponder forward %s --config mini", build, so), "--config cannot change a compiled library");
  f = fopen(so, "w");
  fputs("not a library", f);
  fclose(f);
  expect_error(RUN("%s/ponder forward %s", build, so), "cannot load");

  /* Pythia and LLaMA checkpoints: the architecture, missing keys, tensors
   * that disagree with the config, a missing shard, unsupported switches */
  struct {
    const char *name, *fixture, *config;
  } hf[] = {
      {"mistral", "llama-gqa4", "{\"architectures\": [\"MistralForCausalLM\"], \"vocab_size\": 96}"},
      {"no-heads", "neox-par",
       "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, "
       "\"num_hidden_layers\": 2, \"intermediate_size\": 64}"},
      {"wide-mlp", "neox-par",
       "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, "
       "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 96}"},
      {"kv-heads", "llama-gqa4",
       "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 64, "
       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2}"},
      {"untied", "llama-gqa2-tied",
       "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 64, "
       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"tie_word_embeddings\": false}"},
      {"rope-scaling", "llama-gqa4",
       "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 64, "
       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 1, "
       "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}"},
  };
  for (size_t i = 0; i < sizeof hf / sizeof *hf; i++) {
    snprintf(dir, sizeof dir, "%s/%s", tmp, hf[i].name);
    mkdir(dir, 0755);
    f = fopen(RUN("%s/config.json", dir), "w");
    fputs(hf[i].config, f);
    fclose(f);
    char from[256];
    snprintf(from, sizeof from, "tests/fixtures/%s/model.safetensors", hf[i].fixture);
    copy_file(from, RUN("%s/model.safetensors", dir));
  }
  expect_error(RUN("%s/ponder forward models/llama.lua --hf %s/mistral", build, tmp),
               "architecture MistralForCausalLM is not handled by models/llama.lua (it handles LlamaForCausalLM)");
  expect_error(RUN("%s/ponder forward models/pythia.lua --hf %s/no-heads", build, tmp),
               "config.json: missing key 'num_attention_heads', which models/pythia.lua needs");
  expect_error(RUN("%s/ponder forward models/pythia.lua --hf %s/wide-mlp", build, tmp),
               "tensor 'gpt_neox.layers.0.mlp.dense_h_to_4h.weight' is [64,32] but the model needs [96,32]");
  expect_error(RUN("%s/ponder forward models/llama.lua --hf %s/kv-heads", build, tmp),
               "tensor 'model.layers.0.self_attn.k_proj.weight' is [8,32] but the model needs [16,32]");
  expect_error(RUN("%s/ponder forward models/llama.lua --hf %s/untied", build, tmp), "missing tensor 'lm_head.weight'");
  expect_error(RUN("%s/ponder forward models/llama.lua --hf %s/rope-scaling", build, tmp),
               "rope_type 'linear' is not supported (only default RoPE)");
  /* a shard the index names is missing */
  snprintf(dir, sizeof dir, "%s/missing-shard", tmp);
  mkdir(dir, 0755);
  copy_file("tests/fixtures/neox-seq/config.json", RUN("%s/config.json", dir));
  copy_file("tests/fixtures/neox-seq/model.safetensors", RUN("%s/model-00001-of-00002.safetensors", dir));
  f = fopen(RUN("%s/model.safetensors.index.json", dir), "w");
  fputs("{\"metadata\": {}, \"weight_map\": {\"gpt_neox.embed_in.weight\": \"model-00001-of-00002.safetensors\", "
        "\"embed_out.weight\": \"model-00002-of-00002.safetensors\"}}", f);
  fclose(f);
  expect_error(RUN("%s/ponder forward models/pythia.lua --hf %s", build, dir),
               "shard of tensor 'embed_out.weight': ");
  expect_error(RUN("%s/ponder forward models/pythia.lua --hf %s", build, dir),
               "model-00002-of-00002.safetensors: cannot open: No such file or directory");
  expect_error(RUN("%s/ponder forward models/pythia.lua --config tiny --set hidden_act=relu", build),
               "unsupported activation 'relu' (gelu, gelu_new, gelu_pytorch_tanh, silu)");
  expect_error(RUN("%s/ponder forward tests/models/bad/layout.lua", build),
               "tests/models/bad/layout.lua:6: parameter 'qkv.weight': layout 'neox_qkv' does not fit: it needs the head count");
  expect_error(RUN("%s/pondercc tests/models/bad/rope.lua", build),
               "tests/models/bad/rope.lua:6: rope: rotary_dims 3 must be even and between 2 and the head size 16");
  expect_error(RUN("%s/pondercc tests/models/bad/hf-required.lua", build),
               "tests/models/bad/hf-required.lua:3: model: hf_required[2] must name a hyperparameter");

  /* ponder export */
  snprintf(dir, sizeof dir, "%s/exported", tmp);
  CHECK(system(RUN("%s/ponder export models/llama.lua --config tiny --out %s >/dev/null", build, dir)) == 0);
  expect_error(RUN("%s/ponder export models/llama.lua --config tiny --out %s", build, dir),
               "already holds a model (config.json or model.safetensors); export into a new folder");
  expect_error(RUN("%s/ponder export models/llama.lua --config tiny", build), "expected one MODEL.lua and --out DIR");
  expect_error(RUN("%s/ponder export models/llama.lua --config tiny --device cuda --out %s/x", build, tmp),
               "ponder export: it runs no model: drop --device");
  expect_error(RUN("%s/ponder export tests/models/bad/no-model-type.lua --out %s/plain", build, tmp),
               "the script must name its Hugging Face architectures and model_type to be exported");
  expect_error(RUN("%s/ponder export models/llama.lua --hf %s/kv-heads --out %s/x", build, tmp, tmp),
               "is [8,32] but the model needs [16,32]");
#undef RUN

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  CHECK(system(cmd) == 0);
  printf("%d bad-input cases checked\n", cases);
  return check_exit();
}
