/* Golden codegen: the kernel IR and the C source of GPT-2 tiny with K = 3
 * (logits entry) are compared with committed files, so that a refactor of
 * the lowering or the C renderer does not change code unnoticed.
 * PONDER_UPDATE_GOLDEN=1 rewrites them (then review the diff). */
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_render.h"
#include "compiler/lower/lower.h"
#include "compiler/module.h"
#include "runtime/base/file.h"
#include "tests/check.h"

static void golden(const char *path, const char *text) {
  if (getenv("PONDER_UPDATE_GOLDEN")) {
    CHECK(pc_write_file_atomic(path, text, strlen(text), NULL) == 0);
    printf("rewrote %s\n", path);
  }
  char *want = pc_read_file(path, NULL, NULL);
  CHECKF(want && !strcmp(want, text), "the generated code differs from %s (if intended: PONDER_UPDATE_GOLDEN=1 %s)",
         path, "build/tests/test_codegen");
  free(want);
}

/* How often `what` occurs in the section of kir that starts at the first
 * `section` line, up to the next op's comment (at any depth). */
static int in_section(const char *kir, const char *section, const char *what) {
  const char *s = strstr(kir, section), *end = s ? strchr(s, '\n') : NULL;
  while (end && *end) {
    const char *t = end + 1 + strspn(end + 1, " ");
    if (*t == '#') break;
    end = strchr(end + 1, '\n');
  }
  int n = 0;
  for (const char *p = s; p && end && (p = strstr(p, what)) && p < end; p++) n++;
  return s ? n : -1;
}

/* The train entry of tests/models/split_unused.lua (K = 3 when ponder)
 * built into *m, and its kernel IR printed; the caller frees both. NULL
 * (a failed check) when it does not build. */
static char *split_train(int ponder, AdLoopMode mode, PcModule *m) {
  char sets[2][32] = {"ponderinglm=true", "pondering_steps=3"};
  ModelOpts o = {.script = "tests/models/split_unused.lua", .config = "tiny"};
  o.pipeline.loop_mode = mode;
  for (int i = 0; ponder && i < 2; i++) vec_push(&o.sets, sets[i]);
  PcModuleOptions mo = {.entries = PC_ENTRY_TRAIN, .max_batch = 2, .max_seq = 16, .schedule = kschedule_default()};
  PcError err;
  int rc = pc_module_build(&o, &mo, m, &err);
  vec_free(&o.sets);
  if (rc < 0) {
    CHECKF(0, "%s", err.msg);
    return NULL;
  }
  char *kir = NULL;
  size_t n;
  FILE *f = open_memstream(&kir, &n);
  kir_print(m->prog, f);
  fclose(f);
  return kir;
}

/* The gradient of a split whose slices leave a gap starts from zeros and
 * adds them; one whose slices cover it gets them copied in, no zeros
 * (tests/models/split_unused.lua: the gap split on line 22, q, k, v on 23).
 * Slices of the same rows, one after another, share one loop over the
 * rows: the forward's q, k and v, the gap's two used pieces, and the
 * covering gradient's copies; the gap's added slices keep theirs. q, k and
 * v add their bias in that loop (no loop of its own, no copies). */
static void check_slice_gradients(void) {
  PcModule m;
  char *kir = split_train(0, AD_LOOPS_RECOMPUTE, &m);
  if (!kir) return;
  CHECK_STR_CONTAINS(kir, "# fill @tests/models/split_unused.lua:22\n");
  CHECKF(!strstr(kir, "# fill @tests/models/split_unused.lua:23\n"), "the covering slices' gradient is zero-filled first");
  const char *gap = strstr(kir, "# slice_grad @tests/models/split_unused.lua:22\n"), *next = gap ? strstr(gap + 1, "\n  # ") : NULL;
  CHECK(gap && next && strstr(gap, "= add(") && strstr(gap, "= add(") < next); /* added, not copied */
  const char *qkv = strstr(kir, "# slice @tests/models/split_unused.lua:23\n"),
             *add = strstr(kir, "# add @tests/models/split_unused.lua:23\n"); /* later: the backward's sums */
  CHECKF(qkv && (!add || add > qkv) && in_section(kir, "# slice @tests/models/split_unused.lua:23\n", "= add(") == 3,
         "q, k and v's bias is added in a loop of its own");
  static const struct {
    const char *section;
    int loops, copies;
  } want[] = {{"# slice @tests/models/split_unused.lua:23\n", 1, 0},
              {"# slice @tests/models/split_unused.lua:22\n", 1, 2},
              {"# slice_grad @tests/models/split_unused.lua:23\n", 1, 3},
              {"# slice_grad @tests/models/split_unused.lua:22\n", 2, 0}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    int loops = in_section(kir, want[i].section, "parfor "), copies = in_section(kir, want[i].section, "copy ");
    CHECKF(loops == want[i].loops && copies == want[i].copies, "%.*s: %d parallel loops, %d copies (not %d, %d)",
           (int)strlen(want[i].section) - 1, want[i].section, loops, copies, want[i].loops, want[i].copies);
  }
  free(kir);
  pc_module_free(&m);
}

/* The training graph's pondering loop (K = 3), with the body recomputed
 * or its activations saved. Recomputing: parameters' gradients summed over
 * the loop are summed in the caller's buffers (no copy into one at the end
 * of each pass), the stacks the loop fills slot by slot start unfilled (no
 * fill from the loop's line, 21), and the backward takes the vocabulary
 * mixture off a stack instead of running it again. Saving: the loop is
 * unrolled, so there are no stacks at all, and each pass's mixture runs
 * once. */
