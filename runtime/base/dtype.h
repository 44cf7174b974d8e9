/* Element types, defined once. DTYPE(enum, name, bytes) */
#ifndef PC_DTYPE_H
#define PC_DTYPE_H

#include <stddef.h>

#define PC_DTYPES(X) \
  X(F32, "f32", 4)   \
  X(I32, "i32", 4)

typedef enum {
#define X(e, name, bytes) PC_##e,
  PC_DTYPES(X)
#undef X
  PC_NUM_DTYPES
} PcDType;

const char *pc_dtype_name(PcDType t);
size_t pc_dtype_size(PcDType t);
/* Returns -1 when the name is not a dtype. */
int pc_dtype_from_name(const char *name, size_t len);

#endif
