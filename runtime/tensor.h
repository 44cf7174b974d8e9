/* A dense, row-major tensor in host memory. The struct owns `data` unless
 * `view` is set (then someone else, e.g. an mmap or an arena, does). */
#ifndef PC_TENSOR_H
#define PC_TENSOR_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/base/dtype.h"

#define PC_MAX_RANK 6

typedef struct Tensor {
  PcDType dtype;
  int rank;
  int64_t dim[PC_MAX_RANK];
  void *data;
  int view;
} Tensor;

/* Allocates a zero-filled tensor; returns NULL (and sets nothing) only when
 * the size does not fit in memory, which callers report as a user error. */
Tensor *tensor_new(PcDType dtype, int rank, const int64_t *dim);
void tensor_free(Tensor *t);
int64_t tensor_numel(const Tensor *t);
size_t tensor_bytes(const Tensor *t);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }
static inline int32_t *tensor_i32(const Tensor *t) { return (int32_t *)t->data; }
/* Writes "[2,3,4]" into buf. */
char *tensor_shape_str(const Tensor *t, char *buf, size_t n);
int tensor_same_shape(const Tensor *a, const Tensor *b);

#endif