static void check_pondering_loop(AdLoopMode mode) {
  PcModule m;
  char *kir = split_train(1, mode, &m);
  if (!kir) return;
  const KProgram *p = m.prog;
  CHECK(p->entries.n == 1);
  int into_outputs = 0;
  for (size_t i = 0; i < p->stmts.n; i++) {
    const KStmt *st = &p->stmts.a[i];
    into_outputs += st->kind == KS_COPY && p->entries.a[0].bufs.a[st->buf[0]].kind == KB_OUTPUT;
  }
  CHECKF(into_outputs == 0, "%d copies into the train entry's outputs", into_outputs);
  if (mode == AD_LOOPS_RECOMPUTE) CHECK_STR_CONTAINS(kir, "stack_set @tests/models/split_unused.lua:21\n");
  else CHECKF(!strstr(kir, "stack_set"), "saved activations go through stacks (the loop is not unrolled)");
  CHECKF(!strstr(kir, "# fill @tests/models/split_unused.lua:21\n"), "a stack is filled before the loop sets every slot");
  int mixtures = 0;
  for (const char *at = kir; (at = strstr(at, "# vocab_attention @tests/models/split_unused.lua:21\n")); at++) mixtures++;
  int want = mode == AD_LOOPS_RECOMPUTE ? 1 : 3; /* the loop's body, or each of its passes */
  CHECKF(mixtures == want, "the vocabulary mixture is lowered %d times, not %d (the backward runs it again)", mixtures,
         want);
  free(kir);
  pc_module_free(&m);
}

/* Graph `text` lowered with schedule s (params "w" and "g", dims up to 2,
 * then 4); NULL (a failed check) when it does not parse or lower. */
static KProgram *lower_text_with(const char *text, const KSchedule *s) {
  PcError err;
  IrGraph *g = NULL;
  if (ir_parse(text, "inline", &g, &err) < 0 || ir_verify(g, &err) < 0) {
    CHECKF(0, "%s", err.msg);
    ir_graph_free(g);
    return NULL;
  }
  KProgram *p = kir_new();
  const char *names[2] = {"w", "g"};
  int64_t dim_max[2] = {2, 4};
  int rc = lower_entry(p, "f", g, dim_max, names, 2, s, &err);
  CHECKF(rc == 0, "%s", rc ? err.msg : "");
  ir_graph_free(g);
  if (rc == 0) return p;
  kir_free(p);
  return NULL;
}

/* with the CPU's schedule */
static KProgram *lower_text(const char *text) {
  KSchedule s = kschedule_default();
  return lower_text_with(text, &s);
}

/* Statements of p: parallel loops, copies. */
static int count_loops(const KProgram *p, int *copies) {
  int loops = 0;
  *copies = 0;
  for (size_t i = 0; i < p->stmts.n; i++) {
    loops += p->stmts.a[i].kind == KS_FOR && p->stmts.a[i].loop == KL_PARALLEL;
    *copies += p->stmts.a[i].kind == KS_COPY;
  }
  return loops;
}

/* The parallel loops of graph `text`; -1 (a failed check) when it does not
 * lower. */
static int parallel_loops(const char *text) {
  KProgram *p = lower_text(text);
  if (!p) return -1;
  int copies, loops = count_loops(p, &copies);
  kir_free(p);
  return loops;
}

/* Whether two buffers' bytes do not overlap. */
static int apart(const KBuf *a, const KBuf *b) {
  return a->offset + a->numel * 4 <= b->offset || b->offset + b->numel * 4 <= a->offset;
}

static const KBuf *buf_named(const KEntry *e, const char *name) {
  for (size_t i = 0; i < e->bufs.n; i++)
    if (!strcmp(e->bufs.a[i].name, name)) return &e->bufs.a[i];
  CHECKF(0, "no buffer %s", name);
  return NULL;
}

/* An elementwise op is computed inside its consumer only when nothing but
 * elementwise ops comes between them: a sum whose parts arrive apart (a
 * parameter's gradient from each unrolled pass) is added as they arrive,
 * not at the end with every part kept alive until then. Here the first
 * add, of two operands of its size, has a product between it and the
 * second: two loops, not one. And a
 * norm computes the elementwise group right before it (the residual sum)
 * in its own row loop, storing it for its other readers: one loop, not two. */
static void check_inlining(void) {
  int loops = parallel_loops("graph far_sum [N] {\n"
                             "  %w = param() {init=\"normal\", std=0.02} : f32[4,4]\n"
                             "  %x = input() : f32[N,4]\n"
                             "  %0 = linear(%x, %w) : f32[N,4]\n"
                             "  %1 = add(%x, %0) : f32[N,4]\n"
                             "  %2 = linear(%0, %w) : f32[N,4]\n"
                             "  %3 = add(%1, %2) : f32[N,4]\n"
                             "  %4 = gelu(%3) : f32[N,4]\n"
                             "  output(%4) {name=\"y\"}\n"
                             "}\n");
  CHECKF(loops == 2, "%d parallel loops for add, then add and gelu (not 2)", loops);
  loops = parallel_loops("graph residual_norm [N] {\n"
                         "  %w = param() {init=\"normal\", std=0.02} : f32[4]\n"
                         "  %x = input() : f32[N,4]\n"
                         "  %y = input() : f32[N,4]\n"
                         "  %0 = add(%x, %y) : f32[N,4]\n"
                         "  %1 = rmsnorm(%0, %w) {eps=1e-06} : f32[N,4]\n"
                         "  output(%1) {name=\"h\"}\n"
                         "  output(%0) {name=\"sum\"}\n"
                         "}\n");
  CHECKF(loops == 1, "%d parallel loops for a sum and the norm of it (not 1)", loops);
}

