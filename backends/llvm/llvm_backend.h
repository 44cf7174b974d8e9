/* The LLVM backend: kernel IR -> LLVM IR through the LLVM C API (llvm-19),
 * optimised with the new pass manager (default<O3>) for the host CPU, then
 * either linked into a shared library (an object file and the system C
 * compiler: the AOT path of pondercc -o) or loaded in-process through ORC
 * LLJIT (ponder --jit). Both export the model ABI
 * (runtime/include/ponder_abi.h). docs/llvm-backend.md has the details.
 * A build configured with -DPONDER_LLVM=OFF has llvm_none.c instead: every
 * function fails, saying so. */
#ifndef PC_LLVM_BACKEND_H
#define PC_LLVM_BACKEND_H

#include <stdio.h>

#include "compiler/module.h"
#include "runtime/include/ponder_abi.h"

/* What compiling cost and what the vectorizer did. */
typedef struct {
  double render_s, optimize_s, codegen_s, link_s; /* link_s: cc (AOT) or the JIT's linking */
  unsigned kernels;                               /* distinct loop-nest functions */
  unsigned vector_loops;                          /* loops marked for vectorization */
  unsigned not_vectorized;                        /* of those, the ones LLVM reported it could not vectorize */
} LlvmStats;

/* Renders and optimises m, and prints the module (before optimisation, or
 * after it when optimized) to f: pondercc --emit llvm / llvm-opt. */
int llvm_print(const PcModule *m, int optimized, FILE *f, PcError *err);

/* AOT: renders, optimises and emits an object file, then links it with the
 * system C compiler: cc -shared obj -lopenblas -lgomp -lm. */
int llvm_build_shared(const PcModule *m, const char *so_path, LlvmStats *stats, PcError *err);

/* JIT: the same code, linked in-process by ORC LLJIT. The three ABI
 * functions stay valid until llvm_jit_free. */
typedef struct LlvmJit LlvmJit;
typedef struct {
  PonderAbiVersionFn version;
  PonderModelInfoFn info;
  PonderRunFn run;
} LlvmAbi;
int llvm_jit_open(const PcModule *m, LlvmJit **out, LlvmAbi *abi, LlvmStats *stats, PcError *err);
void llvm_jit_free(void *jit); /* an LlvmJit; void * to serve as an engine's owner_free */

#endif
