/* The kernel program as bytes, for a library made with --target cuda: the
 * runtime renders it again to get the launch plan that goes with the PTX
 * the library carries (and checks that the source is the same). */
#ifndef PC_CUDA_KIO_H
#define PC_CUDA_KIO_H

#include <stddef.h>

#include "ir/kir.h"

/* malloc'ed bytes of p */
void *cuda_kir_write(const KProgram *p, size_t *len);
/* p again; every index is checked, so damaged bytes give an error */
int cuda_kir_read(const void *bytes, size_t len, KProgram **out, PcError *err);

#endif