/* An elementwise op computes the group right before it that it reads, when
 * that group has other readers too (a bias add that the activation and the
 * backward read): one loop, which stores both. The group is not written
 * over an operand that the op after it reads in the same loop. */
static void check_group_before_elementwise(void) {
  int loops = parallel_loops("graph bias_gelu [N] {\n"
                             "  %w = param() {init=\"normal\", std=0.02} : f32[4,4]\n"
                             "  %g = param() {init=\"zeros\", std=0.0} : f32[4]\n"
                             "  %x = input() : f32[N,4]\n"
                             "  %0 = linear(%x, %w) : f32[N,4]\n"
                             "  %1 = add(%0, %g) : f32[N,4]\n"
                             "  %2 = gelu(%1) : f32[N,4]\n"
                             "  %3 = linear(%2, %w) : f32[N,4]\n"
                             "  %4 = linear(%1, %w) : f32[N,4]\n"
                             "  output(%3) {name=\"y\"}\n  output(%4) {name=\"z\"}\n"
                             "}\n");
  CHECKF(loops == 1, "%d parallel loops for a bias add read twice and the activation after it (not 1)", loops);
  KProgram *p = lower_text("graph bias_mul [N] {\n"
                           "  %w = param() {init=\"normal\", std=0.02} : f32[4,4]\n"
                           "  %g = param() {init=\"zeros\", std=0.0} : f32[4]\n"
                           "  %x = input() : f32[N,4]\n"
                           "  %0 = linear(%x, %w) : f32[N,4]\n"
                           "  %1 = add(%0, %g) : f32[N,4]\n"
                           "  %2 = mul(%1, %0) : f32[N,4]\n"
                           "  %3 = linear(%2, %w) : f32[N,4]\n"
                           "  %4 = linear(%1, %w) : f32[N,4]\n"
                           "  output(%3) {name=\"y\"}\n  output(%4) {name=\"z\"}\n"
                           "}\n");
  if (!p) return;
  const KEntry *e = &p->entries.a[0];
  CHECK(p->gemms.n == 3);
  if (p->gemms.n == 3) { /* %0 is the first product's result, %1 the third's operand */
    const KBuf *b0 = &e->bufs.a[p->gemms.a[0].c], *b1 = &e->bufs.a[p->gemms.a[2].a];
    CHECKF(apart(b0, b1), "the bias add takes the bytes of the product that the op after it reads");
  }
  kir_free(p);
}

/* A product that only a sum right after it reads is added into the sum's
 * buffer by the product itself (beta = 1), the other operand copied there
 * first when it cannot be written over (here an input): no loop, no copy
 * of the product. A product with another reader is stored, and the sum
 * has its loop. A column sum adds itself in the same way. */
static void check_products_into_sums(void) {
  const char *fmt = "graph product_sum [N] {\n"
                    "  %%w = param() {init=\"normal\", std=0.02} : f32[4,4]\n"
                    "  %%x = input() : f32[N,4]\n"
                    "  %%y = input() : f32[N,4]\n"
                    "  %%0 = linear(%%x, %%w) : f32[N,4]\n"
                    "  %%1 = add(%%y, %%0) : f32[N,4]\n"
                    "  output(%%1) {name=\"s\"}\n%s"
                    "}\n";
  char alone[1024], shared[1024];
  snprintf(alone, sizeof alone, fmt, "");
  snprintf(shared, sizeof shared, fmt, "  output(%0) {name=\"p\"}\n");
  KProgram *p = lower_text(alone);
  if (!p) return;
  int copies, loops = count_loops(p, &copies);
  CHECKF(loops == 0 && copies == 1 && p->gemms.n == 1 && p->gemms.a[0].beta == 1.0f,
         "a product summed into an input's copy: %d parallel loops, %d copies, %zu products (want 0, 1, 1 with beta 1)",
         loops, copies, p->gemms.n);
  kir_free(p);
  loops = parallel_loops(shared);
  CHECKF(loops == 1, "%d parallel loops for a sum of a product read twice (not 1)", loops);
  /* a column sum (a bias's gradient) adds itself into its sum the same way */
  p = lower_text("graph colsum_sum [N] {\n"
                 "  %b = input() : f32[4]\n"
                 "  %x = input() : f32[N,4]\n"
                 "  %0 = sum_to(%x, %b) : f32[4]\n"
                 "  %1 = add(%b, %0) : f32[4]\n"
                 "  output(%1) {name=\"s\"}\n"
                 "}\n");
  if (!p) return;
  loops = count_loops(p, &copies);
  CHECKF(loops == 0 && copies == 1, "a column sum summed into an input's copy: %d parallel loops, %d copies (want 0, 1)",
         loops, copies);
  kir_free(p);
}

/* Graph p's first product makes a norm gradient's dy, its second reads the
 * sum the gradient's row loop computes: their bytes must be apart (the
 * gradient's column sums read dy after that loop). Frees p. */
