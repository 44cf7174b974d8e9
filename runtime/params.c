#include "runtime/params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rng.h"

int params_add(Params *p, const ParamSpec *spec, PcError *err) {
  if (params_find(p, spec->name) >= 0) return pc_errorf(err, "parameter '%s' is declared twice", spec->name);
  ParamSpec s = *spec;
  s.name = pc_xstrdup(spec->name);
  s.hf_layout = spec->hf_layout ? pc_xstrdup(spec->hf_layout) : NULL;
  vec_push(&p->spec, s);
  p->value = pc_xrealloc(p->value, p->spec.n * sizeof *p->value);
  p->value[p->spec.n - 1] = NULL;
  strmap_put(&p->index, s.name, strlen(s.name), (uint32_t)(p->spec.n - 1));
  return 0;
}

int params_find(const Params *p, const char *name) {
  uint32_t i;
  return strmap_get(&p->index, name, strlen(name), &i) ? (int)i : -1;
}

int params_init_kind(const char *name, ParamInit *out) {
  static const char *names[] = {"normal", "trunc_normal", "zeros", "ones"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, names[i])) {
      *out = (ParamInit)i;
      return 0;
    }
  return -1;
}

int params_init(Params *p, uint64_t seed, PcError *err) {
  for (size_t i = 0; i < p->spec.n; i++) {
    const ParamSpec *s = &p->spec.a[i];
    if (!p->value[i]) p->value[i] = tensor_new(PC_F32, s->rank, s->dim);
    if (!p->value[i]) return pc_errorf(err, "out of memory for parameter '%s'", s->name);
    float *x = tensor_f32(p->value[i]);
    int64_t n = tensor_numel(p->value[i]);
    Rng rng = rng_seeded(seed, s->name);
    for (int64_t k = 0; k < n; k++) {
      switch (s->init) {
      case PARAM_INIT_ZEROS: x[k] = 0; break;
      case PARAM_INIT_ONES: x[k] = 1; break;
      case PARAM_INIT_NORMAL: x[k] = (float)(s->std * rng_normal(&rng)); break;
      case PARAM_INIT_TRUNC_NORMAL: {
        double z; /* resample outside +-3 sigma */
        do z = rng_normal(&rng);
        while (fabs(z) > 3.0);
        x[k] = (float)(s->std * z);
        break;
      }
      }
    }
  }
  params_changed(p);
  return 0;
}

void params_changed(Params *p) { p->version++; }

int64_t params_count(const Params *p) {
  int64_t n = 0;
  for (size_t i = 0; i < p->spec.n; i++) {
    int64_t k = 1;
    for (int d = 0; d < p->spec.a[i].rank; d++) k *= p->spec.a[i].dim[d];
    n += k;
  }
  return n;
}

void params_free(Params *p) {
  for (size_t i = 0; i < p->spec.n; i++) {
    free(p->spec.a[i].name);
    free(p->spec.a[i].hf_layout);
    tensor_free(p->value[i]);
  }
  vec_free(&p->spec);
  free(p->value);
  strmap_free(&p->index);
  *p = (Params){0};
}
