/* Common subexpressions and loop-invariant code. A pure node whose operands
 * and attributes match one already emitted where it is visible becomes a
 * use of that one; a pure node in a loop body whose operands come from
 * outside the loop (or from nodes hoisted before it) moves in front of the
 * loop. Pondering's passes each recompute the position embedding from the
 * ids; after this, a graph computes it once, and so does the unrolled copy
 * of a loop.
 *
 * Pure: a node whose results depend only on its operands and attributes.
 * Not: parameters and inputs (each is its own value), fills (two zero
 * buffers of one shape stay two, so that each can be written in place or
 * become a loop carry of its own), the cache-writing attention, loops,
 * stack updates and anything else that starts as an operand it updates. */
#include <stdlib.h>
#include <string.h>

#include "ir/passes.h"
#include "ir/rewrite.h"

typedef struct {
  uint64_t hash;
  uint32_t node;  /* the source node whose copy this is */
  uint32_t first; /* its first result in the new graph */
} Seen;

typedef struct {
  Seen *slot; /* open addressing; node IR_NONE: empty */
  size_t cap, n;
  unsigned char *hoisted; /* per source node: already emitted before its loop */
} Cse;

static int pure(const IrNode *n) {
  switch (n->op) {
  case IR_PARAM: case IR_INPUT: case IR_OUTPUT: case IR_FILL: case IR_LOOP: case IR_YIELD: case IR_ATTENTION_CACHED:
    return 0;
  default:
    break;
  }
  for (uint32_t k = 0; k < n->n_out; k++)
    if (ir_accumulates(n->op, k) >= 0) return 0;
  for (int k = 0; k < IR_MAX_ATTRS; k++) /* string handles would need re-interning */
    if (ir_op_info(n->op)->attr[k].kind == IR_ATTR_STR) return 0;
  return n->n_out > 0;
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 0x100000001b3ull; }

/* What makes two nodes the same: op, attributes and operands (new values). */
static uint64_t node_hash(IrRewrite *rw, const IrNode *n) {
  const IrGraph *g = ir_rewrite_src(rw);
  uint64_t h = mix(0xcbf29ce484222325ull, (uint64_t)n->op);
  for (int k = 0; k < IR_MAX_ATTRS; k++) h = mix(h, (uint64_t)n->attr[k].i);
  for (uint32_t k = 0; k < n->n_in; k++) h = mix(h, ir_rewrite_value(rw, ir_in(g, n, k)));
  return h;
}

static int same_node(IrRewrite *rw, const IrNode *a, const IrNode *b) {
  const IrGraph *g = ir_rewrite_src(rw);
  if (a->op != b->op || a->n_in != b->n_in || memcmp(a->attr, b->attr, sizeof a->attr)) return 0;
  for (uint32_t k = 0; k < a->n_in; k++)
    if (ir_rewrite_value(rw, ir_in(g, a, k)) != ir_rewrite_value(rw, ir_in(g, b, k))) return 0;
  return 1;
}

static void grow(Cse *c) {
  Seen *old = c->slot;
  size_t old_cap = c->cap;
  c->cap = old_cap ? old_cap * 2 : 256;
  c->slot = pc_xmalloc(c->cap * sizeof *c->slot);
  for (size_t i = 0; i < c->cap; i++) c->slot[i].node = IR_NONE;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].node == IR_NONE) continue;
    size_t j = old[i].hash & (c->cap - 1);
    while (c->slot[j].node != IR_NONE) j = (j + 1) & (c->cap - 1);
    c->slot[j] = old[i];
  }
  free(old);
}

/* Emits pure node n, or maps its results to an earlier copy visible here. */
static void emit_pure(IrRewrite *rw, Cse *c, const IrNode *n) {
  const IrGraph *src = ir_rewrite_src(rw);
  IrBuilder *b = ir_rewrite_builder(rw);
  uint64_t h = node_hash(rw, n);
  if (2 * (c->n + 1) > c->cap) grow(c);
  size_t j = h & (c->cap - 1);
  for (; c->slot[j].node != IR_NONE; j = (j + 1) & (c->cap - 1)) {
    const Seen *s = &c->slot[j];
    if (s->hash != h || !same_node(rw, ir_node(src, s->node), n)) continue;
    if (!ir_visible_from(b->g, b->g->values.a[s->first].region, b->region)) continue; /* inside a loop left since */
    for (uint32_t k = 0; k < n->n_out; k++) ir_rewrite_map(rw, n->out + k, s->first + k);
    return;
  }
  uint32_t *in = pc_xmalloc(sizeof *in * (n->n_in + 1));
  for (uint32_t k = 0; k < n->n_in; k++) in[k] = ir_rewrite_value(rw, ir_in(src, n, k));
  uint32_t v = ir_rewrite_emit(rw, n, n->op, in, n->n_in, n->attr);
  free(in);
  for (uint32_t k = 0; k < n->n_out; k++) ir_rewrite_map(rw, n->out + k, v + k);
  c->slot[j] = (Seen){h, (uint32_t)(n - src->nodes.a), v};
  c->n++;
}

/* Emits the pure nodes of region r, the loop's body or a loop nested in
 * it, that do not depend on the loop (its index, its carries, or what is
 * computed from them), in order. */
static void hoist(IrRewrite *rw, Cse *c, const IrNode *loop, uint32_t r) {
  const IrGraph *g = ir_rewrite_src(rw);
  const IrRegion *reg = &g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(g, reg->nodes.a[i]);
    if (n->op == IR_LOOP) {
      hoist(rw, c, loop, n->body);
      continue;
    }
    int invariant = pure(n);
    for (uint32_t k = 0; k < n->n_in && invariant; k++) {
      const IrValueInfo *vi = &g->values.a[ir_in(g, n, k)]; /* from outside the loop, or hoisted */
      invariant = !ir_visible_from(g, loop->body, vi->region) || (vi->def != IR_NONE && c->hoisted[vi->def]);
    }
    if (!invariant) continue;
    emit_pure(rw, c, n);
    c->hoisted[reg->nodes.a[i]] = 1;
  }
}

static int cse_hook(IrRewrite *rw, const IrNode *n, void *ctx, PcError *err) {
  Cse *c = ctx;
  uint32_t id = (uint32_t)(n - ir_rewrite_src(rw)->nodes.a);
  (void)err;
  if (c->hoisted[id]) return 1;
  if (n->op == IR_LOOP) {
    hoist(rw, c, n, n->body);
    return 0; /* the loop itself is copied, without what went before it */
  }
  if (!pure(n)) return 0;
  emit_pure(rw, c, n);
  return 1;
}

int ir_cse(const IrGraph *g, IrGraph **out, PcError *err) {
  Cse c = {0};
  c.hoisted = pc_xcalloc(g->nodes.n + 1, 1);
  int rc = ir_rewrite(g, cse_hook, &c, out, err);
  free(c.slot);
  free(c.hoisted);
  return rc;
}
