/* Gradient rules, one per differentiable op: each emits the vector-Jacobian
 * product of its op. Shapes in comments use N... for leading axes. */
#include "ir/autodiff_internal.h"

#define IN(k) ir_in(ad_src(c), n, k)
#define F(k) ad_fwd(c, IN(k))

static uint32_t emit2(AdCtx *c, IrOp op, uint32_t a, uint32_t b) {
  uint32_t in[2] = {a, b};
  return ad_emit(c, op, in, 2, NULL);
}
static uint32_t scaled(AdCtx *c, uint32_t x, double s) {
  IrAttr attr[IR_MAX_ATTRS] = {{.f = s}};
  return ad_emit(c, IR_SCALE, &x, 1, attr);
}

static int r_add(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), ad_sum_to(c, dy[0], IN(0)));
  ad_acc(c, IN(1), ad_sum_to(c, dy[0], IN(1)));
  return 0;
}

static int r_sub(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), ad_sum_to(c, dy[0], IN(0)));
  ad_acc(c, IN(1), scaled(c, ad_sum_to(c, dy[0], IN(1)), -1.0));
  return 0;
}

static int r_mul(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), ad_sum_to(c, emit2(c, IR_MUL, dy[0], F(1)), IN(0)));
  ad_acc(c, IN(1), ad_sum_to(c, emit2(c, IR_MUL, dy[0], F(0)), IN(1)));
  return 0;
}

static int r_scale(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), scaled(c, dy[0], n->attr[0].f));
  return 0;
}

/* activations: dx = dy f'(x) */
static int activation(AdCtx *c, const IrNode *n, const uint32_t *dy, IrOp grad_op) {
  ad_acc(c, IN(0), emit2(c, grad_op, F(0), dy[0]));
  return 0;
}
static int r_gelu_tanh(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  return activation(c, n, dy, IR_GELU_TANH_GRAD);
}
static int r_gelu(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) { return activation(c, n, dy, IR_GELU_GRAD); }
static int r_silu(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) { return activation(c, n, dy, IR_SILU_GRAD); }

/* softmax: dx = y (dy - sum(dy y)), from the forward result y */
static int r_softmax(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), emit2(c, IR_SOFTMAX_GRAD, ad_fwd(c, n->out), dy[0]));
  return 0;
}

static int r_layernorm(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[3] = {F(0), F(1), dy[0]};
  uint32_t dx = ad_emit(c, IR_LAYERNORM_GRAD, in, 3, n->attr);
  for (uint32_t k = 0; k < 3; k++) ad_acc(c, IN(k), dx + k);
  return 0;
}

static int r_rmsnorm(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[3] = {F(0), F(1), dy[0]};
  uint32_t dx = ad_emit(c, IR_RMSNORM_GRAD, in, 3, n->attr);
  for (uint32_t k = 0; k < 2; k++) ad_acc(c, IN(k), dx + k);
  return 0;
}

/* linear: y = x w^T, x [N...,K], w [M,K]: dx = dy w, dw = dy^T x */
static int r_linear(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), emit2(c, IR_MATMUL, dy[0], F(1)));
  ad_acc(c, IN(1), emit2(c, IR_MATMUL_TN, dy[0], F(0)));
  return 0;
}

/* matmul: y = x w, x [N...,K], w [K,M]: dx = dy w^T, dw = x^T dy */
static int r_matmul(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), emit2(c, IR_LINEAR, dy[0], F(1)));
  ad_acc(c, IN(1), emit2(c, IR_MATMUL_TN, F(0), dy[0]));
  return 0;
}

static int r_embedding(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[3] = {ad_take(c, IN(0)), F(1), dy[0]};
  ad_acc(c, IN(0), ad_emit(c, IR_EMBEDDING_GRAD, in, 3, NULL));
  return 0;
}

/* into the gradient so far: the slices of one value (q, k and v of one
 * product) add into their own columns, not into full-size sums */
static int r_slice(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[2] = {ad_take(c, IN(0)), dy[0]};
  ad_acc(c, IN(0), ad_emit(c, IR_SLICE_GRAD, in, 2, n->attr));
  return 0;
}

/* the gradient reads the forward's output and lse instead of recomputing them */
static int r_attention(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  if (dy[1] != IR_NONE) return pc_errorf(err, "attention: its saved lse cannot be differentiated");
  uint32_t in[6] = {F(0), F(1), F(2), ad_fwd(c, n->out), ad_fwd(c, n->out + 1), dy[0]};
  uint32_t dq = ad_emit(c, IR_ATTENTION_GRAD, in, 6, n->attr);
  for (uint32_t k = 0; k < 3; k++) ad_acc(c, IN(k), dq + k);
  return 0;
}

