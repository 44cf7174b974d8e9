/* The memory plan. Every value that needs storage gets a buffer:
 *  - parameters and inputs are the caller's; so is an output that its
 *    producing node can write directly;
 *  - every other value lives in one arena, at an offset fixed here: values
 *    (and ops' scratch) whose live ranges do not overlap share bytes.
 * Live ranges come from a numbering of the nodes in execution order, in
 * which a loop spans its body: a value defined outside a loop and used in
 * it stays alive until the loop ends. Some values alias others: a stack
 * updated in place, a loop's carried value (its body argument, the loop's
 * result, and an initial value that dies at the loop: one "carry" buffer),
 * and a result written over an operand of its type that dies there (an
 * elementwise group's, unless only products read it and the schedule keeps
 * such results apart; or a gradient added into: ir_accumulates). A body
 * value joins a carry only on a chain of such steps from the body argument
 * to the yield of the same carry, so the yield needs no copy and no carry
 * is overwritten before another is read. A graph output that nothing else
 * uses is the caller's buffer, and so is everything that aliases it: a
 * gradient summed over a loop is summed where the caller reads it. */
#include <stdlib.h>
#include <string.h>

#include "compiler/lower/lower_internal.h"

enum { EXTERNAL = -2, NOWHERE = -1 };

typedef struct {
  Lower *l;
  uint32_t n_units;       /* values, then scratch slots */
  uint32_t *parent;       /* union-find over units */
  int32_t *start, *end;   /* live range of a unit (then of a group, at its root) */
  uint64_t *bytes;
  int *kind;              /* per unit: KB_PARAM/INPUT/OUTPUT, KB_ARENA, or NOWHERE */
  uint32_t *ext;          /* external index */
  int32_t *own_end;       /* per value: its own last use, before aliasing */
  unsigned char *carry;   /* per group root: holds a loop's carried value */
  uint32_t *chain_next;   /* per body value: the value that may take its carry over */
  int32_t *node_pos, *loop_end;
  int32_t pos;
} Plan;

static uint32_t find(Plan *pl, uint32_t u) {
  while (pl->parent[u] != u) u = pl->parent[u] = pl->parent[pl->parent[u]];
  return u;
}

static void unite(Plan *pl, uint32_t a, uint32_t b) {
  a = find(pl, a);
  b = find(pl, b);
  if (a == b) return;
  pl->parent[b] = a;
  if (pl->start[b] < pl->start[a]) pl->start[a] = pl->start[b];
  if (pl->end[b] > pl->end[a]) pl->end[a] = pl->end[b];
  if (pl->bytes[b] > pl->bytes[a]) pl->bytes[a] = pl->bytes[b];
  if (pl->kind[a] == NOWHERE || pl->kind[a] == KB_ARENA) {
    pl->kind[a] = pl->kind[b];
    pl->ext[a] = pl->ext[b];
  }
  pl->carry[a] |= pl->carry[b];
}

/* ---- positions and live ranges ------------------------------------------------ */

static void number(Plan *pl, uint32_t r) {
  const IrRegion *reg = &pl->l->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    uint32_t id = reg->nodes.a[i];
    pl->node_pos[id] = pl->pos++;
    const IrNode *n = ir_node(pl->l->g, id);
    if (n->body != IR_NONE) {
      number(pl, n->body);
      pl->loop_end[id] = pl->pos++;
    }
  }
}

/* The position at which a use by node `user` keeps value v alive: the
 * user's own, or the end of the outermost loop around it inside v's region. */
static int32_t use_pos(Plan *pl, uint32_t v, uint32_t user) {
  const IrGraph *g = pl->l->g;
  uint32_t home = g->values.a[v].region, r = 0;
  int32_t at = pl->node_pos[user];
  /* the region holding user */
  for (size_t k = 0; k < g->regions.n; k++) {
    const IrRegion *reg = &g->regions.a[k];
    for (size_t i = 0; i < reg->nodes.n; i++)
      if (reg->nodes.a[i] == user) r = (uint32_t)k;
  }
  while (r != home && r != 0) {
    uint32_t loop = g->regions.a[r].owner;
    at = pl->loop_end[loop];
    r = g->regions.a[r].parent;
  }
  return at;
}

