// RMSNorm pieces shared by the norm kernel (16-bit path) and the int8 path's quantize kernel, and
// the packed-activation stores. A token's sum of squares is always reduced by one warp in the same
// lane/stride pattern, whatever kernel, block size or batch it runs in.
#pragma once
#include <cstdint>

#include "layout.cuh"
#include "mma.cuh"

namespace casspec::cuda {

// 1 / sqrt(mean(x^2) + eps) over x[0..n), HF's LlamaRMSNorm in fp32. Every lane returns the same value.
// UNROLL: loads in flight per lane (registers for latency; the sums' order, so the bits, are the same
// for every UNROLL).
template <int UNROLL = 8>
__device__ __forceinline__ float warpRstd(const float* __restrict__ x, int n, float eps, int lane) {
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  if ((n & 3) == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    // Lane l sums float4s l, l+32, ...: independent 16-byte loads (a 4096-wide row is 32 per lane).
    const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll UNROLL
    for (int k = lane; k < n / 4; k += 32) {
      const float4 v = x4[k];
      a0 += v.x * v.x;
      a1 += v.y * v.y;
      a2 += v.z * v.z;
      a3 += v.w * v.w;
    }
  } else {
    for (int k = lane; k < n; k += 32) a0 += x[k] * x[k];
  }
  float s = (a0 + a1) + (a2 + a3);
  // Butterfly: lane l and l^m add the same two numbers, so every lane ends with identical bits.
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
  return 1.0f / sqrtf(s / (float)n + eps);
}

// w * (x * r), in that order (as HF and the CPU backend).
__device__ __forceinline__ float normValue(float x, float w, float r) { return __fmul_rn(w, __fmul_rn(x, r)); }

// Eight consecutive normalised values k0 .. k0 + 7 of token row `xr` (fp32, already offset to the
// token; k0 a multiple of 8), as the hi and lo 16-byte runs of a packed activation (layout.cuh).
template <class H>
__device__ __forceinline__ void normRun8(const float* __restrict__ xr, const float* __restrict__ w, float r, int k0, int K,
                                         uint4& hi, uint4& lo) {
  uint16_t h[8], l[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int k = k0 + j;
    splitHiLo<H>(k < K ? normValue(xr[k], w[k], r) : 0.f, h[j], l[j]);
  }
  hi = make_uint4(pack2(h[0], h[1]), pack2(h[2], h[3]), pack2(h[4], h[5]), pack2(h[6], h[7]));
  lo = make_uint4(pack2(l[0], l[1]), pack2(l[2], l[3]), pack2(l[4], l[5]), pack2(l[6], l[7]));
}

// Writes one fp32 activation value into a packed B buffer (hi and lo halves).
template <class H>
__device__ __forceinline__ void storePacked(uint16_t* __restrict__ dst, int64_t t, int64_t k, int KT, float v) {
  uint16_t hi, lo;
  splitHiLo<H>(v, hi, lo);
  const size_t i = packedB(t, k, KT);
  dst[i] = hi;
  dst[i + kPackedLo] = lo;
}

}  // namespace casspec::cuda
