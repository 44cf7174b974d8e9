/* Model scripts: loading, configs, hyperparameters and tracing. The op
 * bindings are in lua_ops.c. */
#include <ctype.h>
#include <errno.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "compiler/front_internal.h"
#include "runtime/base/file.h"

/* ---- pondercc.model{...} ------------------------------------------------
 * { name = "gpt2", architectures = {"GPT2LMHeadModel"},
 *   hparams = { key = default, ... },         -- Hugging Face config.json names
 *   configs = { {"tiny", key = value, ...}, {"124m"}, ... },
 *   default_config = "124m",                  -- optional; else the first
 *   context = "n_positions",                  -- optional: the max sequence length
 *   model_type = "gpt2",                      -- optional: Hugging Face's model_type (export)
 *   hf_required = { "n_embd", ... },          -- optional: keys a config.json must hold
 *   hf_aliases = { key = "a.b" or {"a.b", ...} }, -- optional: where else config.json may hold a key
 *   forward = function(hp, ids) ... return logits end }
 * forward may also be set on the returned table. */
static int l_model(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "name") != LUA_TSTRING) return luaL_error(L, "model: 'name' must be a string");
  if (lua_getfield(L, 1, "hparams") != LUA_TTABLE) return luaL_error(L, "model: 'hparams' must be a table");
  if (lua_getfield(L, 1, "configs") != LUA_TTABLE || luaL_len(L, -1) < 1)
    return luaL_error(L, "model: 'configs' must be a list of {\"name\", key = value, ...}");
  for (lua_Integer i = 1; i <= luaL_len(L, 4); i++) {
    if (lua_geti(L, 4, i) != LUA_TTABLE || lua_geti(L, -1, 1) != LUA_TSTRING)
      return luaL_error(L, "model: config %d must be a table whose first item is its name", (int)i);
    lua_pop(L, 2);
  }
  int t = lua_getfield(L, 1, "architectures");
  if (t != LUA_TNIL && t != LUA_TTABLE) return luaL_error(L, "model: 'architectures' must be a list of strings");
  t = lua_getfield(L, 1, "context");
  if (t != LUA_TNIL && (t != LUA_TSTRING || lua_getfield(L, 3, lua_tostring(L, -1)) != LUA_TNUMBER))
    return luaL_error(L, "model: 'context' must name an integer hyperparameter");
  lua_settop(L, 4);
  t = lua_getfield(L, 1, "model_type");
  if (t != LUA_TNIL && t != LUA_TSTRING) return luaL_error(L, "model: 'model_type' must be a string");
  if ((t = lua_getfield(L, 1, "hf_required")) != LUA_TNIL) {
    if (t != LUA_TTABLE) return luaL_error(L, "model: 'hf_required' must be a list of hyperparameter names");
    for (lua_Integer i = 1; i <= luaL_len(L, -1); i++) {
      if (lua_geti(L, -1, i) != LUA_TSTRING || lua_getfield(L, 3, lua_tostring(L, -1)) == LUA_TNIL)
        return luaL_error(L, "model: hf_required[%d] must name a hyperparameter", (int)i);
      lua_pop(L, 2);
    }
  }
  if ((t = lua_getfield(L, 1, "hf_aliases")) != LUA_TNIL) {
    if (t != LUA_TTABLE) return luaL_error(L, "model: 'hf_aliases' must map hyperparameter names to config.json paths");
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
      int kt = lua_type(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING || (kt != LUA_TSTRING && kt != LUA_TTABLE))
        return luaL_error(L, "model: hf_aliases must map names to a path (\"a.b\") or a list of paths");
      lua_pushvalue(L, -2);
      if (lua_gettable(L, 3) == LUA_TNIL)
        return luaL_error(L, "model: hf_aliases names '%s', which is not a hyperparameter", lua_tostring(L, -3));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 1);
  fe_add_ponder_hparams(L, 1);
  return 1;
}

/* ---- opening a script ---------------------------------------------------- */

static int open_module(lua_State *L) {
  FeModel *m = lua_touserdata(L, lua_upvalueindex(1));
  fe_push_module(L, m);
  lua_pushcfunction(L, l_model);
  lua_setfield(L, -2, "model");
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->none_ref);
  lua_setfield(L, -2, "none");
  return 1;
}

