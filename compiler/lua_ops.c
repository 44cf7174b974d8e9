/* The `pondercc` Lua module: tensors as userdata over IR values, and one
 * binding per operation a model script can call. Every binding records the
 * calling script line as the node's location, and raises a Lua error whose
 * message is "file:line: op: ..." when shape inference rejects the node. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "compiler/front_internal.h"

static FeModel *model_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* The innermost line of the model script itself on the call stack (so an
 * error inside models/lib points at the script's call), else the innermost
 * Lua line, as "file:line" ("" when there is none). */
static void script_where(lua_State *L, FeModel *m, char *loc, size_t n) {
  lua_Debug ar;
  loc[0] = 0;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline <= 0) continue;
    int in_script = ar.source[0] == '@' && !strcmp(ar.source + 1, m->script);
    if (!loc[0] || in_script) snprintf(loc, n, "%s:%d", ar.short_src, ar.currentline);
    if (in_script) break;
  }
}

/* The node location: script_where. */
void fe_set_loc(lua_State *L, FeModel *m) {
  char loc[LUA_IDSIZE + 32];
  script_where(L, m, loc, sizeof loc);
  ir_set_loc(&m->b, loc[0] ? loc : NULL);
}

int fe_error(lua_State *L, FeModel *m, const char *fmt, ...) {
  char loc[LUA_IDSIZE + 32];
  script_where(L, m, loc, sizeof loc);
  va_list ap;
  va_start(ap, fmt);
  lua_pushfstring(L, "%s%s", loc, loc[0] ? ": " : "");
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

static int raise(lua_State *L, const PcError *err) {
  lua_pushstring(L, err->msg);
  return lua_error(L);
}

void fe_push_tensor(lua_State *L, FeModel *m, uint32_t v) {
  FeTensor *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->value = v;
  t->trace_id = m->trace_id;
  luaL_setmetatable(L, FE_TENSOR_META);
}

uint32_t fe_check_tensor(lua_State *L, FeModel *m, int arg) {
  FeTensor *t = luaL_testudata(L, arg, FE_TENSOR_META);
  if (!t) luaL_typeerror(L, arg, "tensor");
  if (!m->g || t->trace_id != m->trace_id)
    luaL_argerror(L, arg, "tensor from another trace (keep tensors inside forward)");
  return t->value;
}

/* Builds a one-result node at the caller's line and pushes its tensor. */
static int push_op(lua_State *L, FeModel *m, IrOp op, const uint32_t *in, uint32_t n, const IrAttr *attr) {
  if (!m->g) return luaL_error(L, "%s: operations can only be used while forward is traced", ir_op_info(op)->name);
  PcError err;
  fe_set_loc(L, m);
  uint32_t v = ir_build(&m->b, op, in, n, attr, NULL, &err);
  if (v == IR_NONE) return raise(L, &err);
  fe_push_tensor(L, m, v);
  return 1;
}

static int unary(lua_State *L, IrOp op) {
  FeModel *m = model_of(L);
  uint32_t x = fe_check_tensor(L, m, 1);
  return push_op(L, m, op, &x, 1, NULL);
}

static int l_gelu(lua_State *L) { return unary(L, IR_GELU); }
static int l_gelu_tanh(lua_State *L) { return unary(L, IR_GELU_TANH); }
static int l_silu(lua_State *L) { return unary(L, IR_SILU); }
static int l_softmax(lua_State *L) { return unary(L, IR_SOFTMAX); }
/* positions(ids): 0..T-1, or pos..pos+T-1 when tracing for decoding */
static int l_positions(lua_State *L) {
  FeModel *m = model_of(L);
  if (m->pos == IR_NONE) return unary(L, IR_POSITIONS);
  uint32_t in[2] = {fe_check_tensor(L, m, 1), m->pos};
  return push_op(L, m, IR_POSITIONS_AT, in, 2, NULL);
}

static int binary(lua_State *L, IrOp op) {
  FeModel *m = model_of(L);
  uint32_t in[2] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2)};
  return push_op(L, m, op, in, 2, NULL);
}

static int l_embedding(lua_State *L) { return binary(L, IR_EMBEDDING); }
static int l_matmul(lua_State *L) { return binary(L, IR_MATMUL); }
static int l_cross_entropy(lua_State *L) { return binary(L, IR_CROSS_ENTROPY); }

