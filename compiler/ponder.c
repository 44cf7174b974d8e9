/* pondercc.ponder: the pondering construct (DESIGN section 1), for any model
 * script. Given the token embedding table W_in, the LM head W_out, the ids
 * and the model body (input embeddings -> final hidden states), it builds
 *
 *   s = sqrt(C) if scale_embeds;  c = K if mutiply_pondering_steps (K > 0)
 *   E0 = c s W_in[ids];  E = E0
 *   loop K times:  H = body(E);  P = softmax(H W_out^T / tau)  (top-k: over the k largest)
 *                  E = E + s (P W_in)      (latest-only: E = E0 + s (P W_in))
 *   return body(E)
 *
 * as one bounded loop in the graph, whatever K is. The knobs are
 * hyperparameters (Hugging Face PonderingLM config.json names where they
 * exist), added to every model by pondercc.model. */
#include <math.h>
#include <string.h>

#include "compiler/front_internal.h"

/* name, Lua default (pushed by push_default) */
static const char *const knob_names[] = {"ponderinglm", "pondering_steps", "scale_embeds", "mutiply_pondering_steps",
                                         "ponder_tau", "ponder_topk", "ponder_accumulate", "ponder_reference_init"};

static void push_knob_default(lua_State *L, int k) {
  switch (k) {
  case 0: lua_pushboolean(L, 0); break;   /* ponderinglm: pondering off */
  case 1: lua_pushinteger(L, 3); break;   /* pondering_steps K, used when ponderinglm */
  case 2: lua_pushboolean(L, 0); break;   /* scale_embeds */
  case 3: lua_pushboolean(L, 0); break;   /* mutiply_pondering_steps (sic, as in PonderingLM) */
  case 4: lua_pushnumber(L, 1.0); break;  /* ponder_tau */
  case 5: lua_pushinteger(L, 0); break;   /* ponder_topk: 0 = the whole vocabulary */
  case 6: lua_pushboolean(L, 1); break;   /* ponder_accumulate: false = latest only */
  default: lua_pushboolean(L, 0); break;  /* ponder_reference_init */
  }
}

