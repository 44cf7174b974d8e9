/* Every differentiable op against finite differences. Each case builds a
 * small graph whose parameters are the op's float inputs, with
 * loss = sum(y * R) for a fixed random R; autodiff's gradients are compared
 * with central differences of sum(y * R), computed in double from the
 * float32 outputs y. Loops are checked in both autodiff loop modes. */
#include <math.h>
#include <stdlib.h>

#include "ir/autodiff.h"
#include "runtime/rng.h"
#include "tests/check.h"
#include "tests/grad_check.h"

typedef struct {
  IrGraph *g;
  IrBuilder b;
  Params p;
  NamedTensor in[4];
  size_t n_in;
  Rng rng;
  PcError err;
} Case;

static void case_begin(Case *c, const char *name) {
  *c = (Case){.g = ir_graph_new(name), .rng = rng_new(42)};
  c->b = ir_builder(c->g);
}

static IrType type_of(int rank, const int64_t *dim) {
  IrType t = {PC_F32, {rank, {0}}};
  for (int i = 0; i < rank; i++) t.shape.dim[i] = dim[i];
  return t;
}

/* A parameter with values drawn from N(0, scale^2) (plus shift). */
static uint32_t param(Case *c, const char *name, int rank, const int64_t *dim, double scale, double shift) {
  IrType t = type_of(rank, dim);
  uint32_t v = ir_param(&c->b, name, &t, "normal", 1.0, NULL, &c->err);
  ParamSpec s = {.name = (char *)name, .rank = rank};
  memcpy(s.dim, dim, sizeof(int64_t) * (size_t)rank);
  params_add(&c->p, &s, &c->err);
  Tensor *x = tensor_new(PC_F32, rank, dim);
  for (int64_t i = 0; i < tensor_numel(x); i++) tensor_f32(x)[i] = (float)(shift + scale * rng_normal(&c->rng));
  c->p.value[c->p.spec.n - 1] = x;
  return v;
}

static uint32_t int_input(Case *c, const char *name, int rank, const int64_t *dim, int32_t bound) {
  IrType t = {PC_I32, {rank, {0}}};
  for (int i = 0; i < rank; i++) t.shape.dim[i] = dim[i];
  uint32_t v = ir_input(&c->b, name, &t, &c->err);
  Tensor *x = tensor_new(PC_I32, rank, dim);
  for (int64_t i = 0; i < tensor_numel(x); i++) tensor_i32(x)[i] = (int32_t)(rng_u64(&c->rng) % (uint64_t)bound);
  c->in[c->n_in++] = (NamedTensor){name, x};
  return v;
}

static uint32_t op(Case *c, IrOp o, const uint32_t *in, uint32_t n, const IrAttr *attr) {
  uint32_t v = ir_build(&c->b, o, in, n, attr, NULL, &c->err);
  if (v == IR_NONE) PC_BUG("test graph: %s", c->err.msg);
  return v;
}

/* Finishes the case: outputs y and loss = sum(y * R), autodiff in `mode`,
 * and the comparison. */
