/* The vocabulary fusion pass (DESIGN section 2). No generic fuser finds
 * matmul -> softmax -> matmul; these patterns are recognised as wholes. */
#include <stdlib.h>

#include "ir/passes.h"
#include "ir/rewrite.h"

typedef struct {
  const uint32_t *uses;
} Fuse;

/* The node defining v when it is op `op`, in region r, used only once. */
static const IrNode *sole_def(const IrGraph *g, const Fuse *f, uint32_t v, IrOp op, uint32_t r) {
  const IrValueInfo *vi = &g->values.a[v];
  if (vi->def == IR_NONE || vi->region != r || f->uses[v] != 1) return NULL;
  const IrNode *n = ir_node(g, vi->def);
  return n->op == op ? n : NULL;
}

static int fuse_mixture(IrRewrite *rw, const Fuse *f, const IrNode *mm) {
  const IrGraph *g = ir_rewrite_src(rw);
  uint32_t r = g->values.a[mm->out].region, p = ir_in(g, mm, 0);
  const IrNode *soft = sole_def(g, f, p, IR_SOFTMAX, r);
  if (!soft) soft = sole_def(g, f, p, IR_SOFTMAX_TOPK, r);
  if (!soft) return 0;
  uint32_t z = ir_in(g, soft, 0);
  double tau = 1.0;
  const IrNode *scale = sole_def(g, f, z, IR_SCALE, r);
  if (scale) {
    if (!(scale->attr[0].f > 0)) return 0;
    tau = 1.0 / scale->attr[0].f;
    z = ir_in(g, scale, 0);
  }
  const IrNode *logits = sole_def(g, f, z, IR_LINEAR, r);
  if (!logits) return 0;
  uint32_t in[3] = {ir_rewrite_value(rw, ir_in(g, logits, 0)), ir_rewrite_value(rw, ir_in(g, logits, 1)),
                    ir_rewrite_value(rw, ir_in(g, mm, 1))};
  IrAttr attr[IR_MAX_ATTRS] = {{.f = tau}, {.i = soft->op == IR_SOFTMAX_TOPK ? soft->attr[0].i : 0}};
  IrOp op = soft->op == IR_SOFTMAX_TOPK ? IR_VOCAB_ATTENTION_TOPK : IR_VOCAB_ATTENTION;
  ir_rewrite_map(rw, mm->out, ir_rewrite_emit(rw, mm, op, in, 3, attr));
  return 1;
}

static int fuse_loss(IrRewrite *rw, const Fuse *f, const IrNode *ce) {
  const IrGraph *g = ir_rewrite_src(rw);
  const IrNode *logits = sole_def(g, f, ir_in(g, ce, 0), IR_LINEAR, g->values.a[ce->out].region);
  if (!logits) return 0;
  uint32_t in[3] = {ir_rewrite_value(rw, ir_in(g, logits, 0)), ir_rewrite_value(rw, ir_in(g, logits, 1)),
                    ir_rewrite_value(rw, ir_in(g, ce, 1))};
  ir_rewrite_map(rw, ce->out, ir_rewrite_emit(rw, ce, IR_LINEAR_CROSS_ENTROPY, in, 3, NULL));
  return 1;
}

static int fuse_hook(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err) {
  if (n->op == IR_MATMUL) return fuse_mixture(rw, ctx, n);
  if (n->op == IR_CROSS_ENTROPY) return fuse_loss(rw, ctx, n);
  return 0;
}

int ir_fuse_vocab(const IrGraph *g, IrGraph **out, PcError *err) {
  Fuse f = {ir_use_counts(g)};
  int rc = ir_rewrite(g, fuse_hook, &f, out, err);
  free((void *)f.uses);
  return rc;
}
