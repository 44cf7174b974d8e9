/* ponder export: a model (script + checkpoint, or a seeded initialisation)
 * written as a Hugging Face folder that transformers loads. */
#include "runtime/cli/export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "runtime/base/file.h"
#include "runtime/cli/commands.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"

char *export_hf_config(FeModel *fe, PcError *err) {
  char *text = fe_hparams_json(fe, err);
  if (!text) return NULL;
  cJSON *root = cJSON_Parse(text);
  free(text);
  if (!root) PC_BUG("fe_hparams_json gave invalid JSON");
  cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  const char *type = fe_model_type(fe);
  if (!cJSON_IsArray(arch) || !cJSON_GetArraySize(arch) || !type) {
    cJSON_Delete(root);
    pc_errorf(err, "%s: the script must name its Hugging Face architectures and model_type to be exported",
              fe_script_path(fe));
    return NULL;
  }
  while (cJSON_GetArraySize(arch) > 1) cJSON_DeleteItemFromArray(arch, cJSON_GetArraySize(arch) - 1);
  cJSON_DeleteItemFromObjectCaseSensitive(root, "model_type");
  cJSON_AddStringToObject(root, "model_type", type);
  cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
  cJSON_AddStringToObject(root, "torch_dtype", "float32");
  char *out = cJSON_Print(root);
  cJSON_Delete(root);
  return out;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int export_hf(const LoadedModel *m, const char *dir, int overwrite, PcError *err) {
  char config_path[4096], weights_path[4096];
  snprintf(config_path, sizeof config_path, "%s/config.json", dir);
  snprintf(weights_path, sizeof weights_path, "%s/model.safetensors", dir);
  char *config = export_hf_config(m->fe, err);
  if (!config) return -1;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    free(config);
    return pc_errorf(err, "%s: cannot create: %s", dir, strerror(errno));
  }
  if (!overwrite && (exists(config_path) || exists(weights_path))) {
    free(config);
    return pc_errorf(err, "%s already holds a model (config.json or model.safetensors); export into a new folder", dir);
  }
  const Params *p = &m->params;
  StEntry *e = pc_xcalloc(p->spec.n + 1, sizeof *e);
  Tensor **t = pc_xcalloc(p->spec.n + 1, sizeof *t);
  int rc = 0;
  for (size_t i = 0; i < p->spec.n && !rc; i++) {
    if (!(t[i] = hf_export(&p->spec.a[i], p->value[i]))) rc = pc_errorf(err, "out of memory exporting '%s'", p->spec.a[i].name);
    e[i] = (StEntry){p->spec.a[i].name, t[i]};
  }
  if (!rc) rc = st_write(weights_path, e, p->spec.n, err);
  if (!rc) rc = pc_write_file_atomic(config_path, config, strlen(config), err);
  for (size_t i = 0; i < p->spec.n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  free(config);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: ponder export MODEL.lua [--hf CKPT | --config NAME] --out DIR [options]\n"
          "\n"
          "Writes the model as a Hugging Face folder, DIR/config.json and DIR/model.safetensors, that\n"
          "transformers loads (AutoModelForCausalLM.from_pretrained(DIR)): the weights of --hf (a\n"
          "Hugging Face folder or one of our checkpoints, e.g. RUN/ckpt-00001000) in Hugging Face's\n"
          "names and layouts, and the resolved hyperparameters with architectures and model_type.\n"
          "Without --hf the weights are a seeded random initialisation.\n"
          "\n"
          "options:\n" MODEL_OPTIONS_HELP
          "  --out DIR          the folder to write (made if missing; must not hold a model)\n"
          "  --force            overwrite config.json and model.safetensors in DIR\n"
          "  -h, --help         this help\n");
}

int cmd_export(int argc, char **argv) {
  static const struct option opts[] = {MODEL_LONG_OPTIONS,
                                       {"out", required_argument, 0, 'o'},
                                       {"force", no_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  ModelOpts mo = {.seed = 1};
  const char *out = NULL;
  int force = 0, c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    int taken = model_opts_take(&mo, c, optarg);
    if (taken < 0) return 2;
    if (taken) continue;
    switch (c) {
    case 'o': out = optarg; break;
    case 'f': force = 1; break;
    case 'h': usage(stdout); model_opts_free(&mo); return 0;
    default: usage(stderr); model_opts_free(&mo); return 2;
    }
  }
  if (optind != argc - 1 || !out) {
    fprintf(stderr, "ponder export: expected one MODEL.lua and --out DIR (try --help)\n");
    model_opts_free(&mo);
    return 2;
  }
  if (mo.device || mo.precision || mo.profile) { /* the weights are read or initialised on the host either way */
    fprintf(stderr, "ponder export: it runs no model: drop --%s\n", mo.device ? "device" : mo.precision ? "precision" : "profile");
    model_opts_free(&mo);
    return 2;
  }
  mo.script = argv[optind];
  if (!mo.backend && !pc_ends_with(mo.script, ".so")) mo.backend = "interp"; /* nothing runs: no compile */
  PcError err;
  LoadedModel m;
  if (model_load(&mo, &m, &err) < 0) {
    fprintf(stderr, "ponder export: %s\n", err.msg);
    model_opts_free(&mo);
    return 1;
  }
  int rc = export_hf(&m, out, force, &err);
  if (rc)
    fprintf(stderr, "ponder export: %s\n", err.msg);
  else
    printf("exported %s (%.2fM parameters%s%s) to %s/config.json and %s/model.safetensors\n", fe_model_name(m.fe),
           params_count(&m.params) / 1e6, mo.hf ? " from " : ", random initialisation", mo.hf ? mo.hf : "", out, out);
  model_unload(&m);
  model_opts_free(&mo);
  return rc ? 1 : 0;
}
