/* A model's parameters: what each one is (name, shape, how to initialise
 * it, how Hugging Face lays it out) and its values. The compiler fills the
 * specs from the graph; the runtime initialises, imports and saves them. */
#ifndef PC_PARAMS_H
#define PC_PARAMS_H

#include <stdint.h>

#include "runtime/base/err.h"
#include "runtime/base/mem.h"
#include "runtime/base/strmap.h"
#include "runtime/tensor.h"

typedef enum { PARAM_INIT_NORMAL, PARAM_INIT_TRUNC_NORMAL, PARAM_INIT_ZEROS, PARAM_INIT_ONES } ParamInit;

typedef struct {
  char *name; /* also the Hugging Face tensor name */
  int rank;
  int64_t dim[PC_MAX_RANK];
  ParamInit init;
  double std;
  char *hf_layout; /* NULL: stored as we store it; else a layout of hf_import.c ("transpose", "neox_qkv:8") */
  int embedding;   /* a lookup table (an embedding op reads it) */
} ParamSpec;

typedef struct {
  VEC(ParamSpec) spec;
  Tensor **value; /* value[i] for spec.a[i]; NULL until allocated */
  StrMap index;   /* name -> i */
  uint64_t version; /* params_changed counts the writes of values */
} Params;

/* Adds a spec (copied); returns -1 if the name is taken. */
int params_add(Params *p, const ParamSpec *spec, PcError *err);
/* Index of a parameter, or -1. */
int params_find(const Params *p, const char *name);
/* Allocates every value and initialises it from the specs. Each parameter
 * draws from its own stream seeded by (seed, name), so adding a parameter
 * does not change the others. */
int params_init(Params *p, uint64_t seed, PcError *err);
int64_t params_count(const Params *p); /* total elements */
/* Whoever writes values calls this afterwards: an engine that keeps copies
 * of them (a GPU's, runtime/cli/engine_cuda.c) takes them again on its next
 * call when the version moved, and only then. params_init, hf_import and
 * adamw_update call it themselves. */
void params_changed(Params *p);
int params_init_kind(const char *name, ParamInit *out);
void params_free(Params *p);

#endif
