/* A hash map from strings to uint32 values (open addressing, linear
 * probing). Keys are copied and owned by the map. */
#ifndef PC_STRMAP_H
#define PC_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char **keys;
  uint32_t *vals;
  size_t cap, count;
} StrMap;

/* Returns 1 and sets *val when found, else 0. */
int strmap_get(const StrMap *m, const char *key, size_t len, uint32_t *val);
/* Inserts or replaces. */
void strmap_put(StrMap *m, const char *key, size_t len, uint32_t val);
void strmap_free(StrMap *m);
uint64_t pc_hash_bytes(const void *p, size_t n);

#endif
