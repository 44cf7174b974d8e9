#include "runtime/tokenizer/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/mem.h"

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
  wr32(p, (uint32_t)v);
  wr32(p + 4, (uint32_t)(v >> 32));
}

/* ---- reading ---- */

static int check_header(const unsigned char *h, size_t size, Shard *s, PcError *err) {
  if (size < SHARD_HEADER_BYTES) return pc_errorf(err, "truncated header (%zu bytes; a shard starts with 64)", size);
  if (memcmp(h, SHARD_MAGIC, 8)) return pc_errorf(err, "not a token shard (no PCTOKENS magic)");
  uint32_t version = rd32(h + 8), hdr = rd32(h + 12), width = rd32(h + 16), eos = rd32(h + 32);
  if (version != SHARD_VERSION) return pc_errorf(err, "unsupported shard version %u (this reader knows %d)", version, SHARD_VERSION);
  if (hdr < SHARD_HEADER_BYTES || hdr > size) return pc_errorf(err, "bad header size %u", hdr);
  if (width != 2 && width != 4) return pc_errorf(err, "bad token width %u (2 for uint16 or 4 for uint32)", width);
  uint64_t count = rd64(h + 24), room = (size - hdr) / width;
  if (count > room) return pc_errorf(err, "truncated: the header says %llu tokens, the file holds %llu",
                                     (unsigned long long)count, (unsigned long long)room);
  if (hdr + count * width != size)
    return pc_errorf(err, "%zu bytes after the %llu tokens", (size_t)(size - hdr - count * width), (unsigned long long)count);
  s->token_bytes = width;
  s->count = count;
  s->vocab_size = rd32(h + 20);
  s->eos_id = eos == SHARD_NO_EOS ? -1 : (int64_t)eos;
  if (s->vocab_size && s->eos_id >= s->vocab_size) return pc_errorf(err, "EOS id %u is outside the vocabulary of %u", eos, s->vocab_size);
  s->tokens = h + hdr;
  return 0;
}

int shard_open(const char *path, Shard *s, PcError *err) {
  memset(s, 0, sizeof *s);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return pc_errorf(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return pc_errorf(err, "%s: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  void *m = NULL;
  if (size) {
    m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      close(fd);
      return pc_errorf(err, "%s: cannot map: %s", path, strerror(errno));
    }
  }
  close(fd);
  if (check_header(m, size, s, err)) {
    if (m) munmap(m, size);
    memset(s, 0, sizeof *s);
    return pc_error_prefix(err, "%s", path);
  }
  s->map = m;
  s->map_size = size;
  return 0;
}

void shard_close(Shard *s) {
  if (s->map) munmap(s->map, s->map_size);
  memset(s, 0, sizeof *s);
}

int shard_read(const Shard *s, uint64_t start, uint32_t *out, size_t n, PcError *err) {
  if (start > s->count || n > s->count - start)
    return pc_errorf(err, "reading tokens %llu..%llu of a shard of %llu", (unsigned long long)start,
                     (unsigned long long)(start + n), (unsigned long long)s->count);
  for (size_t i = 0; i < n; i++) out[i] = shard_get(s, start + i);
  return 0;
}

int shard_check_tokens(const Shard *s, PcError *err) {
  if (!s->vocab_size) return 0;
  for (uint64_t i = 0; i < s->count; i++) {
    uint32_t v = shard_get(s, i);
    if (v >= s->vocab_size)
      return pc_errorf(err, "token %llu is %u, outside the vocabulary of %u", (unsigned long long)i, v, s->vocab_size);
  }
  return 0;
}

/* ---- writing one shard ---- */

struct ShardWriter {
  char *path, *tmp;
  FILE *f;
  uint32_t width, vocab_size, eos;
  uint64_t count;
  unsigned char buf[1 << 16];
  size_t nbuf;
  bool failed;
};

static void header(const ShardWriter *w, unsigned char h[SHARD_HEADER_BYTES]) {
  memset(h, 0, SHARD_HEADER_BYTES);
  memcpy(h, SHARD_MAGIC, 8);
  wr32(h + 8, SHARD_VERSION);
  wr32(h + 12, SHARD_HEADER_BYTES);
  wr32(h + 16, w->width);
  wr32(h + 20, w->vocab_size);
  wr64(h + 24, w->count);
  wr32(h + 32, w->eos);
}

int shard_writer_open(const char *path, uint32_t token_bytes, uint32_t vocab_size, int64_t eos_id, ShardWriter **out,
                      PcError *err) {
  *out = NULL;
  if (token_bytes != 2 && token_bytes != 4) return pc_errorf(err, "token width must be 2 or 4, not %u", token_bytes);
  ShardWriter *w = pc_xcalloc(1, sizeof *w);
  w->path = pc_xstrdup(path);
  size_t n = strlen(path) + 5;
  w->tmp = pc_xmalloc(n);
  snprintf(w->tmp, n, "%s.tmp", path);
  w->width = token_bytes;
  w->vocab_size = vocab_size;
  w->eos = eos_id < 0 ? SHARD_NO_EOS : (uint32_t)eos_id;
  w->f = fopen(w->tmp, "wb");
  if (!w->f) {
    pc_errorf(err, "%s: cannot create: %s", w->tmp, strerror(errno));
    free(w->path);
    free(w->tmp);
    free(w);
    return -1;
  }
  unsigned char h[SHARD_HEADER_BYTES];
  header(w, h);
  if (fwrite(h, 1, sizeof h, w->f) != sizeof h) w->failed = true;
  *out = w;
  return 0;
}

static void drain(ShardWriter *w) {
  if (w->nbuf && fwrite(w->buf, 1, w->nbuf, w->f) != w->nbuf) w->failed = true;
  w->nbuf = 0;
}

int shard_writer_put(ShardWriter *w, const uint32_t *ids, size_t n, PcError *err) {
  uint64_t limit = w->width == 2 ? 0xffffu : 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] > limit) return pc_errorf(err, "token %u does not fit in uint16", ids[i]);
    if (w->nbuf + 4 > sizeof w->buf) drain(w);
    unsigned char *p = w->buf + w->nbuf;
    p[0] = (unsigned char)ids[i];
    p[1] = (unsigned char)(ids[i] >> 8);
    if (w->width == 4) {
      p[2] = (unsigned char)(ids[i] >> 16);
      p[3] = (unsigned char)(ids[i] >> 24);
    }
    w->nbuf += w->width;
  }
  w->count += n;
  if (w->failed) return pc_errorf(err, "%s: write error: %s", w->tmp, strerror(errno));
  return 0;
}

