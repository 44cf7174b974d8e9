#include "runtime/train/loader.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/base/file.h"
#include "runtime/base/mem.h"
#include "runtime/rng.h"

struct DataSplit {
  VEC(Shard) shards;
  VEC(char *) paths;
};

static int add_shard(DataSplit *d, const char *path, PcError *err) {
  Shard s;
  if (shard_open(path, &s, err) < 0) return -1;
  vec_push(&d->shards, s);
  vec_push(&d->paths, pc_xstrdup(path));
  return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* SPLIT_*.bin in dir, in name order. */
static int add_glob(DataSplit *d, const char *dir, const char *split, PcError *err) {
  DIR *dh = opendir(dir);
  if (!dh) return pc_errorf(err, "%s: %s", dir, strerror(errno));
  VEC(char *) names = {0};
  size_t plen = strlen(split);
  for (struct dirent *e; (e = readdir(dh));) {
    size_t n = strlen(e->d_name);
    if (n > plen + 5 && !strncmp(e->d_name, split, plen) && e->d_name[plen] == '_' && !strcmp(e->d_name + n - 4, ".bin"))
      vec_push(&names, pc_xstrdup(e->d_name));
  }
  closedir(dh);
  if (names.n) qsort(names.a, names.n, sizeof *names.a, by_name); /* qsort(NULL, 0) is undefined */
  int rc = 0;
  for (size_t i = 0; i < names.n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names.a[i]);
    if (!rc) rc = add_shard(d, path, err);
    free(names.a[i]);
  }
  vec_free(&names);
  return rc;
}

static int add_manifest(DataSplit *d, const char *dir, const char *manifest, const char *split, PcError *err) {
  char *text = pc_read_file(manifest, NULL, err);
  if (!text) return -1;
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, split);
  int rc = 0;
  if (!cJSON_IsArray(files)) {
    rc = pc_errorf(err, "%s: no \"%s\" list of shards (is it a manifest written by ponder prepare?)", manifest, split);
  } else {
    const cJSON *e;
    cJSON_ArrayForEach(e, files) {
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "file");
      if (!cJSON_IsString(name)) {
        rc = pc_errorf(err, "%s: a \"%s\" entry has no \"file\"", manifest, split);
        break;
      }
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, name->valuestring);
      if ((rc = add_shard(d, path, err)) < 0) break;
    }
  }
  cJSON_Delete(root);
  return rc;
}

int data_split_open(const char *path, const char *split, DataSplit **out, PcError *err) {
  *out = NULL;
  DataSplit *d = pc_xcalloc(1, sizeof *d);
  struct stat st;
  int rc;
  if (stat(path, &st) < 0) {
    rc = pc_errorf(err, "%s: %s", path, strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    rc = strcmp(split, "train") ? 0 : add_shard(d, path, err);
  } else {
    char manifest[4096];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", path);
    rc = access(manifest, R_OK) == 0 ? add_manifest(d, path, manifest, split, err) : add_glob(d, path, split, err);
  }
  if (!rc && !d->shards.n && !strcmp(split, "train")) rc = pc_errorf(err, "%s: no %s shards", path, split);
  if (rc) {
    data_split_close(d);
    return -1;
  }
  *out = d;
  return 0;
}

void data_split_close(DataSplit *d) {
  if (!d) return;
  for (size_t i = 0; i < d->shards.n; i++) {
    shard_close(&d->shards.a[i]);
    free(d->paths.a[i]);
  }
  vec_free(&d->shards);
  vec_free(&d->paths);
  free(d);
}

uint64_t data_split_tokens(const DataSplit *d) {
  uint64_t n = 0;
  for (size_t i = 0; i < d->shards.n; i++) n += d->shards.a[i].count;
  return n;
}

size_t data_split_nshards(const DataSplit *d) { return d->shards.n; }

uint32_t data_split_vocab(const DataSplit *d) {
  uint32_t v = 0;
  for (size_t i = 0; i < d->shards.n; i++)
    if (d->shards.a[i].vocab_size > v) v = d->shards.a[i].vocab_size;
  return v;
}

/* ---- the loader ------------------------------------------------------------ */

int loader_init(Loader *l, const DataSplit *d, int64_t B, int64_t T, int shuffle, uint64_t seed, PcError *err) {
  *l = (Loader){.data = d, .B = B, .T = T, .shuffle = shuffle, .seed = seed, .perm_epoch = UINT64_MAX};
  l->first_chunk = pc_xcalloc(d->shards.n + 1, sizeof *l->first_chunk);
  uint64_t longest = 0;
  for (size_t i = 0; i < d->shards.n; i++) {
    uint64_t c = d->shards.a[i].count;
    l->first_chunk[i] = l->n_chunks;
    l->n_chunks += c > (uint64_t)T ? (c - 1) / (uint64_t)T : 0;
    if (c > longest) longest = c;
  }
  l->first_chunk[d->shards.n] = l->n_chunks;
  if (!l->n_chunks) {
    loader_free(l);
    return pc_errorf(err, "sequence length %lld needs %lld tokens in one shard, but the largest shard has %llu",
                     (long long)T, (long long)T + 1, (unsigned long long)longest);
  }
  return 0;
}

void loader_free(Loader *l) {
  free(l->first_chunk);
  free(l->perm);
  l->first_chunk = l->perm = NULL;
}

static void make_perm(Loader *l) {
  if (l->perm_epoch == l->pos.epoch) return;
  if (!l->perm) l->perm = pc_xmalloc(pc_mul_size(l->n_chunks, sizeof *l->perm));
  for (uint64_t i = 0; i < l->n_chunks; i++) l->perm[i] = i;
  char name[64];
  snprintf(name, sizeof name, "epoch %llu", (unsigned long long)l->pos.epoch);
  Rng r = rng_seeded(l->seed, name);
  for (uint64_t i = l->n_chunks; i > 1; i--) { /* Fisher-Yates */
    uint64_t j = rng_u64(&r) % i, t = l->perm[i - 1];
    l->perm[i - 1] = l->perm[j];
    l->perm[j] = t;
  }
  l->perm_epoch = l->pos.epoch;
}

/* The shard and token offset of global chunk c. */
static void locate(const Loader *l, uint64_t c, size_t *shard, uint64_t *offset) {
  size_t lo = 0, hi = l->data->shards.n; /* last shard whose first chunk <= c */
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (l->first_chunk[mid] <= c) lo = mid;
    else hi = mid;
  }
  while (l->first_chunk[lo + 1] <= c) lo++; /* skip shards with no chunks */
  *shard = lo;
  *offset = (c - l->first_chunk[lo]) * (uint64_t)l->T;
}

void loader_next(Loader *l, int32_t *ids, int32_t *targets) {
  for (int64_t b = 0; b < l->B; b++) {
    if (l->pos.index == l->n_chunks) {
      l->pos.epoch++;
      l->pos.index = 0;
    }
    uint64_t c = l->pos.index++;
    if (l->shuffle) {
      make_perm(l);
      c = l->perm[c];
    }
    size_t s;
    uint64_t off;
    locate(l, c, &s, &off);
    const Shard *sh = &l->data->shards.a[s];
    for (int64_t t = 0; t < l->T; t++) {
      ids[b * l->T + t] = (int32_t)shard_get(sh, off + (uint64_t)t);
      targets[b * l->T + t] = (int32_t)shard_get(sh, off + (uint64_t)t + 1);
    }
  }
}

void loader_seek(Loader *l, LoaderPos pos) { l->pos = pos; }
