/* Kernels the runtime launches itself, not the kernel IR: every program
 * carries them (cuda_library.h, CudaRuntimeKernel), after its own. Each takes
 * one struct by value, mirrored on the host in cuda_library.h. Appended to
 * the generated source after the prelude (i64). */

/* dst[i] = bf16(src[i]), rounding to nearest even (NaN stays a quiet NaN):
 * matrix operands for tensor-core products */
struct PcToBf16 {
  const float *src;
  unsigned short *dst;
  i64 n;
};

static __device__ void pc_to_bf16(const PcToBf16 &a) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += (i64)gridDim.x * blockDim.x) {
    const unsigned u = __float_as_uint(a.src[i]);
    a.dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)
                                               : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}