static int32_t def_pos(Plan *pl, uint32_t v) {
  const IrGraph *g = pl->l->g;
  const IrValueInfo *vi = &g->values.a[v];
  if (vi->def == IR_NONE) return pl->node_pos[g->regions.a[vi->region].owner]; /* a loop's body argument */
  const IrNode *n = ir_node(g, vi->def);
  if (n->op == IR_PARAM || n->op == IR_INPUT) return -1;
  return n->op == IR_LOOP ? pl->loop_end[vi->def] : pl->node_pos[vi->def];
}

/* The node where node n is computed: itself, or for a group that the node
 * next to it computes (at_row, perhaps along a chain: a bias add computed
 * by the activation after it, which the norm after that computes), that
 * node, in whose row loop it reads its operands (so that the node's output
 * does not take the bytes of one that every row reads: a broadcast one). */
static uint32_t computed_at(const Lower *l, const IrNode *n) {
  uint32_t id = (uint32_t)(n - l->g->nodes.a);
  for (const IrNode *m = n; m->n_out == 1 && l->at_row[m->out] != IR_NONE; m = ir_node(l->g, id)) id = l->at_row[m->out];
  return id;
}

/* Whether a node along v's chain of at_row nodes reads value o: the row
 * loop that computes v runs theirs too, so v may not be written over o. */
static int read_along(const Lower *l, uint32_t v, uint32_t o) {
  for (uint32_t id = l->at_row[v]; id != IR_NONE;) {
    const IrNode *n = ir_node(l->g, id);
    for (uint32_t k = 0; k < n->n_in; k++)
      if (ir_in(l->g, n, k) == o) return 1;
    id = n->n_out == 1 ? l->at_row[n->out] : IR_NONE;
  }
  return 0;
}

/* Whether v is an attention gradient's result that its kernels write into
 * the slice gradient that reads it (gradients_in_place). */
static int written_in_place(const Lower *l, uint32_t v) {
  uint32_t d = l->g->values.a[v].def;
  return l->inlined[v] && d != IR_NONE && ir_node(l->g, d)->op == IR_ATTENTION_GRAD;
}

/* ---- the plan ------------------------------------------------------------------ */

static uint64_t value_bytes(Lower *l, uint32_t v) {
  const IrType *t = ir_type(l->g, v);
  return (uint64_t)L_max_numel(l, &t->shape) * 4; /* f32 and i32 */
}

/* Whether result r (of the node at position at) may be written over operand
 * o: o dies there and has r's type, and the rest of o's buffer's values
 * die there too, or they are a carry that o passes on along a chain
 * (mark_chains). o's buffer is the arena's, or the caller's output that a
 * carry sums into (a parameter's gradient over the pondering loop), which
 * r then joins when it is in the arena. */
static int in_place_ok(Plan *pl, uint32_t r, uint32_t o, int32_t at) {
  Lower *l = pl->l;
  uint32_t go = find(pl, o), gr = find(pl, r);
  int passed_on = pl->carry[go] && pl->chain_next[o] == r;
  if (go == gr || (pl->kind[gr] != KB_ARENA && pl->kind[gr] != KB_OUTPUT)) return 0;
  if (pl->kind[go] != KB_ARENA && !(pl->kind[go] == KB_OUTPUT && passed_on && pl->kind[gr] == KB_ARENA)) return 0;
  if (pl->own_end[o] != at || !ir_type_eq(ir_type(l->g, o), ir_type(l->g, r)) ||
      l->g->values.a[o].region != l->g->values.a[r].region)
    return 0;
  return pl->end[go] == at || passed_on;
}

