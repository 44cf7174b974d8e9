/* Token shards, the training data format (docs/data-format.md): a 64-byte
 * little-endian header (magic "PCTOKENS", version, header size, token
 * width, vocabulary size, token count, EOS id) and then the tokens, uint16
 * or uint32, little-endian.
 *
 *   Shard s;
 *   if (shard_open("data/train_000000.bin", &s, &err)) ...   // mmap + checks
 *   for (uint64_t i = 0; i < s.count; i++) use(shard_get(&s, i));
 *   shard_close(&s);
 */
#ifndef PC_SHARD_H
#define PC_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/err.h"

#define SHARD_MAGIC "PCTOKENS"
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 64
#define SHARD_NO_EOS 0xffffffffu

typedef struct {
  const unsigned char *tokens; /* count tokens of token_bytes each, little-endian */
  uint64_t count;
  uint32_t token_bytes; /* 2 (uint16) or 4 (uint32) */
  uint32_t vocab_size;  /* 0 when not recorded */
  int64_t eos_id;       /* -1 when none */
  void *map;
  size_t map_size;
} Shard;

/* Maps a shard read-only and checks its header against the file size. */
int shard_open(const char *path, Shard *s, PcError *err);
void shard_close(Shard *s);

static inline uint32_t shard_get(const Shard *s, uint64_t i) {
  const unsigned char *p = s->tokens + i * s->token_bytes;
  uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8;
  if (s->token_bytes == 4) v |= (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  return v;
}

/* Copies tokens [start, start + n) as uint32; fails past the end. */
int shard_read(const Shard *s, uint64_t start, uint32_t *out, size_t n, PcError *err);
/* Checks that every token is below the vocabulary size (when recorded). */
int shard_check_tokens(const Shard *s, PcError *err);

/* Writing one shard: tokens go to PATH.tmp, which becomes PATH on close. */
typedef struct ShardWriter ShardWriter;
int shard_writer_open(const char *path, uint32_t token_bytes, uint32_t vocab_size, int64_t eos_id, ShardWriter **out,
                      PcError *err);
int shard_writer_put(ShardWriter *w, const uint32_t *ids, size_t n, PcError *err);
uint64_t shard_writer_count(const ShardWriter *w);
/* Finishes the header and renames the file into place; frees w either way. */
int shard_writer_close(ShardWriter *w, PcError *err);
/* Drops the unfinished file; frees w. */
void shard_writer_abort(ShardWriter *w);

/* A split written as numbered shards DIR/PREFIX_000000.bin, ... of at most
 * shard_tokens tokens each; files are made only when tokens arrive. */
typedef struct ShardSet ShardSet;
int shard_set_open(const char *dir, const char *prefix, uint64_t shard_tokens, uint32_t token_bytes,
                   uint32_t vocab_size, int64_t eos_id, ShardSet **out, PcError *err);
int shard_set_put(ShardSet *s, const uint32_t *ids, size_t n, PcError *err);
/* Closes the last shard. The list of files stays readable until freed. */
int shard_set_close(ShardSet *s, PcError *err);
size_t shard_set_nfiles(const ShardSet *s);
/* File name (without the folder) and token count of shard i. */
const char *shard_set_file(const ShardSet *s, size_t i, uint64_t *tokens);
uint64_t shard_set_tokens(const ShardSet *s);
void shard_set_free(ShardSet *s);

#endif
