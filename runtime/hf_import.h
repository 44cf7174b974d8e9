/* Import of Hugging Face checkpoints into a model's parameters, by name,
 * with the layout transforms the specs ask for (GPT-2's Conv1D weights are
 * stored [in, out] and transposed; GPT-NeoX's fused QKV rows are
 * interleaved per head, "neox_qkv:HEADS"), and export back. */
#ifndef PC_HF_IMPORT_H
#define PC_HF_IMPORT_H

#include "runtime/params.h"
#include "runtime/safetensors.h"

/* Fills every parameter from the checkpoint (allocating values as needed).
 * Errors name the tensor, the file and both shapes. */
int hf_import(Params *p, const StCheckpoint *ck, PcError *err);
/* A parameter's value in the layout the checkpoint stores (a new tensor;
 * NULL when out of memory). */
Tensor *hf_export(const ParamSpec *s, const Tensor *ours);
/* Whether a layout name is known; the list for messages. */
int hf_layout_known(const char *layout);
const char *hf_layout_names(void);
/* Whether s fits its layout (s->hf_layout set): NULL, or the reason it
 * does not ("it needs a 2-D parameter"). */
const char *hf_layout_check(const ParamSpec *s);

#endif
