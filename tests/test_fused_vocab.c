/* The fused vocabulary ops against the unfused composition they replace,
 * on a vocabulary of several chunks (so the online softmax rescales across
 * chunks, and top-k keeps its choice across chunks): outputs and every
 * gradient within 1e-5 relative. The unfused ops' gradients are checked
 * against finite differences in test_grad_ops. */
#include <math.h>
#include <stdlib.h>

#include "compiler/pipeline.h"
#include "ir/passes.h"
#include "runtime/rng.h"
#include "tests/check.h"
#include "tests/grad_check.h"

enum { B = 2, T = 5, C = 16, V = 2500 };

static uint32_t param(IrBuilder *b, Params *p, const char *name, int rank, const int64_t *dim, double std, Rng *r) {
  IrType t = {PC_F32, {rank, {0}}};
  for (int i = 0; i < rank; i++) t.shape.dim[i] = dim[i];
  PcError err;
  uint32_t v = ir_param(b, name, &t, "normal", std, NULL, &err);
  ParamSpec s = {.name = (char *)name, .rank = rank};
  for (int i = 0; i < rank; i++) s.dim[i] = dim[i];
  params_add(p, &s, &err);
  Tensor *x = tensor_new(PC_F32, rank, dim);
  for (int64_t i = 0; i < tensor_numel(x); i++) tensor_f32(x)[i] = (float)(std * rng_normal(r));
  p->value[p->spec.n - 1] = x;
  return v;
}

static uint32_t op(IrBuilder *b, IrOp o, const uint32_t *in, uint32_t n, const IrAttr *attr) {
  PcError err;
  uint32_t v = ir_build(b, o, in, n, attr, NULL, &err);
  if (v == IR_NONE) PC_BUG("%s", err.msg);
  return v;
}

#define IN(...) ((const uint32_t[]){__VA_ARGS__})

/* loss = sum(s * softmax[_topk](H Wo^T / tau) Wi * R) + cross_entropy(H2 Wo^T, targets) */
static void check(int64_t topk, double tau) {
  Rng rng = rng_new(5);
  IrGraph *g = ir_graph_new("vocab");
  IrBuilder b = ir_builder(g);
  Params p = {0};
  uint32_t h = param(&b, &p, "H", 3, (int64_t[]){B, T, C}, 1.0, &rng);
  uint32_t h2 = param(&b, &p, "H2", 3, (int64_t[]){B, T, C}, 1.0, &rng);
  uint32_t wo = param(&b, &p, "Wo", 2, (int64_t[]){V, C}, 1.0, &rng);
  uint32_t wi = param(&b, &p, "Wi", 2, (int64_t[]){V, C}, 0.5, &rng);
  PcError err;
  IrType rt = {PC_F32, {3, {B, T, C}}}, tt = {PC_I32, {2, {B, T}}};
  uint32_t r = ir_input(&b, "R", &rt, &err), targets = ir_input(&b, "targets", &tt, &err);
  uint32_t z = op(&b, IR_SCALE, IN(op(&b, IR_LINEAR, IN(h, wo), 2, NULL)), 1, (IrAttr[IR_MAX_ATTRS]){{.f = 1.0 / tau}});
  uint32_t prob = topk ? op(&b, IR_SOFTMAX_TOPK, IN(z), 1, (IrAttr[IR_MAX_ATTRS]){{.i = topk}}) : op(&b, IR_SOFTMAX, IN(z), 1, NULL);
  uint32_t mix = op(&b, IR_SCALE, IN(op(&b, IR_MATMUL, IN(prob, wi), 2, NULL)), 1, (IrAttr[IR_MAX_ATTRS]){{.f = 4.0}});
  uint32_t a = op(&b, IR_SUM, IN(op(&b, IR_MUL, IN(mix, r), 2, NULL)), 1, NULL);
  uint32_t ce = op(&b, IR_CROSS_ENTROPY, IN(op(&b, IR_LINEAR, IN(h2, wo), 2, NULL), targets), 2, NULL);
  ir_output(&b, "loss", op(&b, IR_ADD, IN(a, ce), 2, NULL), &err);
  CHECKF(ir_verify(g, &err) == 0, "%s", err.msg);

  Tensor *R = tensor_new(PC_F32, 3, (int64_t[]){B, T, C}), *tg = tensor_new(PC_I32, 2, (int64_t[]){B, T});
  for (int64_t i = 0; i < B * T * C; i++) tensor_f32(R)[i] = (float)rng_normal(&rng);
  for (int64_t i = 0; i < B * T; i++) tensor_i32(tg)[i] = (int32_t)(rng_u64(&rng) % V);
  tensor_i32(tg)[3] = -1;
  NamedTensor in[2] = {{"R", R}, {"targets", tg}};

  GcOutputs out[2];
  memset(out, 0, sizeof out);
  for (int fused = 0; fused < 2; fused++) {
    PcPipeline pipe = {.no_fuse = !fused};
    IrGraph *fwd, *train;
    CHECK(pc_optimize(g, &pipe, &fwd, &err) == 0 && pc_differentiate(fwd, &pipe, &train, &err) == 0);
    int found = 0;
    for (size_t i = 0; i < train->nodes.n; i++) {
      IrOp o = ir_node(train, (uint32_t)i)->op;
      found += o == IR_VOCAB_ATTENTION || o == IR_VOCAB_ATTENTION_TOPK || o == IR_LINEAR_CROSS_ENTROPY;
      CHECKF(!fused || (o != IR_SOFTMAX && o != IR_SOFTMAX_TOPK && o != IR_CROSS_ENTROPY), "fused graph still has %s",
             ir_op_info(o)->name);
    }
    CHECKF(found == (fused ? 2 : 0), "%d fused ops in the %s graph", found, fused ? "fused" : "unfused");
    CHECKF(gc_run(train, &p, in, 2, &out[fused], &err) == 0, "%s", err.msg);
    gc_keep_names(&out[fused]);
    ir_graph_free(fwd);
    ir_graph_free(train);
  }
  double worst = 0;
  for (size_t i = 0; i < out[0].n; i++) {
    const Tensor *a0 = out[0].out[i].tensor, *a1 = gc_get(&out[1], out[0].out[i].name);
    CHECK(a1 && tensor_same_shape(a0, a1));
    double scale = 0; /* relative to the largest entry of the tensor */
    for (int64_t e = 0; e < tensor_numel(a0); e++) scale = fmax(scale, fabs(tensor_f32(a0)[e]));
    for (int64_t e = 0; a1 && e < tensor_numel(a0); e++)
      worst = fmax(worst, fabs(tensor_f32(a0)[e] - tensor_f32(a1)[e]) / scale);
  }
  printf("vocabulary %d (%s, tau %.2f): fused vs unfused, worst difference %.2e of each tensor's largest entry\n", V,
         topk ? "top-100" : "full", tau, worst);
  CHECKF(worst <= 1e-5, "fused and unfused differ by %g", worst);
  gc_free(&out[0]);
  gc_free(&out[1]);
  tensor_free(R);
  tensor_free(tg);
  params_free(&p);
  ir_graph_free(g);
}

int main(void) {
  check(0, 1.0);
  check(0, 0.7);
  check(100, 1.0);
  return check_exit();
}