static int scale_by(lua_State *L, FeModel *m, uint32_t x, double s) {
  IrAttr attr[IR_MAX_ATTRS] = {{.f = s}};
  return push_op(L, m, IR_SCALE, &x, 1, attr);
}

static int l_scale(lua_State *L) {
  FeModel *m = model_of(L);
  return scale_by(L, m, fe_check_tensor(L, m, 1), luaL_checknumber(L, 2));
}

/* linear(x, w [, b]): x times w transposed, w as [out, in], plus b. */
static int l_linear(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t in[2] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2)};
  int has_bias = !lua_isnoneornil(L, 3);
  uint32_t bias = has_bias ? fe_check_tensor(L, m, 3) : 0;
  push_op(L, m, IR_LINEAR, in, 2, NULL);
  if (!has_bias) return 1;
  uint32_t sum[2] = {fe_check_tensor(L, m, -1), bias};
  return push_op(L, m, IR_ADD, sum, 2, NULL);
}

static double check_eps(lua_State *L, int arg) {
  double eps = luaL_checknumber(L, arg);
  luaL_argcheck(L, eps > 0, arg, "eps must be positive");
  return eps;
}

static int l_layernorm(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t in[3] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2), fe_check_tensor(L, m, 3)};
  IrAttr attr[IR_MAX_ATTRS] = {{.f = check_eps(L, 4)}};
  return push_op(L, m, IR_LAYERNORM, in, 3, attr);
}

static int l_rmsnorm(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t in[2] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2)};
  IrAttr attr[IR_MAX_ATTRS] = {{.f = check_eps(L, 3)}};
  return push_op(L, m, IR_RMSNORM, in, 2, attr);
}

/* Decoding: a new KV cache input for an attention call, with one slot per
 * iteration of the enclosing loop; *slot gets the slot this call uses. */
static uint32_t new_cache(lua_State *L, FeModel *m, uint32_t k, uint32_t *slot) {
  IrGraph *g = m->g;
  uint32_t r = m->b.region;
  int64_t slots = 1;
  PcError err;
  if (r != 0) {
    if (g->regions.a[r].parent != 0) luaL_error(L, "attention: decoding with KV caches supports one level of loops");
    slots = ir_node(g, g->regions.a[r].owner)->attr[0].i;
    *slot = g->regions.a[r].args.a[0]; /* the iteration index */
  } else {
    IrType t = {PC_I32, {0}};
    IrAttr zero[IR_MAX_ATTRS] = {{.f = 0}};
    *slot = ir_build(&m->b, IR_FILL, NULL, 0, zero, &t, &err);
  }
  const IrShape *ks = &ir_type(g, k)->shape;
  IrType ct = {PC_F32, {5, {slots, 2, ks->dim[0], m->cache_len, ks->dim[2]}}};
  char name[32];
  snprintf(name, sizeof name, "kv.%u", m->n_caches++);
  uint32_t cache = ir_input(&m->b, name, &ct, &err);
  if (cache == IR_NONE) luaL_error(L, "%s", err.msg);
  return cache;
}

/* attention(q, k, v, n_head [, n_kv_head]); with KV caches when decoding */
static int l_attention(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t in[6] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2), fe_check_tensor(L, m, 3)};
  lua_Integer h = luaL_checkinteger(L, 4);
  lua_Integer hkv = luaL_optinteger(L, 5, h);
  IrAttr attr[IR_MAX_ATTRS] = {{.i = h}, {.i = hkv}};
  if (m->pos == IR_NONE) return push_op(L, m, IR_ATTENTION, in, 3, attr);
  fe_set_loc(L, m);
  in[3] = new_cache(L, m, in[1], &in[4]);
  in[5] = m->pos;
  return push_op(L, m, IR_ATTENTION_CACHED, in, 6, attr);
}

/* rope(x, positions, n_head, rotary_dims [, theta = 10000]): rotary
 * positions on the first rotary_dims of each head (rotate_half pairing) */
static int l_rope(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t in[2] = {fe_check_tensor(L, m, 1), fe_check_tensor(L, m, 2)};
  IrAttr attr[IR_MAX_ATTRS] = {{.i = luaL_checkinteger(L, 3)}, {.i = luaL_checkinteger(L, 4)},
                               {.f = luaL_optnumber(L, 5, 10000.0)}};
  return push_op(L, m, IR_ROPE, in, 2, attr);
}

