/* What a call of an entry asks of a GPU, counted without one (pondercc
 * --emit cuda-census, docs/cuda-backend.md): the host executor walks the
 * entry at given dims on a device that records instead of running
 * (launches by mode, products and their FLOPs, bf16 conversions and mirror
 * reads, fills, copies, read-backs, device memory, the bytes each op reads
 * and writes as cuda_traffic.h estimates them), and a profile of that walk
 * names the ops. Values the host reads back from the device count as
 * 0, so a loop that depended on one would be walked as such. */
#ifndef PC_CUDA_CENSUS_H
#define PC_CUDA_CENSUS_H

#include <stdio.h>

#include "backends/cuda/cuda_profile.h"

typedef struct {
  uint64_t launches[CM_NUM]; /* by the kernel's CudaMode (CM_RUNTIME: bf16 conversions) */
  uint64_t products, fills, copies, read_backs;
  double flops, fill_bytes, copy_bytes;
  uint64_t converted, mirrored; /* operand elements rounded to bf16 / read from mirrors */
  uint64_t converted_params;    /* of those converted, parameters' (a later call converts them only once they change) */
  size_t arena_bytes, mirror_bytes, scratch_bytes;
  double traffic[CP_KIND_NUM]; /* bytes of device memory read and written, by kind of op (estimated: cuda_traffic.h) */
  double bound_ms;             /* the sum over ops of the longer of bytes at CENSUS_GBS and FLOPs at CENSUS_TFLOPS */
  CudaProfile ops; /* every op by what ran and its graph op, with its count */
} CudaCensus;

/* The chip the census prices its traffic and FLOPs on: an H100 SXM
 * (HBM3, dense bf16 tensor cores). */
#define CENSUS_CHIP "H100 SXM"
#define CENSUS_GBS 3350.0
#define CENSUS_TFLOPS 989.4

/* Walks entry `entry` of cp at dims with products in precision p. */
int cuda_census(const CudaProgram *cp, uint32_t entry, const int64_t *dims, CudaPrecision p, CudaCensus *out, PcError *err);
/* The counts, then the max_rows ops launched most and the max_rows that
 * move the most bytes. */
void cuda_census_print(const CudaCensus *c, const CudaProgram *cp, size_t max_rows, FILE *f);
void cuda_census_free(CudaCensus *c);

#endif
