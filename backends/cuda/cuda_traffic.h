/* What an op moves through device memory, estimated from the kernel IR
 * without running it: the census's bytes (pondercc --emit cuda-census) and
 * the profile's GB/s (PONDER_CUDA_PROFILE). The model (docs/cuda-backend.md,
 * "Traffic"): a kernel reads each element it loads and writes each element
 * it stores once, caches doing the rest. Its loads of a buffer count as
 * often as the loop nest runs them, up to the buffer's size: a row's second
 * pass, and a weight every row reads, come from cache. Loop trip counts are
 * the host's values; a loop inside a kernel whose bound depends on an
 * enclosing loop's variable counts at that variable's middle value (a
 * causal loop: half); one whose bound the host cannot know (read from
 * memory in the kernel) counts once, and is counted as a guess. A call's
 * kernels read and write each operand once; a product its operands and
 * result once (bf16 operands at 2 bytes, and a result that lives in its
 * mirror). */
#ifndef PC_CUDA_TRAFFIC_H
#define PC_CUDA_TRAFFIC_H

#include "backends/cuda/cuda_device.h"

typedef struct CudaTraffic CudaTraffic; /* an entry's scratch */

/* half: per buffer of e, it lives in its bf16 mirror (loads at 2 bytes), or NULL */
CudaTraffic *cuda_traffic_new(const KProgram *p, const KEntry *e, const unsigned char *half);
void cuda_traffic_free(CudaTraffic *t);
/* the launches so far with a loop whose trip count was a guess */
uint64_t cuda_traffic_guesses(const CudaTraffic *t);

/* Rows a launch stores with their bf16 mirror (CudaMirror at the launch's
 * bounds): elements of buf, 2 bytes each; alone: without the fp32 store. */
typedef struct {
  uint32_t buf;
  uint64_t elements;
  int alone;
} CudaMirrored;

/* Bytes of one launch of statement s (a parallel loop, or a host-level
 * statement run by one thread or block) at the host's dims and vars. */
double cuda_traffic_launch(CudaTraffic *t, const KStmt *s, const int64_t *dims, const CudaValue *vars,
                           const CudaMirrored *m, size_t n_m);
/* Kernel i of a call's plan (cuda_call_plan; args: the KCall's,
 * evaluated); mirrored, n_mirrored: what cuda_call_mirror gave (-1: no
 * mirror), elements the call also writes in bf16. */
double cuda_traffic_call(KCallOp op, int i, const int64_t *args, int mirrored, int64_t n_mirrored);
/* C = A B (+ C when beta != 0): A m x k, B k x n, C fp32 (c_bf16: bf16). */
double cuda_traffic_gemm(int64_t m, int64_t n, int64_t k, CudaPrecision p, int beta, int c_bf16);

#endif