static void check_sum_apart_from_dy(KProgram *p) {
  if (!p) return;
  const KEntry *e = &p->entries.a[0];
  CHECK(p->gemms.n == 2);
  if (p->gemms.n == 2) {
    const KBuf *bd = &e->bufs.a[p->gemms.a[0].c], *bs = &e->bufs.a[p->gemms.a[1].a];
    CHECKF(bd->kind == KB_ARENA && bs->kind == KB_ARENA && apart(bd, bs), "the sum after the norm gradient takes the bytes of its dy");
  }
  kir_free(p);
}

/* A norm gradient computes the elementwise group right after it that reads
 * its dx (the residual gradient's sum) in its row loop: the group has no
 * loop of its own. A group that reads a weight gradient, which the norm
 * gradient sums after that loop, keeps its own. */
static void check_norm_grad_epilogue(void) {
  const char *head = "graph norm_grad [N] {\n"
                     "  %w = param() {init=\"ones\", std=0.0} : f32[4]\n"
                     "  %x = input() : f32[N,4]\n"
                     "  %dy = input() : f32[N,4]\n"
                     "  %r = input() : f32[N,4]\n"
                     "  %0, %1, %2 = layernorm_grad(%x, %w, %dy) {eps=1e-05} : f32[N,4], f32[4], f32[4]\n";
  const char *tail = "  output(%1) {name=\"dw\"}\n  output(%2) {name=\"db\"}\n}\n";
  char alone[1024], with_sum[1024], with_dw[1024];
  snprintf(alone, sizeof alone, "%s  output(%%0) {name=\"dx\"}\n%s", head, tail);
  snprintf(with_sum, sizeof with_sum, "%s  %%3 = add(%%r, %%0) : f32[N,4]\n  output(%%3) {name=\"dx\"}\n%s", head, tail);
  snprintf(with_dw, sizeof with_dw, "%s  %%3 = add(%%0, %%1) : f32[N,4]\n  output(%%3) {name=\"dx\"}\n%s", head, tail);
  int base = parallel_loops(alone), sum = parallel_loops(with_sum), dw = parallel_loops(with_dw);
  CHECKF(base > 0 && sum == base, "%d parallel loops with the residual gradient's sum, %d without", sum, base);
  CHECKF(dw == base + 1, "%d parallel loops with a sum that reads dw, %d without (one more expected)", dw, base);
  /* the sum is not written over dy, which the column sums read after the row loop */
  check_sum_apart_from_dy(lower_text("graph norm_grad_over_dy [N] {\n"
                                     "  %w = param() {init=\"ones\", std=0.0} : f32[4,4]\n"
                                     "  %g = param() {init=\"ones\", std=0.0} : f32[4]\n"
                                     "  %x = input() : f32[N,4]\n"
                                     "  %d = linear(%x, %w) : f32[N,4]\n"
                                     "  %0, %1, %2 = layernorm_grad(%x, %g, %d) {eps=1e-05} : f32[N,4], f32[4], f32[4]\n"
                                     "  %s = add(%d, %0) : f32[N,4]\n"
                                     "  %y = linear(%s, %w) : f32[N,4]\n"
                                     "  output(%y) {name=\"y\"}\n  output(%1) {name=\"dw\"}\n  output(%2) {name=\"db\"}\n"
                                     "}\n"));
  /* nor, when it cannot be written over dx (read again here), over the dy
   * that dies at the norm gradient: the sum lives from the row loop on */
  check_sum_apart_from_dy(lower_text("graph norm_grad_dy_dies [N] {\n"
                                     "  %w = param() {init=\"ones\", std=0.0} : f32[4,4]\n"
                                     "  %g = param() {init=\"ones\", std=0.0} : f32[4]\n"
                                     "  %x = input() : f32[N,4]\n"
                                     "  %r = input() : f32[N,4]\n"
                                     "  %d = linear(%x, %w) : f32[N,4]\n"
                                     "  %0, %1, %2 = layernorm_grad(%x, %g, %d) {eps=1e-05} : f32[N,4], f32[4], f32[4]\n"
                                     "  %s = add(%r, %0) : f32[N,4]\n"
                                     "  %y = linear(%s, %w) : f32[N,4]\n"
                                     "  output(%y) {name=\"y\"}\n  output(%0) {name=\"dx\"}\n"
                                     "  output(%1) {name=\"dw\"}\n  output(%2) {name=\"db\"}\n"
                                     "}\n"));
}

/* A norm that computes the sum before it reads the sum's operands row by
 * row, a broadcast one (here p, [4, 4] against [N, 4, 4]) in every row of
 * the batch: its bytes must stay apart from the norm's output. Without the
 * plan keeping p alive until the norm, the output goes there: t (alive to
 * the end) and the stored sum hold the lower bytes, and p, placed after the
 * larger output, would not be alive at the same time. */