void fe_add_ponder_hparams(lua_State *L, int idx) {
  lua_getfield(L, idx, "hparams");
  for (int k = 0; k < (int)(sizeof knob_names / sizeof *knob_names); k++) {
    if (lua_getfield(L, -1, knob_names[k]) == LUA_TNIL) {
      push_knob_default(L, k);
      lua_setfield(L, -3, knob_names[k]);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

typedef struct {
  lua_Integer steps, topk;
  double tau, s, c;
  int accumulate;
} Knobs;

static lua_Integer hp_int(lua_State *L, FeModel *m, int hp, const char *key) {
  lua_getfield(L, hp, key);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok) fe_error(L, m, "ponder: hyperparameter %s must be an integer", key);
  lua_pop(L, 1);
  return v;
}

static int hp_bool(lua_State *L, int hp, const char *key) {
  lua_getfield(L, hp, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static Knobs read_knobs(lua_State *L, FeModel *m, int hp, int64_t width, int64_t vocab) {
  Knobs k = {0};
  k.steps = hp_bool(L, hp, "ponderinglm") ? hp_int(L, m, hp, "pondering_steps") : 0;
  if (k.steps < 0) fe_error(L, m, "ponder: pondering_steps = %d must be 0 or more", (int)k.steps);
  if (k.steps > 64) fe_error(L, m, "ponder: pondering_steps = %d is absurdly large (at most 64)", (int)k.steps);
  lua_getfield(L, hp, "ponder_tau");
  k.tau = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(k.tau > 0) || !isfinite(k.tau)) fe_error(L, m, "ponder: ponder_tau = %f must be positive", (lua_Number)k.tau);
  k.topk = hp_int(L, m, hp, "ponder_topk");
  if (k.topk < 0 || k.topk > vocab)
    fe_error(L, m, "ponder: ponder_topk = %d must be between 0 (the whole vocabulary) and the vocabulary size %d",
               (int)k.topk, (int)vocab);
  k.s = hp_bool(L, hp, "scale_embeds") ? sqrt((double)width) : 1.0;
  k.c = hp_bool(L, hp, "mutiply_pondering_steps") && k.steps > 0 ? (double)k.steps : 1.0;
  k.accumulate = hp_bool(L, hp, "ponder_accumulate");
  return k;
}

/* Calls the body function at stack index fn on tensor e; returns its result. */
static uint32_t call_body(lua_State *L, FeModel *m, int fn, uint32_t e) {
  lua_pushvalue(L, fn);
  fe_push_tensor(L, m, e);
  lua_call(L, 1, 1);
  uint32_t h = fe_check_tensor(L, m, -1);
  lua_pop(L, 1);
  return h;
}

static uint32_t build(lua_State *L, FeModel *m, IrOp op, const uint32_t *in, uint32_t n, const IrAttr *attr) {
  PcError err;
  uint32_t v = ir_build(&m->b, op, in, n, attr, NULL, &err);
  if (v == IR_NONE) {
    lua_pushstring(L, err.msg);
    lua_error(L);
  }
  return v;
}

static uint32_t scaled(lua_State *L, FeModel *m, uint32_t x, double by) {
  if (by == 1.0) return x;
  IrAttr attr[IR_MAX_ATTRS] = {{.f = by}};
  return build(L, m, IR_SCALE, &x, 1, attr);
}

/* pondercc.ponder(hp, {embed = W_in, head = W_out, ids = ids, body = fn}) -> H */
int fe_lua_ponder(lua_State *L) {
  FeModel *m = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *fields[4] = {"embed", "head", "ids", "body"};
  for (int i = 0; i < 4; i++) lua_getfield(L, 2, fields[i]); /* 3..6 */
  luaL_checktype(L, 6, LUA_TFUNCTION);
  uint32_t w_in = fe_check_tensor(L, m, 3), w_out = fe_check_tensor(L, m, 4), ids = fe_check_tensor(L, m, 5);
  const IrType *wt = ir_type(m->g, w_in);
  if (wt->shape.rank != 2) return fe_error(L, m, "ponder: embed must be a [vocab, width] table");
  Knobs k = read_knobs(L, m, 1, wt->shape.dim[1], wt->shape.dim[0]);

  fe_set_loc(L, m);
  uint32_t in[2] = {w_in, ids};
  uint32_t e0 = scaled(L, m, build(L, m, IR_EMBEDDING, in, 2, NULL), k.c * k.s);
  if (k.steps == 0) {
    fe_push_tensor(L, m, call_body(L, m, 6, e0));
    return 1;
  }
  PcError err;
  uint32_t args[2];
  if (ir_loop_begin(&m->b, k.steps, 0, &e0, 1, args, &err) == IR_NONE) {
    lua_pushstring(L, err.msg);
    return lua_error(L);
  }
  uint32_t h = call_body(L, m, 6, args[1]);
  fe_set_loc(L, m);
  uint32_t z[2] = {h, w_out};
  uint32_t logits = scaled(L, m, build(L, m, IR_LINEAR, z, 2, NULL), 1.0 / k.tau);
  IrAttr topk[IR_MAX_ATTRS] = {{.i = k.topk}};
  uint32_t p = k.topk ? build(L, m, IR_SOFTMAX_TOPK, &logits, 1, topk) : build(L, m, IR_SOFTMAX, &logits, 1, NULL);
  uint32_t mix[2] = {p, w_in};
  uint32_t t = scaled(L, m, build(L, m, IR_MATMUL, mix, 2, NULL), k.s);
  uint32_t sum[2] = {k.accumulate ? args[1] : e0, t};
  uint32_t e = build(L, m, IR_ADD, sum, 2, NULL);
  uint32_t out = ir_loop_end(&m->b, &e, 1, &err);
  if (out == IR_NONE) {
    lua_pushstring(L, err.msg);
    return lua_error(L);
  }
  fe_push_tensor(L, m, call_body(L, m, 6, out));
  return 1;
}