/* rope is a rotation per position: dx = the inverse rotation of dy */
static int r_rope(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[2] = {F(1), dy[0]};
  ad_acc(c, IN(0), ad_emit(c, IR_ROPE_GRAD, in, 2, n->attr));
  return 0;
}

static int r_cross_entropy(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  uint32_t in[3] = {F(0), F(1), dy[0]};
  ad_acc(c, IN(0), ad_emit(c, IR_CROSS_ENTROPY_GRAD, in, 3, NULL));
  return 0;
}

/* the fused vocabulary ops: their gradient ops recompute the probabilities
 * chunk by chunk from what the forward saved (lse, or the top-k ids and
 * probabilities) and add the matrices' gradients into their sums so far;
 * the saved outputs themselves take no gradient */
static int fused_vocab(AdCtx *c, const IrNode *n, const uint32_t *dy, int topk, PcError *err) {
  for (uint32_t k = 1; k < n->n_out; k++)
    if (dy[k] != IR_NONE) return pc_errorf(err, "%s: its saved outputs cannot be differentiated", ir_op_info(n->op)->name);
  int tied = IN(1) == IN(2);
  IrOp op = topk ? (tied ? IR_VOCAB_ATTENTION_TOPK_GRAD_TIED : IR_VOCAB_ATTENTION_TOPK_GRAD)
                 : (tied ? IR_VOCAB_ATTENTION_GRAD_TIED : IR_VOCAB_ATTENTION_GRAD);
  uint32_t g_wo = ad_take(c, IN(1)), g_wi = tied ? IR_NONE : ad_take(c, IN(2));
  uint32_t in[8] = {F(0), F(1), F(2), ad_fwd(c, n->out + (topk ? 1 : 0)), ad_fwd(c, n->out + (topk ? 2 : 1)), dy[0],
                    g_wo, g_wi};
  uint32_t d = ad_emit(c, op, in, tied ? 7 : 8, n->attr);
  for (uint32_t k = 0; k < (tied ? 2u : 3u); k++) ad_acc(c, IN(k), d + k);
  return 0;
}

static int r_vocab_attention(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  return fused_vocab(c, n, dy, 0, err);
}

static int r_vocab_attention_topk(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  return fused_vocab(c, n, dy, 1, err);
}

static int r_linear_cross_entropy(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  if (dy[1] != IR_NONE) return pc_errorf(err, "linear_cross_entropy: its saved lse cannot be differentiated");
  uint32_t in[6] = {F(0), F(1), F(2), ad_fwd(c, n->out + 1), dy[0], ad_take(c, IN(1))};
  uint32_t d = ad_emit(c, IR_LINEAR_CROSS_ENTROPY_GRAD, in, 6, NULL);
  for (uint32_t k = 0; k < 2; k++) ad_acc(c, IN(k), d + k);
  return 0;
}

/* sum and sum_to: the gradient broadcasts back over what was summed */
static int r_broadcast_back(AdCtx *c, const IrNode *n, const uint32_t *dy, PcError *err) {
  ad_acc(c, IN(0), emit2(c, IR_ADD, ad_zeros(c, IN(0)), dy[0]));
  return 0;
}

static const AdRule rules[IR_NUM_OPS] = {
    [IR_ADD] = r_add,
    [IR_SUB] = r_sub,
    [IR_MUL] = r_mul,
    [IR_SCALE] = r_scale,
    [IR_GELU_TANH] = r_gelu_tanh,
    [IR_GELU] = r_gelu,
    [IR_SILU] = r_silu,
    [IR_SOFTMAX] = r_softmax,
    [IR_SOFTMAX_TOPK] = r_softmax, /* zero outside the top k, so the same rule */
    [IR_LAYERNORM] = r_layernorm,
    [IR_RMSNORM] = r_rmsnorm,
    [IR_LINEAR] = r_linear,
    [IR_MATMUL] = r_matmul,
    [IR_EMBEDDING] = r_embedding,
    [IR_SLICE] = r_slice,
    [IR_ATTENTION] = r_attention,
    [IR_ROPE] = r_rope,
    [IR_CROSS_ENTROPY] = r_cross_entropy,
    [IR_VOCAB_ATTENTION] = r_vocab_attention,
    [IR_VOCAB_ATTENTION_TOPK] = r_vocab_attention_topk,
    [IR_LINEAR_CROSS_ENTROPY] = r_linear_cross_entropy,
    [IR_SUM] = r_broadcast_back,
    [IR_SUM_TO] = r_broadcast_back,
};

AdRule ad_rule(IrOp op) { return rules[op]; }
