/* Safetensors checkpoints: open (mmap every file, validate every header),
 * look up, read with conversion to f32/i32, and write atomically.
 * All multi-byte values in the format are little-endian; they are read byte
 * by byte, so neither the host's byte order nor the data's alignment matters. */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/mem.h"
#include "runtime/base/file.h"

/* One row per safetensors dtype: its name in headers, bytes per element, and
 * whether it reads as int32 (else float32). Indexed by StDType. */
static const struct {
  const char *name;
  size_t bytes;
  int is_int;
} st_dtypes[] = {
    [ST_F32] = {"F32", 4, 0}, [ST_F16] = {"F16", 2, 0}, [ST_BF16] = {"BF16", 2, 0},
    [ST_F64] = {"F64", 8, 0}, [ST_I64] = {"I64", 8, 1}, [ST_I32] = {"I32", 4, 1},
    [ST_I16] = {"I16", 2, 1}, [ST_I8] = {"I8", 1, 1},   [ST_U8] = {"U8", 1, 1},
    [ST_BOOL] = {"BOOL", 1, 1},
};
#define ST_NUM_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

/* The reference implementation's limit on the JSON header. */
#define ST_MAX_HEADER 100000000

/* A whole file mapped read-only. */
typedef struct StFile {
  char *path;
  void *map; /* NULL when the file is empty */
  size_t size;
} StFile;

struct StCheckpoint {
  char *path; /* as given to st_open, for messages */
  VEC(StFile) files;
  VEC(StTensorInfo) tensors; /* in header order, file by file; names owned */
  const StTensorInfo **by_name; /* sorted, for st_find; built once all files are in */
};

const char *st_dtype_name(StDType t) {
  return (int)t >= 0 && (int)t < ST_NUM_DTYPES ? st_dtypes[t].name : "?";
}

/* --- little-endian access --- */

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put_le32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i);
}
static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i);
}

static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000 | man << 13); /* inf, nan */
  if (exp) return f32_from_bits(sign | (exp + 127 - 15) << 23 | man << 13);
  float mag = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24, exact */
  return sign ? -mag : mag;
}

/* bfloat16 is the top half of a float32. */
static float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* --- messages --- */

/* The JSON text of j, cut to fit buf. */
static const char *json_show(const cJSON *j, char *buf, int n) {
  if (!j) return "(missing)";
  if (!cJSON_PrintPreallocated((cJSON *)j, buf, n, 0)) snprintf(buf, (size_t)n, "(too long to show)");
  return buf;
}