/* Whether node n reads its operand k as a product's operand: a linear's,
 * matmul's or matmul_tn's, or a sum_to's that is lowered as a product. */
static int product_operand(Lower *l, const IrNode *n, uint32_t k) {
  if (n->op == IR_LINEAR || n->op == IR_MATMUL || n->op == IR_MATMUL_TN) return k < 2;
  return n->op == IR_SUM_TO && k == 0 && sum_to_as_product(l, n);
}

/* The operand a result may be written over as a step of a chain: an
 * accumulated-into operand, or a leaf of an elementwise group of its type. */
static int chain_to(Plan *pl, uint32_t v, uint32_t arg, uint32_t body);

static int chain_step(Plan *pl, uint32_t o, uint32_t v, uint32_t arg, uint32_t body) {
  if (!ir_type_eq(ir_type(pl->l->g, o), ir_type(pl->l->g, v)) || !chain_to(pl, o, arg, body)) return 0;
  pl->chain_next[o] = v;
  return 1;
}

static int chain_to(Plan *pl, uint32_t v, uint32_t arg, uint32_t body) {
  const IrGraph *g = pl->l->g;
  const IrValueInfo *vi = &g->values.a[v];
  if (v == arg) return 1;
  if (vi->region != body || vi->def == IR_NONE) return 0;
  const IrNode *d = ir_node(g, vi->def);
  int from = ir_accumulates(d->op, v - d->out);
  if (from >= 0) return chain_step(pl, ir_in(g, d, (uint32_t)from), v, arg, body);
  if (!elementwise_op(d->op) || pl->l->inlined[v]) return 0;
  VecU32 leaves = {0};
  group_leaves(pl->l, v, &leaves);
  int found = 0;
  for (size_t k = 0; k < leaves.n && !found; k++) found = chain_step(pl, leaves.a[k], v, arg, body);
  vec_free(&leaves);
  return found;
}

/* Per loop and carry: the chain from the body argument to the value the
 * body yields for it (yielded once), if there is one. */
static void mark_chains(Plan *pl) {
  const IrGraph *g = pl->l->g;
  for (size_t i = 0; i < g->nodes.n; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op != IR_LOOP) continue;
    const IrRegion *body = &g->regions.a[n->body];
    const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
    for (uint32_t k = 0; k < y->n_in; k++) {
      uint32_t v = ir_in(g, y, k), once = 1;
      for (uint32_t j = 0; j < y->n_in; j++) once &= j == k || ir_in(g, y, j) != v;
      if (once) chain_to(pl, v, body->args.a[k + 1], n->body);
    }
  }
}

