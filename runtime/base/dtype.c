#include "runtime/base/dtype.h"

#include <string.h>

static const struct { const char *name; size_t bytes; } dtype_info[] = {
#define X(e, name, bytes) {name, bytes},
    PC_DTYPES(X)
#undef X
};

const char *pc_dtype_name(PcDType t) { return dtype_info[t].name; }
size_t pc_dtype_size(PcDType t) { return dtype_info[t].bytes; }

int pc_dtype_from_name(const char *name, size_t len) {
  for (int i = 0; i < PC_NUM_DTYPES; i++)
    if (strlen(dtype_info[i].name) == len && memcmp(dtype_info[i].name, name, len) == 0) return i;
  return -1;
}
