/* Devices for the CUDA backend's executor (backends/cuda/cuda_device.h). */
#ifndef PC_CUDA_RUNTIME_H
#define PC_CUDA_RUNTIME_H

#include "backends/cuda/cuda_device.h"

/* The first GPU, through the CUDA driver (libcuda.so.1) and cuBLAS, both
 * opened with dlopen. Without a driver or a GPU: an error saying so.
 * PONDER_CUDA_SYNC=1 waits after every launch, so that an error names its kernel. */
int cuda_driver_open(CudaDevice **out, PcError *err);

/* The CPU emulator (tests): kernels compiled with $CXX, threads as fibers;
 * PONDER_CUDA_EMULATE=reverse runs blocks and threads in reverse order. */
int cuda_emulator_open(CudaDevice **out, PcError *err);

/* The emulator when PONDER_CUDA_EMULATE is 1 or reverse, else the driver. */
int cuda_device_open(CudaDevice **out, PcError *err);

#endif
