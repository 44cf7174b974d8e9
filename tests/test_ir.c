/* The graph IR's text form and verifier:
 *  - a hand-written graph with a loop parses, verifies and prints back
 *    byte for byte, and the interpreter runs its loop correctly;
 *  - a traced GPT-2 prints, parses and prints back identically, and
 *    matches the committed golden IR (PONDER_UPDATE_GOLDEN=1 rewrites it);
 *  - dead code elimination drops a loop's carried value that nothing reads
 *    (tests/ir/dead_carry.ir becomes dead_carry.dce.ir);
 *  - unrolling leaves no loop and the interpreter's results unchanged, its
 *    index running backwards in a reverse loop (tests/ir/reverse_loop.ir);
 *  - cse merges a loop's copy of a product with the one before it, moves
 *    what does not depend on the loop in front of it, from a nested loop
 *    too, and keeps fills (tests/ir/invariant.ir becomes invariant.cse.ir),
 *    with the same loss and gradients from the interpreter;
 *  - every file in tests/ir/errors fails with the message its first line
 *    expects. */
#include <dirent.h>
#include <math.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "compiler/front.h"
#include "ir/autodiff.h"
#include "ir/passes.h"
#include "tests/check.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

static IrGraph *parse_file(const char *path, PcError *err) {
  char *text = slurp(path);
  if (!text) {
    pc_errorf(err, "%s: cannot read", path);
    return NULL;
  }
  IrGraph *g = NULL;
  const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  if (ir_parse(text, name, &g, err) == 0 && ir_verify(g, err) < 0) {
    ir_graph_free(g);
    g = NULL;
  }
  free(text);
  return g;
}

/* loop.ir: E = 2 wte[ids]; 3 times E += softmax(E wte^T) wte; logits = E wte^T */
static void check_loop_graph(void) {
  PcError err;
  IrGraph *g = parse_file("tests/ir/loop.ir", &err);
  CHECKF(g, "%s", err.msg);
  if (!g) return;
  char *text = slurp("tests/ir/loop.ir"), *printed = ir_print_string(g);
  CHECKF(!strcmp(text, printed), "loop.ir does not print back identically:\n%s", printed);
  free(text);
  free(printed);

  Params p = {0};
  ParamSpec spec = {.name = "wte", .rank = 2, .dim = {16, 8}, .init = PARAM_INIT_NORMAL, .std = 0.5};
  CHECK(params_add(&p, &spec, &err) == 0 && params_init(&p, 7, &err) == 0);
  int64_t shape[2] = {2, 3};
  Tensor *ids = tensor_new(PC_I32, 2, shape);
  for (int i = 0; i < 6; i++) tensor_i32(ids)[i] = (i * 5) % 16;
  NamedTensor in[1] = {{"ids", ids}}, out[2];
  size_t n_out;
  CHECKF(interp_run(g, &p, in, 1, out, 2, &n_out, &err) == 0, "%s", err.msg);
  CHECK(n_out == 2 && tensor_f32(out[1].tensor)[0] == 0.5f);
  const float *w = tensor_f32(p.value[0]);
  double max_diff = 0;
  for (int r = 0; r < 6; r++) { /* the same computation, written out */
    double e[8], z[16], logit;
    for (int c = 0; c < 8; c++) e[c] = 2.0 * w[tensor_i32(ids)[r] * 8 + c];
    for (int it = 0; it < 3; it++) {
      double m = -INFINITY, s = 0, mix[8] = {0};
      for (int v = 0; v < 16; v++) {
        z[v] = 0;
        for (int c = 0; c < 8; c++) z[v] += e[c] * w[v * 8 + c];
        m = fmax(m, z[v]);
      }
      for (int v = 0; v < 16; v++) s += exp(z[v] - m);
      for (int v = 0; v < 16; v++)
        for (int c = 0; c < 8; c++) mix[c] += exp(z[v] - m) / s * w[v * 8 + c];
      for (int c = 0; c < 8; c++) e[c] += mix[c];
    }
    for (int v = 0; v < 16; v++) {
      logit = 0;
      for (int c = 0; c < 8; c++) logit += e[c] * w[v * 8 + c];
      max_diff = fmax(max_diff, fabs(logit - tensor_f32(out[0].tensor)[r * 16 + v]));
    }
  }
  CHECKF(max_diff < 1e-5, "loop result differs from the written-out computation by %g", max_diff);
  for (size_t i = 0; i < n_out; i++) tensor_free(out[i].tensor);
  tensor_free(ids);
  params_free(&p);
  ir_graph_free(g);
}

/* Carry 1 (%7) is read only by its own update and its result is unused:
 * it goes, with its initial value (%0). Carry 2 (%8) has an unused result
 * but carry 0's update reads it: it stays. */
static void check_dead_carries(void) {
  PcError err;
  IrGraph *g = parse_file("tests/ir/dead_carry.ir", &err), *d = NULL;
  CHECKF(g, "%s", err.msg);
  if (!g) return;
  CHECKF(ir_dce(g, &d, &err) == 0, "%s", err.msg);
  char *want = slurp("tests/ir/dead_carry.dce.ir"), *got = d ? ir_print_string(d) : NULL;
  CHECKF(want && got && !strcmp(want, got), "dead_carry.ir after dce:\n%s", got ? got : "(none)");
  free(want);
  free(got);
  ir_graph_free(d);
  ir_graph_free(g);
}

