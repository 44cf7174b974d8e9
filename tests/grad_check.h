/* Shared by the gradient tests: run a training graph on the interpreter
 * and fetch outputs by name. */
#ifndef PC_TEST_GRAD_CHECK_H
#define PC_TEST_GRAD_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

#define GC_MAX_OUTPUTS 512

typedef struct {
  NamedTensor out[GC_MAX_OUTPUTS];
  size_t n;
  int own_names; /* the names were copied (gc_keep_names): the graph may go */
} GcOutputs;

/* Copies the output names, which otherwise point into the graph. */
static inline void gc_keep_names(GcOutputs *o) {
  for (size_t i = 0; i < o->n; i++) o->out[i].name = strdup(o->out[i].name);
  o->own_names = 1;
}

static inline int gc_run(const IrGraph *g, const Params *p, NamedTensor *in, size_t n_in, GcOutputs *o, PcError *err) {
  return interp_run(g, p, in, n_in, o->out, GC_MAX_OUTPUTS, &o->n, err);
}

static inline const Tensor *gc_get(const GcOutputs *o, const char *name) {
  for (size_t i = 0; i < o->n; i++)
    if (!strcmp(o->out[i].name, name)) return o->out[i].tensor;
  return NULL;
}

static inline void gc_free(GcOutputs *o) {
  for (size_t i = 0; i < o->n; i++) {
    tensor_free(o->out[i].tensor);
    if (o->own_names) free((char *)o->out[i].name);
  }
  o->n = 0;
  o->own_names = 0;
}

#endif
