/* The lowering driver: plans memory, then walks the graph in execution
 * order and emits each node's kernel (a row of the table in lower_ops.c),
 * loops as kernel loops over their body, and outputs. */
#include <stdlib.h>
#include <string.h>

#include "compiler/lower/lower_internal.h"

KSchedule kschedule_default(void) { return (KSchedule){.vocab_chunk = 1024, .parallel = 1}; }

KSchedule kschedule_cuda(void) {
  KSchedule s = kschedule_default();
  s.attention_kernel = 1;
  s.colsum_rows = 64;
  s.wide_rows = 1;
  s.merge_rows = 1;
  s.sums_as_products = 1;
  s.operands_apart = 1;
  s.recompute_shared = 1;
  /* 256 MiB of fp32: 16 x 1024 rows take chunks of 4096 vocabulary rows (13
   * at V = 50257). Each chunk rescales and adds into the running [rows,
   * width] output once, so fewer chunks move fewer bytes. */
  s.vocab_scratch = (int64_t)1 << 26;
  return s;
}

/* ---- builders -------------------------------------------------------------- */

uint32_t L_i(Lower *l, int64_t v) { return kx_i(l->p, v); }
uint32_t L_f(Lower *l, double v) { return kx_f(l->p, v); }

uint32_t L_dimx(Lower *l, int64_t d) { return IR_IS_SYM(d) ? kx_dim(l->p, l->dim[IR_SYM_INDEX(d)]) : kx_i(l->p, d); }

uint32_t L_numel(Lower *l, const IrShape *s) {
  uint32_t x = L_i(l, 1);
  for (int d = 0; d < s->rank; d++) x = d == 0 ? L_dimx(l, s->dim[0]) : L_mul(l, x, L_dimx(l, s->dim[d]));
  return x;
}

uint32_t L_rows(Lower *l, const IrShape *s) {
  uint32_t x = L_i(l, 1);
  for (int d = 0; d + 1 < s->rank; d++) x = d == 0 ? L_dimx(l, s->dim[0]) : L_mul(l, x, L_dimx(l, s->dim[d]));
  return x;
}

uint32_t L_last(Lower *l, const IrShape *s) { return s->rank ? L_dimx(l, s->dim[s->rank - 1]) : L_i(l, 1); }

int64_t L_max_numel(Lower *l, const IrShape *s) {
  int64_t n = 1;
  for (int d = 0; d < s->rank; d++) n *= IR_IS_SYM(s->dim[d]) ? l->dim_max[IR_SYM_INDEX(s->dim[d])] : s->dim[d];
  return n;
}

const IrShape *L_shape(Lower *l, uint32_t value) { return &ir_type(l->g, value)->shape; }

uint32_t L_newvar(Lower *l, const char *prefix, KType t) {
  char name[32];
  snprintf(name, sizeof name, "%s%d", prefix, l->tmp++);
  return kvar(L_entry(l), name, t);
}

uint32_t L_varx(Lower *l, uint32_t var) { return kx_var(l->p, L_entry(l), var); }

uint32_t L_loop(Lower *l, KLoopKind kind, uint32_t lo, uint32_t hi, uint32_t *saved) {
  if (kind == KL_PARALLEL && !l->s->parallel) kind = KL_SERIAL;
  uint32_t v = L_newvar(l, kind == KL_PARALLEL ? "p" : kind == KL_VECTOR ? "j" : "i", K_I64);
  *saved = l->block;
  l->block = ks_for(l->p, l->block, kind, v, lo, hi);
  return L_varx(l, v);
}

uint32_t L_load(Lower *l, uint32_t value, uint32_t index) {
  if (l->buf[value] == IR_NONE) {
    uint32_t def = l->g->values.a[value].def;
    PC_BUG("lower: value %u (made by %s%s) has no buffer", value, def == IR_NONE ? "a region argument" : ir_op_info(ir_node(l->g, def)->op)->name,
           l->inlined[value] ? ", inlined" : "");
  }
  return kx_load(l->p, L_entry(l), l->buf[value], index);
}

