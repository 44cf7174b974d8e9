/* What a library made with `pondercc --target cuda` carries besides the
 * model ABI (ponder_abi.h): its kernel program, and PTX for some GPU
 * architectures, returned by
 *
 *   const PonderCudaImage *ponder_cuda_image(void);
 *
 * Its ponder_run refuses every entry (-1): the runtime runs the model on a
 * GPU (ponder --device cuda), rendering the kernel program again for the
 * launch plan that goes with the PTX. docs/cuda-backend.md has the details. */
#ifndef PONDER_CUDA_H
#define PONDER_CUDA_H

#include <stdint.h>

#define PONDER_CUDA_IMAGE_VERSION 1

typedef struct {
  int arch;        /* compute capability x 10: 80, 90 */
  const char *ptx; /* NUL-terminated */
} PonderCudaPtx;

typedef struct {
  int version;              /* PONDER_CUDA_IMAGE_VERSION */
  const unsigned char *kir; /* the kernel program (backends/cuda/cuda_kio.c) */
  uint64_t kir_bytes;
  uint64_t source_hash;     /* of the CUDA C the PTX came from (FNV-1a, 64 bits) */
  int n_ptx;
  const PonderCudaPtx *ptx;
} PonderCudaImage;

typedef const PonderCudaImage *(*PonderCudaImageFn)(void);

#endif
