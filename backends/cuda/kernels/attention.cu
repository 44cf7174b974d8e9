/* Causal attention, FlashAttention-style (docs/cuda-backend.md): a thread
 * per query row (per key row for dk, dv), tiles of the other side in shared
 * memory, the softmax online (a running maximum; what was summed is
 * rescaled when it grows), no [T, T] buffer. Loops over D unroll, so that
 * a row's vectors stay in registers; loops over rows do not (code size). The kernel IR calls these
 * for its `attention` and `attention_grad` ops (KC_ATTENTION*); the backend
 * instantiates one per head dim D and appends this file to the generated
 * source, after the prelude (i64, PC_INF, pc_min64).
 *
 * q, y, dy, dq: [B, T, H x D]; k, v, dk, dv: [B, T, Hkv x D]; query head h
 * reads kv head h / (H / Hkv). lse, delta: [B, H, T], the row statistics
 * that the gradient's dq and dk/dv kernels read: the log-sum-exp of the
 * scaled scores, which the forward writes beside y (the graph keeps it for
 * the gradient), and dy . y, the gradient's first kernel (pc_attn_delta).
 * q, k and v may be views (KCall attention): rows qrs, krs, vrs apart (the
 * whole width of a product they were sliced from), with a bias added as
 * they load (qbias, kbias, vbias, or none); dq, dk and dv too (dqrs,
 * dkrs, dvrs: their columns of that product's gradient); y and dy are
 * always [B, T, H x D].
 * Scores use q pre-multiplied by the scale in every kernel, so the
 * backward recomputes exactly the forward's probabilities. Every thread
 * writes whole rows of its own: no atomics, the same bits on every run.
 * In bf16 precision the forward, dq and dk/dv are on tensor cores instead
 * (pc_attn_fwd_tc, pc_attn_dq_tc, pc_attn_dkv_tc), at the end of this file. */

struct PcAttn {
  const float *q, *k, *v, *dy; /* pc_attn_cached: k, v are the cache's planes, [B, L, Hkv x D] */
  float *y, *dq, *dk, *dv, *lse, *delta;
  unsigned short *yh, *dqh, *dkh, *dvh; /* bf16 mirrors (cuda_mirror.c) of y, or of dq, dk, dv, or none */
  i64 B, T, H, Hkv;
  i64 L, pos; /* pc_attn_cached: the cache's positions, the first query row's */
  const float *qbias, *kbias, *vbias; /* added to q, k, v as they load, or none */
  i64 qrs, krs, vrs;                  /* row strides of q, k, v */
  i64 dqrs, dkrs, dvrs;               /* of dq, dk, dv */
  float scale;
};

/* Element c of a row of q, k or v at x (the row's first element of the
 * head), plus bias[c] where there is one (bias at the head's first column). */
static __device__ __forceinline__ float pc_attn_ld(const float *x, const float *bias, i64 c) {
  return bias ? x[c] + bias[c] : x[c];
}

/* the head's columns of a bias: from column `col` on, or none */
static __device__ __forceinline__ const float *pc_attn_bias(const float *bias, i64 col) { return bias ? bias + col : nullptr; }

/* x[at] = v, and its mirror's too */
static __device__ __forceinline__ void pc_attn_store(float *x, unsigned short *xh, i64 at, float v) {
  x[at] = v;
  if (xh) xh[at] = pc_bf16(v);
}

static __device__ __forceinline__ void pc_attn_store_y(const PcAttn &a, i64 at, float v) { pc_attn_store(a.y, a.yh, at, v); }

/* Block shape by head dim, sized so that registers (two rows of D) and
 * static shared memory (under 48 KiB) fit up to D = 128. */
template <int D> struct PcAttnShape {
  static const int ROWS = D <= 64 ? 64 : 32;  /* threads per block, one row each */
  static const int KEYS = D <= 64 ? 32 : 16;  /* key rows per shared tile (forward, dq) */
  static const int QROWS = D <= 64 ? 16 : 8;  /* query rows per shared tile (dk, dv) */
};

/* The query rows a block of the forward or dq takes (both precisions):
 * block blockIdx.x of B x H x ceil(T / rows) (cuda_call_plan), the last
 * rows of a head (the longest, causal) first; its head's KV head's keys
 * and values. */
struct PcAttnQueryBlock {
  i64 b, h, bh, first, Cq;  /* first: its first query row; Cq: y's and dy's row stride */
  const float *q, *qbias;   /* the head's columns of the block's batch's row 0 of q, and of q's bias */
  const float *k, *v;       /* row 0 of the KV head's keys and values */
  const float *kbias, *vbias;
};

static __device__ PcAttnQueryBlock pc_attn_query_block(const PcAttn &a, i64 D, i64 rows) {
  const i64 nb = (a.T + rows - 1) / rows, bh = blockIdx.x / nb, qb = nb - 1 - (i64)blockIdx.x % nb;
  const i64 b = bh / a.H, h = bh % a.H, hk = h / (a.H / a.Hkv);
  return PcAttnQueryBlock{b, h, bh, qb * rows, a.H * D, a.q + b * a.T * a.qrs + h * D, pc_attn_bias(a.qbias, h * D),
                          a.k + b * a.T * a.krs + hk * D, a.v + b * a.T * a.vrs + hk * D,
                          pc_attn_bias(a.kbias, hk * D), pc_attn_bias(a.vbias, hk * D)};
}