static void check_norm_operand_lives(void) {
  KProgram *p = lower_text("graph broadcast_norm [N] {\n"
                           "  %w = param() {init=\"normal\", std=0.02} : f32[4,4]\n"
                           "  %g = param() {init=\"ones\", std=0.0} : f32[4]\n"
                           "  %x = input() : f32[N,4,4]\n"
                           "  %c = input() : f32[4,4]\n"
                           "  %t = linear(%x, %w) : f32[N,4,4]\n"
                           "  %p = linear(%c, %w) : f32[4,4]\n"
                           "  %s = add(%t, %p) : f32[N,4,4]\n"
                           "  %n = rmsnorm(%s, %g) {eps=1e-06} : f32[N,4,4]\n"
                           "  %o = linear(%n, %w) : f32[N,4,4]\n"
                           "  %y = add(%o, %t) : f32[N,4,4]\n"
                           "  output(%y) {name=\"y\"}\n"
                           "}\n");
  if (!p) return;
  const KEntry *e = &p->entries.a[0];
  const KBuf *bp = buf_named(e, "p"), *bn = buf_named(e, "n");
  if (bp && bn) {
    CHECK(bp->kind == KB_ARENA && bn->kind == KB_ARENA);
    CHECKF(apart(bp, bn), "the norm's output (at %llu) takes bytes of its broadcast operand (at %llu)",
           (unsigned long long)bn->offset, (unsigned long long)bp->offset);
  }
  kir_free(p);
}

/* With a GPU's schedule, q, k and v sliced from a biased product are read
 * in place by the attention kernels (views): no loop slices them, and the
 * call reads the product's buffer in rows of its width from each slice's
 * first column, adding the bias from the same column. When something else
 * reads one of them too, all three are stored (one loop slices them), and
 * read as buffers of their own: the product does not outlive them. */
/* q, k and v sliced from a biased product of 24 columns, and their
 * attention (graph text to go on, then "}") */
static const char attention_graph[] = "graph views [B, T] {\n"
                                      "  %w = param() {init=\"normal\", std=0.02} : f32[24,8]\n"
                                      "  %g = param() {init=\"zeros\", std=0.0} : f32[24]\n"
                                      "  %x = input() : f32[B,T,8]\n"
                                      "  %0 = linear(%x, %w) : f32[B,T,24]\n"
                                      "  %1 = add(%0, %g) : f32[B,T,24]\n"
                                      "  %2 = slice(%1) {axis=2, start=0, size=8} : f32[B,T,8]\n"
                                      "  %3 = slice(%1) {axis=2, start=8, size=8} : f32[B,T,8]\n"
                                      "  %4 = slice(%1) {axis=2, start=16, size=8} : f32[B,T,8]\n"
                                      "  %5, %6 = attention(%2, %3, %4) {n_head=2, n_kv_head=2} : f32[B,T,8], f32[B,2,T]\n";

static void check_attention_views(void) {
  KSchedule s = kschedule_cuda();
  for (int q_read = 0; q_read < 2; q_read++) {
    char text[1024];
    snprintf(text, sizeof text, "%s  output(%%5) {name=\"y\"}\n%s}\n", attention_graph,
             q_read ? "  output(%2) {name=\"q\"}\n" : "");
    KProgram *p = lower_text_with(text, &s);
    if (!p) return;
    int copies, loops = count_loops(p, &copies);
    CHECKF(loops == q_read && p->calls.n == 1, "q %s: %d loops, %zu calls", q_read ? "read" : "a view", loops, p->calls.n);
    if (p->calls.n == 1) {
      const KCall *c = &p->calls.a[0];
      const KEntry *e = &p->entries.a[0];
      const KExpr *x = p->exprs.a;
      int64_t at[3] = {0, 8, 16};
      for (int k = 0; k < 3; k++) {
        int view = c->buf[k] == c->buf[2] && e->bufs.a[c->buf[3 + k]].kind == KB_PARAM && x[c->arg[6 + 3 * k]].i == at[k] &&
                   x[c->arg[7 + 3 * k]].i == 24 && x[c->arg[8 + 3 * k]].i == at[k];
        int own = (k == 2 || c->buf[k] != c->buf[2]) && x[c->arg[6 + 3 * k]].i == 0 && x[c->arg[7 + 3 * k]].i == 8 &&
                  x[c->arg[8 + 3 * k]].i == -1;
        CHECKF(q_read ? own : view, "q %s: input %d is %s", q_read ? "read" : "a view", k,
               q_read ? "not a buffer of its own" : "no view of the product");
      }
    }
    kir_free(p);
  }
}

/* With a GPU's schedule, q and k sliced from a biased product and rotated
 * (Pythia) are read in place by their ropes, the bias added as they load:
 * no buffer for either slice. v, read by attention alone, stays a slice of
 * its own (a view would keep the product alive as long as the attention's
 * readers, beside the rotated q and k). */
static const char rope_graph[] = "graph ropes [B, T] {\n"
                              "  %w = param() {init=\"normal\", std=0.02} : f32[24,8]\n"
                              "  %g = param() {init=\"zeros\", std=0.0} : f32[24]\n"
                              "  %x = input() : f32[B,T,8]\n"
                              "  %ids = input() : i32[B,T]\n"
                              "  %p = positions(%ids) : i32[T]\n"
                              "  %0 = linear(%x, %w) : f32[B,T,24]\n"
                              "  %1 = add(%0, %g) : f32[B,T,24]\n"
                              "  %2 = slice(%1) {axis=2, start=0, size=8} : f32[B,T,8]\n"
                              "  %3 = slice(%1) {axis=2, start=8, size=8} : f32[B,T,8]\n"
                              "  %4 = slice(%1) {axis=2, start=16, size=8} : f32[B,T,8]\n"
                              "  %q = rope(%2, %p) {n_head=2, rotary_dims=2, theta=10000.0} : f32[B,T,8]\n"
                              "  %k = rope(%3, %p) {n_head=2, rotary_dims=2, theta=10000.0} : f32[B,T,8]\n"
                              "  %5, %6 = attention(%q, %k, %4) {n_head=2, n_kv_head=2} : f32[B,T,8], f32[B,2,T]\n"
                              "  output(%5) {name=\"y\"}\n"
                              "}\n";