/* split(x, n1, n2, ...): consecutive pieces of the last axis. */
static int l_split(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t x = fe_check_tensor(L, m, 1);
  int pieces = lua_gettop(L) - 1;
  luaL_argcheck(L, pieces >= 1, 2, "expected piece sizes");
  IrType t = *ir_type(m->g, x); /* a copy: building nodes moves the value array */
  lua_Integer start = 0;
  for (int i = 0; i < pieces; i++) {
    lua_Integer size = luaL_checkinteger(L, i + 2);
    IrAttr attr[IR_MAX_ATTRS] = {{.i = t.shape.rank - 1}, {.i = start}, {.i = size}};
    push_op(L, m, IR_SLICE, &x, 1, attr);
    start += size;
  }
  int64_t last = t.shape.rank ? t.shape.dim[t.shape.rank - 1] : 0;
  if (!IR_IS_SYM(last) && start != last)
    return luaL_error(L, "split: pieces add up to %d but the last axis has %d", (int)start, (int)last);
  return pieces;
}

/* param(name, {dims}, {init=, std=, layout=}) declares a parameter; the
 * same name again with the same shape gives the same tensor (tied weights). */
static int l_param(lua_State *L) {
  FeModel *m = model_of(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  IrType t = {.dtype = PC_F32};
  t.shape.rank = (int)luaL_len(L, 2);
  luaL_argcheck(L, t.shape.rank <= PC_MAX_RANK, 2, "too many dims");
  for (int i = 0; i < t.shape.rank; i++) {
    lua_geti(L, 2, i + 1);
    int ok;
    lua_Integer d = lua_tointegerx(L, -1, &ok);
    if (!ok || d <= 0) return luaL_error(L, "param '%s': dim %d must be a positive integer", name, i + 1);
    t.shape.dim[i] = d;
    lua_pop(L, 1);
  }
  const char *init = "normal", *layout = NULL;
  double std = 0.02; /* used by the normal inits only */
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "init") != LUA_TNIL) init = luaL_checkstring(L, -1);
    if (lua_getfield(L, 3, "std") != LUA_TNIL) std = luaL_checknumber(L, -1);
    if (lua_getfield(L, 3, "layout") != LUA_TNIL) layout = luaL_checkstring(L, -1);
  }
  static const char *inits[] = {"normal", "trunc_normal", "zeros", "ones", NULL};
  int known = 0;
  for (int i = 0; inits[i]; i++) known |= !strcmp(init, inits[i]);
  if (!known) return luaL_error(L, "param '%s': unknown init '%s' (normal, trunc_normal, zeros, ones)", name, init);
  if (!strstr(init, "normal")) std = 0;
  luaL_argcheck(L, std >= 0, 3, "std must be non-negative");
  if (!m->g) return luaL_error(L, "param: parameters can only be declared while forward is traced");
  uint32_t v = ir_find_param(m->g, name);
  if (v != IR_NONE) {
    if (!ir_type_eq(ir_type(m->g, v), &t)) {
      char a[128], b[128];
      return luaL_error(L, "param '%s' was declared as %s and now as %s", name,
                        ir_type_str(m->g, ir_type(m->g, v), a, sizeof a), ir_type_str(m->g, &t, b, sizeof b));
    }
    fe_push_tensor(L, m, v);
    return 1;
  }
  PcError err;
  fe_set_loc(L, m);
  v = ir_param(&m->b, name, &t, init, std, layout, &err);
  if (v == IR_NONE) return raise(L, &err);
  fe_push_tensor(L, m, v);
  return 1;
}

/* loop(n, {init...}, function(i, ...) return ... end) -> final values */
static int l_loop(lua_State *L) {
  FeModel *m = model_of(L);
  lua_Integer trip = luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_Integer n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 64, 2, "carry 1 to 64 tensors");
  uint32_t init[64], args[65]; /* a script-level limit: loops made by the compiler have none */
  for (lua_Integer i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    init[i] = fe_check_tensor(L, m, -1);
    lua_pop(L, 1);
  }
  PcError err;
  fe_set_loc(L, m);
  if (ir_loop_begin(&m->b, trip, 0, init, (uint32_t)n, args, &err) == IR_NONE) return raise(L, &err);
  lua_pushvalue(L, 3);
  for (lua_Integer i = 0; i <= n; i++) fe_push_tensor(L, m, args[i]);
  int base = lua_gettop(L) - (int)n - 2;
  lua_call(L, (int)n + 1, LUA_MULTRET);
  int got = lua_gettop(L) - base;
  if (got != n) return luaL_error(L, "loop: the body returned %d values for %d carried", got, (int)n);
  uint32_t yield[64];
  for (int i = 0; i < got; i++) yield[i] = fe_check_tensor(L, m, base + 1 + i);
  fe_set_loc(L, m);
  uint32_t out = ir_loop_end(&m->b, yield, (uint32_t)n, &err);
  if (out == IR_NONE) return raise(L, &err);
  for (lua_Integer i = 0; i < n; i++) fe_push_tensor(L, m, out + (uint32_t)i);
  return (int)n;
}