/* reverse_loop.ir: indices 2, 1, 0 stack x, 2x, 4x; y = 8x */
static void check_unroll(void) {
  PcError err;
  IrGraph *g = parse_file("tests/ir/reverse_loop.ir", &err), *u = NULL;
  CHECKF(g, "%s", err.msg);
  if (!g) return;
  CHECKF(ir_unroll(g, 16, &u, &err) == 0, "%s", err.msg);
  if (u) {
    char *text = ir_print_string(u);
    CHECKF(!strstr(text, "loop("), "the loop is still there:\n%s", text);
    free(text);
  }
  Params p = {0};
  int64_t shape[1] = {2};
  Tensor *x = tensor_new(PC_F32, 1, shape);
  tensor_f32(x)[0] = 1.5f;
  tensor_f32(x)[1] = -0.25f;
  NamedTensor in[1] = {{"x", x}};
  const IrGraph *graphs[2] = {g, u};
  for (int k = 0; k < 2 && graphs[k]; k++) {
    NamedTensor out[2];
    size_t n_out;
    CHECKF(interp_run(graphs[k], &p, in, 1, out, 2, &n_out, &err) == 0, "%s", err.msg);
    if (n_out != 2) continue;
    const float *y = tensor_f32(out[0].tensor), *stack = tensor_f32(out[1].tensor);
    for (int b = 0; b < 2; b++) {
      float v = tensor_f32(x)[b];
      CHECKF(y[b] == 8 * v && stack[4 + b] == v && stack[2 + b] == 2 * v && stack[b] == 4 * v,
             "%s: y %g, stack %g %g %g for x %g", k ? "unrolled" : "loop", y[b], stack[b], stack[2 + b], stack[4 + b], v);
    }
    for (size_t i = 0; i < n_out; i++) tensor_free(out[i].tensor);
  }
  tensor_free(x);
  ir_graph_free(u);
  ir_graph_free(g);
}

/* The loss and, through autodiff in both loop modes, the gradient of
 * invariant.ir and of its cse'd form agree on the interpreter. */
static void check_cse(void) {
  PcError err;
  IrGraph *g = parse_file("tests/ir/invariant.ir", &err), *c = NULL;
  CHECKF(g, "%s", err.msg);
  if (!g) return;
  CHECKF(ir_cse(g, &c, &err) == 0 && ir_verify(c, &err) == 0, "%s", err.msg);
  char *want = slurp("tests/ir/invariant.cse.ir"), *got = c ? ir_print_string(c) : NULL;
  CHECKF(want && got && !strcmp(want, got), "invariant.ir after cse:\n%s", got ? got : "(none)");
  free(want);
  free(got);
  Params p = {0};
  ParamSpec spec = {.name = "w", .rank = 2, .dim = {4, 4}, .init = PARAM_INIT_NORMAL, .std = 0.5};
  CHECK(params_add(&p, &spec, &err) == 0 && params_init(&p, 5, &err) == 0);
  int64_t shape[2] = {2, 4};
  Tensor *x = tensor_new(PC_F32, 2, shape), *cin = tensor_new(PC_F32, 2, shape);
  for (int i = 0; i < 8; i++) {
    tensor_f32(x)[i] = 0.1f * (float)(i - 3);
    tensor_f32(cin)[i] = 0.05f * (float)(7 - 2 * i);
  }
  NamedTensor in[2] = {{"x", x}, {"c", cin}};
  for (int mode = 0; mode < 2 && c; mode++) {
    IrGraph *t[2] = {NULL, NULL};
    float loss[2] = {0, 0}, grad[2][16];
    for (int k = 0; k < 2; k++) {
      NamedTensor out[2];
      size_t n_out = 0;
      CHECKF(ir_autodiff(k ? c : g, "loss", mode ? AD_LOOPS_SAVE : AD_LOOPS_RECOMPUTE, &t[k], &err) == 0, "%s", err.msg);
      CHECKF(t[k] && interp_run(t[k], &p, in, 2, out, 2, &n_out, &err) == 0, "%s", err.msg);
      if (n_out != 2) continue;
      loss[k] = tensor_f32(out[0].tensor)[0];
      memcpy(grad[k], tensor_f32(out[1].tensor), sizeof grad[k]);
      for (size_t i = 0; i < n_out; i++) tensor_free(out[i].tensor);
    }
    double scale = 0, diff = 0;
    for (int i = 0; i < 16; i++) {
      scale = fmax(scale, fabs(grad[0][i]));
      diff = fmax(diff, fabs(grad[0][i] - grad[1][i]));
    }
    CHECKF(loss[0] == loss[1], "loss %.9g, after cse %.9g", loss[0], loss[1]);
    CHECKF(scale > 0 && diff <= 1e-5 * scale, "grad:w differs by %g (largest %g) after cse, %s", diff, scale,
           mode ? "saving" : "recomputing");
    ir_graph_free(t[0]);
    ir_graph_free(t[1]);
  }
  tensor_free(x);
  tensor_free(cin);
  params_free(&p);
  ir_graph_free(c);
  ir_graph_free(g);
}

