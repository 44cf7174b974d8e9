/* Kernels the runtime launches itself, not the kernel IR: every program
 * carries them (cuda_library.h, CudaRuntimeKernel), after its own. Each takes
 * one struct by value, mirrored on the host in cuda_library.h. Appended to
 * the generated source after the prelude (i64). */

/* bf16(v), rounding to nearest even (NaN stays a quiet NaN): matrix
 * operands for tensor-core products, here and in the generated kernels'
 * bf16 mirrors (cuda_mirror.c), so both give the same bits */
static __device__ __forceinline__ unsigned short pc_bf16(float v) {
  const unsigned u = __float_as_uint(v);
  return (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)
                                         : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* the float a bf16 stands for (exact): loads of buffers that live in their mirrors */
static __device__ __forceinline__ float pc_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

/* dst[i] = bf16(src[i]) */
struct PcToBf16 {
  const float *src;
  unsigned short *dst;
  i64 n;
};

static __device__ void pc_to_bf16(const PcToBf16 &a) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += (i64)gridDim.x * blockDim.x) a.dst[i] = pc_bf16(a.src[i]);
}