/* Key and value rows j0 .. j0 + K (zeros past T) into ks and vs, the whole
 * block between two barriers: the last tile is read before it is
 * overwritten, and this one is whole before anyone reads it. */
template <int D, int K>
static __device__ void pc_attn_kv_tile(float (*ks)[D], float (*vs)[D], const PcAttn &a, const PcAttnQueryBlock &blk, i64 j0) {
  __syncthreads();
  for (int z = threadIdx.x; z < K * D; z += blockDim.x) {
    const int r = z / D, c = z % D;
    const i64 j = j0 + r;
    ks[r][c] = j < a.T ? pc_attn_ld(blk.k + j * a.krs, blk.kbias, c) : 0.f;
    vs[r][c] = j < a.T ? pc_attn_ld(blk.v + j * a.vrs, blk.vbias, c) : 0.f;
  }
  __syncthreads();
}

/* y = softmax(q k^T scale) v, causal, and each row's lse. */
template <int D> static __device__ void pc_attn_fwd(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, K = PcAttnShape<D>::KEYS;
  __shared__ float ks[K][D], vs[K][D];
  const PcAttnQueryBlock blk = pc_attn_query_block(a, D, R);
  const i64 b = blk.b, h = blk.h, bh = blk.bh, Cq = blk.Cq;
  const i64 i = blk.first + threadIdx.x, row = (b * a.T + i) * Cq + h * D;
  const bool live = i < a.T;
  float q[D], o[D];
  for (int d = 0; d < D; d++) {
    q[d] = live ? pc_attn_ld(blk.q + i * a.qrs, blk.qbias, d) * a.scale : 0.f;
    o[d] = 0.f;
  }
  float m = -PC_INF, l = 0.f;
  const i64 end = pc_min64(a.T, blk.first + R);
  for (i64 j0 = 0; j0 < end; j0 += K) {
    pc_attn_kv_tile<D, K>(ks, vs, a, blk, j0);
    const i64 n = live ? pc_min64(K, i - j0 + 1) : 0;
#pragma unroll 1
    for (int r = 0; r < n; r++) {
      float x = 0.f;
      for (int d = 0; d < D; d++) x += q[d] * ks[r][d];
      if (x > m) { /* a new maximum rescales what came before (rarely, after the first keys) */
        const float c = expf(m - x);
        l *= c;
        for (int d = 0; d < D; d++) o[d] *= c;
        m = x;
      }
      const float p = expf(x - m);
      l += p;
      for (int d = 0; d < D; d++) o[d] += p * vs[r][d];
    }
  }
  if (!live) return;
  const float inv = 1.f / l;
  for (int d = 0; d < D; d++) pc_attn_store_y(a, row + d, o[d] * inv);
  a.lse[bh * a.T + i] = m + logf(l);
}

/* delta = dy . y for each (batch, row, head): a thread each, adding over
 * the head's columns in order, as the SIMT dq adds dp = dy . v (so a row
 * with one key gets dp - delta = 0 exactly, as in exact arithmetic). */
template <int D> static __device__ void pc_attn_delta(const PcAttn &a) {
  const i64 w = (i64)blockIdx.x * blockDim.x + threadIdx.x; /* (b, i, h), h fastest */
  if (w >= a.B * a.T * a.H) return;
  const i64 bi = w / a.H, h = w % a.H, row = w * D;
  float x = 0.f;
  for (int d = 0; d < D; d++) x += a.dy[row + d] * a.y[row + d];
  a.delta[((bi / a.T) * a.H + h) * a.T + bi % a.T] = x;
}

/* dq_i = scale sum_j p_ij (dp_ij - delta_i) k_j, dp_ij = dy_i . v_j; a
 * thread per query row, key tiles in shared memory. */
template <int D> static __device__ void pc_attn_dq(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, K = PcAttnShape<D>::KEYS;
  __shared__ float ks[K][D], vs[K][D], dys[R][D + 1]; /* + 1: a thread's own row, no bank conflicts */
  const PcAttnQueryBlock blk = pc_attn_query_block(a, D, R);
  const i64 b = blk.b, h = blk.h, bh = blk.bh, Cq = blk.Cq;
  const i64 i = blk.first + threadIdx.x, row = (b * a.T + i) * Cq + h * D;
  const bool live = i < a.T;
  float q[D], dq[D];
  for (int d = 0; d < D; d++) {
    q[d] = live ? pc_attn_ld(blk.q + i * a.qrs, blk.qbias, d) * a.scale : 0.f;
    dq[d] = 0.f;
    dys[threadIdx.x][d] = live ? a.dy[row + d] : 0.f;
  }
  const float lse = live ? a.lse[bh * a.T + i] : 0.f, delta = live ? a.delta[bh * a.T + i] : 0.f;
  const i64 end = pc_min64(a.T, blk.first + R);
  for (i64 j0 = 0; j0 < end; j0 += K) {
    pc_attn_kv_tile<D, K>(ks, vs, a, blk, j0);
    const i64 n = live ? pc_min64(K, i - j0 + 1) : 0;
#pragma unroll 1
    for (int r = 0; r < n; r++) {
      float x = 0.f, dp = 0.f;
      for (int d = 0; d < D; d++) x += q[d] * ks[r][d];
      for (int d = 0; d < D; d++) dp += dys[threadIdx.x][d] * vs[r][d];
      const float ds = expf(x - lse) * (dp - delta) * a.scale;
      for (int d = 0; d < D; d++) dq[d] += ds * ks[r][d];
    }
  }
  if (live)
    for (int d = 0; d < D; d++) pc_attn_store(a.dq, a.dqh, (b * a.T + i) * a.dqrs + h * D + d, dq[d]);
}

/* dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dy_i over i >= j and every
 * query head of kv head hk; a thread per key row, query tiles in shared
 * memory. */
template <int D> static __device__ void pc_attn_dkv(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, Q = PcAttnShape<D>::QROWS;
  __shared__ float kr[R][D + 1], vr[R][D + 1], qs[Q][D], dys[Q][D], ls[Q], dl[Q];
  const i64 nb = (a.T + R - 1) / R, bg = blockIdx.x / nb, kb = (i64)blockIdx.x % nb; /* most queries first */
  const i64 b = bg / a.Hkv, hk = bg % a.Hkv, group = a.H / a.Hkv, Cq = a.H * D;
  const i64 j = kb * R + threadIdx.x;
  const bool live = j < a.T;
  const int t = threadIdx.x;
  const float *kbias = pc_attn_bias(a.kbias, hk * D), *vbias = pc_attn_bias(a.vbias, hk * D);
  float dk[D], dv[D];
  for (int d = 0; d < D; d++) {
    kr[t][d] = live ? pc_attn_ld(a.k + (b * a.T + j) * a.krs + hk * D, kbias, d) : 0.f;
    vr[t][d] = live ? pc_attn_ld(a.v + (b * a.T + j) * a.vrs + hk * D, vbias, d) : 0.f;
    dk[d] = dv[d] = 0.f;
  }
  for (i64 g = 0; g < group; g++) {
    const i64 h = hk * group + g, bh = b * a.H + h;
    const float *qbias = pc_attn_bias(a.qbias, h * D);
    for (i64 i0 = kb * R; i0 < a.T; i0 += Q) {
      __syncthreads();
      for (int z = threadIdx.x; z < Q * D; z += blockDim.x) {
        const int r = z / D, c = z % D;
        const i64 i = i0 + r;
        qs[r][c] = i < a.T ? pc_attn_ld(a.q + (b * a.T + i) * a.qrs + h * D, qbias, c) * a.scale : 0.f;
        dys[r][c] = i < a.T ? a.dy[(b * a.T + i) * Cq + h * D + c] : 0.f;
      }
      for (int z = threadIdx.x; z < Q; z += blockDim.x) {
        const i64 i = i0 + z;
        ls[z] = i < a.T ? a.lse[bh * a.T + i] : 0.f;
        dl[z] = i < a.T ? a.delta[bh * a.T + i] : 0.f;
      }
      __syncthreads();
      if (!live) continue;
#pragma unroll 1
      for (int r = 0; r < Q; r++) {
        const i64 i = i0 + r;
        if (i < j || i >= a.T) continue;
        float x = 0.f, dp = 0.f;
        for (int d = 0; d < D; d++) x += qs[r][d] * kr[t][d];
        for (int d = 0; d < D; d++) dp += dys[r][d] * vr[t][d];
        const float p = expf(x - ls[r]), ds = p * (dp - dl[r]); /* qs holds q scale: ds qs = scale ds q */
        for (int d = 0; d < D; d++) {
          dv[d] += p * dys[r][d];
          dk[d] += ds * qs[r][d];
        }
      }
    }
  }
  if (live)
    for (int d = 0; d < D; d++) {
      pc_attn_store(a.dk, a.dkh, (b * a.T + j) * a.dkrs + hk * D + d, dk[d]);
      pc_attn_store(a.dv, a.dvh, (b * a.T + j) * a.dvrs + hk * D + d, dv[d]);
    }
}

/* ---- decoding over the KV cache ---------------------------------------------------- */

/* y for the T new query rows at positions pos .. pos + T - 1, each over
 * the cache's keys and values 0 .. its position (the copies before the
 * call put the new ones there). A block per (batch, query row, head): its
 * threads take keys in turn for the scores (q pre-multiplied by the scale,
 * as in the other kernels), kept in shared memory (at most 8192:
 * KCALL_CACHED_KEYS, which the lowering checks), then the softmax's
 * maximum and sum over the block, then G = threads / D groups of D threads
 * each sum every G-th key's p v for one column, the groups added in order:
 * the same bits on every run. Coalesced where it matters: a column's
 * threads read a value row together. */
