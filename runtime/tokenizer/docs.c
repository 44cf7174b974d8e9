#include "runtime/tokenizer/docs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/mem.h"

struct DocReader {
  char *path;
  const char *data; /* the mapped file */
  size_t size, pos;
  uint64_t line;    /* line number of pos, from 1 */
  DocsSplit split;
  bool jsonl;
  char *field;
  VEC(char) buf; /* the current JSONL document */
};

int docs_is_jsonl(const char *path) {
  size_t n = strlen(path);
  return (n >= 6 && !strcmp(path + n - 6, ".jsonl")) || (n >= 7 && !strcmp(path + n - 7, ".ndjson"));
}

int docs_open(const char *path, DocsSplit split, const char *json_field, DocReader **out, PcError *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return pc_errorf(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return pc_errorf(err, "%s: not a regular file", path);
  }
  const char *data = NULL;
  if (st.st_size > 0) {
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      close(fd);
      return pc_errorf(err, "%s: cannot map: %s", path, strerror(errno));
    }
    madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
    data = m;
  }
  close(fd);
  DocReader *r = pc_xcalloc(1, sizeof *r);
  r->path = pc_xstrdup(path);
  r->data = data;
  r->size = (size_t)st.st_size;
  r->line = 1;
  r->split = split;
  r->jsonl = docs_is_jsonl(path);
  r->field = pc_xstrdup(json_field ? json_field : "text");
  *out = r;
  return 0;
}

static size_t line_end(const DocReader *r, size_t from) {
  const char *nl = memchr(r->data + from, '\n', r->size - from);
  return nl ? (size_t)(nl - r->data) : r->size;
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

static int next_jsonl(DocReader *r, const char **text, size_t *len, PcError *err) {
  while (r->pos < r->size) {
    size_t start = r->pos, end = line_end(r, start);
    uint64_t line = r->line++;
    r->pos = end < r->size ? end + 1 : end;
    if (blank(r->data + start, end - start)) continue;
    cJSON *j = cJSON_ParseWithLength(r->data + start, end - start);
    if (!j) return pc_errorf(err, "%s:%llu: invalid JSON", r->path, (unsigned long long)line);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, r->field);
    if (!cJSON_IsString(f)) {
      cJSON_Delete(j);
      return pc_errorf(err, "%s:%llu: no string field \"%s\"", r->path, (unsigned long long)line, r->field);
    }
    size_t n = strlen(f->valuestring);
    r->buf.n = 0;
    vec_reserve(&r->buf, n + 1);
    memcpy(r->buf.a, f->valuestring, n);
    r->buf.n = n;
    cJSON_Delete(j);
    *text = r->buf.a;
    *len = n;
    return 1;
  }
  return 0;
}

int docs_next(DocReader *r, const char **text, size_t *len, PcError *err) {
  if (r->jsonl) return next_jsonl(r, text, len, err);
  size_t start = r->pos, end;
  switch (r->split) {
    case DOCS_FILE:
      if (start >= r->size) return 0;
      end = r->pos = r->size;
      break;
    case DOCS_LINE: /* a line without its "\n" or "\r\n"; empty lines are no documents */
      do {
        if (start >= r->size) {
          r->pos = r->size;
          return 0;
        }
        end = line_end(r, start);
        r->pos = end < r->size ? end + 1 : end;
        if (end > start && r->data[end - 1] == '\r') end--;
        if (end > start) break;
        start = r->pos;
      } while (1);
      break;
    case DOCS_PARAGRAPH:
    default: /* lines up to a blank line, without the last "\n" */
      for (;;) {
        if (start >= r->size) {
          r->pos = r->size;
          return 0;
        }
        size_t e = line_end(r, start);
        if (!blank(r->data + start, e - start)) break;
        start = e < r->size ? e + 1 : e;
      }
      end = start;
      while (end < r->size) {
        size_t e = line_end(r, end);
        if (blank(r->data + end, e - end)) break;
        end = e < r->size ? e + 1 : e;
      }
      r->pos = end;
      if (r->data[end - 1] == '\n') end--;
      if (end > start && r->data[end - 1] == '\r') end--;
      break;
  }
  *text = r->data + start;
  *len = end - start;
  return 1;
}

uint64_t docs_offset(const DocReader *r) { return r->pos; }
uint64_t docs_size(const DocReader *r) { return r->size; }

void docs_close(DocReader *r) {
  if (!r) return;
  if (r->data) munmap((void *)r->data, r->size);
  free(r->path);
  free(r->field);
  vec_free(&r->buf);
  free(r);
}
