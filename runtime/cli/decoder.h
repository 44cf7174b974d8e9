/* Next-token logits for generation, two ways: recomputing the whole
 * sequence every time (the reference behaviour, --no-cache: the engine's
 * logits entry), or feeding only the new tokens to the decode entry, which
 * keeps K+1 KV caches per attention layer, one per pondering pass (DESIGN
 * section 1). */
#ifndef PC_CLI_DECODER_H
#define PC_CLI_DECODER_H

#include "runtime/cli/model_load.h"

typedef struct {
  const LoadedModel *m;
  int cached;
  Tensor **caches;  /* one per kv.N input of the decode entry */
  const char **names;
  size_t n_caches;
  size_t fed;       /* tokens already in the caches */
  int64_t cache_len;
} Decoder;

/* cache_len: positions the caches hold (the decode entry's). */
int decoder_open(Decoder *d, const LoadedModel *m, int cached, PcError *err);
/* The logits of the token after ids[0..n) (vocab floats into row). A
 * cached decoder needs ids to extend what it was fed before. */
int decoder_next(Decoder *d, const uint32_t *ids, size_t n, float *row, PcError *err);
void decoder_close(Decoder *d);

#endif
