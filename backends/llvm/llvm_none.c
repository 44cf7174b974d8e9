/* The LLVM backend's functions in a build without LLVM (cmake
 * -DPONDER_LLVM=OFF: a GPU machine with no llvm-19-dev, say): each fails
 * in one line, so pondercc -o, --emit llvm and ponder --backend llvm say
 * what is missing; the interpreter, the C and the CUDA backends work. */
#include "backends/llvm/llvm_backend.h"

static int none(PcError *err) {
  return pc_errorf(err, "this build has no LLVM backend (configured with -DPONDER_LLVM=OFF): use --backend c or interp, "
                        "or build with LLVM 19");
}

int llvm_print(const PcModule *m, int optimized, FILE *f, PcError *err) { return none(err); }

int llvm_build_shared(const PcModule *m, const char *so_path, LlvmStats *stats, PcError *err) { return none(err); }

int llvm_jit_open(const PcModule *m, LlvmJit **out, LlvmAbi *abi, LlvmStats *stats, PcError *err) { return none(err); }

void llvm_jit_free(void *jit) {}
