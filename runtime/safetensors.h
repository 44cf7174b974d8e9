/* Hugging Face safetensors checkpoints: one file, or shards listed in
 * model.safetensors.index.json. Files are mmapped; tensors are converted to
 * float32 (or int32 for integer dtypes) when read.
 * Format: u64 little-endian header size N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data; offsets are relative to the first byte after the header. */
#ifndef PC_SAFETENSORS_H
#define PC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/err.h"
#include "runtime/tensor.h"

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } StDType;

typedef struct StTensorInfo {
  const char *name;
  StDType dtype;
  int rank;
  int64_t dim[PC_MAX_RANK];
  const void *data; /* into the mapping */
  size_t nbytes;
  const char *file; /* the shard it lives in */
} StTensorInfo;

typedef struct StCheckpoint StCheckpoint;

/* path: a .safetensors file, a model.safetensors.index.json, or a directory
 * holding either. Every header is validated on open (JSON, dtypes, shapes
 * against byte sizes, offsets inside the file). */
int st_open(const char *path, StCheckpoint **out, PcError *err);
void st_close(StCheckpoint *ck);

size_t st_count(const StCheckpoint *ck);
const StTensorInfo *st_get(const StCheckpoint *ck, size_t i);
/* NULL when absent. */
const StTensorInfo *st_find(const StCheckpoint *ck, const char *name);
const char *st_dtype_name(StDType t);

/* Reads a tensor converted to float32 (float types) or int32 (integer types,
 * with a range check). Errors name the tensor and the checkpoint path. */
int st_read(const StCheckpoint *ck, const char *name, Tensor **out, PcError *err);

/* Writes tensors (F32 or I32) to a safetensors file: written to a temporary
 * file in the same folder, fsynced, then renamed over `path`. */
typedef struct StEntry {
  const char *name;
  const Tensor *tensor;
} StEntry;
int st_write(const char *path, const StEntry *entries, size_t n, PcError *err);

#endif
