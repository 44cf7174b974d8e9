/* Safetensors checkpoints: write/read round trips, dtype conversions from
 * hand-built files, sharded checkpoints, one check per malformed-file error
 * (each must fail with -1 and a one-line message naming the file), and the
 * real GPT-2 checkpoint from ../shared/data when it is there. */
#include "runtime/safetensors.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"

static char tmpdir[] = "/tmp/pc_test_safetensors_XXXXXX";

/* tmpdir/name in buf. */
static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
  return buf;
}
#define TPATH(buf, name) tpath(buf, sizeof buf, name)

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECKF(f != NULL, "cannot create %s", path);
  if (!f) return;
  CHECK(fwrite(p, 1, n, f) == n);
  CHECK(fclose(f) == 0);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* A hand-built safetensors file: u64 length, the header as given, data. */
static void write_raw(const char *path, const char *header, const void *data, size_t n) {
  size_t h = strlen(header);
  unsigned char *buf = malloc(8 + h + n + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> 8 * i);
  memcpy(buf + 8, header, h);
  if (n) memcpy(buf + 8 + h, data, n);
  write_bytes(path, buf, 8 + h + n);
  free(buf);
}

/* One tensor of a hand-built file; offsets are laid out back to back. */
typedef struct Raw {
  const char *name, *dtype, *shape;
  const void *bytes;
  size_t n;
} Raw;