/* The message on top of the stack as a one-line error. */
static int lua_failure(lua_State *L, PcError *err) {
  const char *msg = lua_tostring(L, -1);
  pc_errorf(err, "%s", msg ? msg : "error object is not a string");
  for (char *p = err->msg; *p; p++)
    if (*p == '\n' || *p == '\t') *p = ' ';
  lua_pop(L, 1);
  return -1;
}

static int read_configs(FeModel *m, PcError *err) {
  lua_State *L = m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(L, -1, "configs");
  lua_Integer n = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -1, i);
    lua_geti(L, -1, 1);
    vec_push(&m->configs, pc_xstrdup(lua_tostring(L, -1)));
    lua_pop(L, 2);
  }
  const char *def = NULL;
  if (lua_getfield(L, -2, "default_config") == LUA_TSTRING) def = lua_tostring(L, -1);
  int rc = fe_select_config(m, def ? def : m->configs.a[0], err);
  lua_pop(L, 3);
  return rc;
}

int fe_open(const char *script_path, FeModel **out, PcError *err) {
  *out = NULL;
  FeModel *m = pc_xcalloc(1, sizeof *m);
  m->script = pc_xstrdup(script_path);
  m->L = luaL_newstate();
  if (!m->L) PC_BUG("cannot create a Lua state");
  lua_State *L = m->L;
  luaL_openlibs(L);
  lua_newtable(L); /* pondercc.none: a unique value meaning "no value" */
  m->none_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  m->hf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  m->cli_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  m->model_ref = LUA_NOREF;

  /* require "pondercc" gives the module; require "lib.x" finds lib/x.lua
   * next to the script or one folder up (models/lib/x.lua for
   * models/examples/y.lua) */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushlightuserdata(L, m);
  lua_pushcclosure(L, open_module, 1);
  lua_setfield(L, -2, "pondercc");
  lua_pop(L, 1);
  const char *slash = strrchr(script_path, '/');
  int dir_len = slash ? (int)(slash - script_path) : 1;
  const char *dir = slash ? script_path : ".";
  lua_getglobal(L, "package");
  char path[4096];
  snprintf(path, sizeof path, "%.*s/?.lua;%.*s/?/init.lua;%.*s/../?.lua", dir_len, dir, dir_len, dir, dir_len, dir);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath"); /* model scripts load no native code */
  lua_pop(L, 1);

  int rc = luaL_loadfile(L, script_path);
  if (rc == LUA_ERRFILE) {
    pc_errorf(err, "%s: cannot read the model script: %s", script_path, strerror(errno));
    fe_close(m);
    return -1;
  }
  if (rc != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_failure(L, err);
    fe_close(m);
    return -1;
  }
  if (!lua_istable(L, -1) || lua_getfield(L, -1, "hparams") != LUA_TTABLE) {
    pc_errorf(err, "%s: the script must return a model made by pondercc.model{...}", script_path);
    fe_close(m);
    return -1;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "forward") != LUA_TFUNCTION) {
    pc_errorf(err, "%s: the model has no forward function", script_path);
    fe_close(m);
    return -1;
  }
  lua_pop(L, 1);
  m->model_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (read_configs(m, err) < 0) {
    fe_close(m);
    return -1;
  }
  *out = m;
  return 0;
}

void fe_close(FeModel *m) {
  if (!m) return;
  if (m->L) lua_close(m->L);
  for (size_t i = 0; i < m->configs.n; i++) free(m->configs.a[i]);
  vec_free(&m->configs);
  free(m->script);
  free(m);
}

const char *fe_script_path(const FeModel *m) { return m->script; }
size_t fe_config_count(const FeModel *m) { return m->configs.n; }
const char *fe_config_name(const FeModel *m, size_t i) { return m->configs.a[i]; }
const char *fe_selected_config(const FeModel *m) { return m->configs.a[m->selected]; }

const char *fe_model_type(const FeModel *m) {
  lua_State *L = m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(L, -1, "model_type");
  const char *s = lua_tostring(L, -1); /* NULL when absent; else alive while the model table is */
  lua_pop(L, 2);
  return s;
}

const char *fe_model_name(const FeModel *m) {
  lua_State *L = m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(L, -1, "name");
  const char *s = lua_tostring(L, -1); /* stays alive: the model table holds it */
  lua_pop(L, 2);
  return s;
}