void L_store(Lower *l, uint32_t value, uint32_t index, uint32_t x) { ks_store(l->p, l->block, l->buf[value], index, x); }

uint32_t L_scalar(Lower *l, uint32_t value) {
  if (l->var[value] != IR_NONE) return L_varx(l, l->var[value]);
  return L_load(l, value, L_i(l, 0));
}

void L_assign(Lower *l, uint32_t var, uint32_t x) { ks_assign(l->p, l->block, var, x); }

static uint32_t var_of(Lower *l, const char *prefix, KType t, uint32_t x) {
  uint32_t v = L_newvar(l, prefix, t);
  L_assign(l, v, x);
  return v;
}

uint32_t L_fvar(Lower *l, uint32_t x) { return L_varx(l, var_of(l, "f", K_F32, x)); }
uint32_t L_ivar(Lower *l, uint32_t x) { return L_varx(l, var_of(l, "n", K_I64, x)); }
uint32_t L_acc(Lower *l, KType t, uint32_t init) { return var_of(l, "a", t, init); }
uint32_t L_ex(Lower *l, KOp op, uint32_t a) { return kx_op(l->p, op, a, 0, 0); }
uint32_t L_scratch(Lower *l, const IrNode *n, int k) { return l->scratch[n - l->g->nodes.a][k]; }
uint32_t L_ones(Lower *l) { return l->scratch[l->g->nodes.n][0]; }
void L_operand_only(Lower *l, uint32_t buf) { L_entry(l)->bufs.a[buf].operand_only = 1; }
uint32_t L_ldb(Lower *l, uint32_t buf, uint32_t index) { return kx_load(l->p, L_entry(l), buf, index); }
void L_stb(Lower *l, uint32_t buf, uint32_t index, uint32_t x) { ks_store(l->p, l->block, buf, index, x); }

void L_gemm(Lower *l, int ta, int tb, uint32_t m, uint32_t n, uint32_t k, float alpha, uint32_t a, uint32_t a_off,
            uint32_t lda, uint32_t b, uint32_t b_off, uint32_t ldb, float beta, uint32_t c, uint32_t c_off, uint32_t ldc) {
  KGemm gm = {ta, tb, m, n, k, alpha, beta, a, b, c, a_off, b_off, c_off, lda, ldb, ldc};
  ks_gemm(l->p, l->block, &gm);
}

/* ---- structure ---------------------------------------------------------------- */

static int lower_region(Lower *l, uint32_t r, PcError *err);

static void copy_value(Lower *l, uint32_t dst_buf, uint32_t src_value) {
  ks_copy(l->p, l->block, dst_buf, L_i(l, 0), l->buf[src_value], L_i(l, 0), L_numel(l, L_shape(l, src_value)));
}

/* loop: the carried values live in their carry buffers (the body arguments'
 * and the results' buffer); the body runs `trip` times, its index counting
 * down when reverse; the yields are copied into the carries. */
static int lower_loop(Lower *l, const IrNode *n, PcError *err) {
  const IrGraph *g = l->g;
  const IrRegion *body = &g->regions.a[n->body];
  const IrNode *y = ir_node(g, body->nodes.a[body->nodes.n - 1]);
  for (uint32_t k = 0; k < n->n_in; k++) /* the initial values */
    if (l->buf[ir_in(g, n, k)] != l->buf[n->out + k]) copy_value(l, l->buf[n->out + k], ir_in(g, n, k));
  int64_t trip = n->attr[0].i;
  uint32_t saved, it = L_loop(l, KL_SERIAL, L_i(l, 0), L_i(l, trip), &saved);
  uint32_t index = L_newvar(l, "k", K_I64);
  L_assign(l, index, n->attr[1].i ? L_sub(l, L_i(l, trip - 1), it) : it);
  l->var[body->args.a[0]] = index;
  if (lower_region(l, n->body, err) < 0) return -1;
  /* A yield that reads another carry must be copied out before that carry
   * is overwritten: such yields go through their own (yield value) buffer
   * only when it differs from every carry, which the plan guarantees for
   * values made in the body; a yield of another loop argument is staged. */
  VecU32 staged = {0};
  for (uint32_t k = 0; k < y->n_in; k++) {
    uint32_t v = ir_in(g, y, k);
    int other_carry = 0;
    for (uint32_t j = 0; j < n->n_in; j++) other_carry |= j != k && l->buf[v] == l->buf[n->out + j];
    if (other_carry) vec_push(&staged, k);
  }
  if (staged.n) {
    free(staged.a);
    return pc_errorf(err, "lowering: a loop yields one carried value into another (not supported yet)");
  }
  for (uint32_t k = 0; k < y->n_in; k++) {
    uint32_t v = ir_in(g, y, k);
    if (l->buf[v] != l->buf[n->out + k]) copy_value(l, l->buf[n->out + k], v);
  }
  l->block = saved;
  return 0;
}