static void check_rope_views(void) {
  KSchedule s = kschedule_cuda();
  KProgram *p = lower_text_with(rope_graph, &s);
  if (!p) return;
  const KEntry *e = &p->entries.a[0];
  int slices = 0; /* arena buffers of [B, T, 8]: the rotated q and k, and v */
  for (size_t i = 0; i < e->bufs.n; i++) slices += e->bufs.a[i].kind == KB_ARENA && e->bufs.a[i].numel == 2 * 4 * 8;
  CHECKF(slices == 3, "%d buffers of [B, T, 8], not 3 (q and k rotated, v)", slices);
  CHECKF(p->calls.n == 1, "%zu calls", p->calls.n);
  if (p->calls.n == 1) {
    const KCall *c = &p->calls.a[0];
    const KExpr *x = p->exprs.a;
    CHECKF(c->buf[2] != c->buf[0] && c->buf[2] != c->buf[1] && x[c->arg[12]].i == 0 && x[c->arg[13]].i == 8 &&
               x[c->arg[14]].i == -1,
           "v is not a buffer of its own");
  }
  kir_free(p);
}

/* Parallel loops an entry runs (inside host-level loops too) */
static int host_parallel_loops(const KProgram *p, uint32_t block) {
  int n = 0;
  const VecU32 *b = &p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    if (s->kind == KS_FOR && s->loop == KL_PARALLEL)
      n++;
    else if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE)
      n += host_parallel_loops(p, s->body);
  }
  return n;
}

static int merged_loops(const char *text, int merge) {
  KSchedule s = kschedule_cuda();
  s.merge_rows = merge;
  KProgram *p = lower_text_with(text, &s);
  if (!p) return -1;
  int n = host_parallel_loops(p, p->entries.a[0].body);
  kir_free(p);
  return n;
}

/* With a GPU's schedule, sibling row loops over the same rows that share
 * no written memory run as one (merge_rows): v's slice and the ropes of q
 * and k. Not loops over other rows, nor a rope of what the other wrote. */
static void check_merge_rows(void) {
  int apart = merged_loops(rope_graph, 0), merged = merged_loops(rope_graph, 1);
  CHECKF(apart == 3 && merged == 1, "v's slice and two ropes: %d loops apart, %d merged (not 3, 1)", apart, merged);
  merged = merged_loops("graph other_rows [B, T] {\n"
                        "  %a = input() : f32[B,T,8]\n"
                        "  %b = input() : f32[B,8]\n"
                        "  %0 = gelu(%a) : f32[B,T,8]\n"
                        "  %1 = gelu(%b) : f32[B,8]\n"
                        "  output(%0) {name=\"y\"}\n"
                        "  output(%1) {name=\"z\"}\n"
                        "}\n",
                        1);
  CHECKF(merged == 2, "gelu over [B, T] rows and over [B]: %d loops (not 2)", merged);
  merged = merged_loops("graph twice [B, T] {\n"
                        "  %x = input() : f32[B,T,8]\n"
                        "  %ids = input() : i32[B,T]\n"
                        "  %p = positions(%ids) : i32[T]\n"
                        "  %0 = rope(%x, %p) {n_head=2, rotary_dims=2, theta=10000.0} : f32[B,T,8]\n"
                        "  %1 = rope(%0, %p) {n_head=2, rotary_dims=2, theta=10000.0} : f32[B,T,8]\n"
                        "  output(%1) {name=\"y\"}\n"
                        "}\n",
                        1);
  CHECKF(merged == 2, "a rope of a rope: %d loops (not 2)", merged);
}

/* With a GPU's schedule, an attention gradient whose dq, dk and dv are
 * copied into their columns of one gradient (a covering chain of slice
 * gradients) writes them there itself, in rows of its width: no copies, no
 * fill, and one buffer for the whole chain. When something else reads dk
 * too, dq, dk and dv are buffers of their own and one loop copies them in
 * (a fourth copy: dk to its output). */
static void check_attention_gradients_in_place(void) {
  static const char *grad = "  %dy = input() : f32[B,T,8]\n"
                            "  %7, %8, %9 = attention_grad(%2, %3, %4, %5, %6, %dy) {n_head=2, n_kv_head=2} : "
                            "f32[B,T,8], f32[B,T,8], f32[B,T,8]\n"
                            "  %10 = fill() {value=0.0} : f32[B,T,24]\n"
                            "  %11 = slice_grad(%10, %9) {axis=2, start=16, size=8} : f32[B,T,24]\n"
                            "  %12 = slice_grad(%11, %8) {axis=2, start=8, size=8} : f32[B,T,24]\n"
                            "  %13 = slice_grad(%12, %7) {axis=2, start=0, size=8} : f32[B,T,24]\n"
                            "  output(%13) {name=\"dqkv\"}\n";
  KSchedule s = kschedule_cuda();
  for (int dk_read = 0; dk_read < 2; dk_read++) {
    char text[2048];
    snprintf(text, sizeof text, "%s%s%s}\n", attention_graph, grad, dk_read ? "  output(%8) {name=\"dk\"}\n" : "");
    KProgram *p = lower_text_with(text, &s);
    if (!p) return;
    int copies, fills = 0, loops = count_loops(p, &copies);
    for (size_t i = 0; i < p->stmts.n; i++) fills += p->stmts.a[i].kind == KS_FILL;
    CHECKF(loops == dk_read && copies == 4 * dk_read && !fills && p->calls.n == 2, "dk %s: %d loops, %d copies, %d fills",
           dk_read ? "read" : "in place", loops, copies, fills);
    if (p->calls.n == 2) {
      const KCall *c = &p->calls.a[1];
      const KExpr *x = p->exprs.a;
      const KEntry *e = &p->entries.a[0];
      int64_t at[3] = {0, 8, 16};
      for (int k = 0; k < 3; k++) { /* in place: in the caller's buffer of output 0 */
        const KBuf *b = &e->bufs.a[c->buf[9 + k]];
        int in_place = b->kind == KB_OUTPUT && b->index == 0 && x[c->arg[15 + 2 * k]].i == at[k] && x[c->arg[16 + 2 * k]].i == 24;
        int own = x[c->arg[15 + 2 * k]].i == 0 && x[c->arg[16 + 2 * k]].i == 8;
        CHECKF(dk_read ? own : in_place, "dk %s: output %d is %s", dk_read ? "read" : "in place", k,
               dk_read ? "not a buffer of its own" : "not written into its columns");
      }
    }
    kir_free(p);
  }
}

