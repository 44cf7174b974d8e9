/* Allocation and growable vectors. Out of memory is reported and aborts:
 * no caller can do anything useful with a failed small allocation. Large
 * tensor buffers go through pc_try_alloc so a too-big model is a user error. */
#ifndef PC_MEM_H
#define PC_MEM_H

#include <stddef.h>
#include <stdint.h>

void *pc_xmalloc(size_t n);
void *pc_xcalloc(size_t count, size_t size);
void *pc_xrealloc(void *p, size_t n);
char *pc_xstrdup(const char *s);
/* Multiplies sizes, aborting on overflow. */
size_t pc_mul_size(size_t a, size_t b);

/* A growable array of T: `VEC(float) v = {0}; vec_push(&v, 1.0f); free(v.a);` */
#define VEC(T) struct { T *a; size_t n, cap; }
void pc_vec_reserve_(void **a, size_t *cap, size_t want, size_t elem);
#define vec_reserve(v, want) pc_vec_reserve_((void **)&(v)->a, &(v)->cap, (want), sizeof *(v)->a)
#define vec_push(v, x) (vec_reserve((v), (v)->n + 1), (v)->a[(v)->n++] = (x))
#define vec_free(v) (free((v)->a), (v)->a = NULL, (v)->n = (v)->cap = 0)

typedef VEC(uint32_t) VecU32;
typedef VEC(int32_t) VecI32;

#endif
