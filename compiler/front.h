/* The Lua front end: loads a model script into an embedded Lua 5.4 state,
 * resolves its hyperparameters (defaults < named config < Hugging Face
 * config.json < command-line overrides) and traces its forward function
 * once into graph IR. The module model scripts use is documented in
 * docs/lua-api.md. */
#ifndef PC_FRONT_H
#define PC_FRONT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"
#include "runtime/base/err.h"

typedef struct FeModel FeModel;

/* Runs the script (which returns a table made by pondercc.model) and
 * selects its default config. */
int fe_open(const char *script_path, FeModel **out, PcError *err);
void fe_close(FeModel *m);

const char *fe_model_name(const FeModel *m);
/* Hugging Face's model_type for the script (`model_type = ...`), or NULL. */
const char *fe_model_type(const FeModel *m);
const char *fe_script_path(const FeModel *m);
/* Config names in declaration order, and the selected one. */
size_t fe_config_count(const FeModel *m);
const char *fe_config_name(const FeModel *m, size_t i);
const char *fe_selected_config(const FeModel *m);

int fe_select_config(FeModel *m, const char *name, PcError *err);
/* key=value from the command line; the value is read as the type of the
 * hyperparameter's default. */
int fe_set_hparam(FeModel *m, const char *key, const char *value, PcError *err);
/* Takes every hyperparameter the model declares from a Hugging Face
 * config.json (a file or the folder holding it), under its own key or,
 * failing that, a path the script's hf_aliases give; checks
 * `architectures` and that every key in hf_required is there. */
int fe_load_hf_config(FeModel *m, const char *path, PcError *err);
/* An integer hyperparameter of the resolved configuration. */
int fe_hparam_int(FeModel *m, const char *key, int64_t *out, PcError *err);
/* Prints the resolved hyperparameters, one `key = value` per line. */
int fe_print_hparams(FeModel *m, FILE *f, PcError *err);
/* The resolved hyperparameters as a JSON object in config.json form
 * (none -> null), plus "architectures" when the script names some. The
 * caller owns the string. */
char *fe_hparams_json(FeModel *m, PcError *err);
/* The longest sequence the model takes (the hyperparameter the script names
 * with `context = "..."`), or 0 when it names none. */
int64_t fe_context_length(FeModel *m);

enum {
  FE_TRACE_LOSS = 1 << 0,      /* add a `targets` input and a `loss` output */
  FE_TRACE_NO_LOGITS = 1 << 1, /* no `logits` output (training: the loss is all it needs) */
  FE_TRACE_DECODE = 1 << 2,    /* incremental decoding: see below */
};

/* Traces the forward function into a new graph with inputs `ids`
 * (i32[B,T]) and, with FE_TRACE_LOSS, `targets` (i32[B,T], < 0 = ignored),
 * and outputs `logits` (f32[B,T,V]) and `loss` (f32[]). The graph is
 * verified before it is returned.
 *
 * With FE_TRACE_DECODE the graph runs T new tokens at positions pos ..
 * pos+T-1 (an input `pos`, i32[]) against KV caches: every attention call
 * gets an input `kv.N`, f32[S, 2, B, L, width], that it reads and appends
 * to, with S slots when the call sits in a loop body of S iterations (one
 * per iteration: the pondering passes) and L = fe_set_cache_length. */
void fe_set_cache_length(FeModel *m, int64_t positions);
int fe_trace(FeModel *m, unsigned flags, IrGraph **out, PcError *err);

#endif