uint64_t shard_writer_count(const ShardWriter *w) { return w->count; }

static void writer_free(ShardWriter *w) {
  free(w->path);
  free(w->tmp);
  free(w);
}

int shard_writer_close(ShardWriter *w, PcError *err) {
  drain(w);
  unsigned char h[SHARD_HEADER_BYTES];
  header(w, h);
  if (fseek(w->f, 0, SEEK_SET) || fwrite(h, 1, sizeof h, w->f) != sizeof h) w->failed = true;
  if (fclose(w->f)) w->failed = true;
  int rc = 0;
  if (w->failed || rename(w->tmp, w->path)) {
    rc = pc_errorf(err, "%s: write error: %s", w->path, strerror(errno));
    remove(w->tmp);
  }
  writer_free(w);
  return rc;
}

void shard_writer_abort(ShardWriter *w) {
  if (!w) return;
  fclose(w->f);
  remove(w->tmp);
  writer_free(w);
}

/* ---- a split of numbered shards ---- */

struct ShardSet {
  char *dir, *prefix;
  uint64_t per_shard, total;
  uint32_t width, vocab_size;
  int64_t eos;
  ShardWriter *cur;
  VEC(char *) names;
  VEC(uint64_t) counts;
};

int shard_set_open(const char *dir, const char *prefix, uint64_t shard_tokens, uint32_t token_bytes,
                   uint32_t vocab_size, int64_t eos_id, ShardSet **out, PcError *err) {
  *out = NULL;
  if (!shard_tokens) return pc_errorf(err, "tokens per shard must be at least 1");
  if (token_bytes != 2 && token_bytes != 4) return pc_errorf(err, "token width must be 2 or 4, not %u", token_bytes);
  ShardSet *s = pc_xcalloc(1, sizeof *s);
  s->dir = pc_xstrdup(dir);
  s->prefix = pc_xstrdup(prefix);
  s->per_shard = shard_tokens;
  s->width = token_bytes;
  s->vocab_size = vocab_size;
  s->eos = eos_id;
  *out = s;
  return 0;
}

static int finish_current(ShardSet *s, PcError *err) {
  if (!s->cur) return 0;
  vec_push(&s->counts, shard_writer_count(s->cur));
  int rc = shard_writer_close(s->cur, err);
  s->cur = NULL;
  return rc;
}

int shard_set_put(ShardSet *s, const uint32_t *ids, size_t n, PcError *err) {
  while (n) {
    if (!s->cur) {
      char name[256], path[4096];
      snprintf(name, sizeof name, "%s_%06zu.bin", s->prefix, s->names.n);
      snprintf(path, sizeof path, "%s/%s", s->dir, name);
      if (shard_writer_open(path, s->width, s->vocab_size, s->eos, &s->cur, err)) return -1;
      vec_push(&s->names, pc_xstrdup(name));
    }
    uint64_t room = s->per_shard - shard_writer_count(s->cur);
    size_t k = n < room ? n : (size_t)room;
    if (shard_writer_put(s->cur, ids, k, err)) return -1;
    s->total += k;
    ids += k;
    n -= k;
    if (shard_writer_count(s->cur) == s->per_shard && finish_current(s, err)) return -1;
  }
  return 0;
}

int shard_set_close(ShardSet *s, PcError *err) { return finish_current(s, err); }

size_t shard_set_nfiles(const ShardSet *s) { return s->counts.n; }

const char *shard_set_file(const ShardSet *s, size_t i, uint64_t *tokens) {
  if (tokens) *tokens = s->counts.a[i];
  return s->names.a[i];
}

uint64_t shard_set_tokens(const ShardSet *s) { return s->total; }

void shard_set_free(ShardSet *s) {
  if (!s) return;
  if (s->cur) shard_writer_abort(s->cur);
  for (size_t i = 0; i < s->names.n; i++) free(s->names.a[i]);
  vec_free(&s->names);
  vec_free(&s->counts);
  free(s->dir);
  free(s->prefix);
  free(s);
}