static const char *dims_show(const int64_t *dim, int rank, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* --- files --- */

static int map_file(const char *path, StFile *f, PcError *err) {
  *f = (StFile){0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pc_errorf(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return pc_errorf(err, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return pc_errorf(err, "%s: not a regular file", path);
  }
  f->size = (size_t)st.st_size;
  if (f->size) {
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
      int e = errno;
      f->map = NULL;
      close(fd);
      return pc_errorf(err, "%s: cannot map: %s", path, strerror(e));
    }
  }
  close(fd);
  f->path = pc_xstrdup(path);
  return 0;
}

static void unmap_file(StFile *f) {
  if (f->map) munmap(f->map, f->size);
  free(f->path);
  *f = (StFile){0};
}

/* "dir/" of path (empty when path has no slash) followed by name. */
static char *path_beside(const char *path, const char *name) {
  const char *slash = strrchr(path, '/');
  size_t k = slash ? (size_t)(slash - path) + 1 : 0, n = strlen(name);
  char *s = pc_xmalloc(k + n + 1);
  memcpy(s, path, k);
  memcpy(s + k, name, n + 1);
  return s;
}

static char *path_join(const char *dir, const char *name) {
  size_t k = strlen(dir), n = strlen(name);
  int slash = k > 0 && dir[k - 1] != '/';
  char *s = pc_xmalloc(k + (size_t)slash + n + 1);
  memcpy(s, dir, k);
  if (slash) s[k] = '/';
  memcpy(s + k + (size_t)slash, name, n + 1);
  return s;
}

/* --- headers --- */

/* An exact non-negative integer: cJSON keeps numbers as doubles, so accept
 * only those that a double holds exactly (up to 2^53). */
static int json_uint(const cJSON *j, int64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double d = j->valuedouble;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return 0;
  *out = (int64_t)d;
  return 1;
}

/* Validates one header entry `name: {dtype, shape, data_offsets}` of the file
 * at path whose data area is data[0, dsize), and fills ti (name not set). */
static int parse_entry(const char *path, const cJSON *e, const unsigned char *data, size_t dsize,
                       StTensorInfo *ti, PcError *err) {
  const char *name = e->string;
  char b1[128], b2[128];
  if (!cJSON_IsObject(e))
    return pc_errorf(err, "%s: tensor '%s': entry %s is not a JSON object", path, name,
                     json_show(e, b1, sizeof b1));

  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  if (!cJSON_IsString(dt))
    return pc_errorf(err, "%s: tensor '%s': dtype %s is not a string", path, name,
                     json_show(dt, b1, sizeof b1));
  int t = 0;
  while (t < ST_NUM_DTYPES && strcmp(st_dtypes[t].name, dt->valuestring) != 0) t++;
  if (t == ST_NUM_DTYPES)
    return pc_errorf(err, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
  ti->dtype = (StDType)t;

  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
  if (!cJSON_IsArray(shape))
    return pc_errorf(err, "%s: tensor '%s': shape %s is not an array", path, name,
                     json_show(shape, b1, sizeof b1));
  int rank = cJSON_GetArraySize(shape);
  if (rank > PC_MAX_RANK)
    return pc_errorf(err, "%s: tensor '%s': shape %s has rank %d, more than the supported %d", path,
                     name, json_show(shape, b1, sizeof b1), rank, PC_MAX_RANK);
  ti->rank = rank;
  /* numel, and the product of the non-zero dims: tensor_numel() multiplies
   * left to right, so [2^40, 2^40, 0] must be refused here too. */
  int64_t numel = 1, nonzero = 1;
  const cJSON *d;
  int i = 0;
  cJSON_ArrayForEach(d, shape) {
    if (!json_uint(d, &ti->dim[i]))
      return pc_errorf(err, "%s: tensor '%s': shape %s must hold non-negative integers", path, name,
                       json_show(shape, b1, sizeof b1));
    if (ti->dim[i] && nonzero > INT64_MAX / ti->dim[i])
      return pc_errorf(err, "%s: tensor '%s': shape %s is too large", path, name,
                       json_show(shape, b1, sizeof b1));
    if (ti->dim[i]) nonzero *= ti->dim[i];
    numel = ti->dim[i] ? numel * ti->dim[i] : 0;
    i++;
  }

  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  int64_t begin, end;
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
      !json_uint(cJSON_GetArrayItem(offs, 0), &begin) || !json_uint(cJSON_GetArrayItem(offs, 1), &end))
    return pc_errorf(err, "%s: tensor '%s': data_offsets %s must be two non-negative integers", path,
                     name, json_show(offs, b1, sizeof b1));
  if (begin > end)
    return pc_errorf(err, "%s: tensor '%s': data_offsets [%lld, %lld] begin after they end", path,
                     name, (long long)begin, (long long)end);
  if ((uint64_t)end > dsize)
    return pc_errorf(err,
                     "%s: tensor '%s': data_offsets [%lld, %lld] point past the end of the file "
                     "(%zu bytes of data)",
                     path, name, (long long)begin, (long long)end, dsize);
  size_t nbytes = (size_t)(end - begin), esize = st_dtypes[t].bytes;
  if ((uint64_t)numel > SIZE_MAX / esize || (size_t)numel * esize != nbytes)
    return pc_errorf(err,
                     "%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets [%lld, %lld] "
                     "hold %zu",
                     path, name, dims_show(ti->dim, rank, b2, sizeof b2), st_dtypes[t].name,
                     (unsigned long long)numel * esize, (long long)begin, (long long)end, nbytes);
  ti->data = data + begin;
  ti->nbytes = nbytes;
  return 0;
}

/* Parses JSON text p[0, n) that may be followed by whitespace only; on
 * failure returns NULL and the offset of the error in *bad. The text is
 * copied with a terminating NUL so that cJSON never reads past it. */
static cJSON *parse_json(const void *p, size_t n, size_t *bad) {
  char *s = pc_xmalloc(n + 1);
  if (n) memcpy(s, p, n);
  s[n] = 0;
  const char *stop = s;
  cJSON *root = cJSON_ParseWithLengthOpts(s, n, &stop, 0);
  if (root)
    while (*stop && strchr(" \t\r\n", *stop)) stop++;
  if (root && stop != s + n) {
    cJSON_Delete(root);
    root = NULL;
  }
  *bad = (size_t)(stop - s);
  free(s);
  return root;
}

/* Maps the safetensors file at path and appends its tensors. */
static int load_file(StCheckpoint *ck, const char *path, PcError *err) {
  StFile f;
  if (map_file(path, &f, err)) return -1;
  vec_push(&ck->files, f); /* owned by ck from here on, even on error */
  const unsigned char *m = f.map;
  path = f.path;
  if (f.size < 8)
    return pc_errorf(err, "%s: file is %zu bytes, too short for a safetensors header", path, f.size);
  uint64_t n = le64(m);
  if (n > f.size - 8)
    return pc_errorf(err, "%s: header length %llu is larger than the file (%zu bytes)", path,
                     (unsigned long long)n, f.size);
  if (n > ST_MAX_HEADER)
    return pc_errorf(err, "%s: header length %llu is more than the %d-byte limit", path,
                     (unsigned long long)n, ST_MAX_HEADER);
  size_t bad;
  cJSON *root = parse_json(m + 8, (size_t)n, &bad);
  if (!root)
    return pc_errorf(err, "%s: header is not valid JSON (at byte %zu of %llu)", path, bad,
                     (unsigned long long)n);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return pc_errorf(err, "%s: header is not a JSON object", path);
  }
  const unsigned char *data = m + 8 + n;
  size_t dsize = f.size - 8 - (size_t)n;
  const cJSON *e;
  cJSON_ArrayForEach(e, root) {
    if (strcmp(e->string, "__metadata__") == 0) continue;
    StTensorInfo ti = {0};
    if (parse_entry(path, e, data, dsize, &ti, err)) {
      cJSON_Delete(root);
      return -1;
    }
    ti.name = pc_xstrdup(e->string);
    ti.file = path;
    vec_push(&ck->tensors, ti);
  }
  cJSON_Delete(root);
  return 0;
}

static int cmp_by_name(const void *a, const void *b) {
  return strcmp((*(const StTensorInfo *const *)a)->name, (*(const StTensorInfo *const *)b)->name);
}

/* Builds the sorted name index; a name seen twice is an error. */
static int index_names(StCheckpoint *ck, PcError *err) {
  size_t n = ck->tensors.n;
  ck->by_name = pc_xcalloc(n, sizeof *ck->by_name);
  for (size_t i = 0; i < n; i++) ck->by_name[i] = &ck->tensors.a[i];
  qsort(ck->by_name, n, sizeof *ck->by_name, cmp_by_name);
  for (size_t i = 1; i < n; i++) {
    const StTensorInfo *a = ck->by_name[i - 1], *b = ck->by_name[i];
    if (strcmp(a->name, b->name) != 0) continue;
    if (a->file == b->file) return pc_errorf(err, "%s: tensor '%s' appears twice", a->file, a->name);
    return pc_errorf(err, "%s: tensor '%s' appears in both %s and %s", ck->path, a->name, a->file,
                     b->file);
  }
  return 0;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {name: shard}}
 * with the shards beside it. Loads each shard once, then checks that every
 * listed tensor is in the shard the index names. */
static int load_index(StCheckpoint *ck, const char *path, PcError *err) {
  StFile f;
  if (map_file(path, &f, err)) return -1;
  size_t bad;
  cJSON *root = parse_json(f.map, f.size, &bad);
  unmap_file(&f);
  if (!root) return pc_errorf(err, "%s: not valid JSON (at byte %zu)", path, bad);
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
  int rc = 0;
  if (!cJSON_IsObject(wm)) {
    rc = pc_errorf(err, "%s: no \"weight_map\" object", path);
    goto done;
  }
  cJSON_ArrayForEach(e, wm) {
    if (!cJSON_IsString(e) || !e->valuestring[0]) {
      rc = pc_errorf(err, "%s: weight_map entry for tensor '%s' is not a file name", path, e->string);
      goto done;
    }
    char *shard = path_beside(path, e->valuestring);
    size_t k = 0;
    while (k < ck->files.n && strcmp(ck->files.a[k].path, shard) != 0) k++;
    if (k == ck->files.n && load_file(ck, shard, err)) {
      if (ck->files.n == k) pc_error_prefix(err, "%s: shard of tensor '%s'", path, e->string);
      free(shard);
      rc = -1;
      goto done;
    }
    free(shard);
  }
  if ((rc = index_names(ck, err))) goto done;
  cJSON_ArrayForEach(e, wm) {
    const StTensorInfo *ti = st_find(ck, e->string);
    char *shard = path_beside(path, e->valuestring);
    if (!ti || strcmp(ti->file, shard) != 0)
      rc = pc_errorf(err, "%s: tensor '%s' is listed in shard '%s' but absent from it", path,
                     e->string, e->valuestring);
    free(shard);
    if (rc) goto done;
  }
done:
  cJSON_Delete(root);
  return rc;
}

/* A .json path is an index; anything else a single safetensors file. */
static int open_file(StCheckpoint *ck, const char *path, PcError *err) {
  if (pc_ends_with(path, ".json")) return load_index(ck, path, err);
  return load_file(ck, path, err) || index_names(ck, err) ? -1 : 0;
}

static int open_path(StCheckpoint *ck, const char *path, PcError *err) {
  struct stat st;
  if (stat(path, &st) != 0) return pc_errorf(err, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return open_file(ck, path, err);
  static const char *const names[] = {"model.safetensors", "model.safetensors.index.json"};
  for (int i = 0; i < 2; i++) {
    char *p = path_join(path, names[i]);
    int found = stat(p, &st) == 0, rc = found ? open_file(ck, p, err) : 0;
    free(p);
    if (found) return rc;
  }
  return pc_errorf(err, "%s: no model.safetensors or model.safetensors.index.json in this folder",
                   path);
}

int st_open(const char *path, StCheckpoint **out, PcError *err) {
  *out = NULL;
  StCheckpoint *ck = pc_xcalloc(1, sizeof *ck);
  ck->path = pc_xstrdup(path);
  if (open_path(ck, path, err)) {
    st_close(ck);
    return -1;
  }
  *out = ck;
  return 0;
}

void st_close(StCheckpoint *ck) {
  if (!ck) return;
  for (size_t i = 0; i < ck->tensors.n; i++) free((char *)ck->tensors.a[i].name);
  for (size_t i = 0; i < ck->files.n; i++) unmap_file(&ck->files.a[i]);
  vec_free(&ck->tensors);
  vec_free(&ck->files);
  free(ck->by_name);
  free(ck->path);
  free(ck);
}

size_t st_count(const StCheckpoint *ck) { return ck->tensors.n; }

const StTensorInfo *st_get(const StCheckpoint *ck, size_t i) {
  return i < ck->tensors.n ? &ck->tensors.a[i] : NULL;
}

const StTensorInfo *st_find(const StCheckpoint *ck, const char *name) {
  if (!ck->by_name) return NULL;
  StTensorInfo key = {.name = name};
  const StTensorInfo *kp = &key, **hit;
  hit = bsearch(&kp, ck->by_name, ck->tensors.n, sizeof *ck->by_name, cmp_by_name);
  return hit ? *hit : NULL;
}

/* --- reading --- */

int st_read(const StCheckpoint *ck, const char *name, Tensor **out, PcError *err) {
  *out = NULL;
  const StTensorInfo *ti = st_find(ck, name);
  if (!ti) return pc_errorf(err, "%s: no tensor named '%s'", ck->path, name);
  Tensor *t = tensor_new(st_dtypes[ti->dtype].is_int ? PC_I32 : PC_F32, ti->rank, ti->dim);
  if (!t)
    return pc_errorf(err, "%s: tensor '%s': out of memory for %zu bytes", ti->file, name,
                     ti->nbytes);
  size_t n = (size_t)tensor_numel(t);
  const unsigned char *p = ti->data;
  float *f = tensor_f32(t);
  int32_t *q = tensor_i32(t);
  switch (ti->dtype) {
  case ST_F32:
    for (size_t i = 0; i < n; i++) f[i] = f32_from_bits(le32(p + 4 * i));
    break;
  case ST_F16:
    for (size_t i = 0; i < n; i++) f[i] = f16_to_f32(le16(p + 2 * i));
    break;
  case ST_BF16:
    for (size_t i = 0; i < n; i++) f[i] = bf16_to_f32(le16(p + 2 * i));
    break;
  case ST_F64:
    for (size_t i = 0; i < n; i++) {
      uint64_t u = le64(p + 8 * i);
      double d;
      memcpy(&d, &u, sizeof d);
      f[i] = (float)d; /* out of float range gives +-inf (IEEE) */
    }
    break;
  case ST_I64:
    for (size_t i = 0; i < n; i++) {
      uint64_t u = le64(p + 8 * i);
      int64_t v;
      memcpy(&v, &u, sizeof v);
      if (v < INT32_MIN || v > INT32_MAX) {
        tensor_free(t);
        return pc_errorf(err, "%s: tensor '%s': element %zu is %lld, outside the int32 range",
                         ti->file, name, i, (long long)v);
      }
      q[i] = (int32_t)v;
    }
    break;
  case ST_I32:
    for (size_t i = 0; i < n; i++) {
      uint32_t u = le32(p + 4 * i);
      memcpy(&q[i], &u, sizeof u);
    }
    break;
  case ST_I16:
    for (size_t i = 0; i < n; i++) {
      uint16_t u = le16(p + 2 * i);
      int16_t v;
      memcpy(&v, &u, sizeof v);
      q[i] = v;
    }
    break;
  case ST_I8:
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)p[i];
    break;
  case ST_U8:
    for (size_t i = 0; i < n; i++) q[i] = p[i];
    break;
  case ST_BOOL:
    for (size_t i = 0; i < n; i++) q[i] = p[i] != 0;
    break;
  }
  *out = t;
  return 0;
}

/* --- writing --- */

typedef VEC(char) StBuf;

__attribute__((format(printf, 2, 3))) static void buf_printf(StBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  PC_ASSERT(k >= 0);
  vec_reserve(b, b->n + (size_t)k + 1);
  va_start(ap, fmt);
  vsnprintf(b->a + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

/* A JSON string literal for s (UTF-8 passes through). */
static void buf_json_string(StBuf *b, const char *s) {
  vec_push(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      vec_push(b, '\\');
      vec_push(b, (char)*p);
    } else if (*p < 0x20) {
      buf_printf(b, "\\u%04x", *p);
    } else {
      vec_push(b, (char)*p);
    }
  }
  vec_push(b, '"');
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t k = write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Writes the file body: u64 header size, header, then each tensor's 4-byte
 * elements in little-endian order, through a small staging buffer. */
static int write_body(int fd, const StBuf *hdr, const StEntry *entries, size_t n) {
  unsigned char buf[1 << 16];
  put_le64(buf, hdr->n);
  if (write_all(fd, buf, 8) || write_all(fd, hdr->a, hdr->n)) return -1;
  for (size_t i = 0; i < n; i++) {
    const Tensor *t = entries[i].tensor;
    size_t count = (size_t)tensor_numel(t), k = 0;
    const unsigned char *src = t->data;
    for (size_t j = 0; j < count; j++) {
      uint32_t u;
      memcpy(&u, src + 4 * j, 4);
      put_le32(buf + k, u);
      k += 4;
      if (k == sizeof buf || j + 1 == count) {
        if (write_all(fd, buf, k)) return -1;
        k = 0;
      }
    }
  }
  return 0;
}

/* Validates the entries and builds the padded header. */
static int build_header(const char *path, const StEntry *entries, size_t n, StBuf *hdr,
                        PcError *err) {
  buf_printf(hdr, "{\"__metadata__\":{\"format\":\"pt\"}");
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = entries[i].name;
    const Tensor *t = entries[i].tensor;
    if (!name) return pc_errorf(err, "%s: entry %zu has no name", path, i);
    if (!t) return pc_errorf(err, "%s: tensor '%s': no tensor given", path, name);
    if (strcmp(name, "__metadata__") == 0)
      return pc_errorf(err, "%s: '__metadata__' is reserved, not a tensor name", path);
    for (size_t j = 0; j < i; j++)
      if (entries[j].name && strcmp(entries[j].name, name) == 0)
        return pc_errorf(err, "%s: tensor '%s' given twice", path, name);
    if (t->dtype != PC_F32 && t->dtype != PC_I32)
      return pc_errorf(err, "%s: tensor '%s': dtype %s cannot be written", path, name,
                       pc_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > PC_MAX_RANK)
      return pc_errorf(err, "%s: tensor '%s': rank %d", path, name, t->rank);
    for (int d = 0; d < t->rank; d++)
      if (t->dim[d] < 0)
        return pc_errorf(err, "%s: tensor '%s': negative dimension", path, name);
    uint64_t bytes = tensor_bytes(t);
    buf_printf(hdr, ",");
    buf_json_string(hdr, name);
    buf_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", t->dtype == PC_F32 ? "F32" : "I32");
    for (int d = 0; d < t->rank; d++) buf_printf(hdr, "%s%lld", d ? "," : "", (long long)t->dim[d]);
    buf_printf(hdr, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
               (unsigned long long)(off + bytes));
    off += bytes;
  }
  buf_printf(hdr, "}");
  while (hdr->n % 8) vec_push(hdr, ' '); /* keeps the data 8-byte aligned */
  return 0;
}

static void fsync_dir_of(const char *path) {
  char *dir = path_beside(path, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on folders */
    close(fd);
  }
  free(dir);
}

int st_write(const char *path, const StEntry *entries, size_t n, PcError *err) {
  StBuf hdr = {0};
  if (build_header(path, entries, n, &hdr, err)) {
    vec_free(&hdr);
    return -1;
  }
  size_t k = strlen(path);
  char *tmp = pc_xmalloc(k + sizeof ".tmp.XXXXXX");
  memcpy(tmp, path, k);
  memcpy(tmp + k, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
  int fd = mkostemp(tmp, O_CLOEXEC), rc = 0;
  if (fd < 0) {
    rc = pc_errorf(err, "%s: cannot create a temporary file %s: %s", path, tmp, strerror(errno));
    goto done;
  }
  const char *what = NULL;
  if (fchmod(fd, 0644) != 0) what = "set the mode of";
  else if (write_body(fd, &hdr, entries, n) != 0) what = "write";
  else if (fsync(fd) != 0) what = "fsync";
  int e = errno;
  if (close(fd) != 0 && !what) what = "close", e = errno;
  if (!what && rename(tmp, path) != 0) what = "rename", e = errno;
  if (what) {
    unlink(tmp);
    rc = pc_errorf(err, "%s: cannot %s %s: %s", path, what, tmp, strerror(e));
    goto done;
  }
  fsync_dir_of(path);
done:
  free(tmp);
  vec_free(&hdr);
  return rc;
}
