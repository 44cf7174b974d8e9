/* What the GPU device (cuda_driver.c) takes from the CUDA driver and cuBLAS
 * without their headers: the entry points it looks up, in the order of its
 * tables of function pointers, and the values of the headers' constants it
 * passes. tests/test_cuda_abi.c checks both against the toolkit's headers
 * and libraries, so that a GPU machine is not the first to see a wrong one. */
#ifndef PC_CUDA_DRIVER_API_H
#define PC_CUDA_DRIVER_API_H

enum {
  PC_CU_ATTR_CC_MAJOR = 75,                  /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
  PC_CU_ATTR_CC_MINOR = 76,                  /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
  PC_CU_JIT_ERROR_LOG = 5,                   /* CU_JIT_ERROR_LOG_BUFFER */
  PC_CU_JIT_ERROR_LOG_SIZE = 6,              /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
  PC_CU_ERROR_NO_DEVICE = 100,               /* CUDA_ERROR_NO_DEVICE */
  PC_CU_ERROR_UNSUPPORTED_PTX_VERSION = 222, /* CUDA_ERROR_UNSUPPORTED_PTX_VERSION */
  PC_CUDA_R_32F = 0,                         /* library_types.h (CUDA 11 to 13) */
  PC_CUDA_R_16BF = 14,
  PC_CUBLAS_COMPUTE_32F = 68, /* cublas_api.h; a product's transpositions go as 0 and 1, CUBLAS_OP_N and _T */
  PC_CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  PC_CUBLAS_GEMM_DEFAULT = -1,
};

/* libcuda.so.1: every one is needed */
#define PC_CU_DRIVER_ENTRIES 20
extern const char *const pc_cu_driver_names[PC_CU_DRIVER_ENTRIES];
/* libcuda.so.1, for profiles only: the last one, cuEventElapsedTime_v2
 * (CUDA 12.8 on), falls back to cuEventElapsedTime */
#define PC_CU_EVENT_ENTRIES 5
extern const char *const pc_cu_event_names[PC_CU_EVENT_ENTRIES];
/* libcublas */
#define PC_CUBLAS_ENTRIES 3
extern const char *const pc_cublas_names[PC_CUBLAS_ENTRIES];

#endif
