/* A compiled module: the kernel program of a model's entries (train, eval,
 * logits, decode) and its description (the ABI's model info), ready for a
 * renderer (backends/c, backends/llvm). */
#ifndef PC_MODULE_H
#define PC_MODULE_H

#include "compiler/lower/lower.h"
#include "compiler/model_opts.h"

enum { PC_ENTRY_TRAIN = 1, PC_ENTRY_EVAL = 2, PC_ENTRY_LOGITS = 4, PC_ENTRY_DECODE = 8, PC_ENTRY_ALL = 15 };

typedef struct {
  unsigned entries;      /* PC_ENTRY_* */
  int64_t max_batch;     /* B the memory plan is made for */
  int64_t max_seq;       /* T (training, eval, logits) and the KV caches' length (decode) */
  KSchedule schedule;
} PcModuleOptions;

typedef struct {
  KProgram *prog;
  char *info_json; /* the model info (runtime/include/ponder_abi.h) */
} PcModule;

int pc_module_build(const ModelOpts *o, const PcModuleOptions *mo, PcModule *out, PcError *err);
void pc_module_free(PcModule *m);

#endif