/* With a GPU's schedule a bias's gradient (sum_to into a fixed shape) is a
 * product of a row of ones and the gradient: one product of one row, whose
 * ones a kernel stores into a buffer only products read, and no column-sum
 * loops; and the GELU's gradient, which only products read, gets a buffer
 * of its own, not its pre-activation's (which kernels load), so in bf16 it
 * can store its mirror alone. Without the two knobs: column sums, and the
 * gradient written over the pre-activation. */
static const char bias_grad_graph[] = "graph bias_grad [B, T] {\n"
                                      "  %w = param() {init=\"normal\", std=0.02} : f32[8,8]\n"
                                      "  %g = param() {init=\"zeros\", std=0.0} : f32[8]\n"
                                      "  %x = input() : f32[B,T,8]\n"
                                      "  %dy = input() : f32[B,T,8]\n"
                                      "  %0 = linear(%x, %w) : f32[B,T,8]\n"
                                      "  %1 = gelu_tanh_grad(%0, %dy) : f32[B,T,8]\n"
                                      "  %2 = sum_to(%1, %g) : f32[8]\n"
                                      "  %3 = matmul_tn(%1, %x) : f32[8,8]\n"
                                      "  output(%2) {name=\"db\"}\n"
                                      "  output(%3) {name=\"dw\"}\n"
                                      "}\n";

static void check_bias_gradient_products(void) {
  for (int gpu = 0; gpu < 2; gpu++) {
    KSchedule s = kschedule_cuda();
    s.sums_as_products = s.operands_apart = gpu;
    KProgram *p = lower_text_with(bias_grad_graph, &s);
    if (!p) return;
    const KEntry *e = &p->entries.a[0];
    uint32_t pre = UINT32_MAX, grad = UINT32_MAX;
    int row_products = 0, ones_only_products = 0;
    for (size_t i = 0; i < p->gemms.n; i++) {
      if (!p->gemms.a[i].ta && p->gemms.a[i].tb) pre = p->gemms.a[i].c; /* the linear */
      if (p->gemms.a[i].ta) grad = p->gemms.a[i].a;                     /* matmul_tn reads the gradient */
    }
    for (size_t i = 0; i < p->gemms.n; i++) {
      const KGemm *gm = &p->gemms.a[i];
      if (p->exprs.a[gm->m].op == KE_ICONST && p->exprs.a[gm->m].i == 1) {
        row_products++;
        ones_only_products += e->bufs.a[gm->a].operand_only && gm->b == grad;
      }
    }
    int loops = host_parallel_loops(p, e->body);
    if (gpu)
      CHECKF(row_products == 1 && ones_only_products == 1 && grad != pre && loops == 2,
             "GPU: %d products of a row (%d of operand-only ones and the gradient; not 1, 1), gradient %s, %d loops "
             "(not 2: the gradient, the ones)",
             row_products, ones_only_products, grad == pre ? "over its pre-activation" : "apart", loops);
    else
      CHECKF(row_products == 0 && grad == pre && loops == 3,
             "without the knobs: %d products of a row, gradient %s, %d loops (not 0, in place, 3: the gradient and two "
             "column-sum stages)",
             row_products, grad == pre ? "in place" : "apart", loops);
    kir_free(p);
  }
}

/* Stores into buf in block, nested blocks included */
static int stores_into(const KProgram *p, uint32_t block, uint32_t buf) {
  int n = 0;
  const VecU32 *b = &p->blocks.a[block];
  for (size_t i = 0; i < b->n; i++) {
    const KStmt *s = &p->stmts.a[b->a[i]];
    n += s->kind == KS_STORE && s->buf[0] == buf;
    if (s->kind == KS_FOR || s->kind == KS_IF || s->kind == KS_WHILE) n += stores_into(p, s->body, buf);
  }
  return n;
}

/* With a GPU's schedule a bias add that the activation and its gradient
 * both read is computed again in each (recompute_shared): the activation's
 * loop stores nothing into the product's buffer, which both read. Without:
 * it stores the bias add there for the gradient. */
