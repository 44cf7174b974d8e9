/* What the LLVM backend's files share. */
#ifndef PC_LLVM_INTERNAL_H
#define PC_LLVM_INTERNAL_H

#include "backends/llvm/llvm_backend.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

/* Renders m into a new module of ctx (*out, owned by the caller): one
 * function per entry, one per distinct loop nest (kernel), the parallel
 * loops' outlined bodies, and the three ABI functions. */
int llvm_render(const PcModule *m, LLVMContextRef ctx, LLVMModuleRef *out, PcError *err);

/* The host CPU with all its features, -O3, position-independent code. */
int llvm_host_machine(LLVMTargetMachineRef *out, PcError *err);

/* The libmvec variants the host can call, as pairs of an ISA letter and a
 * width ('4', '8', 'x' for 16): "b4d8" on an AVX2 machine; "" when there is
 * no libmvec (or the host is not x86-64). */
const char *llvm_vector_math(void);

/* llvm_render for tm's target and data layout, with vec_math's libmvec
 * variants, counting kernels and vector loops into stats (may be NULL). */
int llvm_render_for(const PcModule *m, LLVMContextRef ctx, LLVMTargetMachineRef tm, const char *vec_math, LLVMModuleRef *out,
                    LlvmStats *stats, PcError *err);

#endif
