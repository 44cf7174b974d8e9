/* The GPU device's view of the CUDA driver and cuBLAS, which it declares
 * without their headers (runtime/cuda/cuda_driver_api.h), against the
 * toolkit's headers (the constants, at compile time) and libraries (every
 * entry point it looks up, in the driver's stub library and in cuBLAS), so
 * that a wrong name or value shows here and not first on a GPU machine.
 * Built only where CMake found the toolkit. Arguments: the stub
 * libcuda.so and libcublas.so. */
#include <cublas_api.h>
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>

#include "runtime/cuda/cuda_driver_api.h"
#include "tests/check.h"

#define SAME(ours, theirs) _Static_assert((int)(ours) == (int)(theirs), #ours " is not " #theirs)
SAME(PC_CU_ATTR_CC_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
SAME(PC_CU_ATTR_CC_MINOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
SAME(PC_CU_JIT_ERROR_LOG, CU_JIT_ERROR_LOG_BUFFER);
SAME(PC_CU_JIT_ERROR_LOG_SIZE, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
SAME(PC_CU_ERROR_NO_DEVICE, CUDA_ERROR_NO_DEVICE);
SAME(PC_CU_ERROR_UNSUPPORTED_PTX_VERSION, CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
SAME(PC_CUDA_R_32F, CUDA_R_32F);
SAME(PC_CUDA_R_16BF, CUDA_R_16BF);
SAME(PC_CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F);
SAME(PC_CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_TF32);
SAME(PC_CUBLAS_GEMM_DEFAULT, CUBLAS_GEMM_DEFAULT);
SAME(1, CUBLAS_OP_T); /* a transposition flag is the cuBLAS operation */
SAME(0, CUBLAS_OP_N);
_Static_assert(sizeof(CUdeviceptr) == sizeof(unsigned long long) && sizeof(CUdevice) == sizeof(int), "handle sizes");

static void check_symbols(const char *lib, const char *const *names, size_t n) {
  void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  CHECKF(dl, "cannot open %s: %s", lib, dlerror());
  if (!dl) return;
  for (size_t i = 0; i < n; i++) CHECKF(dlsym(dl, names[i]), "%s has no %s", lib, names[i]);
  printf("%s: %zu entry points found\n", lib, n);
  /* left open: closing cuBLAS would unload the libstdc++ it brought, whose
   * allocations LeakSanitizer would then count as leaked */
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_cuda_abi STUB_LIBCUDA LIBCUBLAS\n");
    return 2;
  }
  check_symbols(argv[1], pc_cu_driver_names, PC_CU_DRIVER_ENTRIES);
  check_symbols(argv[1], pc_cu_event_names, PC_CU_EVENT_ENTRIES);
  check_symbols(argv[2], pc_cublas_names, PC_CUBLAS_ENTRIES);
  return check_exit();
}
