#include "runtime/base/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/base/mem.h"

char *pc_read_file(const char *path, size_t *len, PcError *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    pc_errorf(err, "%s: %s", path, strerror(errno));
    return NULL;
  }
  VEC(char) s = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    vec_reserve(&s, s.n + n + 1);
    memcpy(s.a + s.n, chunk, n);
    s.n += n;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(s.a);
    pc_errorf(err, "%s: read error", path);
    return NULL;
  }
  if (len) *len = s.n;
  vec_push(&s, '\0');
  return s.a;
}

int pc_write_file_atomic(const char *path, const void *data, size_t len, PcError *err) {
  size_t plen = strlen(path);
  char *tmp = pc_xmalloc(plen + 5);
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    pc_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  int bad = fwrite(data, 1, len, f) != len || fflush(f) || fsync(fileno(f));
  int rc = 0;
  if (fclose(f) || bad || rename(tmp, path)) {
    rc = pc_errorf(err, "%s: cannot write: %s", path, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return rc;
}

int pc_ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}