int plan_memory(Lower *l, PcError *err) {
  const IrGraph *g = l->g;
  size_t nv = g->values.n, nn = g->nodes.n;
  Plan pl = {.l = l, .n_units = (uint32_t)(nv + (nn + 1) * L_MAX_SCRATCH)}; /* the entry's scratch after the nodes' */
  pl.parent = pc_xmalloc(sizeof(uint32_t) * pl.n_units);
  pl.start = pc_xmalloc(sizeof(int32_t) * pl.n_units);
  pl.end = pc_xmalloc(sizeof(int32_t) * pl.n_units);
  pl.bytes = pc_xcalloc(pl.n_units, sizeof(uint64_t));
  pl.kind = pc_xmalloc(sizeof(int) * pl.n_units);
  pl.ext = pc_xcalloc(pl.n_units, sizeof(uint32_t));
  pl.own_end = pc_xmalloc(sizeof(int32_t) * (nv + 1));
  pl.carry = pc_xcalloc(pl.n_units, 1);
  pl.chain_next = pc_xmalloc(sizeof(uint32_t) * (nv + 1));
  memset(pl.chain_next, 0xff, sizeof(uint32_t) * (nv + 1));
  pl.node_pos = pc_xcalloc(nn + 1, sizeof(int32_t));
  pl.loop_end = pc_xcalloc(nn + 1, sizeof(int32_t));
  for (uint32_t u = 0; u < pl.n_units; u++) {
    pl.parent[u] = u;
    pl.start[u] = INT32_MAX;
    pl.end[u] = -1;
    pl.kind[u] = NOWHERE;
  }
  number(&pl, 0);

  /* live ranges and kinds of values */
  for (uint32_t v = 0; v < nv; v++) {
    const IrValueInfo *vi = &g->values.a[v];
    if (l->inlined[v]) continue;
    int is_index = vi->def == IR_NONE && g->regions.a[vi->region].args.a[0] == v;
    if (is_index) continue; /* a loop index is a variable */
    pl.start[v] = def_pos(&pl, v);
    if (l->at_row[v] != IR_NONE) { /* made before its place: by a norm gradient, or by the op before a sum */
      int32_t at = pl.node_pos[computed_at(l, ir_node(g, vi->def))];
      if (at < pl.start[v]) pl.start[v] = at;
    }
    pl.end[v] = pl.start[v];
    pl.bytes[v] = value_bytes(l, v);
    pl.kind[v] = KB_ARENA;
    if (vi->def != IR_NONE) {
      const IrNode *d = ir_node(g, vi->def);
      if (d->op == IR_PARAM || d->op == IR_INPUT) pl.kind[v] = d->op == IR_PARAM ? KB_PARAM : KB_INPUT;
    }
  }
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    uint32_t user = computed_at(l, n);
    for (uint32_t k = 0; k < n->n_in; k++) {
      uint32_t v = ir_in(g, n, k);
      int32_t at = n->op == IR_OUTPUT ? INT32_MAX : use_pos(&pl, v, user);
      if (at > pl.end[v]) pl.end[v] = at;
    }
  }
  /* operands of inlined values are read where those are computed (a group's
   * root, or the norm that computes it; a slice): extend their lives to there */
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->n_out == 1 && l->inlined[n->out]) continue;
    VecU32 leaves = {0};
    for (uint32_t k = 0; k < n->n_in; k++)
      if (l->inlined[ir_in(g, n, k)] && !written_in_place(l, ir_in(g, n, k))) group_leaves(l, ir_in(g, n, k), &leaves);
    uint32_t user = computed_at(l, n);
    int32_t at = pl.node_pos[user];
    for (size_t k = 0; k < leaves.n; k++)
      if (at > pl.end[leaves.a[k]] && pl.kind[leaves.a[k]] != NOWHERE) pl.end[leaves.a[k]] = use_pos(&pl, leaves.a[k], user);
    vec_free(&leaves);
  }
  /* outputs written in place by their producers */
  const IrRegion *top = &g->regions.a[0];
  uint32_t n_outputs = 0;
  for (size_t i = 0; i < top->nodes.n; i++) {
    const IrNode *n = ir_node(g, top->nodes.a[i]);
    if (n->op != IR_OUTPUT) continue;
    uint32_t v = ir_in(g, n, 0), index = n_outputs++;
    const IrValueInfo *vi = &g->values.a[v];
    if (vi->def == IR_NONE || pl.kind[v] != KB_ARENA || l->uses[v] != 1) continue; /* copied at the output */
    const IrNode *d = ir_node(g, vi->def);
    if (d->op == IR_STACK_SET || g->values.a[v].region != 0) continue;
    pl.kind[v] = KB_OUTPUT;
    pl.ext[v] = index;
  }
  memcpy(pl.own_end, pl.end, sizeof(int32_t) * nv);
  mark_chains(&pl);

  /* aliases: stacks in place, carried values, chains of slice gradients
   * that an attention gradient wrote into (from its node on) */
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op == IR_SLICE_GRAD && written_in_place(l, ir_in(g, n, 1))) {
      int32_t at = pl.node_pos[g->values.a[ir_in(g, n, 1)].def];
      if (at < pl.start[n->out]) pl.start[n->out] = at;
      unite(&pl, ir_in(g, n, 0), n->out);
    }
    if (n->op == IR_STACK_SET && pl.kind[find(&pl, ir_in(g, n, 0))] == KB_ARENA) unite(&pl, ir_in(g, n, 0), n->out);
    if (n->op == IR_LOOP) {
      const IrRegion *body = &g->regions.a[n->body];
      for (uint32_t k = 0; k < n->n_out; k++) {
        pl.start[body->args.a[k + 1]] = pl.node_pos[i]; /* the carry lives over the whole loop */
        pl.carry[body->args.a[k + 1]] = 1;
        unite(&pl, body->args.a[k + 1], n->out + k);
      }
    }
  }
  /* results written over dying operands, in execution order */
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    int32_t at = pl.node_pos[i];
    for (uint32_t k = 0; k < n->n_out && n->op != IR_STACK_SET; k++) { /* gradients added into */
      int from = ir_accumulates(n->op, k);
      if (from >= 0 && in_place_ok(&pl, n->out + k, ir_in(g, n, (uint32_t)from), at))
        unite(&pl, ir_in(g, n, (uint32_t)from), n->out + k);
    }
    if (n->op == IR_LOOP) /* initial values that die at the loop start in its carries */
      for (uint32_t k = 0; k < n->n_in; k++) {
        uint32_t v = ir_in(g, n, k), gv = find(&pl, v), once = 1;
        for (uint32_t j = 0; j < n->n_in; j++) once &= j == k || ir_in(g, n, j) != v;
        if (once && pl.kind[gv] == KB_ARENA && !pl.carry[gv] && pl.end[gv] == at && gv != find(&pl, n->out + k))
          unite(&pl, v, n->out + k);
      }
    if (!elementwise_op(n->op) || l->inlined[n->out]) continue;
    if (l->s->operands_apart && uses_all(l, n->out, product_operand) > 0) continue; /* only products read its buffer */
    at = pl.node_pos[computed_at(l, n)];
    VecU32 leaves = {0};
    group_leaves(l, n->out, &leaves);
    for (size_t k = 0; k < leaves.n; k++)
      if (!read_along(l, n->out, leaves.a[k]) && in_place_ok(&pl, n->out, leaves.a[k], at)) {
        unite(&pl, leaves.a[k], n->out);
        break;
      }
    vec_free(&leaves);
  }

  /* scratch of each node, alive at its node */
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    const OpLowering *ol = lower_op(n->op);
    if (!ol || !ol->scratch) continue;
    int64_t elems[L_MAX_SCRATCH] = {0};
    if (ol->scratch(l, n, elems) < 0) return pc_errorf(err, "internal: scratch");
    for (int k = 0; k < L_MAX_SCRATCH; k++) {
      if (!elems[k]) continue;
      uint32_t u = (uint32_t)(nv + i * L_MAX_SCRATCH + (size_t)k);
      pl.start[u] = pl.end[u] = pl.node_pos[i];
      pl.bytes[u] = (uint64_t)elems[k] * 4;
      pl.kind[u] = KB_ARENA;
    }
  }

  /* the entry's row of ones, alive throughout: stored once, read by every bias gradient */
  for (size_t i = 0; i < nn; i++) {
    const IrNode *n = ir_node(g, (uint32_t)i);
    if (n->op != IR_SUM_TO || !sum_to_as_product(l, n)) continue;
    int64_t rows = L_max_numel(l, L_shape(l, ir_in(g, n, 0))) / L_max_numel(l, L_shape(l, n->out));
    if (rows > l->n_ones) l->n_ones = rows;
  }
  if (l->n_ones) {
    uint32_t u = (uint32_t)(nv + nn * L_MAX_SCRATCH);
    pl.start[u] = 0;
    pl.end[u] = pl.pos;
    pl.bytes[u] = (uint64_t)l->n_ones * 4;
    pl.kind[u] = KB_ARENA;
  }

  /* offsets: largest first, lowest offset that no overlapping group uses */
  VecU32 roots = {0};
  for (uint32_t u = 0; u < pl.n_units; u++)
    if (pl.kind[u] != NOWHERE && find(&pl, u) == u && pl.kind[u] == KB_ARENA) vec_push(&roots, u);
  for (size_t i = 1; i < roots.n; i++) /* insertion sort by size, descending */
    for (size_t j = i; j > 0 && pl.bytes[roots.a[j - 1]] < pl.bytes[roots.a[j]]; j--) {
      uint32_t t = roots.a[j];
      roots.a[j] = roots.a[j - 1];
      roots.a[j - 1] = t;
    }
  uint64_t *offset = pc_xcalloc(pl.n_units, sizeof(uint64_t)), arena = 0;
  for (size_t i = 0; i < roots.n; i++) {
    uint32_t u = roots.a[i];
    uint64_t at = 0, size = (pl.bytes[u] + 63) & ~(uint64_t)63;
    for (int moved = 1; moved;) {
      moved = 0;
      for (size_t j = 0; j < i; j++) {
        uint32_t w = roots.a[j];
        if (pl.end[w] < pl.start[u] || pl.end[u] < pl.start[w]) continue; /* not alive together */
        uint64_t wsize = (pl.bytes[w] + 63) & ~(uint64_t)63;
        if (at < offset[w] + wsize && offset[w] < at + size) {
          at = offset[w] + wsize;
          moved = 1;
        }
      }
    }
    offset[u] = at;
    if (at + size > arena) arena = at + size;
  }
  vec_free(&roots);

  /* buffers */
  KEntry *e = L_entry(l);
  uint32_t *made = pc_xmalloc(sizeof(uint32_t) * pl.n_units);
  memset(made, 0xff, sizeof(uint32_t) * pl.n_units);
  for (uint32_t u = 0; u < pl.n_units; u++) {
    if (pl.kind[u] == NOWHERE) continue;
    uint32_t root = find(&pl, u);
    if (made[root] == IR_NONE) {
      char name[160];
      KType elem = K_F32;
      uint32_t index = pl.ext[root];
      if (u < nv) {
        const IrValueInfo *vi = &g->values.a[u];
        elem = ir_type(g, u)->dtype == PC_I32 ? K_I32 : K_F32;
        snprintf(name, sizeof name, "%s", vi->name != IR_NONE ? ir_str(g, vi->name) : "");
        if (!name[0]) snprintf(name, sizeof name, "v%u", u);
        if (pl.kind[root] == KB_PARAM || pl.kind[root] == KB_INPUT) index = UINT32_MAX; /* set below */
      } else if (u == nv + nn * L_MAX_SCRATCH) {
        snprintf(name, sizeof name, "ones");
      } else {
        snprintf(name, sizeof name, "scratch%u.%u", (u - (uint32_t)nv) / L_MAX_SCRATCH, (u - (uint32_t)nv) % L_MAX_SCRATCH);
      }
      made[root] = kbuf(e, name, elem, (KBufKind)pl.kind[root], index, offset[root], pl.bytes[root] / 4);
      e = L_entry(l);
    }
    if (u < nv)
      l->buf[u] = made[root];
    else
      l->scratch[(u - nv) / L_MAX_SCRATCH][(u - nv) % L_MAX_SCRATCH] = made[root];
  }
  e->arena_bytes = arena;
  free(made);
  free(offset);
  free(pl.parent);
  free(pl.start);
  free(pl.end);
  free(pl.bytes);
  free(pl.kind);
  free(pl.ext);
  free(pl.own_end);
  free(pl.carry);
  free(pl.chain_next);
  free(pl.node_pos);
  free(pl.loop_end);
  return 0;
}