uint32_t L_result_buffer(Lower *l, const IrNode *n, uint32_t k, int *accumulate) {
  uint32_t other, sum = summed_into(l, n->out + k, &other);
  *accumulate = sum != IR_NONE;
  if (sum == IR_NONE) return l->buf[n->out + k];
  if (l->buf[other] != l->buf[sum]) copy_value(l, l->buf[sum], other);
  return l->buf[sum];
}

static int lower_node(Lower *l, const IrNode *n, PcError *err) {
  const IrGraph *g = l->g;
  switch (n->op) {
  case IR_PARAM:
  case IR_INPUT:
  case IR_YIELD: return 0;
  case IR_LOOP: return lower_loop(l, n, err);
  case IR_OUTPUT: {
    uint32_t index = l->n_outputs++, v = ir_in(g, n, 0);
    const KEntry *e = L_entry(l);
    if (e->bufs.a[l->buf[v]].kind == KB_OUTPUT && e->bufs.a[l->buf[v]].index == index) return 0; /* written in place */
    char name[64];
    snprintf(name, sizeof name, "%s", ir_str(g, n->attr[0].s));
    uint32_t out = kbuf(L_entry(l), name, ir_type(g, v)->dtype == PC_I32 ? K_I32 : K_F32, KB_OUTPUT, index, 0,
                        (uint64_t)L_max_numel(l, L_shape(l, v)));
    copy_value(l, out, v);
    return 0;
  }
  default: break;
  }
  if (n->n_out == 1 && l->inlined[n->out] && (elementwise_op(n->op) || n->op == IR_SLICE))
    return 0; /* its consumer computes it, or reads it in place (a view) */
  if (n->n_out == 1 && l->at_row[n->out] != IR_NONE) return 0; /* the node next to it does */
  if (elementwise_op(n->op)) return lower_elementwise_root(l, n, err);
  const OpLowering *ol = lower_op(n->op);
  if (!ol || !ol->lower) return pc_errorf(err, "lowering: no kernel for %s yet", ir_op_info(n->op)->name);
  for (uint32_t k = 0; k < n->n_out; k++) { /* a result that starts as an operand, where the plan did not alias them */
    int from = ir_accumulates(n->op, k);
    if (from >= 0 && l->buf[n->out + k] != l->buf[ir_in(g, n, (uint32_t)from)])
      copy_value(l, l->buf[n->out + k], ir_in(g, n, (uint32_t)from));
  }
  return ol->lower(l, n, err);
}

static int lower_region(Lower *l, uint32_t r, PcError *err) {
  const IrRegion *reg = &l->g->regions.a[r];
  for (size_t i = 0; i < reg->nodes.n; i++) {
    const IrNode *n = ir_node(l->g, reg->nodes.a[i]);
    size_t first = l->p->stmts.n;
    if (lower_node(l, n, err) < 0) {
      if (n->loc != IR_NONE) pc_error_prefix(err, "%s: %s", ir_str(l->g, n->loc), ir_op_info(n->op)->name);
      return -1;
    }
    if (l->p->stmts.n == first) continue;
    char origin[256];
    if (n->loc != IR_NONE) snprintf(origin, sizeof origin, "%s @%s", ir_op_info(n->op)->name, ir_str(l->g, n->loc));
    else snprintf(origin, sizeof origin, "%s", ir_op_info(n->op)->name);
    kir_set_origin(l->p, first, kir_origin(l->p, origin)); /* a loop's body has its own */
  }
  return 0;
}

