#include "quant.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "rmsnorm.cuh"

namespace casspec::cuda {

namespace {

constexpr int kQuantThreads = 256;

// Same operations as quantizeRow in native/cpu/quant.cpp.
__device__ __forceinline__ uint32_t code(float v, float scale) {
  const float c = scale > 0.f ? rintf(__fdiv_rn(v, scale)) : 0.f;
  return (uint32_t)(uint8_t)(int8_t)fminf(127.f, fmaxf(-127.f, c));
}

template <class H>
__global__ void __launch_bounds__(kQuantThreads) quantizeKernel(const QuantArgs a) {
  __shared__ float rstd, warpMax[kQuantThreads / 32];
  const Params P{a.params};
  gridDepWait();
  gridDepLaunch();
  const int t = blockIdx.x;
  if (t >= P.n()) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* xr = a.x + (size_t)t * a.ldx;
  if (a.src == QuantSource::Norm && warp == 0) {
    const float r = warpRstd(xr, a.K, a.eps, lane);
    if (lane == 0) rstd = r;
  }
  __syncthreads();
  auto value = [&](int k) -> float {
    if (k >= a.K) return 0.f;
    switch (a.src) {
      case QuantSource::Norm: return normValue(xr[k], a.normW[k], rstd);
      case QuantSource::Packed16: {
        const uint16_t* p = static_cast<const uint16_t*>(a.packed);
        const size_t i = packedB(t, k, a.packedKT);
        return __fadd_rn(Half<H>::fromBits(p[i]), Half<H>::fromBits(p[i + kPackedLo]));
      }
      default: return xr[k];
    }
  };

  float m = 0.f;
  for (int k = threadIdx.x; k < a.K; k += kQuantThreads) m = fmaxf(m, fabsf(value(k)));
#pragma unroll
  for (int s = 16; s >= 1; s >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
  if (lane == 0) warpMax[warp] = m;
  __syncthreads();
  float absmax = 0.f;
#pragma unroll
  for (int w = 0; w < kQuantThreads / 32; ++w) absmax = fmaxf(absmax, warpMax[w]);
  const float scale = __fdiv_rn(absmax, 127.f);
  if (threadIdx.x == 0) a.sx[t] = scale;

  // One 32-bit word = 4 consecutive k of this token (layout.cuh); padding up to KT8 * 32 gets 0.
  uint8_t* xq = static_cast<uint8_t*>(a.xq);
  for (int w = threadIdx.x; w < a.KT8 * 8; w += kQuantThreads) {
    const int k0 = 4 * w;
    const uint32_t word = code(value(k0), scale) | code(value(k0 + 1), scale) << 8 | code(value(k0 + 2), scale) << 16 |
                          code(value(k0 + 3), scale) << 24;
    *reinterpret_cast<uint32_t*>(xq + packedB8(t, k0, a.KT8)) = word;
  }
}

}  // namespace

void launchQuantize(const QuantArgs& a, int maxTokens, bool bf16, bool pdl, cudaStream_t stream) {
  if (bf16)
    launchKernel(quantizeKernel<__nv_bfloat16>, dim3(maxTokens), dim3(kQuantThreads), 0, stream, pdl, "quantizeKernel", a);
  else
    launchKernel(quantizeKernel<__half>, dim3(maxTokens), dim3(kQuantThreads), 0, stream, pdl, "quantizeKernel", a);
}

}  // namespace casspec::cuda
