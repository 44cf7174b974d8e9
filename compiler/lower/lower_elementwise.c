/* Elementwise groups: a chain of elementwise ops whose intermediate values
 * have no other use becomes one loop over the output, rows in parallel and
 * columns as a vector loop, each intermediate a scalar variable. Operands
 * broadcast by their index (bias [C] over [N, C], positions [T, C] over
 * [B, T, C], a scalar over anything). */
#include <math.h>

#include "compiler/lower/lower_internal.h"

/* The index in v's buffer of output element (row r, column c), v
 * broadcasting against out (right-aligned). */
static uint32_t broadcast_index(Lower *l, uint32_t v, const IrShape *out, uint32_t r, uint32_t c) {
  const IrShape *s = L_shape(l, v);
  if (ir_shape_eq(s, out)) return L_add(l, L_mul(l, r, L_last(l, out)), c);
  int64_t sc = s->rank ? s->dim[s->rank - 1] : 1;
  uint32_t col = sc == 1 ? L_i(l, 0) : c;
  /* leading dims: the operand's (without its last) against the output's */
  int lead_s = s->rank ? s->rank - 1 : 0, lead_o = out->rank ? out->rank - 1 : 0;
  int all_one = 1, suffix = lead_s <= lead_o;
  for (int d = 0; d < lead_s; d++) {
    all_one &= s->dim[d] == 1;
    if (suffix && s->dim[d] != out->dim[lead_o - lead_s + d]) suffix = 0;
  }
  uint32_t row;
  if (all_one) {
    row = L_i(l, 0);
  } else if (suffix) {
    row = L_op(l, KE_REM, r, L_rows(l, s));
  } else { /* general: unpick the output row into its multi-index */
    row = L_i(l, 0);
    uint32_t stride_o = L_i(l, 1), stride_s = L_i(l, 1);
    for (int d = lead_o - 1; d >= 0; d--) {
      int ds = d - (lead_o - lead_s);
      uint32_t idx = L_op(l, KE_REM, L_div(l, r, stride_o), L_dimx(l, out->dim[d]));
      if (ds >= 0 && s->dim[ds] != 1) row = L_add(l, row, L_mul(l, idx, stride_s));
      stride_o = L_mul(l, stride_o, L_dimx(l, out->dim[d]));
      if (ds >= 0) stride_s = L_mul(l, stride_s, L_dimx(l, s->dim[ds]));
    }
  }
  return L_add(l, L_mul(l, row, L_i(l, sc)), col);
}

static uint32_t fvar(Lower *l, uint32_t x) {
  uint32_t v = L_newvar(l, "e", K_F32);
  L_assign(l, v, x);
  return L_varx(l, v);
}

/* f(x) and f'(x) dy of the activations, as kernel expressions */
static uint32_t gelu_tanh(Lower *l, uint32_t x) {
  KProgram *p = l->p;
  uint32_t x3 = L_mul(l, L_mul(l, x, x), x);
  uint32_t u = fvar(l, L_mul(l, L_f(l, sqrt(2.0 / M_PI)), L_add(l, x, L_mul(l, L_f(l, 0.044715), x3))));
  return L_mul(l, L_mul(l, L_f(l, 0.5), x), L_add(l, L_f(l, 1.0), kx_op(p, KE_TANH, u, 0, 0)));
}

static uint32_t gelu_tanh_grad(Lower *l, uint32_t x, uint32_t dy) {
  KProgram *p = l->p;
  double c = sqrt(2.0 / M_PI);
  uint32_t xx = fvar(l, L_mul(l, x, x));
  uint32_t t = fvar(l, kx_op(p, KE_TANH, L_mul(l, L_f(l, c), L_add(l, x, L_mul(l, L_f(l, 0.044715), L_mul(l, xx, x)))), 0, 0));
  uint32_t left = L_mul(l, L_f(l, 0.5), L_add(l, L_f(l, 1.0), t));
  uint32_t sech2 = L_sub(l, L_f(l, 1.0), L_mul(l, t, t));
  uint32_t right = L_mul(l, L_mul(l, L_mul(l, L_f(l, 0.5), x), sech2),
                         L_mul(l, L_f(l, c), L_add(l, L_f(l, 1.0), L_mul(l, L_f(l, 3 * 0.044715), xx))));
  return L_mul(l, dy, L_add(l, left, right));
}