/* The traced graph of a model's tiny config prints and parses back to the
 * same text (Pythia's rope prints theta as 1e+04); its text, or NULL. */
static char *traced_roundtrip(const char *script) {
  PcError err;
  FeModel *m;
  if (fe_open(script, &m, &err) < 0) {
    CHECKF(0, "%s", err.msg);
    return NULL;
  }
  IrGraph *g = NULL, *back = NULL;
  char *text = NULL;
  CHECK(fe_select_config(m, "tiny", &err) == 0);
  CHECKF(fe_trace(m, FE_TRACE_LOSS, &g, &err) == 0, "%s: %s", script, err.msg);
  if (g) {
    text = ir_print_string(g);
    CHECKF(ir_parse(text, script, &back, &err) == 0, "%s: %s", script, err.msg);
  }
  if (back) {
    char *again = ir_print_string(back);
    CHECKF(!strcmp(text, again), "%s: printed again, the graph differs", script);
    CHECK(back->nodes.n == g->nodes.n && back->values.n == g->values.n);
    free(again);
  }
  ir_graph_free(g);
  ir_graph_free(back);
  fe_close(m);
  return text;
}

static void check_traced_roundtrip(void) {
  free(traced_roundtrip("models/pythia.lua"));
  free(traced_roundtrip("models/llama.lua"));
  char *text = traced_roundtrip("models/gpt2.lua");
  if (!text) return;
  const char *golden_path = "tests/golden/gpt2-tiny.ir";
  if (getenv("PONDER_UPDATE_GOLDEN")) {
    FILE *f = fopen(golden_path, "w");
    fputs(text, f);
    fclose(f);
    printf("rewrote %s\n", golden_path);
  }
  char *golden = slurp(golden_path);
  CHECKF(golden && !strcmp(golden, text),
         "the traced GPT-2 IR differs from %s (if intended: PONDER_UPDATE_GOLDEN=1 build/tests/test_ir)", golden_path);
  free(golden);
  free(text);
}

/* A training graph whose backward loop carries more than a hundred values
 * (the gradients of a 10-layer pondering model) prints and parses back. */
static void check_training_roundtrip(void) {
  PcError err;
  FeModel *m;
  IrGraph *g, *train, *back;
  CHECK(fe_open("models/gpt2.lua", &m, &err) == 0);
  CHECK(fe_select_config(m, "tiny", &err) == 0 && fe_set_hparam(m, "n_layer", "10", &err) == 0 &&
        fe_set_hparam(m, "ponderinglm", "true", &err) == 0);
  CHECKF(fe_trace(m, FE_TRACE_LOSS | FE_TRACE_NO_LOGITS, &g, &err) == 0, "%s", err.msg);
  CHECKF(ir_autodiff(g, "loss", AD_LOOPS_RECOMPUTE, &train, &err) == 0, "%s", err.msg);
  uint32_t most = 0;
  for (size_t i = 0; i < train->nodes.n; i++)
    if (ir_node(train, (uint32_t)i)->op == IR_LOOP && ir_node(train, (uint32_t)i)->n_in > most)
      most = ir_node(train, (uint32_t)i)->n_in;
  CHECKF(most > 100, "the backward loop carries %u values", most);
  char *text = ir_print_string(train);
  CHECKF(ir_parse(text, "train", &back, &err) == 0, "%s", err.msg);
  char *again = ir_print_string(back);
  CHECK(!strcmp(text, again));
  printf("training graph with a %u-value loop: printed and parsed back (%zu nodes)\n", most, train->nodes.n);
  free(text);
  free(again);
  ir_graph_free(g);
  ir_graph_free(train);
  ir_graph_free(back);
  fe_close(m);
}

static void check_error_files(void) {
  const char *dir = "tests/ir/errors";
  DIR *d = opendir(dir);
  CHECK(d);
  if (!d) return;
  int count = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strstr(e->d_name, ".ir")) continue;
    char path[512], expect[512] = "";
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *text = slurp(path);
    if (sscanf(text, "# expect: %511[^\n]", expect) != 1) CHECKF(0, "%s: no '# expect:' line", path);
    free(text);
    PcError err = {""};
    IrGraph *g = parse_file(path, &err);
    CHECKF(!g, "%s: accepted", path);
    ir_graph_free(g);
    CHECKF(strstr(err.msg, expect), "%s: expected \"%s\", got \"%s\"", path, expect, err.msg);
    CHECKF(!strchr(err.msg, '\n'), "%s: message is not one line", path);
    count++;
  }
  closedir(d);
  printf("%d IR error files checked\n", count);
  CHECK(count >= 8);
}

int main(void) {
  check_loop_graph();
  check_dead_carries();
  check_unroll();
  check_cse();
  check_traced_roundtrip();
  check_training_roundtrip();
  check_error_files();
  return check_exit();
}
