#include "runtime/tensor.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/base/err.h"
#include "runtime/base/mem.h"

Tensor *tensor_new(PcDType dtype, int rank, const int64_t *dim) {
  PC_ASSERT(rank >= 0 && rank <= PC_MAX_RANK);
  Tensor *t = pc_xcalloc(1, sizeof *t);
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++) {
    PC_ASSERT(dim[i] >= 0);
    t->dim[i] = dim[i];
  }
  size_t bytes = tensor_bytes(t);
  t->data = calloc(bytes ? bytes : 1, 1);
  if (!t->data) {
    free(t);
    return NULL;
  }
  return t;
}

void tensor_free(Tensor *t) {
  if (!t) return;
  if (!t->view) free(t->data);
  free(t);
}

int64_t tensor_numel(const Tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n = (int64_t)pc_mul_size((size_t)n, (size_t)t->dim[i]);
  return n;
}

size_t tensor_bytes(const Tensor *t) {
  return pc_mul_size((size_t)tensor_numel(t), pc_dtype_size(t->dtype));
}

char *tensor_shape_str(const Tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int i = 0; i < t->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}
