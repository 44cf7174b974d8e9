#include "runtime/hf_import.h"

#include <string.h>

/* A layout: the shape the checkpoint stores for a spec, and how to turn
 * the stored tensor into ours. */
typedef struct {
  const char *name;
  void (*stored_shape)(const ParamSpec *s, int *rank, int64_t *dim);
  void (*to_ours)(const ParamSpec *s, const float *src, float *dst);
  void (*to_stored)(const ParamSpec *s, const float *src, float *dst);
} Layout;

static void transpose_shape(const ParamSpec *s, int *rank, int64_t *dim) {
  *rank = 2;
  dim[0] = s->dim[1];
  dim[1] = s->dim[0];
}

/* stored [in, out] -> ours [out, in] */
static void transpose_to_ours(const ParamSpec *s, const float *src, float *dst) {
  int64_t out = s->dim[0], in = s->dim[1];
  for (int64_t i = 0; i < in; i++)
    for (int64_t o = 0; o < out; o++) dst[o * in + i] = src[i * out + o];
}

/* ours [out, in] -> stored [in, out] */
static void transpose_to_stored(const ParamSpec *s, const float *src, float *dst) {
  int64_t out = s->dim[0], in = s->dim[1];
  for (int64_t o = 0; o < out; o++)
    for (int64_t i = 0; i < in; i++) dst[i * out + o] = src[o * in + i];
}

static const Layout layouts[] = {
    {"transpose", transpose_shape, transpose_to_ours, transpose_to_stored},
};

static const Layout *find_layout(const char *name) {
  for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
    if (!strcmp(layouts[i].name, name)) return &layouts[i];
  return NULL;
}

int hf_layout_known(const char *layout) { return find_layout(layout) != NULL; }
const char *hf_layout_names(void) { return "transpose"; }

static const char *dims_str(int rank, const int64_t *dim, char *buf, size_t n) {
  Tensor t = {.rank = rank};
  memcpy(t.dim, dim, sizeof(int64_t) * (size_t)rank);
  return tensor_shape_str(&t, buf, n);
}

int hf_import(Params *p, const StCheckpoint *ck, PcError *err) {
  for (size_t i = 0; i < p->spec.n; i++) {
    const ParamSpec *s = &p->spec.a[i];
    const Layout *layout = s->hf_layout ? find_layout(s->hf_layout) : NULL;
    if (s->hf_layout && !layout)
      return pc_errorf(err, "parameter '%s': unknown layout '%s' (known: %s)", s->name, s->hf_layout, hf_layout_names());
    int rank = s->rank;
    int64_t dim[PC_MAX_RANK];
    memcpy(dim, s->dim, sizeof dim);
    if (layout) layout->stored_shape(s, &rank, dim);

    const StTensorInfo *info = st_find(ck, s->name);
    if (!info) {
      const StTensorInfo *any = st_count(ck) ? st_get(ck, 0) : NULL;
      return pc_errorf(err, "%s: missing tensor '%s', which the model needs", any ? any->file : "checkpoint", s->name);
    }
    int same = info->rank == rank;
    for (int d = 0; same && d < rank; d++) same = info->dim[d] == dim[d];
    if (!same) {
      char a[96], b[96];
      return pc_errorf(err, "%s: tensor '%s' is %s but the model needs %s%s", info->file, s->name,
                       dims_str(info->rank, info->dim, a, sizeof a), dims_str(rank, dim, b, sizeof b),
                       layout ? " (as stored by Hugging Face)" : "");
    }
    Tensor *t;
    if (st_read(ck, s->name, &t, err) < 0) return -1;
    if (t->dtype != PC_F32) {
      tensor_free(t);
      return pc_errorf(err, "%s: tensor '%s' is %s, not a floating-point tensor", info->file, s->name,
                       st_dtype_name(info->dtype));
    }
    if (!p->value[i]) p->value[i] = tensor_new(PC_F32, s->rank, s->dim);
    if (!p->value[i]) {
      tensor_free(t);
      return pc_errorf(err, "out of memory for parameter '%s'", s->name);
    }
    if (layout)
      layout->to_ours(s, tensor_f32(t), tensor_f32(p->value[i]));
    else
      memcpy(p->value[i]->data, t->data, tensor_bytes(t));
    tensor_free(t);
  }
  return 0;
}

Tensor *hf_export(const ParamSpec *s, const Tensor *ours) {
  const Layout *layout = s->hf_layout ? find_layout(s->hf_layout) : NULL;
  int rank = s->rank;
  int64_t dim[PC_MAX_RANK];
  memcpy(dim, s->dim, sizeof dim);
  if (layout) layout->stored_shape(s, &rank, dim);
  Tensor *t = tensor_new(PC_F32, rank, dim);
  if (!t) return NULL;
  if (layout)
    layout->to_stored(s, tensor_f32(ours), tensor_f32(t));
  else
    memcpy(t->data, ours->data, tensor_bytes(ours));
  return t;
}
