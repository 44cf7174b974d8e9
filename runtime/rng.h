/* Deterministic random numbers: xoshiro256** seeded through splitmix64.
 * Streams are values owned by their user; nothing global. */
#ifndef PC_RNG_H
#define PC_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
  double spare; /* second Box-Muller normal */
  int has_spare;
} Rng;

Rng rng_new(uint64_t seed);
/* A stream for (seed, name): independent streams per named object. */
Rng rng_seeded(uint64_t seed, const char *name);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r); /* [0, 1) */
double rng_normal(Rng *r);  /* N(0, 1) */

#endif