static void write_raws(const char *path, const Raw *r, size_t count) {
  char header[4096];
  unsigned char data[4096];
  size_t k = 0, off = 0;
  k += (size_t)snprintf(header + k, sizeof header - k, "{");
  for (size_t i = 0; i < count; i++) {
    k += (size_t)snprintf(header + k, sizeof header - k,
                          "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                          i ? "," : "", r[i].name, r[i].dtype, r[i].shape, off, off + r[i].n);
    if (i == 0) /* __metadata__ may sit anywhere; it is skipped */
      k += (size_t)snprintf(header + k, sizeof header - k, ",\"__metadata__\":{\"format\":\"pt\"}");
    memcpy(data + off, r[i].bytes, r[i].n);
    off += r[i].n;
  }
  snprintf(header + k, sizeof header - k, "}");
  write_raw(path, header, data, off);
}

static void pack16(unsigned char *out, const uint16_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (int b = 0; b < 2; b++) out[2 * i + b] = (unsigned char)(v[i] >> 8 * b);
}

static void pack64(unsigned char *out, const uint64_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (int b = 0; b < 8; b++) out[8 * i + b] = (unsigned char)(v[i] >> 8 * b);
}

static uint64_t f64_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static int count_tmp_files_found;
static int count_tmp_file(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag;
  if (strstr(p + ftw->base, ".tmp.")) count_tmp_files_found++;
  return 0;
}
/* Temporary files st_write left behind anywhere under tmpdir. */
static int count_tmp_files(void) {
  count_tmp_files_found = 0;
  nftw(tmpdir, count_tmp_file, 16, FTW_PHYS);
  return count_tmp_files_found;
}

static int remove_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

/* st_open(path) fails with a one-line message containing want (and, when
 * names_file, starting with the path). */
static void check_open_fails(int line, const char *path, const char *want, int names_file) {
  StCheckpoint *ck = (StCheckpoint *)1;
  PcError err = {{0}};
  int rc = st_open(path, &ck, &err);
  CHECKF(rc == -1 && ck == NULL, "line %d: st_open(%s) should fail", line, path);
  if (rc == 0) st_close(ck);
  CHECKF(strstr(err.msg, want) != NULL, "line %d: expected \"%s\" in \"%s\"", line, want, err.msg);
  CHECKF(strchr(err.msg, '\n') == NULL, "line %d: message is not one line: %s", line, err.msg);
  if (names_file)
    CHECKF(strncmp(err.msg, path, strlen(path)) == 0, "line %d: message does not name %s: %s", line,
           path, err.msg);
}
#define CHECK_OPEN_FAILS(path, want) check_open_fails(__LINE__, path, want, 0)

/* A hand-built single-file checkpoint with ndata zero bytes of data, which
 * must be refused with a message naming the file and containing want. */
static void check_bad_header(int line, const char *header, size_t ndata, const char *want) {
  char p[512];
  static const unsigned char zeros[1024];
  TPATH(p, "bad.safetensors");
  write_raw(p, header, zeros, ndata);
  check_open_fails(line, p, want, 1);
}
#define CHECK_BAD_HEADER(header, ndata, want) check_bad_header(__LINE__, header, ndata, want)

static void test_round_trip(void) {
  char p[512];
  TPATH(p, "rt.safetensors");
  Tensor *m = tensor_new(PC_F32, 2, (int64_t[]){2, 3});
  float mv[6] = {0.5f, -1.0f, 3.25f, 1e-30f, INFINITY, -0.0f};
  memcpy(m->data, mv, sizeof mv);
  Tensor *ids = tensor_new(PC_I32, 1, (int64_t[]){4});
  int32_t iv[4] = {0, -1, INT32_MAX, INT32_MIN};
  memcpy(ids->data, iv, sizeof iv);
  Tensor *s = tensor_new(PC_F32, 0, NULL);
  tensor_f32(s)[0] = 3.5f;
  Tensor *e = tensor_new(PC_F32, 2, (int64_t[]){0, 5});
  Tensor *ei = tensor_new(PC_I32, 2, (int64_t[]){3, 0});
  StEntry entries[] = {
      {"m", m}, {"ids", ids}, {"scalar", s}, {"empty", e}, {"empty_i", ei}, {"odd \"name\"\\\n", s},
  };
  size_t n = sizeof entries / sizeof entries[0];
  PcError err = {{0}};
  CHECKF(st_write(p, entries, n, &err) == 0, "%s", err.msg);
  CHECK(count_tmp_files() == 0);

  /* the header is padded so the data starts 8-byte aligned */
  FILE *f = fopen(p, "rb");
  unsigned char head[9] = {0};
  CHECK(f && fread(head, 1, 9, f) == 9);
  if (f) fclose(f);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)head[i] << 8 * i;
  CHECKF(hlen % 8 == 0, "header length %llu", (unsigned long long)hlen);
  CHECK(head[8] == '{');

  StCheckpoint *ck = NULL;
  CHECKF(st_open(p, &ck, &err) == 0, "%s", err.msg);
  if (ck) {
    CHECK(st_count(ck) == n);
    CHECK(st_get(ck, n) == NULL);
    for (size_t i = 0; i < n && i < st_count(ck); i++) {
      const StTensorInfo *ti = st_get(ck, i);
      const Tensor *want = entries[i].tensor;
      CHECKF(strcmp(ti->name, entries[i].name) == 0, "tensor %zu is '%s'", i, ti->name);
      CHECK(st_find(ck, entries[i].name) == ti);
      CHECK(ti->dtype == (want->dtype == PC_F32 ? ST_F32 : ST_I32));
      CHECK(ti->rank == want->rank);
      for (int d = 0; d < want->rank; d++) CHECK(ti->dim[d] == want->dim[d]);
      CHECK(ti->nbytes == tensor_bytes(want));
      CHECK(strcmp(ti->file, p) == 0);
      Tensor *got = NULL;
      CHECKF(st_read(ck, entries[i].name, &got, &err) == 0, "%s", err.msg);
      if (!got) continue;
      CHECK(got->dtype == want->dtype && tensor_same_shape(got, want));
      CHECKF(memcmp(got->data, want->data, tensor_bytes(want)) == 0, "tensor '%s' differs",
             entries[i].name);
      tensor_free(got);
    }
    CHECK(st_find(ck, "nope") == NULL);
    Tensor *t = (Tensor *)1;
    CHECK(st_read(ck, "nope", &t, &err) == -1 && t == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s: no tensor named 'nope'", p);
    CHECK(strcmp(err.msg, want) == 0);
    st_close(ck);
  }

  /* writing again replaces the file */
  CHECKF(st_write(p, (StEntry[]){{"only", ids}}, 1, &err) == 0, "%s", err.msg);
  CHECKF(st_open(p, &ck, &err) == 0, "%s", err.msg);
  if (ck) {
    CHECK(st_count(ck) == 1 && st_find(ck, "only") && !st_find(ck, "m"));
    st_close(ck);
  }

  /* write errors */
  CHECK(st_write(p, (StEntry[]){{"a", m}, {"a", s}}, 2, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "tensor 'a' given twice");
  CHECK(st_write(p, (StEntry[]){{"__metadata__", m}}, 1, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "reserved");
  CHECK(st_write("/nonexistent-dir-pc/x.safetensors", (StEntry[]){{"a", m}}, 1, &err) == -1);
  CHECK_STR_CONTAINS(err.msg, "cannot create a temporary file");
  char sub[512];
  TPATH(sub, "a_folder");
  CHECK(mkdir(sub, 0755) == 0);
  CHECK(st_write(sub, (StEntry[]){{"a", m}}, 1, &err) == -1); /* rename over a folder fails */
  CHECK_STR_CONTAINS(err.msg, "cannot rename");
  CHECK(count_tmp_files() == 0);

  tensor_free(m);
  tensor_free(ids);
  tensor_free(s);
  tensor_free(e);
  tensor_free(ei);
}

static void test_dtypes(void) {
  char p[512];
  TPATH(p, "dtypes.safetensors");
  /* one+2+... bytes of U8 first so every later tensor is unaligned */
  unsigned char u8[3] = {0, 200, 255};
  uint16_t hv[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0200, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x7bff};
  unsigned char h[sizeof hv];
  pack16(h, hv, 10);
  uint16_t bv[] = {0x3f80, 0xc040, 0x7f80, 0x0001, 0x4049};
  unsigned char b[sizeof bv];
  pack16(b, bv, 5);
  uint64_t dv[] = {f64_bits(1.5), f64_bits(-1e-3), f64_bits(1e300), f64_bits(0x1p-149)};
  unsigned char d[sizeof dv];
  pack64(d, dv, 4);
  uint64_t lv[] = {5, (uint64_t)-7, 2147483647, (uint64_t)INT64_C(-2147483648), (uint64_t)-1};
  unsigned char l[sizeof lv];
  pack64(l, lv, 5);
  uint64_t bigv[] = {5, 3000000000u};
  unsigned char big[sizeof bigv];
  pack64(big, bigv, 2);
  uint16_t sv[] = {0x7fff, 0x8000, 0xffff};
  unsigned char s16[sizeof sv];
  pack16(s16, sv, 3);
  unsigned char i8[3] = {0x7f, 0x80, 0xff}, bl[3] = {0, 1, 2}; /* any non-zero byte is true */
  unsigned char i32[8] = {0xfe, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x80};
  Raw raws[] = {
      {"u8", "U8", "[3]", u8, sizeof u8},     {"h", "F16", "[2,5]", h, sizeof h},
      {"b", "BF16", "[5]", b, sizeof b},      {"d", "F64", "[4]", d, sizeof d},
      {"l", "I64", "[5]", l, sizeof l},       {"big", "I64", "[2]", big, sizeof big},
      {"s16", "I16", "[3]", s16, sizeof s16}, {"i8", "I8", "[3]", i8, sizeof i8},
      {"bool", "BOOL", "[3]", bl, sizeof bl}, {"i32", "I32", "[2]", i32, sizeof i32},
  };
  write_raws(p, raws, sizeof raws / sizeof raws[0]);
  PcError err = {{0}};
  StCheckpoint *ck = NULL;
  CHECKF(st_open(p, &ck, &err) == 0, "%s", err.msg);
  if (!ck) return;
  CHECK(st_count(ck) == 10);
  CHECK(st_find(ck, "h")->dtype == ST_F16 && strcmp(st_dtype_name(ST_F16), "F16") == 0);
  CHECK(st_find(ck, "b")->dtype == ST_BF16 && strcmp(st_dtype_name(ST_BF16), "BF16") == 0);
  CHECK(st_find(ck, "h")->rank == 2 && st_find(ck, "h")->dim[1] == 5);
  Tensor *t;

  CHECK(st_read(ck, "h", &t, &err) == 0 && t->dtype == PC_F32 && t->rank == 2);
  if (t) {
    const float *f = tensor_f32(t);
    CHECK(f[0] == 1.0f && f[1] == -2.0f);
    CHECK(f[2] == 0x1p-24f);            /* smallest subnormal */
    CHECK(f[3] == 1023 * 0x1p-24f);     /* largest subnormal */
    CHECK(f[4] == 0x1p-15f);            /* a subnormal with one bit */
    CHECK(isinf(f[5]) && f[5] > 0);
    CHECK(isinf(f[6]) && f[6] < 0);
    CHECK(isnan(f[7]));
    CHECK(f[8] == 0.0f && signbit(f[8]));
    CHECK(f[9] == 65504.0f);            /* largest finite half */
    tensor_free(t);
  }
  CHECK(st_read(ck, "b", &t, &err) == 0 && t->dtype == PC_F32);
  if (t) {
    const float *f = tensor_f32(t);
    CHECK(f[0] == 1.0f && f[1] == -3.0f && isinf(f[2]) && f[3] == 0x1p-133f);
    CHECK(f[4] == 3.140625f);
    tensor_free(t);
  }
  CHECK(st_read(ck, "d", &t, &err) == 0 && t->dtype == PC_F32);
  if (t) {
    const float *f = tensor_f32(t);
    CHECK(f[0] == 1.5f && f[1] == (float)-1e-3 && isinf(f[2]) && f[3] == 0x1p-149f);
    tensor_free(t);
  }
  CHECK(st_read(ck, "l", &t, &err) == 0 && t->dtype == PC_I32);
  if (t) {
    const int32_t *q = tensor_i32(t);
    CHECK(q[0] == 5 && q[1] == -7 && q[2] == INT32_MAX && q[3] == INT32_MIN && q[4] == -1);
    tensor_free(t);
  }
  t = (Tensor *)1;
  CHECK(st_read(ck, "big", &t, &err) == -1 && t == NULL);
  CHECK_STR_CONTAINS(err.msg, "tensor 'big': element 1 is 3000000000, outside the int32 range");
  CHECK_STR_CONTAINS(err.msg, p);
  CHECK(st_read(ck, "s16", &t, &err) == 0 && t->dtype == PC_I32);
  if (t) {
    CHECK(tensor_i32(t)[0] == 32767 && tensor_i32(t)[1] == -32768 && tensor_i32(t)[2] == -1);
    tensor_free(t);
  }
  CHECK(st_read(ck, "i8", &t, &err) == 0);
  if (t) {
    CHECK(tensor_i32(t)[0] == 127 && tensor_i32(t)[1] == -128 && tensor_i32(t)[2] == -1);
    tensor_free(t);
  }
  CHECK(st_read(ck, "u8", &t, &err) == 0);
  if (t) {
    CHECK(tensor_i32(t)[0] == 0 && tensor_i32(t)[1] == 200 && tensor_i32(t)[2] == 255);
    tensor_free(t);
  }
  CHECK(st_read(ck, "bool", &t, &err) == 0);
  if (t) {
    CHECK(tensor_i32(t)[0] == 0 && tensor_i32(t)[1] == 1 && tensor_i32(t)[2] == 1);
    tensor_free(t);
  }
  CHECK(st_read(ck, "i32", &t, &err) == 0);
  if (t) {
    CHECK(tensor_i32(t)[0] == -2 && tensor_i32(t)[1] == INT32_MIN + 1);
    tensor_free(t);
  }
  st_close(ck);
}

static void test_sharded(void) {
  char dir[512], p1[512], p2[512], idx[512], p[512];
  TPATH(dir, "sharded");
  CHECK(mkdir(dir, 0755) == 0);
  TPATH(p1, "sharded/model-00001-of-00002.safetensors");
  TPATH(p2, "sharded/model-00002-of-00002.safetensors");
  TPATH(idx, "sharded/model.safetensors.index.json");
  Tensor *a = tensor_new(PC_F32, 1, (int64_t[]){2});
  Tensor *b = tensor_new(PC_I32, 1, (int64_t[]){3});
  Tensor *c = tensor_new(PC_F32, 2, (int64_t[]){2, 2});
  for (int i = 0; i < 4; i++) tensor_f32(c)[i] = (float)i + 0.25f;
  tensor_f32(a)[1] = 7;
  tensor_i32(b)[2] = -9;
  PcError err = {{0}};
  CHECKF(st_write(p1, (StEntry[]){{"a", a}, {"b", b}}, 2, &err) == 0, "%s", err.msg);
  CHECKF(st_write(p2, (StEntry[]){{"c", c}}, 1, &err) == 0, "%s", err.msg);
  write_text(idx, "{\"metadata\": {\"total_size\": 36}, \"weight_map\": {"
                  "\"a\": \"model-00001-of-00002.safetensors\", "
                  "\"c\": \"model-00002-of-00002.safetensors\", "
                  "\"b\": \"model-00001-of-00002.safetensors\"}}");

  const char *opens[] = {dir, idx};
  for (int k = 0; k < 2; k++) {
    StCheckpoint *ck = NULL;
    CHECKF(st_open(opens[k], &ck, &err) == 0, "%s", err.msg);
    if (!ck) continue;
    CHECK(st_count(ck) == 3);
    CHECK(strcmp(st_find(ck, "a")->file, p1) == 0);
    CHECK(strcmp(st_find(ck, "b")->file, p1) == 0);
    CHECK(strcmp(st_find(ck, "c")->file, p2) == 0);
    Tensor *t = NULL;
    CHECKF(st_read(ck, "c", &t, &err) == 0, "%s", err.msg);
    if (t) CHECK(tensor_same_shape(t, c) && memcmp(t->data, c->data, 16) == 0);
    tensor_free(t);
    CHECKF(st_read(ck, "b", &t, &err) == 0, "%s", err.msg);
    if (t) CHECK(tensor_i32(t)[2] == -9);
    tensor_free(t);
    st_close(ck);
  }

  /* a lone model.safetensors in a folder */
  char dir1[512];
  TPATH(dir1, "single");
  CHECK(mkdir(dir1, 0755) == 0);
  TPATH(p, "single/model.safetensors");
  CHECKF(st_write(p, (StEntry[]){{"a", a}}, 1, &err) == 0, "%s", err.msg);
  StCheckpoint *ck = NULL;
  CHECKF(st_open(dir1, &ck, &err) == 0, "%s", err.msg);
  if (ck) CHECK(st_count(ck) == 1 && strcmp(st_get(ck, 0)->file, p) == 0);
  st_close(ck);

  /* broken indexes, opened through their path */
  TPATH(p, "sharded/missing.index.json");
  write_text(p, "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                "\"x\": \"model-00003-of-00003.safetensors\"}}");
  CHECK_OPEN_FAILS(p, "model-00003-of-00003.safetensors: cannot open: No such file or directory");
  CHECK_OPEN_FAILS(p, "missing.index.json: shard of tensor 'x'");

  TPATH(p, "sharded/absent.index.json");
  write_text(p, "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                "\"zz\": \"model-00002-of-00002.safetensors\"}}");
  CHECK_OPEN_FAILS(p, "absent.index.json: tensor 'zz' is listed in shard "
                      "'model-00002-of-00002.safetensors' but absent from it");

  TPATH(p, "sharded/moved.index.json"); /* c is in shard 2, not 1 */
  write_text(p, "{\"weight_map\": {\"c\": \"model-00001-of-00002.safetensors\", "
                "\"a\": \"model-00002-of-00002.safetensors\"}}");
  CHECK_OPEN_FAILS(p, "tensor 'c' is listed in shard 'model-00001-of-00002.safetensors' but absent");

  char pd[512];
  TPATH(pd, "sharded/dup.safetensors");
  CHECKF(st_write(pd, (StEntry[]){{"d", c}, {"a", a}}, 2, &err) == 0, "%s", err.msg);
  TPATH(p, "sharded/dup.index.json");
  write_text(p, "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                "\"d\": \"dup.safetensors\"}}");
  CHECK_OPEN_FAILS(p, "tensor 'a' appears in both");

  TPATH(pd, "sharded/broken.safetensors");
  write_text(pd, "abc");
  TPATH(p, "sharded/broken.index.json");
  write_text(p, "{\"weight_map\": {\"a\": \"broken.safetensors\"}}");
  CHECK_OPEN_FAILS(p, "broken.safetensors: file is 3 bytes, too short");

  TPATH(p, "sharded/notjson.index.json");
  write_text(p, "{\"weight_map\": ");
  CHECK_OPEN_FAILS(p, "notjson.index.json: not valid JSON");
  TPATH(p, "sharded/nomap.index.json");
  write_text(p, "{\"metadata\": {}}");
  CHECK_OPEN_FAILS(p, "nomap.index.json: no \"weight_map\" object");
  TPATH(p, "sharded/badmap.index.json");
  write_text(p, "{\"weight_map\": {\"a\": 3}}");
  CHECK_OPEN_FAILS(p, "badmap.index.json: weight_map entry for tensor 'a' is not a file name");

  /* a folder holding neither file */
  char empty[512];
  TPATH(empty, "empty_folder");
  CHECK(mkdir(empty, 0755) == 0);
  CHECK_OPEN_FAILS(empty, "no model.safetensors or model.safetensors.index.json in this folder");

  tensor_free(a);
  tensor_free(b);
  tensor_free(c);
}

static void test_malformed(void) {
  char p[512];
  TPATH(p, "short.safetensors");
  write_bytes(p, "\x02\0\0\0\0", 5);
  CHECK_OPEN_FAILS(p, "short.safetensors: file is 5 bytes, too short");
  write_bytes(p, "", 0);
  CHECK_OPEN_FAILS(p, "short.safetensors: file is 0 bytes, too short");
  write_bytes(p, "\xe8\x03\0\0\0\0\0\0{}", 10);
  CHECK_OPEN_FAILS(p, "short.safetensors: header length 1000 is larger than the file (10 bytes)");
  CHECK_OPEN_FAILS("/nonexistent-pc/model.safetensors", "cannot open: No such file or directory");

  CHECK_BAD_HEADER("", 0, "header is not valid JSON");
  CHECK_BAD_HEADER("{\"w\": ", 0, "header is not valid JSON");
  CHECK_BAD_HEADER("{} x", 0, "header is not valid JSON (at byte 3 of 4)");
  CHECK_BAD_HEADER("[1, 2]", 0, "header is not a JSON object");
  CHECK_BAD_HEADER("{\"w\": 5}", 0, "tensor 'w': entry 5 is not a JSON object");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
                   "tensor 'w': unknown dtype 'F8_E4M3'");
  CHECK_BAD_HEADER("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                   "tensor 'w': dtype (missing) is not a string");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
                   "tensor 'w': shape [2,-1] must hold non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4,
                   "tensor 'w': shape [2.5] must hold non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8,
                   "tensor 'w': shape [\"2\"] must hold non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": 3, \"data_offsets\": [0, 12]}}", 12,
                   "tensor 'w': shape 3 is not an array");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
                   4, "tensor 'w': shape [1,1,1,1,1,1,1] has rank 7, more than the supported 6");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [67108864, 67108864, 67108864, 0], "
                   "\"data_offsets\": [0, 0]}}",
                   0, "tensor 'w': shape [67108864,67108864,67108864,0] is too large");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
                   "tensor 'w': data_offsets [0] must be two non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
                   "tensor 'w': data_offsets [0,4,8] must be two non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", 4,
                   "tensor 'w': data_offsets [\"0\",4] must be two non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 4]}}", 4,
                   "tensor 'w': data_offsets [-4,4] must be two non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.5]}}", 8,
                   "tensor 'w': data_offsets [0,4.5] must be two non-negative integers");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
                   "tensor 'w': data_offsets [8, 4] begin after they end");
  CHECK_BAD_HEADER("{\"transformer.h.0.ln_1.weight\": {\"dtype\": \"F32\", \"shape\": [100], "
                   "\"data_offsets\": [100, 500]}}",
                   300,
                   "bad.safetensors: tensor 'transformer.h.0.ln_1.weight': data_offsets [100, 500] "
                   "point past the end of the file (300 bytes of data)");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
                   "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
                   "tensor 'w': shape [] of BF16 needs 2 bytes but data_offsets [0, 4] hold 4");
  CHECK_BAD_HEADER("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                   "\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                   4, "tensor 'w' appears twice");

  /* trailing spaces are padding, and __metadata__ is not a tensor */
  TPATH(p, "ok.safetensors");
  write_raw(p, "{\"__metadata__\": {\"format\": \"pt\"}, "
               "\"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}    ",
            "\x01\x02", 2);
  StCheckpoint *ck = NULL;
  PcError err = {{0}};
  CHECKF(st_open(p, &ck, &err) == 0, "%s", err.msg);
  if (ck) CHECK(st_count(ck) == 1 && st_find(ck, "__metadata__") == NULL);
  st_close(ck);
}