static void case_check(Case *c, uint32_t y, AdLoopMode mode, double rtol) {
  const IrType *yt = ir_type(c->g, y);
  int64_t dim[PC_MAX_RANK];
  for (int d = 0; d < yt->shape.rank; d++) dim[d] = yt->shape.dim[d];
  IrType rt = *yt;
  uint32_t r = ir_input(&c->b, "R", &rt, &c->err);
  Tensor *R = tensor_new(PC_F32, yt->shape.rank, dim);
  for (int64_t i = 0; i < tensor_numel(R); i++) tensor_f32(R)[i] = (float)rng_normal(&c->rng);
  c->in[c->n_in++] = (NamedTensor){"R", R};
  uint32_t prod[2] = {y, r};
  uint32_t loss = op(c, IR_SUM, (uint32_t[]){op(c, IR_MUL, prod, 2, NULL)}, 1, NULL);
  ir_output(&c->b, "y", y, &c->err);
  ir_output(&c->b, "loss", loss, &c->err);
  CHECKF(ir_verify(c->g, &c->err) == 0, "%s: %s", c->g->name, c->err.msg);

  IrGraph *train;
  if (ir_autodiff(c->g, "loss", mode, &train, &c->err) < 0) {
    CHECKF(0, "%s: %s", c->g->name, c->err.msg);
    return;
  }
  GcOutputs out = {0};
  CHECKF(gc_run(train, &c->p, c->in, c->n_in, &out, &c->err) == 0, "%s: %s", c->g->name, c->err.msg);

  double worst = 0;
  for (size_t p = 0; p < c->p.spec.n; p++) {
    char gname[256];
    snprintf(gname, sizeof gname, "grad:%s", c->p.spec.a[p].name);
    const Tensor *grad = gc_get(&out, gname);
    Tensor *x = c->p.value[p];
    for (int64_t i = 0; i < tensor_numel(x); i++) {
      float keep = tensor_f32(x)[i];
      /* Richardson: central differences at h and h/2 combined, O(h^4) */
      double h = 1e-2 * fmax(1.0, fabs(keep)), d[2];
      for (int half = 0; half < 2; half++) {
        double step = half ? h / 2 : h, f[2], at[2];
        for (int s = 0; s < 2; s++) {
          tensor_f32(x)[i] = (float)(keep + (s ? -step : step));
          at[s] = tensor_f32(x)[i]; /* where float32 actually put it */
          GcOutputs o = {0};
          gc_run(c->g, &c->p, c->in, c->n_in, &o, &c->err);
          const Tensor *yv = gc_get(&o, "y");
          f[s] = 0;
          for (int64_t k = 0; k < tensor_numel(yv); k++) f[s] += (double)tensor_f32(yv)[k] * tensor_f32(R)[k];
          gc_free(&o);
        }
        d[half] = (f[0] - f[1]) / (at[0] - at[1]);
      }
      tensor_f32(x)[i] = keep;
      double fd = (4 * d[1] - d[0]) / 3, an = tensor_f32(grad)[i];
      double err = fabs(fd - an) / fmax(1.0, fmax(fabs(fd), fabs(an)));
      worst = fmax(worst, err);
      CHECKF(err <= rtol, "%s: d/d%s[%lld]: autodiff %.6g, finite differences %.6g", c->g->name, c->p.spec.a[p].name,
             (long long)i, an, fd);
    }
  }
  printf("%-28s %s  max error %.2e (tolerance %.0e)\n", c->g->name, mode == AD_LOOPS_SAVE ? "save     " : "recompute",
         worst, rtol);
  gc_free(&out);
  ir_graph_free(train);
  ir_graph_free(c->g);
  params_free(&c->p);
  for (size_t i = 0; i < c->n_in; i++) tensor_free(c->in[i].tensor);
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define ATTRS(...) ((const IrAttr[IR_MAX_ATTRS]){__VA_ARGS__})
#define IN(...) ((const uint32_t[]){__VA_ARGS__})
/* Finite differences of float32 outputs carry errors of about 1e-4 here;
 * the tolerance is relative to max(1, |gradient|). */
#define TOL 2e-3

static void unary(const char *name, IrOp o, const IrAttr *attr) {
  Case c;
  case_begin(&c, name);
  uint32_t x = param(&c, "x", 2, DIMS(3, 5), 1.0, 0);
  case_check(&c, op(&c, o, IN(x), 1, attr), AD_LOOPS_RECOMPUTE, TOL);
}

static void binary(const char *name, IrOp o, int64_t b_rank, const int64_t *b_dim) {
  Case c;
  case_begin(&c, name);
  uint32_t a = param(&c, "a", 3, DIMS(2, 3, 4), 1.0, 0);
  uint32_t b = param(&c, "b", (int)b_rank, b_dim, 1.0, 0);
  case_check(&c, op(&c, o, IN(a, b), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);
}

static void check_elementwise(void) {
  binary("add", IR_ADD, 3, DIMS(2, 3, 4));
  binary("add (broadcast [4])", IR_ADD, 1, DIMS(4));
  binary("sub (broadcast [3,1])", IR_SUB, 2, DIMS(3, 1));
  binary("mul (broadcast [2,1,4])", IR_MUL, 3, DIMS(2, 1, 4));
  unary("scale", IR_SCALE, ATTRS({.f = -1.5}));
  unary("gelu_tanh", IR_GELU_TANH, NULL);
  unary("gelu", IR_GELU, NULL);
  unary("silu", IR_SILU, NULL);
  unary("softmax", IR_SOFTMAX, NULL);
  unary("sum", IR_SUM, NULL);
}

static void check_norms_and_products(void) {
  Case c;
  case_begin(&c, "layernorm");
  uint32_t x = param(&c, "x", 2, DIMS(3, 6), 1.0, 0.5), w = param(&c, "w", 1, DIMS(6), 0.3, 1.0),
           b = param(&c, "b", 1, DIMS(6), 0.3, 0);
  case_check(&c, op(&c, IR_LAYERNORM, IN(x, w, b), 3, ATTRS({.f = 1e-5})), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "rmsnorm");
  x = param(&c, "x", 2, DIMS(3, 6), 1.0, 0.5);
  w = param(&c, "w", 1, DIMS(6), 0.3, 1.0);
  case_check(&c, op(&c, IR_RMSNORM, IN(x, w), 2, ATTRS({.f = 1e-6})), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "linear");
  x = param(&c, "x", 3, DIMS(2, 3, 4), 1.0, 0);
  w = param(&c, "w", 2, DIMS(5, 4), 1.0, 0);
  case_check(&c, op(&c, IR_LINEAR, IN(x, w), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "matmul");
  x = param(&c, "x", 3, DIMS(2, 3, 4), 1.0, 0);
  w = param(&c, "w", 2, DIMS(4, 5), 1.0, 0);
  case_check(&c, op(&c, IR_MATMUL, IN(x, w), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "sum_to");
  x = param(&c, "x", 3, DIMS(2, 3, 4), 1.0, 0);
  w = param(&c, "like", 2, DIMS(1, 4), 1.0, 0);
  uint32_t s = op(&c, IR_SUM_TO, IN(x, w), 2, NULL);
  case_check(&c, op(&c, IR_MUL, IN(s, w), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);
}

static void check_indexing(void) {
  Case c;
  case_begin(&c, "embedding");
  uint32_t t = param(&c, "table", 2, DIMS(7, 3), 1.0, 0);
  uint32_t ids = int_input(&c, "ids", 2, DIMS(2, 5), 7);
  case_check(&c, op(&c, IR_EMBEDDING, IN(t, ids), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "slice (middle axis)");
  uint32_t x = param(&c, "x", 3, DIMS(2, 5, 3), 1.0, 0);
  case_check(&c, op(&c, IR_SLICE, IN(x), 1, ATTRS({.i = 1}, {.i = 1}, {.i = 3})), AD_LOOPS_RECOMPUTE, TOL);

  case_begin(&c, "cross_entropy");
  x = param(&c, "logits", 3, DIMS(2, 3, 6), 1.0, 0);
  ids = int_input(&c, "targets", 2, DIMS(2, 3), 6);
  tensor_i32(c.in[0].tensor)[4] = -1; /* an ignored position */
  case_check(&c, op(&c, IR_CROSS_ENTROPY, IN(x, ids), 2, NULL), AD_LOOPS_RECOMPUTE, TOL);
}

static void attention(const char *name, int64_t h, int64_t hkv) {
  Case c;
  case_begin(&c, name);
  int64_t D = 3;
  uint32_t q = param(&c, "q", 3, DIMS(2, 4, h * D), 1.0, 0), k = param(&c, "k", 3, DIMS(2, 4, hkv * D), 1.0, 0),
           v = param(&c, "v", 3, DIMS(2, 4, hkv * D), 1.0, 0);
  case_check(&c, op(&c, IR_ATTENTION, IN(q, k, v), 3, ATTRS({.i = h}, {.i = hkv})), AD_LOOPS_RECOMPUTE, TOL);
}

/* rope on x [2,5,heads*D] at random positions (a rotation: its gradient is
 * the inverse rotation); partial (rotary_dims < D) and full */
static void rope(const char *name, int64_t h, int64_t D, int64_t rot, double theta) {
  Case c;
  case_begin(&c, name);
  uint32_t x = param(&c, "x", 3, DIMS(2, 5, h * D), 1.0, 0);
  uint32_t pos = int_input(&c, "positions", 1, DIMS(5), 40);
  case_check(&c, op(&c, IR_ROPE, IN(x, pos), 2, ATTRS({.i = h}, {.i = rot}, {.f = theta})), AD_LOOPS_RECOMPUTE, TOL);
}

/* E = x; 3 times: E = E + softmax(E W^T) W  (the pondering shape), with
 * params used both inside and outside the loop. */
static void check_loop(AdLoopMode mode) {
  Case c;
  case_begin(&c, "loop (ponder-shaped)");
  uint32_t x = param(&c, "x", 3, DIMS(2, 3, 4), 1.0, 0), w = param(&c, "w", 2, DIMS(6, 4), 0.7, 0);
  uint32_t args[2];
  ir_loop_begin(&c.b, 3, 0, IN(x), 1, args, &c.err);
  uint32_t p = op(&c, IR_SOFTMAX, IN(op(&c, IR_LINEAR, IN(args[1], w), 2, NULL)), 1, NULL);
  uint32_t e = op(&c, IR_ADD, IN(args[1], op(&c, IR_MATMUL, IN(p, w), 2, NULL)), 2, NULL);
  uint32_t out = ir_loop_end(&c.b, IN(e), 1, &c.err);
  case_check(&c, op(&c, IR_LINEAR, IN(out, w), 2, NULL), mode, TOL);
}

/* Two carried values, a nested loop and the iteration index unused. */
static void check_nested_loop(AdLoopMode mode) {
  Case c;
  case_begin(&c, "nested loops");
  uint32_t x = param(&c, "x", 2, DIMS(2, 4), 1.0, 0), y = param(&c, "y", 2, DIMS(2, 4), 1.0, 0),
           w = param(&c, "w", 2, DIMS(4, 4), 0.5, 0);
  uint32_t outer[3], inner[2];
  ir_loop_begin(&c.b, 2, 0, IN(x, y), 2, outer, &c.err);
  ir_loop_begin(&c.b, 2, 1, IN(outer[1]), 1, inner, &c.err);
  uint32_t t = op(&c, IR_GELU_TANH, IN(op(&c, IR_LINEAR, IN(inner[1], w), 2, NULL)), 1, NULL);
  uint32_t in_out = ir_loop_end(&c.b, IN(op(&c, IR_MUL, IN(t, outer[2]), 2, NULL)), 1, &c.err);
  uint32_t nx = op(&c, IR_ADD, IN(in_out, outer[2]), 2, NULL);
  uint32_t res = ir_loop_end(&c.b, IN(nx, op(&c, IR_SILU, IN(outer[1]), 1, NULL)), 2, &c.err);
  case_check(&c, op(&c, IR_ADD, IN(res, res + 1), 2, NULL), mode, TOL);
}

int main(void) {
  check_elementwise();
  check_norms_and_products();
  check_indexing();
  attention("attention (4 heads)", 4, 4);
  attention("attention (4 heads, 2 kv)", 4, 2);
  rope("rope (partial: 4 of 6)", 2, 6, 4, 10000.0);
  rope("rope (full, theta 5e5)", 3, 4, 4, 500000.0);
  check_loop(AD_LOOPS_RECOMPUTE);
  check_loop(AD_LOOPS_SAVE);
  check_nested_loop(AD_LOOPS_RECOMPUTE);
  check_nested_loop(AD_LOOPS_SAVE);
  return check_exit();
}
