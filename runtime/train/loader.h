/* Batches of token sequences from token shards (docs/data-format.md).
 *
 * A split (train or val) is a list of shards. Each shard is cut into
 * chunks of T+1 tokens that overlap by one (inputs are the first T, targets
 * the last T); chunks never cross shards. A loader hands out B chunks per
 * batch, in order or shuffled (a fresh seeded permutation per epoch), and
 * its position (epoch, index) is all a checkpoint needs to resume it. */
#ifndef PC_LOADER_H
#define PC_LOADER_H

#include <stdint.h>

#include "runtime/base/err.h"
#include "runtime/tokenizer/shard.h"

typedef struct DataSplit DataSplit;

/* `path`: a folder made by `ponder prepare` (its manifest.json lists the
 * shards of each split; without one, files named SPLIT_*.bin) or, for the
 * train split, a single .bin shard. Every shard is opened and checked. */
int data_split_open(const char *path, const char *split, DataSplit **out, PcError *err);
void data_split_close(DataSplit *d);
uint64_t data_split_tokens(const DataSplit *d);
size_t data_split_nshards(const DataSplit *d);
/* The largest token id the shards' headers allow (their vocab_size), 0 if unknown. */
uint32_t data_split_vocab(const DataSplit *d);

typedef struct {
  uint64_t epoch, index; /* index: next chunk within the epoch's order */
} LoaderPos;

typedef struct {
  const DataSplit *data;
  int64_t B, T;
  int shuffle;
  uint64_t seed;
  LoaderPos pos;
  uint64_t n_chunks;
  uint64_t *first_chunk; /* per shard: the global number of its first chunk */
  uint64_t *perm;        /* this epoch's order when shuffling */
  uint64_t perm_epoch;
} Loader;

/* Errors when no shard holds T+1 tokens. */
int loader_init(Loader *l, const DataSplit *d, int64_t B, int64_t T, int shuffle, uint64_t seed, PcError *err);
void loader_free(Loader *l);
/* Fills ids and targets, each [B, T]. */
void loader_next(Loader *l, int32_t *ids, int32_t *targets);
void loader_seek(Loader *l, LoaderPos pos);

#endif
