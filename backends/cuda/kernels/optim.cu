/* The device optimizer (Engine.train in runtime/cli/engine_cuda.c): the
 * gradients' accumulation over micro-batches, their global norm and AdamW,
 * over every parameter at once. Runtime kernels (runtime.cu), all four
 * taking a PcOpt, mirrored by CudaOptArgs in cuda_library.h.
 *
 * The parameters are a table of tensors on the device, each cut into chunks
 * of PC_OPT_CHUNK elements (its last one may be short), numbered across the
 * table; block b takes chunk b, then every gridDim.x-th after it, and its
 * PC_OPT_THREADS threads take the chunk's elements round-robin.
 *
 * Each element gets runtime/train/optim.c's arithmetic with every operation
 * rounded as written there (__fmul_rn and company: nothing contracted into
 * an FMA), so a step gives the CPU optimizer's bits. The norm's sum has a
 * fixed order, with no atomics: a chunk's squares in double, each thread's
 * in order, then a fixed tree over the block's threads; then the chunks'
 * sums the same way in one block. Neither the grid nor timing changes a
 * bit of it (the CPU sums in another fixed order: the last bits of the
 * double may differ from its). */

#define PC_OPT_CHUNK 16384
#define PC_OPT_THREADS 256 /* cuda_runtime_launch's block */

struct PcOptTensor {
  float *w, *g, *m, *v; /* parameter, the step's gradient, AdamW's moments */
  const float *src;     /* the train entry's gradient output (accumulation) */
  i64 n, chunk0;        /* elements; its first chunk's number */
  int decays, pad;      /* whether weight decay applies */
};

struct PcAdamW { /* AdamWStep (runtime/cli/engine.h) */
  float grad_scale, decay, neg_step, bc2_sqrt, eps, b2, one_minus_b1, one_minus_b2;
};

struct PcOpt {
  const PcOptTensor *t;
  double *partial; /* a sum of squares per chunk */
  double *norm;    /* the global norm */
  i64 n_tensors, n_chunks;
  float scale;     /* accumulation: the last micro-batch multiplies the sum by it */
  int first, last; /* accumulation: the first micro-batch copies, the last scales */
  PcAdamW adamw;
};

/* the tensor holding chunk c (binary search over chunk0) */
static __device__ __forceinline__ const PcOptTensor &pc_opt_tensor(const PcOpt &a, i64 c) {
  i64 lo = 0, hi = a.n_tensors - 1;
  while (lo < hi) {
    i64 mid = (lo + hi + 1) / 2;
    if (a.t[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return a.t[lo];
}

/* the block's sum of v in a fixed tree; every thread gets it */
static __device__ double pc_opt_block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int w = PC_OPT_THREADS / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  v = sh[0];
  __syncthreads(); /* sh is free again */
  return v;
}

/* g = src (first), g + src (later); then g * scale (last) */
static __device__ void pc_opt_accum(const PcOpt &a) {
  for (i64 c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
    const PcOptTensor &t = pc_opt_tensor(a, c);
    const i64 lo = (c - t.chunk0) * PC_OPT_CHUNK, hi = lo + PC_OPT_CHUNK < t.n ? lo + PC_OPT_CHUNK : t.n;
    for (i64 k = lo + threadIdx.x; k < hi; k += PC_OPT_THREADS) {
      float x = a.first ? t.src[k] : __fadd_rn(t.g[k], t.src[k]);
      t.g[k] = a.last ? __fmul_rn(x, a.scale) : x;
    }
  }
}

/* partial[c] = the sum of chunk c's squared gradients, in double */
static __device__ void pc_opt_sumsq(const PcOpt &a) {
  __shared__ double sh[PC_OPT_THREADS];
  for (i64 c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
    const PcOptTensor &t = pc_opt_tensor(a, c);
    const i64 lo = (c - t.chunk0) * PC_OPT_CHUNK, hi = lo + PC_OPT_CHUNK < t.n ? lo + PC_OPT_CHUNK : t.n;
    double s = 0;
    for (i64 k = lo + threadIdx.x; k < hi; k += PC_OPT_THREADS) {
      const double x = t.g[k];
      s += x * x; /* exact in double: an FMA gives the same */
    }
    s = pc_opt_block_sum(s, sh);
    if (threadIdx.x == 0) a.partial[c] = s;
  }
}

/* *norm = sqrt(the sum of the partial sums): one block */
static __device__ void pc_opt_norm(const PcOpt &a) {
  __shared__ double sh[PC_OPT_THREADS];
  double s = 0;
  for (i64 c = threadIdx.x; c < a.n_chunks; c += PC_OPT_THREADS) s += a.partial[c];
  s = pc_opt_block_sum(s, sh);
  if (threadIdx.x == 0 && blockIdx.x == 0) *a.norm = sqrt(s);
}

/* AdamW, as optim.c's update():
 *   g *= grad_scale; w *= decay; m += (1 - b1)(g - m); v = v b2 + (1 - b2) g g;
 *   w += neg_step m / (sqrt(v) / bc2_sqrt + eps) */
static __device__ void pc_opt_adamw(const PcOpt &a) {
  const PcAdamW &s = a.adamw;
  for (i64 c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
    const PcOptTensor &t = pc_opt_tensor(a, c);
    const i64 lo = (c - t.chunk0) * PC_OPT_CHUNK, hi = lo + PC_OPT_CHUNK < t.n ? lo + PC_OPT_CHUNK : t.n;
    const float decay = t.decays ? s.decay : 1.0f;
    for (i64 k = lo + threadIdx.x; k < hi; k += PC_OPT_THREADS) {
      const float g = __fmul_rn(t.g[k], s.grad_scale);
      const float w = __fmul_rn(t.w[k], decay);
      const float m = __fadd_rn(t.m[k], __fmul_rn(s.one_minus_b1, __fsub_rn(g, t.m[k])));
      const float v = __fadd_rn(__fmul_rn(t.v[k], s.b2), __fmul_rn(__fmul_rn(s.one_minus_b2, g), g));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
      t.w[k] = __fadd_rn(w, __fdiv_rn(__fmul_rn(s.neg_step, m), denom));
      t.m[k] = m;
      t.v[k] = v;
    }
  }
}
