/* Export to the Hugging Face layout: a folder with config.json and
 * model.safetensors that transformers loads (docs/export.md). */
#ifndef PC_CLI_EXPORT_H
#define PC_CLI_EXPORT_H

#include "runtime/cli/model_load.h"

/* The model's config.json for transformers: the resolved hyperparameters
 * (config.json names), "architectures" (the script's first), "model_type"
 * and "torch_dtype". The caller owns the string. */
char *export_hf_config(FeModel *fe, PcError *err);

/* Writes dir/config.json and dir/model.safetensors (every parameter in the
 * layout and under the name Hugging Face uses; tied ones once). dir is
 * made if missing; an existing config.json or model.safetensors in it is
 * an error, unless overwrite is set. */
int export_hf(const LoadedModel *m, const char *dir, int overwrite, PcError *err);

#endif
