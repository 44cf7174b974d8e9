#include "runtime/hf_import.h"

#include <stdlib.h>
#include <string.h>

/* A layout: the shape the checkpoint stores for a spec, and how to turn
 * the stored tensor into ours. A layout name may carry an integer argument
 * after a colon ("neox_qkv:8"); `check` says whether a spec fits it (NULL
 * when it does, else why not). */
typedef struct {
  const char *name;
  void (*stored_shape)(const ParamSpec *s, int *rank, int64_t *dim);
  void (*to_ours)(const ParamSpec *s, const float *src, float *dst);
  void (*to_stored)(const ParamSpec *s, const float *src, float *dst);
  const char *(*check)(const ParamSpec *s);
} Layout;

/* The integer after the colon of s's layout name, or 0. */
static int64_t layout_arg(const ParamSpec *s) {
  const char *colon = strchr(s->hf_layout, ':');
  if (!colon || !colon[1]) return 0;
  char *end;
  long long v = strtoll(colon + 1, &end, 10);
  return *end ? 0 : v;
}

static void same_shape(const ParamSpec *s, int *rank, int64_t *dim) {}

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

static const char *transpose_check(const ParamSpec *s) { return s->rank == 2 ? NULL : "it needs a 2-D parameter"; }

/* "neox_qkv:H": GPT-NeoX's fused query_key_value weight [3C, C] (or bias
 * [3C]) stores its rows per head, [h0 q, h0 k, h0 v, h1 q, ...], each D =
 * C/H rows; ours are [q; k; v], each C rows in head order, so that
 * split(C, C, C) gives q, k and v. Row r = (h, j, d) is stored at
 * h*3D + j*D + d and kept at j*C + h*D + d. */
static void neox_qkv(const ParamSpec *s, const float *src, float *dst, int to_ours) {
  int64_t rows = s->dim[0], H = layout_arg(s), C = rows / 3, D = C / H, width = 1;
  for (int d = 1; d < s->rank; d++) width *= s->dim[d];
  for (int64_t h = 0; h < H; h++)
    for (int64_t j = 0; j < 3; j++)
      for (int64_t d = 0; d < D; d++) {
        int64_t stored = h * 3 * D + j * D + d, ours = j * C + h * D + d;
        memcpy(dst + (to_ours ? ours : stored) * width, src + (to_ours ? stored : ours) * width,
               sizeof(float) * (size_t)width);
      }
}
static void neox_qkv_to_ours(const ParamSpec *s, const float *src, float *dst) { neox_qkv(s, src, dst, 1); }
static void neox_qkv_to_stored(const ParamSpec *s, const float *src, float *dst) { neox_qkv(s, src, dst, 0); }

static const char *neox_qkv_check(const ParamSpec *s) {
  int64_t H = layout_arg(s);
  if (H <= 0) return "it needs the head count, as in neox_qkv:8";
  if (s->rank < 1 || s->rank > 2 || s->dim[0] % (3 * H)) return "it needs a [3*heads*D, ...] weight or bias";
  return NULL;
}

static const Layout layouts[] = {
    {"transpose", transpose_shape, transpose_to_ours, transpose_to_stored, transpose_check},
    {"neox_qkv", same_shape, neox_qkv_to_ours, neox_qkv_to_stored, neox_qkv_check},
};

/* By name, ignoring a ":argument". */
static const Layout *find_layout(const char *name) {
  size_t n = strcspn(name, ":");
  for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
    if (strlen(layouts[i].name) == n && !strncmp(layouts[i].name, name, n)) return &layouts[i];
  return NULL;
}

int hf_layout_known(const char *layout) { return find_layout(layout) != NULL; }
const char *hf_layout_names(void) { return "transpose, neox_qkv:HEADS"; }

const char *hf_layout_check(const ParamSpec *s) {
  const Layout *l = find_layout(s->hf_layout);
  return !l ? "it is not a known layout" : l->check(s);
}

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
    const char *why = layout ? layout->check(s) : NULL;
    if (why) return pc_errorf(err, "parameter '%s': layout '%s' does not fit: %s", s->name, s->hf_layout, why);
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
    params_changed(p);
  }
  return 0;
}

Tensor *hf_export(const ParamSpec *s, const Tensor *ours) {
  const Layout *layout = s->hf_layout ? find_layout(s->hf_layout) : NULL;
  if (s->hf_layout && (!layout || layout->check(s))) /* specs come checked from the graph */
    PC_BUG("parameter '%s': layout '%s' does not fit", s->name, s->hf_layout);
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