static void check_shared_bias_add(void) {
  static const char graph[] = "graph shared [B, T] {\n"
                              "  %w = param() {init=\"normal\", std=0.02} : f32[8,8]\n"
                              "  %g = param() {init=\"zeros\", std=0.0} : f32[8]\n"
                              "  %x = input() : f32[B,T,8]\n"
                              "  %dy = input() : f32[B,T,8]\n"
                              "  %0 = linear(%x, %w) : f32[B,T,8]\n"
                              "  %1 = add(%0, %g) : f32[B,T,8]\n"
                              "  %2 = gelu_tanh(%1) : f32[B,T,8]\n"
                              "  %3 = gelu_tanh_grad(%1, %dy) : f32[B,T,8]\n"
                              "  output(%2) {name=\"y\"}\n"
                              "  output(%3) {name=\"dx\"}\n"
                              "}\n";
  for (int recompute = 0; recompute < 2; recompute++) {
    KSchedule s = kschedule_cuda();
    s.recompute_shared = recompute;
    KProgram *p = lower_text_with(graph, &s);
    if (!p) return;
    const VecU32 *body = &p->blocks.a[p->entries.a[0].body];
    const KStmt *activation = NULL; /* the first row loop */
    for (size_t i = 0; i < body->n && !activation; i++)
      if (p->stmts.a[body->a[i]].kind == KS_FOR) activation = &p->stmts.a[body->a[i]];
    int stores = activation && p->gemms.n == 1 ? stores_into(p, activation->body, p->gemms.a[0].c) : -1;
    CHECKF(stores == !recompute, "recompute_shared %d: the activation's loop stores %d times into the product's buffer "
           "(not %d)", recompute, stores, !recompute);
    kir_free(p);
  }
}

/* A norm gradient whose dx only a sum with a value that dies there reads
 * adds dx into that value's buffer in its row loop (sums_into_ops), on any
 * schedule: dx has no buffer and no store of its own. When the value lives
 * on (an output), the row loop stores dx and computes the sum after it. */
static void check_norm_grad_sum(void) {
  for (int lives = 0; lives < 2; lives++) {
    char text[1200];
    snprintf(text, sizeof text,
             "graph norm_grad_sum [B, T] {\n"
             "  %%w = param() {init=\"ones\", std=0.0} : f32[8]\n"
             "  %%g = param() {init=\"zeros\", std=0.0} : f32[8]\n"
             "  %%x = input() : f32[B,T,8]\n"
             "  %%dy = input() : f32[B,T,8]\n"
             "  %%a = input() : f32[B,T,8]\n"
             "  %%m = input() : f32[8,8]\n"
             "  %%r = matmul(%%a, %%m) : f32[B,T,8]\n"
             "  %%0, %%1, %%2 = layernorm_grad(%%x, %%w, %%dy) {eps=1e-05} : f32[B,T,8], f32[8], f32[8]\n"
             "  %%3 = add(%%r, %%0) : f32[B,T,8]\n"
             "  output(%%3) {name=\"dx\"}\n"
             "  output(%%1) {name=\"dw\"}\n"
             "  output(%%2) {name=\"db\"}\n"
             "%s}\n",
             lives ? "  output(%r) {name=\"r\"}\n" : "");
    for (int gpu = 0; gpu < 2; gpu++) {
      KSchedule s = gpu ? kschedule_cuda() : kschedule_default();
      KProgram *p = lower_text_with(text, &s);
      if (!p) return;
      const KEntry *e = &p->entries.a[0];
      int full = 0; /* buffers of [B, T, 8] besides the inputs and outputs: dx's own */
      for (size_t i = 0; i < e->bufs.n; i++) full += e->bufs.a[i].kind == KB_ARENA && e->bufs.a[i].numel == 2 * 4 * 8;
      CHECKF(full == lives, "%s, the product's result %s: %d arena buffers of [B, T, 8] (not %d)", gpu ? "GPU" : "CPU",
             lives ? "an output" : "dying at the sum", full, lives);
      kir_free(p);
    }
  }
}

int main(void) {
  char sets[2][32] = {"ponderinglm=true", "pondering_steps=3"};
  ModelOpts o = {.script = "models/gpt2.lua", .config = "tiny"};
  vec_push(&o.sets, sets[0]);
  vec_push(&o.sets, sets[1]);
  PcModuleOptions mo = {.entries = PC_ENTRY_LOGITS, .max_batch = 2, .max_seq = 16, .schedule = kschedule_default()};
  PcModule m;
  PcError err;
  if (pc_module_build(&o, &mo, &m, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  char *kir = NULL, *c = NULL;
  size_t n;
  FILE *f = open_memstream(&kir, &n);
  kir_print(m.prog, f);
  fclose(f);
  f = open_memstream(&c, &n);
  CHECK(c_render(&m, f, &err) == 0);
  fclose(f);
  golden("tests/golden/gpt2-tiny-k3-logits.kir", kir);
  golden("tests/golden/gpt2-tiny-k3-logits.c", c);
  free(kir);
  free(c);
  pc_module_free(&m);
  vec_free(&o.sets);
  check_slice_gradients();
  check_attention_views();
  check_rope_views();
  check_merge_rows();
  check_attention_gradients_in_place();
  check_inlining();
  check_norm_operand_lives();
  check_norm_grad_epilogue();
  check_group_before_elementwise();
  check_products_into_sums();
  check_bias_gradient_products();
  check_shared_bias_add();
  check_norm_grad_sum();
  check_pondering_loop(AD_LOOPS_RECOMPUTE);
  check_pondering_loop(AD_LOOPS_SAVE);
  return check_exit();
}