template <int D> static __device__ void pc_attn_cached(const PcAttn &a) {
  __shared__ float s[8192], qs[D], part[128], red[32];
  const i64 h = blockIdx.x % a.H, bt = blockIdx.x / a.H, b = bt / a.T, t = bt % a.T, hk = h / (a.H / a.Hkv);
  const i64 Cq = a.H * D, Ckv = a.Hkv * D, last = a.pos + t;
  const float *q = a.q + bt * a.qrs + h * D, *kb = a.k + b * a.L * Ckv + hk * D, *vb = a.v + b * a.L * Ckv + hk * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = pc_attn_ld(q, pc_attn_bias(a.qbias, h * D), d) * a.scale;
  __syncthreads();
  float m = -PC_INF;
  for (i64 j = threadIdx.x; j <= last; j += blockDim.x) {
    const float *kr = kb + j * Ckv;
    float dot = 0.f;
#pragma unroll 8
    for (int d = 0; d < D; d++) dot += qs[d] * kr[d];
    s[j] = dot;
    m = fmaxf(m, dot);
  }
  m = pc_block_max_f(m, red);
  float sum = 0.f;
  for (i64 j = threadIdx.x; j <= last; j += blockDim.x) {
    const float e = expf(s[j] - m);
    s[j] = e;
    sum += e;
  }
  sum = pc_block_sum_f(sum, red); /* its barriers also make every s[j] visible */
  const int G = (int)blockDim.x / D, g = (int)threadIdx.x / D, d = (int)threadIdx.x % D;
  float acc = 0.f;
  if (g < G)
    for (i64 j = g; j <= last; j += G) acc += s[j] * vb[j * Ckv + d];
  part[threadIdx.x] = acc;
  __syncthreads();
  if (g == 0) {
    float total = part[d];
    for (int z = 1; z < G; z++) total += part[z * D + d];
    pc_attn_store_y(a, bt * Cq + h * D + d, total / sum);
  }
}

/* ---- the forward on tensor cores (bf16 precision) --------------------------------- */

/* d += a b over a warp: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32,
 * A 16 x 16 row-major, B 16 x 8 column-major, D 16 x 8 in fp32. Which lane
 * holds what (PTX ISA, 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with
 * floating point type", docs.nvidia.com/cuda/parallel-thread-execution/
 * #warp-level-matrix-fragment-mma-16816-float), with g = lane >> 2 (groupID),
 * t = lane & 3 (threadID_in_group), and each .b32 holding two bf16 elements,
 * the lower-numbered in the lower half ("elements low to high"):
 *   a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
 *   b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
 *   d[0], d[1] = D[g][2t, 2t+1]   d[2], d[3] = D[g+8][2t, 2t+1]
 * So the D fragments of two 16 x 8 tiles side by side, each pair rounded
 * into a .b32, are the A fragment of their 16 x 16 ({d0 d1}, {d2 d3} of the
 * left tile, then of the right one). The emulator's prelude
 * (runtime/cuda/cuda_emu.c) defines both functions in C++ with the same
 * layout. */
#ifndef PONDER_CUDA_EMU
static __device__ __forceinline__ void pc_mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/* lo and hi rounded to bf16 (nearest even), lo in the lower half: cvt puts
 * its first source in the upper half (PTX ISA, cvt) */
static __device__ __forceinline__ unsigned pc_bf16x2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
#endif

/* Block shape of the tensor-core forward (cuda_library.c knows it too). */
template <int D> struct PcAttnTcShape {
  static const int ROWS = 64;      /* query rows a block: 4 warps of 16 */
  static const int KEYS = 64;      /* key rows per shared tile (the diagonal tile is the block's own) */
  static const int KW = D / 2 + 4; /* ks row stride in words: + 4, a fragment's loads hit 32 banks */
  static const int VW = KEYS / 2 + 4;
};

/* pc_attn_fwd on tensor cores, FlashAttention-2 style: a warp per 16 query
 * rows, Q as bf16 A fragments (pre-scaled, in log2 units: exp2), key and
 * value tiles in shared memory as bf16 (v transposed, both B operands),
 * S = Q K^T and O += P V with mma into fp32, the online softmax on S's
 * accumulators (a row's 8 lanes-worth of columns are in the 4 lanes of its
 * group: shuffles 1, 2), P rounded to bf16 straight from them. Writes what
 * pc_attn_fwd writes: y and lse. */
