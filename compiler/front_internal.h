/* Shared between front.c (model, configs, hyperparameters) and lua_ops.c
 * (the tensor type and the op bindings of the `pondercc` Lua module). */
#ifndef PC_FRONT_INTERNAL_H
#define PC_FRONT_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>

#include "compiler/front.h"

struct FeModel {
  lua_State *L;
  char *script;
  int model_ref;    /* registry: the table the script returned */
  int none_ref;     /* registry: the pondercc.none sentinel */
  int hf_ref;       /* registry: values from config.json */
  int cli_ref;      /* registry: values from --set */
  VEC(char *) configs;
  size_t selected;
  int64_t cache_len; /* positions each KV cache holds when tracing for decoding */
  /* while tracing */
  IrGraph *g;
  IrBuilder b;
  uint32_t trace_id; /* tensors from another trace are refused */
  uint32_t pos;      /* decoding: the input holding the first new position; else IR_NONE */
  uint32_t n_caches; /* decoding: KV cache inputs made so far */
};

/* A traced tensor as Lua sees it. */
typedef struct {
  uint32_t value;
  uint32_t trace_id;
} FeTensor;

#define FE_TENSOR_META "pondercc.tensor"

/* Pushes the `pondercc` module table (functions closed over m). */
int fe_push_module(lua_State *L, FeModel *m);
void fe_push_tensor(lua_State *L, FeModel *m, uint32_t v);
/* The IR value of a tensor argument, raising a Lua error if it is not one. */
uint32_t fe_check_tensor(lua_State *L, FeModel *m, int arg);

/* Sets the builder's location to the calling script line. */
void fe_set_loc(lua_State *L, FeModel *m);
/* Raises a Lua error located at that line ("models/x.lua:12: " + message). */
int fe_error(lua_State *L, FeModel *m, const char *fmt, ...);
/* pondercc.ponder (ponder.c); its upvalue is the FeModel. */
int fe_lua_ponder(lua_State *L);

/* Adds the pondering knobs (ponder.c) to the hparams of the model table at
 * idx, where the script does not declare them itself. */
void fe_add_ponder_hparams(lua_State *L, int idx);

#endif