/* A real checkpoint written by Hugging Face transformers. */
static void test_fake_gpt2(void) {
  const char *data = check_shared_data("the fake_gpt2 safetensors checks");
  if (!data) return;
  char p[1024];
  snprintf(p, sizeof p, "%s/models/fake_gpt2/model.safetensors", data);
  if (access(p, R_OK) != 0) {
    printf("SKIP: %s is absent\n", p);
    return;
  }
  StCheckpoint *ck = NULL;
  PcError err = {{0}};
  CHECKF(st_open(p, &ck, &err) == 0, "%s", err.msg);
  if (!ck) return;
  const StTensorInfo *wte = st_find(ck, "transformer.wte.weight");
  CHECK(wte != NULL);
  if (wte) {
    CHECK(wte->dtype == ST_F32 && wte->rank == 2 && wte->dim[0] == 50257 && wte->dim[1] == 2);
    CHECK(wte->nbytes == 50257 * 2 * 4);
  }
  for (size_t i = 0; i < st_count(ck); i++) {
    const StTensorInfo *ti = st_get(ck, i);
    Tensor *t = NULL;
    CHECKF(st_read(ck, ti->name, &t, &err) == 0, "%s", err.msg);
    if (!t) continue;
    int64_t n = tensor_numel(t), bad = 0;
    for (int64_t j = 0; j < n; j++) bad += !isfinite(tensor_f32(t)[j]);
    CHECKF(t->dtype == PC_F32 && bad == 0, "tensor '%s': %lld non-finite values", ti->name,
           (long long)bad);
    tensor_free(t);
  }
  st_close(ck);
}

int main(void) {
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_dtypes();
  test_sharded();
  test_malformed();
  test_fake_gpt2();
  nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_exit();
}
