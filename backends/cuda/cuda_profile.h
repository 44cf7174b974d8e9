/* Where a CUDA entry's device time goes (PONDER_CUDA_PROFILE,
 * docs/cuda-backend.md). The executor stamps the device's timeline after
 * every launch, product, conversion, fill and copy (CudaDevice.stamp); once
 * the work is done, the time from one stamp to the next is the later op's.
 * Times add up by what ran: a kernel, or a product's shape and precision,
 * and the graph op its statement came from (KStmt.origin). On a GPU the
 * stamps are events on the stream, so a gap the host leaves between two ops
 * counts for the later one. */
#ifndef PC_CUDA_PROFILE_H
#define PC_CUDA_PROFILE_H

#include <stdio.h>

#include "backends/cuda/cuda_device.h"

typedef enum {
  CP_KERNEL,  /* a generated kernel: k<N> */
  CP_CALL,    /* one of a call's hand-written kernels (attention) */
  CP_RUNTIME, /* runtime kernels outside the kernel IR (the optimizer's): fn names them */
  CP_GEMM,    /* a cuBLAS product */
  CP_CONVERT, /* bf16 conversions of a product's operands */
  CP_FILL,
  CP_COPY,
  CP_KIND_NUM
} CudaProfKind;

typedef struct {
  CudaProfKind kind;
  uint32_t kernel;         /* CP_KERNEL, CP_CALL: its number in the program */
  uint32_t origin;         /* the statement's origin (0: none) */
  const char *fn;          /* CP_CALL, CP_RUNTIME: the device function (static text) */
  CudaPrecision precision; /* CP_GEMM */
  int ta, tb;              /* CP_GEMM, row-major as the kernel IR's */
  int64_t m, n, k;
} CudaProfKey;

typedef struct {
  CudaProfKey key;
  uint64_t count; /* ops */
  double ms;
  double bytes;   /* of device memory they read and write, estimated (cuda_traffic.h; 0: not known) */
} CudaProfRow;

typedef struct CudaProfile {
  VEC(CudaProfRow) rows;
  uint32_t *index;  /* open addressing over the rows' keys: row + 1, 0 empty */
  size_t index_cap; /* a power of two, at least twice the rows */
  VecU32 marks;     /* the current call's stamps after its first: the row each one ends */
  int started;
  uint64_t calls;   /* what the owner counts: an entry's calls, the optimizer's steps (times are per call) */
  double ms;        /* every finished call's */
  uint64_t guesses; /* launches whose bytes rest on a guessed trip count (cuda_traffic_guesses) */
} CudaProfile;

/* A call's first stamp; then a stamp after each op, charged to key's row
 * with the bytes it moved (an estimate; 0: not known); then finish waits
 * for the device and adds the times up. The device must have stamp and
 * elapsed. */
int cuda_profile_start(CudaProfile *pf, CudaDevice *d, PcError *err);
int cuda_profile_mark(CudaProfile *pf, CudaDevice *d, const CudaProfKey *key, double bytes, PcError *err);
int cuda_profile_finish(CudaProfile *pf, CudaDevice *d, PcError *err);

/* The rows as a markdown table, the slowest first (max_rows of them, the
 * rest summed in one line; a product's TFLOP/s, and the GB/s of the bytes
 * an op moves by cuda_traffic.h's estimate), and the time by graph op. cp names the kernels
 * and origins; title heads it; unit names what calls counts ("call"). */
void cuda_profile_print(const CudaProfile *pf, const CudaProgram *cp, const char *title, const char *unit, size_t max_rows,
                        FILE *f);
void cuda_profile_free(CudaProfile *pf);
/* Row numbers, the largest first (ms, or by_count: count; ties in row
 * order), malloc'ed. */
uint32_t *cuda_profile_order(const CudaProfRow *rows, size_t n, int by_count);
/* A row's "what": "k14 (warp)", "pc_attn_fwd_tc (k10)", "gemm nt 16384x3072x768 bf16", ... */
void cuda_profile_what(const CudaProgram *cp, const CudaProfKey *k, char *out, size_t cap);

#endif