int fe_select_config(FeModel *m, const char *name, PcError *err) {
  for (size_t i = 0; i < m->configs.n; i++)
    if (!strcmp(m->configs.a[i], name)) {
      m->selected = i;
      return 0;
    }
  char list[512] = "";
  for (size_t i = 0; i < m->configs.n; i++) {
    size_t k = strlen(list);
    snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", m->configs.a[i]);
  }
  return pc_errorf(err, "%s: unknown config '%s' (configs: %s)", m->script, name, list);
}

/* ---- hyperparameters ----------------------------------------------------- */

/* Pushes the model's hparams (defaults) table. */
static void push_defaults(FeModel *m) {
  lua_rawgeti(m->L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(m->L, -1, "hparams");
  lua_remove(m->L, -2);
}

/* Pushes the default of key, or nil if the model does not declare it. */
static int push_default(FeModel *m, const char *key) {
  push_defaults(m);
  int t = lua_getfield(m->L, -1, key);
  lua_remove(m->L, -2);
  return t;
}

static int is_none(FeModel *m, int idx) {
  idx = lua_absindex(m->L, idx);
  lua_rawgeti(m->L, LUA_REGISTRYINDEX, m->none_ref);
  int same = lua_rawequal(m->L, idx, -1);
  lua_pop(m->L, 1);
  return same;
}

/* Checks that the value on top may replace the default of key: the same
 * Lua type, any type where the default is none, or none itself. */
static int check_override(FeModel *m, const char *key, const char *source, PcError *err) {
  lua_State *L = m->L;
  int t = push_default(m, key);
  int ok = 1;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return pc_errorf(err, "%s sets '%s', which %s does not declare in hparams", source, key, m->script);
  }
  if (!is_none(m, -1) && !is_none(m, -2) && lua_type(L, -1) != lua_type(L, -2)) ok = 0;
  if (ok && t == LUA_TNUMBER && lua_isinteger(L, -1) && !lua_isinteger(L, -2)) ok = 0;
  const char *want = lua_typename(L, t);
  lua_pop(L, 1);
  if (!ok) return pc_errorf(err, "%s sets '%s' to a %s, but it is a%s %s", source, key, luaL_typename(L, -1),
                            t == LUA_TNUMBER && lua_isnumber(L, -1) ? "n integer" : "", want);
  return 0;
}

/* Builds the resolved table: defaults, then the config, config.json, --set. */
static int push_resolved(FeModel *m, PcError *err) {
  lua_State *L = m->L;
  lua_newtable(L);
  int res = lua_gettop(L);
  push_defaults(m);
  for (lua_pushnil(L); lua_next(L, -2);) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, res);
  }
  lua_pop(L, 1);
  char source[300];
  snprintf(source, sizeof source, "%s: config '%s'", m->script, fe_selected_config(m));
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(L, -1, "configs");
  lua_geti(L, -1, (lua_Integer)m->selected + 1);
  int layers[3] = {lua_gettop(L), 0, 0};
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->hf_ref);
  layers[1] = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->cli_ref);
  layers[2] = lua_gettop(L);
  const char *sources[3] = {source, "config.json", "--set"};
  for (int k = 0; k < 3; k++) {
    for (lua_pushnil(L); lua_next(L, layers[k]);) {
      if (lua_type(L, -2) != LUA_TSTRING) { /* the config's name at [1] */
        lua_pop(L, 1);
        continue;
      }
      const char *key = lua_tostring(L, -2);
      if (k != 1 && check_override(m, key, sources[k], err) < 0) {
        lua_settop(L, res - 1);
        return -1;
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, res);
    }
  }
  lua_settop(L, res);
  return 0;
}