/* Parameters and inputs are the caller's: point their buffers at the
 * program's parameter table and the graph's input order. */
static int bind_external(Lower *l, const char *const *param_names, size_t n_params, PcError *err) {
  const IrGraph *g = l->g;
  KEntry *e = L_entry(l);
  for (size_t i = 0; i < g->params.n; i++) {
    uint32_t v = ir_node(g, g->params.a[i])->out;
    const char *name = ir_str(g, g->values.a[v].name);
    size_t k = 0;
    while (k < n_params && strcmp(param_names[k], name)) k++;
    if (k == n_params) return pc_errorf(err, "lowering: parameter '%s' is not in the program's table", name);
    if (l->buf[v] != IR_NONE) e->bufs.a[l->buf[v]].index = (uint32_t)k;
  }
  for (size_t i = 0; i < g->inputs.n; i++) {
    uint32_t v = ir_node(g, g->inputs.a[i])->out;
    if (l->buf[v] != IR_NONE) e->bufs.a[l->buf[v]].index = (uint32_t)i;
  }
  return 0;
}

/* The entry's row of ones that bias gradients multiply (sums_as_products),
 * stored at its start by a kernel, so that in bf16 it has its mirror;
 * only products read it. */
static void lower_entry_ones(Lower *l) {
  uint32_t ones = L_ones(l), saved;
  L_operand_only(l, ones);
  uint32_t r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_i(l, l->n_ones), &saved);
  L_stb(l, ones, r, L_f(l, 1));
  l->block = saved;
}

int lower_entry(KProgram *p, const char *name, const IrGraph *g, const int64_t *dim_max, const char *const *param_names,
                size_t n_params, const KSchedule *s, PcError *err) {
  Lower l = {.p = p, .g = g, .s = s, .dim_max = dim_max, .slice_rows.stmt = UINT32_MAX};
  kir_entry(p, name);
  l.entry = (uint32_t)(p->entries.n - 1);
  l.block = L_entry(&l)->body;
  size_t nv = g->values.n + 1, nn = g->nodes.n + 1;
  l.buf = pc_xmalloc(sizeof(uint32_t) * nv);
  l.var = pc_xmalloc(sizeof(uint32_t) * nv);
  memset(l.buf, 0xff, sizeof(uint32_t) * nv);
  memset(l.var, 0xff, sizeof(uint32_t) * nv);
  l.inlined = pc_xcalloc(nv, 1);
  l.at_row = pc_xmalloc(sizeof(uint32_t) * nv);
  memset(l.at_row, 0xff, sizeof(uint32_t) * nv);
  l.uses = ir_use_counts(g);
  l.dim = pc_xmalloc(sizeof(uint32_t) * (g->syms.n + 1));
  l.scratch = pc_xmalloc(sizeof *l.scratch * nn);
  memset(l.scratch, 0xff, sizeof *l.scratch * nn);
  for (size_t k = 0; k < g->syms.n; k++) l.dim[k] = kdim(L_entry(&l), g->syms.a[k], dim_max[k]);
  plan_inline(&l);
  int rc = plan_memory(&l, err);
  if (!rc) rc = bind_external(&l, param_names, n_params, err);
  if (!rc && l.n_ones) lower_entry_ones(&l);
  if (!rc) rc = lower_region(&l, 0, err);
  if (!rc && s->merge_rows) merge_rows(p, l.entry);
  free(l.buf);
  free(l.var);
  free(l.inlined);
  free(l.at_row);
  free(l.uses);
  free(l.dim);
  free(l.scratch);
  return rc;
}