/* ---- the tensor metatable ---------------------------------------------- */

static int arith(lua_State *L, IrOp op) {
  FeModel *m = model_of(L);
  int a_num = lua_isnumber(L, 1), b_num = lua_isnumber(L, 2);
  if (op == IR_MUL && (a_num || b_num)) /* tensor * number */
    return scale_by(L, m, fe_check_tensor(L, m, a_num ? 2 : 1), lua_tonumber(L, a_num ? 1 : 2));
  return binary(L, op);
}

static int t_add(lua_State *L) { return arith(L, IR_ADD); }
static int t_sub(lua_State *L) { return arith(L, IR_SUB); }
static int t_mul(lua_State *L) { return arith(L, IR_MUL); }
static int t_div(lua_State *L) {
  FeModel *m = model_of(L);
  uint32_t x = fe_check_tensor(L, m, 1);
  double d = luaL_checknumber(L, 2);
  luaL_argcheck(L, d != 0, 2, "division by zero");
  return scale_by(L, m, x, 1.0 / d);
}
static int t_unm(lua_State *L) {
  FeModel *m = model_of(L);
  return scale_by(L, m, fe_check_tensor(L, m, 1), -1.0);
}

static int t_tostring(lua_State *L) {
  FeModel *m = model_of(L);
  FeTensor *t = luaL_checkudata(L, 1, FE_TENSOR_META);
  if (!m->g || t->trace_id != m->trace_id) {
    lua_pushstring(L, "tensor (from another trace)");
    return 1;
  }
  char buf[160];
  lua_pushfstring(L, "tensor %s", ir_type_str(m->g, ir_type(m->g, t->value), buf, sizeof buf));
  return 1;
}

/* x:shape() -> {dims}, symbolic dims as their names */
static int t_shape(lua_State *L) {
  FeModel *m = model_of(L);
  const IrShape *s = &ir_type(m->g, fe_check_tensor(L, m, 1))->shape;
  lua_createtable(L, s->rank, 0);
  for (int i = 0; i < s->rank; i++) {
    if (IR_IS_SYM(s->dim[i]))
      lua_pushstring(L, m->g->syms.a[IR_SYM_INDEX(s->dim[i])]);
    else
      lua_pushinteger(L, s->dim[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

static const luaL_Reg module_funcs[] = {
    {"param", l_param},         {"embedding", l_embedding}, {"positions", l_positions}, {"linear", l_linear},
    {"matmul", l_matmul},       {"layernorm", l_layernorm}, {"rmsnorm", l_rmsnorm},     {"gelu", l_gelu},
    {"gelu_tanh", l_gelu_tanh}, {"silu", l_silu},           {"softmax", l_softmax},     {"scale", l_scale},
    {"attention", l_attention}, {"split", l_split},         {"loop", l_loop},           {"cross_entropy", l_cross_entropy},
    {"ponder", fe_lua_ponder},  {"rope", l_rope},
    {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {{"__add", t_add}, {"__sub", t_sub},           {"__mul", t_mul},
                                       {"__div", t_div}, {"__unm", t_unm},           {"__tostring", t_tostring},
                                       {NULL, NULL}};

static const luaL_Reg tensor_methods[] = {{"shape", t_shape}, {NULL, NULL}};

int fe_push_module(lua_State *L, FeModel *m) {
  luaL_newmetatable(L, FE_TENSOR_META);
  lua_pushlightuserdata(L, m);
  luaL_setfuncs(L, tensor_meta, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, m);
  luaL_setfuncs(L, tensor_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_pushlightuserdata(L, m);
  luaL_setfuncs(L, module_funcs, 1);
  return 1;
}
