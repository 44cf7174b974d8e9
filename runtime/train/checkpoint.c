#include "runtime/train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/file.h"
#include "runtime/hf_import.h"
#include "runtime/safetensors.h"

static int fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

static int remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return unlink(dir);
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    remove_tree(path);
  }
  closedir(d);
  return rmdir(dir);
}

static int is_ckpt_name(const char *name) {
  return !strncmp(name, "ckpt-", 5) && strlen(name) == 13 && strspn(name + 5, "0123456789") == 8;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Removes leftovers of interrupted writes and all but the newest `keep`. */
static void prune(const char *run_dir, int keep) {
  DIR *d = opendir(run_dir);
  if (!d) return;
  VEC(char *) names = {0};
  for (struct dirent *e; (e = readdir(d));) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
    if (!strncmp(e->d_name, ".ckpt-", 6)) remove_tree(path);
    else if (is_ckpt_name(e->d_name)) vec_push(&names, pc_xstrdup(e->d_name));
  }
  closedir(d);
  qsort(names.a, names.n, sizeof *names.a, by_name);
  for (size_t i = 0; i < names.n; i++) {
    if (keep > 0 && i + (size_t)keep < names.n) {
      char path[4200];
      snprintf(path, sizeof path, "%s/%s", run_dir, names.a[i]);
      remove_tree(path);
    }
    free(names.a[i]);
  }
  vec_free(&names);
}

static int save_weights(const char *path, const Params *p, PcError *err) {
  StEntry *e = pc_xcalloc(p->spec.n + 1, sizeof *e);
  Tensor **t = pc_xcalloc(p->spec.n + 1, sizeof *t);
  int rc = 0;
  for (size_t i = 0; i < p->spec.n && !rc; i++) {
    if (!(t[i] = hf_export(&p->spec.a[i], p->value[i]))) rc = pc_errorf(err, "out of memory saving '%s'", p->spec.a[i].name);
    e[i] = (StEntry){p->spec.a[i].name, t[i]};
  }
  if (!rc) rc = st_write(path, e, p->spec.n, err);
  for (size_t i = 0; i < p->spec.n; i++) tensor_free(t[i]);
  free(t);
  free(e);
  return rc;
}

static int save_moments(const char *path, const Params *p, const AdamW *o, PcError *err) {
  size_t n = o->n;
  StEntry *e = pc_xcalloc(2 * n + 1, sizeof *e);
  char **names = pc_xcalloc(2 * n + 1, sizeof *names);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(p->spec.a[i].name) + 3;
    names[2 * i] = pc_xmalloc(len);
    names[2 * i + 1] = pc_xmalloc(len);
    snprintf(names[2 * i], len, "m.%s", p->spec.a[i].name);
    snprintf(names[2 * i + 1], len, "v.%s", p->spec.a[i].name);
    e[2 * i] = (StEntry){names[2 * i], o->m[i]};
    e[2 * i + 1] = (StEntry){names[2 * i + 1], o->v[i]};
  }
  int rc = st_write(path, e, 2 * n, err);
  for (size_t i = 0; i < 2 * n; i++) free(names[i]);
  free(names);
  free(e);
  return rc;
}

int ckpt_save(const char *run_dir, int64_t step, const Params *p, const AdamW *o, const CkptWrite *w, PcError *err) {
  char tmp[4096], final[4096], path[4200];
  snprintf(tmp, sizeof tmp, "%s/.ckpt-%08lld.tmp", run_dir, (long long)step);
  snprintf(final, sizeof final, "%s/ckpt-%08lld", run_dir, (long long)step);
  remove_tree(tmp);
  if (mkdir(tmp, 0755) < 0) return pc_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
  int rc = 0;
  snprintf(path, sizeof path, "%s/model.safetensors", tmp);
  if (!rc) rc = save_weights(path, p, err);
  if (!rc && w->crash_midway) raise(SIGKILL); /* tests: a crash in the middle of a checkpoint */
  snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
  if (!rc) rc = save_moments(path, p, o, err);
  snprintf(path, sizeof path, "%s/config.json", tmp);
  if (!rc) rc = pc_write_file_atomic(path, w->config_json, strlen(w->config_json), err);
  snprintf(path, sizeof path, "%s/state.json", tmp);
  if (!rc) rc = pc_write_file_atomic(path, w->state_json, strlen(w->state_json), err);
  if (!rc && fsync_path(tmp) < 0) rc = pc_errorf(err, "%s: fsync: %s", tmp, strerror(errno));
  if (!rc) {
    remove_tree(final); /* the same step saved again after a resume */
    if (rename(tmp, final) < 0) rc = pc_errorf(err, "%s: cannot rename into place: %s", final, strerror(errno));
  }
  if (rc) {
    remove_tree(tmp);
    return -1;
  }
  fsync_path(run_dir);
  prune(run_dir, w->keep);
  return 0;
}

int ckpt_latest(const char *run_dir, char *path, size_t n) {
  DIR *d = opendir(run_dir);
  if (!d) return 0;
  char best[300] = "";
  for (struct dirent *e; (e = readdir(d));)
    if (is_ckpt_name(e->d_name) && strcmp(e->d_name, best) > 0) snprintf(best, sizeof best, "%s", e->d_name);
  closedir(d);
  if (!best[0]) return 0;
  snprintf(path, n, "%s/%s", run_dir, best);
  return 1;
}

char *ckpt_state(const char *dir, PcError *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/state.json", dir);
  return pc_read_file(path, NULL, err);
}

int ckpt_load(const char *dir, Params *p, AdamW *o, PcError *err) {
  char path[4200];
  StCheckpoint *ck;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (st_open(path, &ck, err) < 0) return -1;
  int rc = hf_import(p, ck, err);
  st_close(ck);
  if (rc) return -1;
  snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
  if (st_open(path, &ck, err) < 0) return -1;
  for (size_t i = 0; i < o->n && !rc; i++) {
    for (int which = 0; which < 2 && !rc; which++) {
      char name[600];
      snprintf(name, sizeof name, "%c.%s", which ? 'v' : 'm', p->spec.a[i].name);
      Tensor *t;
      if (st_read(ck, name, &t, err) < 0) {
        rc = -1;
        break;
      }
      Tensor *dst = which ? o->v[i] : o->m[i];
      if (!tensor_same_shape(t, dst)) rc = pc_errorf(err, "%s: '%s' has the wrong shape", path, name);
      else memcpy(dst->data, t->data, tensor_bytes(t));
      tensor_free(t);
    }
  }
  st_close(ck);
  return rc;
}