template <int D> static __device__ void pc_attn_fwd_tc(const PcAttn &a) {
  static_assert(D % 16 == 0 && D <= 128, "head dims of 16, 32, .., 128");
  const int R = PcAttnTcShape<D>::ROWS, K = PcAttnTcShape<D>::KEYS, KW = PcAttnTcShape<D>::KW, VW = PcAttnTcShape<D>::VW;
  __shared__ unsigned ks[K][KW], vt[D][VW]; /* ks[j][c]: k[j][2c, 2c+1]; vt[d][c]: v[2c, 2c+1][d] */
  const PcAttnQueryBlock blk = pc_attn_query_block(a, D, R);
  const i64 b = blk.b, h = blk.h, bh = blk.bh, Cq = blk.Cq;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const i64 i0 = blk.first + (threadIdx.x >> 5) * 16 + g, rows[2] = {i0, i0 + 8}; /* this lane's two rows */
  const float sc = a.scale * 1.4426950408889634f; /* log2(e) */
  unsigned qa[D / 16][4];
  for (int kk = 0; kk < D / 16; kk++)
    for (int x = 0; x < 4; x++) {
      const i64 i = rows[x & 1], c = kk * 16 + (x >> 1) * 8 + 2 * t;
      const float *qr = blk.q + i * a.qrs;
      qa[kk][x] = i < a.T ? pc_bf16x2(pc_attn_ld(qr, blk.qbias, c) * sc, pc_attn_ld(qr, blk.qbias, c + 1) * sc) : 0u;
    }
  float o[D / 8][4], m[2] = {-PC_INF, -PC_INF}, l[2] = {0.f, 0.f};
  for (int nd = 0; nd < D / 8; nd++)
    for (int x = 0; x < 4; x++) o[nd][x] = 0.f;
  const i64 end = pc_min64(a.T, blk.first + R);
#pragma unroll 1
  for (i64 j0 = 0; j0 < end; j0 += K) {
    __syncthreads(); /* the last tile is read */
    for (int z = threadIdx.x; z < K * (D / 2); z += blockDim.x) {
      const int r = z / (D / 2), c = z % (D / 2);
      const float *kr = blk.k + (j0 + r) * a.krs;
      ks[r][c] = j0 + r < a.T ? pc_bf16x2(pc_attn_ld(kr, blk.kbias, 2 * c), pc_attn_ld(kr, blk.kbias, 2 * c + 1)) : 0u;
    }
    for (int z = threadIdx.x; z < (K / 2) * D; z += blockDim.x) {
      const int c = z / D, d = z % D;
      const i64 j = j0 + 2 * c;
      vt[d][c] = pc_bf16x2(j < a.T ? pc_attn_ld(blk.v + j * a.vrs, blk.vbias, d) : 0.f,
                           j + 1 < a.T ? pc_attn_ld(blk.v + (j + 1) * a.vrs, blk.vbias, d) : 0.f);
    }
    __syncthreads();
    const bool diag = j0 + K > blk.first; /* the block's own keys: those after a row are masked */
    const int live_nt = diag ? 2 * (threadIdx.x >> 5) + 2 : K / 8; /* tiles of 8 keys not all after the warp's rows */
    float s[K / 8][4]; /* S = Q K^T, 16 x K: K / 8 tiles of 16 x 8 */
    for (int nt = 0; nt < K / 8; nt++) {
      for (int x = 0; x < 4; x++) s[nt][x] = 0.f;
      if (nt < live_nt) /* the same for the whole warp */
        for (int kk = 0; kk < D / 16; kk++) {
          const unsigned bk[2] = {ks[nt * 8 + g][kk * 8 + t], ks[nt * 8 + g][kk * 8 + 4 + t]};
          pc_mma_bf16_16816(s[nt], qa[kk], bk);
        }
    }
    if (diag)
      for (int nt = 0; nt < K / 8; nt++)
        for (int x = 0; x < 4; x++)
          if (j0 + nt * 8 + 2 * t + (x & 1) > rows[x >> 1]) s[nt][x] = -PC_INF;
    float mx[2] = {m[0], m[1]}; /* every row has a key in every tile: mx is finite */
    for (int nt = 0; nt < K / 8; nt++) {
      mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
    }
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    const float c0 = exp2f(m[0] - mx[0]), c1 = exp2f(m[1] - mx[1]); /* 0 on the first tile */
    m[0] = mx[0];
    m[1] = mx[1];
    l[0] *= c0;
    l[1] *= c1;
    for (int nd = 0; nd < D / 8; nd++) {
      o[nd][0] *= c0;
      o[nd][1] *= c0;
      o[nd][2] *= c1;
      o[nd][3] *= c1;
    }
    for (int kk = 0; kk < K / 16; kk++) { /* O += P V, 16 keys at a time */
      float p[2][4];
      for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++) {
          p[y][x] = exp2f(s[2 * kk + y][x] - m[x >> 1]);
          l[x >> 1] += p[y][x];
        }
      const unsigned pa[4] = {pc_bf16x2(p[0][0], p[0][1]), pc_bf16x2(p[0][2], p[0][3]), pc_bf16x2(p[1][0], p[1][1]),
                              pc_bf16x2(p[1][2], p[1][3])};
      for (int nd = 0; nd < D / 8 && 2 * kk < live_nt; nd++) { /* p is 0 past live_nt */
        const unsigned bv[2] = {vt[nd * 8 + g][kk * 8 + t], vt[nd * 8 + g][kk * 8 + 4 + t]};
        pc_mma_bf16_16816(o[nd], pa, bv);
      }
    }
  }
  for (int r = 0; r < 2; r++) /* the row's sums over its 4 lanes */
    for (int x = 1; x < 4; x <<= 1) l[r] += __shfl_xor_sync(0xffffffffu, l[r], x);
  for (int r = 0; r < 2; r++) {
    const i64 i = rows[r], row = (b * a.T + i) * Cq + h * D + 2 * t;
    if (i >= a.T) continue;
    const float inv = 1.f / l[r];
    for (int nd = 0; nd < D / 8; nd++) {
      pc_attn_store_y(a, row + nd * 8, o[nd][2 * r] * inv);
      pc_attn_store_y(a, row + nd * 8 + 1, o[nd][2 * r + 1] * inv);
    }
    if (t == 0) a.lse[bh * a.T + i] = (m[r] + log2f(l[r])) * 0.6931471805599453f; /* ln 2 */
  }
}

/* ---- the gradient's dq and dk/dv on tensor cores (bf16 precision) ------------------ */

/* Block shape of the tensor-core dq and dk/dv (cuda_library.c knows it too):
 * 64 rows of the block's own side (query rows for dq, key rows for dk/dv),
 * a warp per 16, and tiles of the other side in shared memory, both as
 * [row][d] (the B operand of a product over d) and transposed, [d][row]
 * (the B operand of a product over rows), as bf16 pairs. Rows padded by 4
 * words as in the forward: every stride is 4 (mod 8) words, so a
 * fragment's loads ([8 rows][4 words]) hit 32 banks. Tiles of 32 rows
 * past D = 64 keep static shared memory under 48 KiB. */