int fe_set_hparam(FeModel *m, const char *key, const char *value, PcError *err) {
  lua_State *L = m->L;
  int t = push_default(m, key);
  int none = is_none(m, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return pc_errorf(err, "--set %s: %s has no hyperparameter '%s'", key, m->script, key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->cli_ref);
  if (t == LUA_TBOOLEAN || (none && (!strcmp(value, "true") || !strcmp(value, "false")))) {
    if (strcmp(value, "true") && strcmp(value, "false")) {
      lua_pop(L, 1);
      return pc_errorf(err, "--set %s=%s: expected true or false", key, value);
    }
    lua_pushboolean(L, !strcmp(value, "true"));
  } else if (t == LUA_TNUMBER || (none && lua_stringtonumber(L, value))) {
    if (none) lua_pop(L, 1); /* the number lua_stringtonumber pushed */
    if (!lua_stringtonumber(L, value)) {
      lua_pop(L, 1);
      return pc_errorf(err, "--set %s=%s: expected a number", key, value);
    }
  } else {
    lua_pushstring(L, value);
  }
  lua_setfield(L, -2, key);
  lua_pop(L, 1);
  /* Type-check now, so the error names the flag rather than a later trace. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->cli_ref);
  lua_getfield(L, -1, key);
  char source[300];
  snprintf(source, sizeof source, "--set %s=%s", key, value);
  int rc = check_override(m, key, source, err);
  lua_pop(L, 2);
  return rc;
}

static int push_json(FeModel *m, const cJSON *j) {
  lua_State *L = m->L;
  if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
  else if (cJSON_IsNumber(j) && j->valuedouble == (double)(lua_Integer)j->valuedouble && fabs(j->valuedouble) < 9e15)
    lua_pushinteger(L, (lua_Integer)j->valuedouble);
  else if (cJSON_IsNumber(j)) lua_pushnumber(L, j->valuedouble);
  else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
  else if (cJSON_IsNull(j)) lua_rawgeti(L, LUA_REGISTRYINDEX, m->none_ref);
  else return 0;
  return 1;
}

/* The item at a dotted path ("rope_parameters.rope_theta") of a JSON object. */
static const cJSON *json_path(const cJSON *root, const char *path) {
  char part[128];
  while (root && *path) {
    size_t n = strcspn(path, ".");
    if (n >= sizeof part) return NULL;
    memcpy(part, path, n);
    part[n] = 0;
    root = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, part) : NULL;
    path += n + (path[n] == '.');
  }
  return root;
}

/* The config.json item for a hyperparameter: its own key, else the first
 * of the model's hf_aliases paths for it that the file holds. */
static const cJSON *hf_item(FeModel *m, const cJSON *root, const char *key) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
  if (j) return j;
  lua_State *L = m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  if (lua_getfield(L, -1, "hf_aliases") == LUA_TTABLE) {
    int t = lua_getfield(L, -1, key);
    if (t == LUA_TSTRING) {
      j = json_path(root, lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
      for (lua_Integer i = 1; !j && i <= luaL_len(L, -1); i++) {
        if (lua_geti(L, -1, i) == LUA_TSTRING) j = json_path(root, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return j;
}

int fe_load_hf_config(FeModel *m, const char *path, PcError *err) {
  char file[4096];
  size_t n = strlen(path);
  if (n >= 5 && !strcmp(path + n - 5, ".json"))
    snprintf(file, sizeof file, "%s", path);
  else
    snprintf(file, sizeof file, "%s/config.json", path);
  char *text = pc_read_file(file, NULL, err);
  if (!text) return -1;
  cJSON *root = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return pc_errorf(err, "%s: not a JSON object", file);
  }
  lua_State *L = m->L;
  int rc = 0;
  /* The architecture must be one the script handles. */
  const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  if (cJSON_IsArray(arch) && cJSON_GetArraySize(arch) > 0 && lua_getfield(L, -1, "architectures") == LUA_TTABLE) {
    const char *want = cJSON_IsString(cJSON_GetArrayItem(arch, 0)) ? cJSON_GetArrayItem(arch, 0)->valuestring : "?";
    int found = 0;
    char list[256] = "";
    for (lua_Integer i = 1; i <= luaL_len(L, -1); i++) {
      lua_geti(L, -1, i);
      const char *have = lua_tostring(L, -1);
      if (have && !strcmp(have, want)) found = 1;
      size_t k = strlen(list);
      snprintf(list + k, sizeof list - k, "%s%s", i > 1 ? ", " : "", have ? have : "?");
      lua_pop(L, 1);
    }
    if (!found) rc = pc_errorf(err, "%s: architecture %s is not handled by %s (it handles %s)", file, want, m->script, list);
  }
  lua_settop(L, 0);
  /* The keys that fix the model's shape must be there. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  if (!rc && lua_getfield(L, -1, "hf_required") == LUA_TTABLE) {
    for (lua_Integer i = 1; !rc && i <= luaL_len(L, -1); i++) {
      lua_geti(L, -1, i);
      const char *key = lua_tostring(L, -1);
      if (key && !hf_item(m, root, key)) rc = pc_errorf(err, "%s: missing key '%s', which %s needs", file, key, m->script);
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 0);
  /* Every declared hyperparameter present in the file is taken from it. */
  if (!rc) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->hf_ref);
    push_defaults(m);
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
      const char *key = lua_tostring(L, -2);
      const cJSON *j = hf_item(m, root, key);
      if (!j || !push_json(m, j)) continue;
      if (check_override(m, key, file, err) < 0) {
        rc = -1;
        break;
      }
      lua_setfield(L, -5, key); /* into the config.json layer (hf, defaults, key, value, json value) */
    }
    lua_settop(L, 0);
  }
  cJSON_Delete(root);
  return rc;
}

int fe_hparam_int(FeModel *m, const char *key, int64_t *out, PcError *err) {
  if (push_resolved(m, err) < 0) return -1;
  lua_getfield(m->L, -1, key);
  int ok;
  lua_Integer v = lua_tointegerx(m->L, -1, &ok);
  lua_pop(m->L, 2);
  if (!ok) return pc_errorf(err, "%s: hyperparameter '%s' is not an integer", m->script, key);
  *out = v;
  return 0;
}

int fe_print_hparams(FeModel *m, FILE *f, PcError *err) {
  lua_State *L = m->L;
  if (push_resolved(m, err) < 0) return -1;
  /* sorted, so the listing is stable */
  VEC(char *) keys = {0};
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) vec_push(&keys, pc_xstrdup(lua_tostring(L, -2)));
  for (size_t i = 1; i < keys.n; i++)
    for (size_t j = i; j > 0 && strcmp(keys.a[j - 1], keys.a[j]) > 0; j--) {
      char *t = keys.a[j];
      keys.a[j] = keys.a[j - 1];
      keys.a[j - 1] = t;
    }
  for (size_t i = 0; i < keys.n; i++) {
    lua_getfield(L, -1, keys.a[i]);
    if (is_none(m, -1))
      fprintf(f, "%s = none\n", keys.a[i]);
    else
      fprintf(f, "%s = %s\n", keys.a[i], luaL_tolstring(L, -1, NULL)), lua_pop(L, 1);
    lua_pop(L, 1);
    free(keys.a[i]);
  }
  vec_free(&keys);
  lua_pop(L, 1);
  return 0;
}

