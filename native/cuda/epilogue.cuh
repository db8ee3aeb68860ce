// Per-element epilogue math of a projection, for the matrix kernels: which output pair an epilogue
// item is, RoPE + placement of a fused q/k/v output (queries to fp32 scratch, keys and values to the
// KV cache), and SwiGLU's product.
// Written once here so every matrix kernel (linear.cu, linear_q8.cu) rounds them alike.
#pragma once
#include <cstdint>

#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"

namespace casspec::cuda {

// Epilogue item e of a block with ntiles n-tiles: warp tile w, n-tile nt, lane l and column jj of
// the lane's pair (rows g and g + 8 of the tile, token 2 * (l % 4) + jj of the n-tile).
struct EpiItem {
  int w, nt, l, jj;
};
__device__ __forceinline__ EpiItem epiItem(int e, int ntiles) {
  const int rem = e % (ntiles * 64);
  return {e / (ntiles * 64), rem / 64, (rem / 2) % 32, rem & 1};
}

template <class H>
__device__ __forceinline__ void storeKvValue(void* base, size_t i, float v, bool f32) {
  if (f32)
    static_cast<float*>(base)[i] = v;
  else
    static_cast<uint16_t*>(base)[i] = Half<H>::bits(v);
}

struct QkvOut {
  float* q;       // rotated queries [tokens][heads*headDim]
  void* kCache;   // this layer's K and V [slot][kvDim]
  void* vCache;
  bool kvF32;
  int heads, kvHeads, headDim;
  const float* invFreq;  // [headDim/2]
};

// Rows m0 and m0 + 8 of a fused-qkv row tile (RoPE row order, layout.cuh) for token t: head dims
// i and i + d/2 of one head, rotated together (HF rotate_half, angle = pos * inv_freq in fp32).
template <class H>
__device__ __forceinline__ void qkvPair(const QkvOut& o, const Params& P, int m0, int t, float v0, float v1) {
  const int d = o.headDim, Q = o.heads * d, KV = o.kvHeads * d;
  const int region = m0 < Q ? 0 : m0 < Q + KV ? 1 : 2;
  const int base = region == 0 ? 0 : region == 1 ? Q : Q + KV;
  const int head = (m0 - base) / d, i = ropeSourceDim((m0 - base) % d, d);
  float o1 = v0, o2 = v1;
  if (region < 2) {
    const float ang = __fmul_rn((float)P.positions()[t], o.invFreq[i]);
    float sn, cs;
    sincosf(ang, &sn, &cs);
    o1 = __fadd_rn(__fmul_rn(v0, cs), __fmul_rn(-v1, sn));
    o2 = __fadd_rn(__fmul_rn(v1, cs), __fmul_rn(v0, sn));
  }
  if (region == 0) {
    float* q = o.q + (size_t)t * Q + head * d;
    q[i] = o1;
    q[i + d / 2] = o2;
  } else {
    const size_t row = (size_t)P.slots()[t] * KV + head * d;
    void* dst = region == 1 ? o.kCache : o.vCache;
    storeKvValue<H>(dst, row + i, o1, o.kvF32);
    storeKvValue<H>(dst, row + i + d / 2, o2, o.kvF32);
  }
}

// silu(g) * u = g / (1 + exp(-g)) * u, in the CPU backend's order.
__device__ __forceinline__ float siluMul(float g, float u) { return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u); }

// Row f of the ffn for gate row m0 of the interleaved gate/up matrix (layout.cuh gateUpPackedRow).
__device__ __forceinline__ int ffnRowOfGate(int m0) { return (m0 / 32) * 16 + (m0 % 16); }

}  // namespace casspec::cuda
