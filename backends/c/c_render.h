/* The C renderer: kernel IR -> one C source file exporting the model ABI
 * (runtime/include/ponder_abi.h), with the shapes baked in as constants,
 * OpenMP for parallel loops and OpenBLAS for matrix products; and building
 * it into a shared library with the system C compiler. */
#ifndef PC_C_RENDER_H
#define PC_C_RENDER_H

#include <stdio.h>

#include "compiler/module.h"

int c_render(const PcModule *m, FILE *f, PcError *err);
/* cc -O3 -march=native -fopenmp -shared ... -lopenblas */
int c_build_shared(const char *c_path, const char *so_path, PcError *err);

#endif