static uint32_t gelu(Lower *l, uint32_t x) {
  return L_mul(l, L_mul(l, L_f(l, 0.5), x), L_add(l, L_f(l, 1.0), kx_op(l->p, KE_ERF, L_mul(l, x, L_f(l, M_SQRT1_2)), 0, 0)));
}

static uint32_t gelu_grad(Lower *l, uint32_t x, uint32_t dy) {
  KProgram *p = l->p;
  uint32_t cdf = L_mul(l, L_f(l, 0.5), L_add(l, L_f(l, 1.0), kx_op(p, KE_ERF, L_mul(l, x, L_f(l, M_SQRT1_2)), 0, 0)));
  uint32_t pdf = L_mul(l, L_f(l, 1.0 / sqrt(2.0 * M_PI)), kx_op(p, KE_EXP, L_mul(l, L_f(l, -0.5), L_mul(l, x, x)), 0, 0));
  return L_mul(l, dy, L_add(l, cdf, L_mul(l, x, pdf)));
}

static uint32_t sigmoid(Lower *l, uint32_t x) {
  return fvar(l, L_div(l, L_f(l, 1.0), L_add(l, L_f(l, 1.0), kx_op(l->p, KE_EXP, kx_op(l->p, KE_NEG, x, 0, 0), 0, 0))));
}

/* The value of v at (r, c): a load, or (inlined) its op over its operands'. */
uint32_t elementwise_value_at(Lower *l, uint32_t v, const IrShape *out, uint32_t r, uint32_t c) {
  if (!l->inlined[v]) return fvar(l, L_load(l, v, broadcast_index(l, v, out, r, c)));
  const IrNode *n = ir_node(l->g, l->g->values.a[v].def);
  uint32_t a = elementwise_value_at(l, ir_in(l->g, n, 0), out, r, c);
  uint32_t b = n->n_in > 1 ? elementwise_value_at(l, ir_in(l->g, n, 1), out, r, c) : 0;
  uint32_t x;
  switch (n->op) {
  case IR_ADD: x = L_add(l, a, b); break;
  case IR_SUB: x = L_sub(l, a, b); break;
  case IR_MUL: x = L_mul(l, a, b); break;
  case IR_SCALE: x = L_mul(l, a, L_f(l, n->attr[0].f)); break;
  case IR_GELU_TANH: x = gelu_tanh(l, a); break;
  case IR_GELU: x = gelu(l, a); break;
  case IR_SILU: x = L_mul(l, a, sigmoid(l, a)); break;
  case IR_GELU_TANH_GRAD: x = gelu_tanh_grad(l, a, b); break;
  case IR_GELU_GRAD: x = gelu_grad(l, a, b); break;
  case IR_SILU_GRAD: {
    uint32_t s = sigmoid(l, a);
    x = L_mul(l, b, L_mul(l, s, L_add(l, L_f(l, 1.0), L_mul(l, a, L_sub(l, L_f(l, 1.0), s)))));
    break;
  }
  default: PC_BUG("not an elementwise op: %s", ir_op_info(n->op)->name);
  }
  return fvar(l, x);
}

void lower_elementwise_row(Lower *l, uint32_t v, uint32_t r) {
  const IrShape *out = L_shape(l, v);
  uint32_t before = row_group_before(l, l->g->values.a[v].def); /* stored first, read back from cache */
  if (before != IR_NONE) lower_elementwise_row(l, before, r);
  uint32_t saved, c = L_loop(l, KL_VECTOR, L_i(l, 0), L_last(l, out), &saved);
  /* the root computes like an inlined value, then stores */
  l->inlined[v] = 1;
  uint32_t x = elementwise_value_at(l, v, out, r, c);
  l->inlined[v] = 0;
  L_store(l, v, L_add(l, L_mul(l, r, L_last(l, out)), c), x);
  l->block = saved;
}

int lower_elementwise_root(Lower *l, const IrNode *n, PcError *err) {
  uint32_t saved, r = L_loop(l, KL_PARALLEL, L_i(l, 0), L_rows(l, L_shape(l, n->out)), &saved);
  lower_elementwise_row(l, n->out, r);
  l->block = saved;
  return 0;
}