static void json_add(FeModel *m, cJSON *obj, const char *key, int idx) {
  lua_State *L = m->L;
  cJSON *v;
  if (is_none(m, idx)) v = cJSON_CreateNull();
  else if (lua_isboolean(L, idx)) v = cJSON_CreateBool(lua_toboolean(L, idx));
  else if (lua_isinteger(L, idx)) v = cJSON_CreateNumber((double)lua_tointeger(L, idx));
  else if (lua_type(L, idx) == LUA_TNUMBER) v = cJSON_CreateNumber(lua_tonumber(L, idx));
  else v = cJSON_CreateString(luaL_tolstring(L, idx, NULL)), lua_pop(L, 1);
  cJSON_AddItemToObject(obj, key, v);
}

char *fe_hparams_json(FeModel *m, PcError *err) {
  lua_State *L = m->L;
  if (push_resolved(m, err) < 0) return NULL;
  cJSON *root = cJSON_CreateObject();
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  if (lua_getfield(L, -1, "architectures") == LUA_TTABLE) {
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    for (lua_Integer i = 1; i <= luaL_len(L, -1); i++) {
      lua_geti(L, -1, i);
      cJSON_AddItemToArray(arch, cJSON_CreateString(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?"));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  /* keys sorted, so files compare equal across runs */
  VEC(char *) keys = {0};
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) vec_push(&keys, pc_xstrdup(lua_tostring(L, -2)));
  for (size_t i = 1; i < keys.n; i++)
    for (size_t j = i; j > 0 && strcmp(keys.a[j - 1], keys.a[j]) > 0; j--) {
      char *t = keys.a[j];
      keys.a[j] = keys.a[j - 1];
      keys.a[j - 1] = t;
    }
  for (size_t i = 0; i < keys.n; i++) {
    lua_getfield(L, -1, keys.a[i]);
    json_add(m, root, keys.a[i], -1);
    lua_pop(L, 1);
    free(keys.a[i]);
  }
  vec_free(&keys);
  lua_pop(L, 1);
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  return s;
}

void fe_set_cache_length(FeModel *m, int64_t positions) { m->cache_len = positions; }

int64_t fe_context_length(FeModel *m) {
  lua_State *L = m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  int named = lua_getfield(L, -1, "context") == LUA_TSTRING;
  char key[128];
  snprintf(key, sizeof key, "%s", named ? lua_tostring(L, -1) : "");
  lua_pop(L, 2);
  int64_t v = 0;
  if (named && fe_hparam_int(m, key, &v, NULL) < 0) v = 0;
  return v;
}

/* ---- tracing ------------------------------------------------------------- */

/* hp.key: the resolved value; an undeclared key is an error at the caller's
 * line, and none reads as nil. */
static int hp_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TNIL)
    return luaL_error(L, "unknown hyperparameter '%s'", luaL_tolstring(L, 2, NULL));
  if (lua_rawequal(L, -1, lua_upvalueindex(2))) lua_pushnil(L);
  return 1;
}

static int hp_newindex(lua_State *L) { return luaL_error(L, "hyperparameters are read-only"); }

static void push_hp_proxy(FeModel *m) {
  lua_State *L = m->L; /* resolved table on top */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->none_ref);
  lua_pushcclosure(L, hp_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, hp_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_remove(L, -2);
}

int fe_trace(FeModel *m, unsigned flags, IrGraph **out, PcError *err) {
  lua_State *L = m->L;
  *out = NULL;
  lua_settop(L, 0);
  if (push_resolved(m, err) < 0) return -1;
  push_hp_proxy(m);
  m->g = ir_graph_new(fe_model_name(m));
  m->b = ir_builder(m->g);
  m->trace_id++;
  m->n_caches = 0;
  IrType ids_t = {PC_I32, {2, {IR_SYM(ir_sym(m->g, "B")), IR_SYM(ir_sym(m->g, "T"))}}};
  uint32_t ids = ir_input(&m->b, "ids", &ids_t, err);
  PC_ASSERT(ids != IR_NONE);
  m->pos = IR_NONE;
  if (flags & FE_TRACE_DECODE) {
    if (!m->cache_len) m->cache_len = fe_context_length(m);
    if (m->cache_len <= 0) {
      ir_graph_free(m->g);
      m->g = NULL;
      return pc_errorf(err, "%s: decoding needs a cache length (the script names no context hyperparameter)", m->script);
    }
    IrType pos_t = {PC_I32, {0}};
    m->pos = ir_input(&m->b, "pos", &pos_t, err);
  }

  lua_rawgeti(L, LUA_REGISTRYINDEX, m->model_ref);
  lua_getfield(L, -1, "forward");
  lua_remove(L, -2);
  lua_insert(L, -2); /* forward, hp */
  fe_push_tensor(L, m, ids);
  int rc = 0;
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    rc = lua_failure(L, err);
  } else {
    FeTensor *t = luaL_testudata(L, -1, FE_TENSOR_META);
    if (!t || t->trace_id != m->trace_id) {
      rc = pc_errorf(err, "%s: forward must return the logits tensor", m->script);
    } else {
      const IrType *lt = ir_type(m->g, t->value);
      const IrShape *s = &lt->shape;
      if (lt->dtype != PC_F32 || s->rank != 3 || s->dim[0] != ids_t.shape.dim[0] || s->dim[1] != ids_t.shape.dim[1]) {
        char buf[128];
        rc = pc_errorf(err, "%s: forward must return logits f32[B,T,vocab], got %s", m->script,
                       ir_type_str(m->g, lt, buf, sizeof buf));
      }
    }
    if (!rc) {
      uint32_t logits = t->value;
      m->b.region = 0;
      ir_set_loc(&m->b, NULL);
      if (!(flags & FE_TRACE_NO_LOGITS)) rc = ir_output(&m->b, "logits", logits, err);
      if (!rc && (flags & FE_TRACE_LOSS)) {
        uint32_t in[2] = {logits, ir_input(&m->b, "targets", &ids_t, err)};
        uint32_t loss = ir_build(&m->b, IR_CROSS_ENTROPY, in, 2, NULL, NULL, err);
        rc = loss == IR_NONE ? -1 : ir_output(&m->b, "loss", loss, err);
      }
    }
  }
  lua_settop(L, 0);
  if (!rc) rc = ir_verify(m->g, err);
  if (rc < 0) {
    ir_graph_free(m->g);
  } else {
    *out = m->g;
  }
  m->g = NULL;
  lua_gc(L, LUA_GCCOLLECT);
  return rc;
}
