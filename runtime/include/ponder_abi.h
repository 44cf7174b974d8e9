/* The C ABI of a model compiled by pondercc (pondercc MODEL.lua -o model.so,
 * or the same module compiled in-process with --jit). docs/abi.md has the
 * details; in short, a compiled model exports three functions:
 *
 *   int ponder_abi_version(void);          PONDER_ABI_VERSION of the compiler
 *   const char *ponder_model_info(void);   JSON: the model, its hyperparameters,
 *                                          its parameter table and its entries
 *   int ponder_run(int entry, const PonderCall *call);
 *
 * An entry is one compiled graph: "train" (ids, targets -> loss and a
 * gradient per parameter), "eval" (ids, targets -> loss), "logits" (ids ->
 * logits) and "decode" (ids, pos, one KV cache per attention call and pass ->
 * logits, appending to the caches). The info lists, per entry, its inputs
 * and outputs in order (names, dtypes, shapes with the symbolic dims B and
 * T), the largest B and T it was planned for, and its arena's size. */
#ifndef PONDER_ABI_H
#define PONDER_ABI_H

#include <stdint.h>

#define PONDER_ABI_VERSION 1

typedef struct PonderCall {
  float *const *params;  /* one per parameter, in the info's order, our layout */
  void *const *inputs;   /* one per input of the entry */
  void *const *outputs;  /* one per output of the entry, sized for this call's dims */
  void *arena;           /* arena_bytes of the entry, 64-byte aligned, owned by the caller */
  const int64_t *dims;   /* this call's symbolic dims (B, T), each <= its max */
} PonderCall;

typedef int (*PonderAbiVersionFn)(void);
typedef const char *(*PonderModelInfoFn)(void);
typedef int (*PonderRunFn)(int entry, const PonderCall *call);

#endif