template <int D> struct PcAttnTcBwdShape {
  static const int ROWS = 64;
  static const int TILE = D <= 64 ? 64 : 32;
  static const int RW = D / 2 + 4;    /* [row][d] stride in words */
  static const int TW = TILE / 2 + 4; /* [d][row] stride in words */
};

/* pc_attn_dq on tensor cores: a warp per 16 query rows, Q (times the scale
 * and log2 e, as in the forward) and dY as bf16 A fragments, key tiles as
 * bf16 in shared memory (k as [j][d] and [d][j], v as [j][d]); 16 keys at a
 * time S = Q K^T and dP = dY V^T by mma, P = exp2(S - lse log2 e) (lse is
 * in natural-log units, as both forwards write it), dS = P (dP - delta)
 * rounded to bf16 straight from the accumulators (the C-to-A reuse of the
 * forward), dQ += dS K by mma; dQ times the scale at the end. */
template <int D> static __device__ void pc_attn_dq_tc(const PcAttn &a) {
  static_assert(D % 16 == 0 && D <= 128, "head dims of 16, 32, .., 128");
  const int R = PcAttnTcBwdShape<D>::ROWS, K = PcAttnTcBwdShape<D>::TILE, RW = PcAttnTcBwdShape<D>::RW,
            TW = PcAttnTcBwdShape<D>::TW;
  __shared__ unsigned ks[K][RW], vs[K][RW], kt[D][TW]; /* ks[j][c]: k[j][2c, 2c+1]; kt[d][c]: k[2c, 2c+1][d] */
  const PcAttnQueryBlock blk = pc_attn_query_block(a, D, R);
  const i64 b = blk.b, h = blk.h, bh = blk.bh, Cq = blk.Cq;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const i64 first = blk.first + (threadIdx.x >> 5) * 16, rows[2] = {first + g, first + g + 8}; /* the warp's, this lane's */
  const float sc = a.scale * 1.4426950408889634f; /* log2(e) */
  unsigned qa[D / 16][4], dya[D / 16][4];
  for (int kd = 0; kd < D / 16; kd++)
    for (int x = 0; x < 4; x++) {
      const i64 i = rows[x & 1], c = kd * 16 + (x >> 1) * 8 + 2 * t, at = (b * a.T + i) * Cq + h * D + c;
      const float *qr = blk.q + i * a.qrs;
      qa[kd][x] = i < a.T ? pc_bf16x2(pc_attn_ld(qr, blk.qbias, c) * sc, pc_attn_ld(qr, blk.qbias, c + 1) * sc) : 0u;
      dya[kd][x] = i < a.T ? pc_bf16x2(a.dy[at], a.dy[at + 1]) : 0u;
    }
  float ls[2], dl[2]; /* lse in log2 units, delta */
  for (int r = 0; r < 2; r++) {
    ls[r] = rows[r] < a.T ? a.lse[bh * a.T + rows[r]] * 1.4426950408889634f : 0.f;
    dl[r] = rows[r] < a.T ? a.delta[bh * a.T + rows[r]] : 0.f;
  }
  float dq[D / 8][4];
  for (int nd = 0; nd < D / 8; nd++)
    for (int x = 0; x < 4; x++) dq[nd][x] = 0.f;
  const i64 end = pc_min64(a.T, blk.first + R);
#pragma unroll 1
  for (i64 j0 = 0; j0 < end; j0 += K) {
    __syncthreads(); /* the last tile is read */
    for (int z = threadIdx.x; z < K * (D / 2); z += blockDim.x) {
      const int r = z / (D / 2), c = z % (D / 2);
      const float *kr = blk.k + (j0 + r) * a.krs, *vr = blk.v + (j0 + r) * a.vrs;
      const bool in = j0 + r < a.T;
      ks[r][c] = in ? pc_bf16x2(pc_attn_ld(kr, blk.kbias, 2 * c), pc_attn_ld(kr, blk.kbias, 2 * c + 1)) : 0u;
      vs[r][c] = in ? pc_bf16x2(pc_attn_ld(vr, blk.vbias, 2 * c), pc_attn_ld(vr, blk.vbias, 2 * c + 1)) : 0u;
    }
    for (int z = threadIdx.x; z < (K / 2) * D; z += blockDim.x) {
      const int c = z / D, d = z % D;
      const i64 j = j0 + 2 * c;
      kt[d][c] = pc_bf16x2(j < a.T ? pc_attn_ld(blk.k + j * a.krs, blk.kbias, d) : 0.f,
                           j + 1 < a.T ? pc_attn_ld(blk.k + (j + 1) * a.krs, blk.kbias, d) : 0.f);
    }
    __syncthreads();
#pragma unroll 1
    for (int kc = 0; kc < K / 16; kc++) { /* 16 keys at a time */
      const i64 jc = j0 + kc * 16;
      if (jc > first + 15) break; /* keys after all the warp's rows (the same for the whole warp) */
      float s[2][4], dp[2][4];
      for (int y = 0; y < 2; y++) {
        for (int x = 0; x < 4; x++) s[y][x] = dp[y][x] = 0.f;
        for (int kd = 0; kd < D / 16; kd++) {
          const int j = kc * 16 + y * 8 + g;
          const unsigned bk[2] = {ks[j][kd * 8 + t], ks[j][kd * 8 + 4 + t]}, bv[2] = {vs[j][kd * 8 + t], vs[j][kd * 8 + 4 + t]};
          pc_mma_bf16_16816(s[y], qa[kd], bk);
          pc_mma_bf16_16816(dp[y], dya[kd], bv);
        }
      }
      float ds[2][4];
      for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++) {
          const i64 i = rows[x >> 1], j = jc + y * 8 + 2 * t + (x & 1);
          const float p = j <= i && i < a.T ? exp2f(s[y][x] - ls[x >> 1]) : 0.f; /* causal; rows past T are 0 */
          ds[y][x] = p * (dp[y][x] - dl[x >> 1]);
        }
      const unsigned da[4] = {pc_bf16x2(ds[0][0], ds[0][1]), pc_bf16x2(ds[0][2], ds[0][3]), pc_bf16x2(ds[1][0], ds[1][1]),
                              pc_bf16x2(ds[1][2], ds[1][3])};
      for (int nd = 0; nd < D / 8; nd++) {
        const unsigned bk[2] = {kt[nd * 8 + g][kc * 8 + t], kt[nd * 8 + g][kc * 8 + 4 + t]};
        pc_mma_bf16_16816(dq[nd], da, bk);
      }
    }
  }
  for (int r = 0; r < 2; r++) {
    const i64 i = rows[r], row = (b * a.T + i) * a.dqrs + h * D + 2 * t;
    if (i >= a.T) continue;
    for (int nd = 0; nd < D / 8; nd++) {
      pc_attn_store(a.dq, a.dqh, row + nd * 8, dq[nd][2 * r] * a.scale);
      pc_attn_store(a.dq, a.dqh, row + nd * 8 + 1, dq[nd][2 * r + 1] * a.scale);
    }
  }
}

