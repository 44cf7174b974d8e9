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
 * the gradient computes once (log-sum-exp of the scaled scores, and
 * dy . y) and its two other kernels read. Scores use q pre-multiplied by
 * the scale in every kernel, so the backward recomputes exactly the
 * forward's probabilities. Every thread writes whole rows of its own: no
 * atomics, the same bits on every run. */

struct PcAttn {
  const float *q, *k, *v, *dy;
  float *y, *dq, *dk, *dv, *lse, *delta;
  i64 B, T, H, Hkv;
  float scale;
};

/* Block shape by head dim, sized so that registers (two rows of D) and
 * static shared memory (under 48 KiB) fit up to D = 128. */
template <int D> struct PcAttnShape {
  static const int ROWS = D <= 64 ? 64 : 32;  /* threads per block, one row each */
  static const int KEYS = D <= 64 ? 32 : 16;  /* key rows per shared tile (forward, dq) */
  static const int QROWS = D <= 64 ? 16 : 8;  /* query rows per shared tile (dk, dv) */
};

/* y = softmax(q k^T scale) v, causal. With lse/delta set (the gradient's
 * first kernel) it writes the row statistics instead of (or with) y. */
template <int D> static __device__ void pc_attn_fwd(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, K = PcAttnShape<D>::KEYS;
  __shared__ float ks[K][D], vs[K][D];
  const i64 nb = (a.T + R - 1) / R, bh = blockIdx.x / nb, qb = nb - 1 - (i64)blockIdx.x % nb; /* longest rows first */
  const i64 b = bh / a.H, h = bh % a.H, hk = h / (a.H / a.Hkv), Cq = a.H * D, Ckv = a.Hkv * D;
  const i64 i = qb * R + threadIdx.x, row = (b * a.T + i) * Cq + h * D;
  const bool live = i < a.T;
  const float *kb = a.k + b * a.T * Ckv + hk * D, *vb = a.v + b * a.T * Ckv + hk * D;
  float q[D], o[D];
  for (int d = 0; d < D; d++) {
    q[d] = live ? a.q[row + d] * a.scale : 0.f;
    o[d] = 0.f;
  }
  float m = -PC_INF, l = 0.f;
  const i64 end = pc_min64(a.T, (qb + 1) * R);
  for (i64 j0 = 0; j0 < end; j0 += K) {
    __syncthreads(); /* the last tile is read */
    for (int z = threadIdx.x; z < K * D; z += blockDim.x) {
      const int r = z / D, c = z % D;
      const i64 j = j0 + r;
      ks[r][c] = j < a.T ? kb[j * Ckv + c] : 0.f;
      vs[r][c] = j < a.T ? vb[j * Ckv + c] : 0.f;
    }
    __syncthreads();
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
  if (a.y)
    for (int d = 0; d < D; d++) a.y[row + d] = o[d] * inv;
  if (a.lse) a.lse[bh * a.T + i] = m + logf(l);
  if (a.delta) {
    float x = 0.f;
    for (int d = 0; d < D; d++) x += a.dy[row + d] * o[d];
    a.delta[bh * a.T + i] = x * inv;
  }
}

/* dq_i = scale sum_j p_ij (dp_ij - delta_i) k_j, dp_ij = dy_i . v_j; a
 * thread per query row, key tiles in shared memory. */
template <int D> static __device__ void pc_attn_dq(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, K = PcAttnShape<D>::KEYS;
  __shared__ float ks[K][D], vs[K][D], dys[R][D + 1]; /* + 1: a thread's own row, no bank conflicts */
  const i64 nb = (a.T + R - 1) / R, bh = blockIdx.x / nb, qb = nb - 1 - (i64)blockIdx.x % nb;
  const i64 b = bh / a.H, h = bh % a.H, hk = h / (a.H / a.Hkv), Cq = a.H * D, Ckv = a.Hkv * D;
  const i64 i = qb * R + threadIdx.x, row = (b * a.T + i) * Cq + h * D;
  const bool live = i < a.T;
  const float *kb = a.k + b * a.T * Ckv + hk * D, *vb = a.v + b * a.T * Ckv + hk * D;
  float q[D], dq[D];
  for (int d = 0; d < D; d++) {
    q[d] = live ? a.q[row + d] * a.scale : 0.f;
    dq[d] = 0.f;
    dys[threadIdx.x][d] = live ? a.dy[row + d] : 0.f;
  }
  const float lse = live ? a.lse[bh * a.T + i] : 0.f, delta = live ? a.delta[bh * a.T + i] : 0.f;
  const i64 end = pc_min64(a.T, (qb + 1) * R);
  for (i64 j0 = 0; j0 < end; j0 += K) {
    __syncthreads();
    for (int z = threadIdx.x; z < K * D; z += blockDim.x) {
      const int r = z / D, c = z % D;
      const i64 j = j0 + r;
      ks[r][c] = j < a.T ? kb[j * Ckv + c] : 0.f;
      vs[r][c] = j < a.T ? vb[j * Ckv + c] : 0.f;
    }
    __syncthreads();
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
    for (int d = 0; d < D; d++) a.dq[row + d] = dq[d];
}

/* dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dy_i over i >= j and every
 * query head of kv head hk; a thread per key row, query tiles in shared
 * memory. */
template <int D> static __device__ void pc_attn_dkv(const PcAttn &a) {
  const int R = PcAttnShape<D>::ROWS, Q = PcAttnShape<D>::QROWS;
  __shared__ float kr[R][D + 1], vr[R][D + 1], qs[Q][D], dys[Q][D], ls[Q], dl[Q];
  const i64 nb = (a.T + R - 1) / R, bg = blockIdx.x / nb, kb = (i64)blockIdx.x % nb; /* most queries first */
  const i64 b = bg / a.Hkv, hk = bg % a.Hkv, group = a.H / a.Hkv, Cq = a.H * D, Ckv = a.Hkv * D;
  const i64 j = kb * R + threadIdx.x, krow = (b * a.T + j) * Ckv + hk * D;
  const bool live = j < a.T;
  const int t = threadIdx.x;
  float dk[D], dv[D];
  for (int d = 0; d < D; d++) {
    kr[t][d] = live ? a.k[krow + d] : 0.f;
    vr[t][d] = live ? a.v[krow + d] : 0.f;
    dk[d] = dv[d] = 0.f;
  }
  for (i64 g = 0; g < group; g++) {
    const i64 h = hk * group + g, bh = b * a.H + h;
    for (i64 i0 = kb * R; i0 < a.T; i0 += Q) {
      __syncthreads();
      for (int z = threadIdx.x; z < Q * D; z += blockDim.x) {
        const int r = z / D, c = z % D;
        const i64 i = i0 + r, at = (b * a.T + i) * Cq + h * D + c;
        qs[r][c] = i < a.T ? a.q[at] * a.scale : 0.f;
        dys[r][c] = i < a.T ? a.dy[at] : 0.f;
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
      a.dk[krow + d] = dk[d];
      a.dv[krow + d] = dv[d];
    }
}
