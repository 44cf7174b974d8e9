/* Inside the CUDA engine (engine_cuda.c: device memory and the calls;
 * engine_cuda_train.c: Engine.train, the device optimizer): the engine's
 * state and the helpers both use. */
#ifndef PC_CLI_ENGINE_CUDA_INTERNAL_H
#define PC_CLI_ENGINE_CUDA_INTERNAL_H

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_library.h"
#include "backends/cuda/cuda_profile.h"
#include "runtime/cli/engine_cuda.h"

typedef struct {
  int ready;
  size_t n_in, n_out;
  CuPtr *in, *out;
  size_t *in_cap, *out_cap;
  VecU32 params;       /* the parameters it reads */
  unsigned char *kv;   /* per input: the entry writes it (a KV cache): it stays on the device */
  int pos_input, t_dim; /* decode: the input "pos" and the dim T, or -1 */
  void **kv_host;      /* the host tensors whose caches the device holds */
  int64_t kv_len;      /* positions written into them */
} EntryMem;

/* A profile kept apart for the first call (it carries the warm-up: cuBLAS
 * choosing its kernels, the driver loading them) and for the rest. */
typedef struct {
  CudaProfile first, rest;
} CudaProfiles;

typedef struct {
  CudaDevice *dev;
  KProgram *prog;
  CudaProgram cp;
  char *info;
  void *dl; /* the library, when the model came from one */
  size_t n_params;
  CuPtr *params;
  size_t *param_bytes;
  CuPtr arena, slots;
  uint64_t arena_cap, slots_cap;
  EntryMem *mem;
  CuPtr *bufs;
  CudaGemmCtx gemm; /* the products' precision, their bf16 operands */
  int timing;
  CudaProfiles *prof; /* PONDER_CUDA_PROFILE: per entry, then the optimizer's (NULL: off) */
  char *prof_path;   /* where its tables go when the engine closes (NULL: stderr) */
  /* the parameters' device copies hold held's values at held_version where
   * fresh[i]; held_data[i]: the tensor data they came from */
  const Params *held;
  uint64_t held_version;
  const float **held_data;
  unsigned char *fresh;
  /* Engine.train */
  int training, train_entry; /* train_entry: the program's train entry, or -1 */
  int loss_out;              /* its output "loss" */
  int *grad_out;             /* per parameter: its output holding the gradient */
  unsigned char *keep;       /* per output of the train entry: a gradient, kept on the device */
  unsigned char *decays;
  CuPtr *m, *v, *acc;        /* per parameter: moments, the step's gradient when accumulated */
  int64_t of;                /* the step's micro-batches */
  CudaOptim opt;
  double opt_ms;             /* timing: optimizer kernels since the last update */
} CudaEngine;

double cuda_engine_now(void); /* seconds, monotonic */
/* The device buffers an entry needs, sized from its buffers at the maximum dims. */
void cuda_engine_prepare(CudaEngine *c, size_t entry);
/* A device buffer of at least bytes (contents not kept when it grows);
 * zeroed when new if zero. */
int cuda_engine_ensure(CudaEngine *c, CuPtr *p, size_t *cap, size_t bytes, int zero, PcError *err);
/* Whether the device's copies are of p's values as they are now; if not,
 * they become p's, all stale (refused while the device trains). */
int cuda_engine_hold(CudaEngine *c, const Params *p, PcError *err);
/* Uploads parameter i of the held Params if the device's copy is stale;
 * *up counts the bytes. */
int cuda_engine_take_param(CudaEngine *c, uint32_t i, size_t *up, PcError *err);

/* Where a call's (or an optimizer step's) device time goes: profiles'
 * first until it has a call, then rest; NULL without profiles. The
 * optimizer's are the last of c->prof. */
CudaProfile *cuda_engine_profile(CudaEngine *c, size_t k);
#define cuda_engine_opt_profile(c) cuda_engine_profile((c), (c)->prog->entries.n)

/* engine_cuda_train.c */
extern const EngineTrain cuda_engine_train;
void cuda_engine_train_free(CudaEngine *c); /* the optimizer's device memory */

#endif