/* pc_attn_dkv on tensor cores: a warp per 16 key rows of one (batch, KV
 * head), K and V as bf16 A fragments; over every query head of the group
 * and the query tiles from the block's first key on, Q (times the scale
 * and log2 e) and dY as bf16 in shared memory ([i][d] and [d][i] each),
 * lse (in log2 units) and delta beside them. 16 queries at a time S^T =
 * K Q^T and dP^T = V dY^T by mma, P^T = exp2(S^T - lse), dS^T = P^T (dP^T
 * - delta), both rounded to bf16 A fragments from the accumulators, dV +=
 * P^T dY and dK += dS^T Q by mma. Q carries scale log2 e, so dK is times
 * ln 2 at the end. Each block writes its own key rows: no atomics. */
template <int D> static __device__ void pc_attn_dkv_tc(const PcAttn &a) {
  static_assert(D % 16 == 0 && D <= 128, "head dims of 16, 32, .., 128");
  const int R = PcAttnTcBwdShape<D>::ROWS, Q = PcAttnTcBwdShape<D>::TILE, RW = PcAttnTcBwdShape<D>::RW,
            TW = PcAttnTcBwdShape<D>::TW;
  __shared__ unsigned qs[Q][RW], dys[Q][RW], qt[D][TW], dyt[D][TW]; /* qs[i][c]: q[i][2c, 2c+1]; qt[d][c]: q[2c, 2c+1][d] */
  __shared__ float ls[Q], dl[Q];
  const i64 nb = (a.T + R - 1) / R, bg = blockIdx.x / nb, kb = (i64)blockIdx.x % nb; /* most queries first */
  const i64 b = bg / a.Hkv, hk = bg % a.Hkv, group = a.H / a.Hkv, Cq = a.H * D;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const i64 first = kb * R + (threadIdx.x >> 5) * 16, rows[2] = {first + g, first + g + 8}; /* key rows */
  const float sc = a.scale * 1.4426950408889634f; /* log2(e) */
  const float *kbias = pc_attn_bias(a.kbias, hk * D), *vbias = pc_attn_bias(a.vbias, hk * D);
  unsigned ka[D / 16][4], va[D / 16][4];
  for (int kd = 0; kd < D / 16; kd++)
    for (int x = 0; x < 4; x++) {
      const i64 j = rows[x & 1], c = kd * 16 + (x >> 1) * 8 + 2 * t;
      const float *kr = a.k + (b * a.T + j) * a.krs + hk * D, *vr = a.v + (b * a.T + j) * a.vrs + hk * D;
      ka[kd][x] = j < a.T ? pc_bf16x2(pc_attn_ld(kr, kbias, c), pc_attn_ld(kr, kbias, c + 1)) : 0u;
      va[kd][x] = j < a.T ? pc_bf16x2(pc_attn_ld(vr, vbias, c), pc_attn_ld(vr, vbias, c + 1)) : 0u;
    }
  float dk[D / 8][4], dv[D / 8][4];
  for (int nd = 0; nd < D / 8; nd++)
    for (int x = 0; x < 4; x++) dk[nd][x] = dv[nd][x] = 0.f;
#pragma unroll 1
  for (i64 gi = 0; gi < group; gi++) {
    const i64 h = hk * group + gi, bh = b * a.H + h;
    const float *qb = a.q + b * a.T * a.qrs + h * D, *qbias = pc_attn_bias(a.qbias, h * D), *dyb = a.dy + b * a.T * Cq + h * D;
#pragma unroll 1
    for (i64 i0 = kb * R; i0 < a.T; i0 += Q) {
      __syncthreads(); /* the last tile is read */
      for (int z = threadIdx.x; z < Q * (D / 2); z += blockDim.x) {
        const int r = z / (D / 2), c = z % (D / 2);
        const i64 at = (i0 + r) * Cq + 2 * c;
        const float *qr = qb + (i0 + r) * a.qrs;
        const bool in = i0 + r < a.T;
        qs[r][c] = in ? pc_bf16x2(pc_attn_ld(qr, qbias, 2 * c) * sc, pc_attn_ld(qr, qbias, 2 * c + 1) * sc) : 0u;
        dys[r][c] = in ? pc_bf16x2(dyb[at], dyb[at + 1]) : 0u;
      }
      for (int z = threadIdx.x; z < (Q / 2) * D; z += blockDim.x) {
        const int c = z / D, d = z % D;
        const i64 i = i0 + 2 * c, at = i * Cq + d;
        qt[d][c] = pc_bf16x2(i < a.T ? pc_attn_ld(qb + i * a.qrs, qbias, d) * sc : 0.f,
                             i + 1 < a.T ? pc_attn_ld(qb + (i + 1) * a.qrs, qbias, d) * sc : 0.f);
        dyt[d][c] = pc_bf16x2(i < a.T ? dyb[at] : 0.f, i + 1 < a.T ? dyb[at + Cq] : 0.f);
      }
      for (int z = threadIdx.x; z < Q; z += blockDim.x) {
        const i64 i = i0 + z;
        ls[z] = i < a.T ? a.lse[bh * a.T + i] * 1.4426950408889634f : 0.f;
        dl[z] = i < a.T ? a.delta[bh * a.T + i] : 0.f;
      }
      __syncthreads();
#pragma unroll 1
      for (int c = 0; c < Q / 16; c++) { /* 16 queries at a time */
        const i64 ic = i0 + c * 16;
        if (ic >= a.T) break;
        if (ic + 15 < first) continue; /* queries before all the warp's keys (the same for the whole warp) */
        float s[2][4], dp[2][4];
        for (int y = 0; y < 2; y++) {
          for (int x = 0; x < 4; x++) s[y][x] = dp[y][x] = 0.f;
          for (int kd = 0; kd < D / 16; kd++) {
            const int i = c * 16 + y * 8 + g;
            const unsigned bq[2] = {qs[i][kd * 8 + t], qs[i][kd * 8 + 4 + t]},
                           bd[2] = {dys[i][kd * 8 + t], dys[i][kd * 8 + 4 + t]};
            pc_mma_bf16_16816(s[y], ka[kd], bq);
            pc_mma_bf16_16816(dp[y], va[kd], bd);
          }
        }
        float p[2][4], ds[2][4];
        for (int y = 0; y < 2; y++)
          for (int x = 0; x < 4; x++) {
            const int col = c * 16 + y * 8 + 2 * t + (x & 1);
            const i64 i = i0 + col, j = rows[x >> 1];
            p[y][x] = i >= j && i < a.T ? exp2f(s[y][x] - ls[col]) : 0.f; /* causal; keys past T are 0 */
            ds[y][x] = p[y][x] * (dp[y][x] - dl[col]);
          }
        const unsigned pa[4] = {pc_bf16x2(p[0][0], p[0][1]), pc_bf16x2(p[0][2], p[0][3]), pc_bf16x2(p[1][0], p[1][1]),
                                pc_bf16x2(p[1][2], p[1][3])},
                       da[4] = {pc_bf16x2(ds[0][0], ds[0][1]), pc_bf16x2(ds[0][2], ds[0][3]),
                                pc_bf16x2(ds[1][0], ds[1][1]), pc_bf16x2(ds[1][2], ds[1][3])};
        for (int nd = 0; nd < D / 8; nd++) {
          const unsigned bd[2] = {dyt[nd * 8 + g][c * 8 + t], dyt[nd * 8 + g][c * 8 + 4 + t]},
                         bq[2] = {qt[nd * 8 + g][c * 8 + t], qt[nd * 8 + g][c * 8 + 4 + t]};
          pc_mma_bf16_16816(dv[nd], pa, bd);
          pc_mma_bf16_16816(dk[nd], da, bq);
        }
      }
    }
  }
  for (int r = 0; r < 2; r++) {
    const i64 j = rows[r], krow = (b * a.T + j) * a.dkrs + hk * D + 2 * t, vrow = (b * a.T + j) * a.dvrs + hk * D + 2 * t;
    if (j >= a.T) continue;
    for (int nd = 0; nd < D / 8; nd++) {
      pc_attn_store(a.dk, a.dkh, krow + nd * 8, dk[nd][2 * r] * 0.6931471805599453f); /* ln 2: Q carried log2 e */
      pc_attn_store(a.dk, a.dkh, krow + nd * 8 + 1, dk[nd][2 * r + 1] * 0.6931471805599453f);
      pc_attn_store(a.dv, a.dvh, vrow + nd * 8, dv[nd][2 * r]);
      pc_attn_store(a.dv, a.dvh, vrow + nd * 8 + 1, dv[nd][2 * r + 1]);
    }
  }
}
