// The dense tensor-core ceiling the prefill number is reported against: wgmma (sm_90a's
// warpgroup MMA, the instruction that reaches Hopper's datasheet rate) issued back to back by every
// SM, m64n128k16 with fp32 accumulation, operands in shared memory (their values do not matter for
// the rate, only that they are ordinary numbers), through the matrix kernel's own wrappers
// (native/cuda/wgmma.cuh). Attention uses mma.sync, which tops out lower (gemm_peak.cu).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../../native/cuda/wgmma.cuh"
#include "bench_util.cuh"

namespace {

using namespace casspec::cuda;

constexpr int kWgIters = 2048, kWgPerGroup = 4;  // wgmma per commit group (k-steps of a 64-deep tile)

template <bool F16>
__global__ void __launch_bounds__(128) wgmmaThroughputKernel(float* out, uint32_t seed) {
  __shared__ __align__(1024) uint16_t sm[16384];  // 32 KB of operands
  for (int i = threadIdx.x; i < 16384; i += 128) {
    const float v = (float)((i * 2654435761u ^ seed) >> 24) / 256.0f - 0.5f;  // [-0.5, 0.5)
    const uint32_t bits = __float_as_uint(v);
    sm[i] = F16 ? __half_as_ushort(__float2half_rn(v)) : (uint16_t)(bits >> 16);
  }
  fenceProxyAsync();  // generic-proxy writes -> wgmma reads
  __syncthreads();
  using T = std::conditional_t<F16, __half, __nv_bfloat16>;
  float d[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) d[i] = 0.f;
  // No swizzle; leading byte offset 128 B, stride byte offset 256 B: every address the descriptors
  // reach stays inside the 32 KB buffer.
  const uint64_t da = gmmaDesc(sm, 128, 256), db = gmmaDesc(sm + 4096, 128, 256);
  for (int it = 0; it < kWgIters; ++it) {
    wgmmaFence();
#pragma unroll
    for (int k = 0; k < kWgPerGroup; ++k) Wgmma<128>::mma<T>(d, da + 2 * k, db + 2 * k);  // next 32 bytes along K
    wgmmaCommit();
    wgmmaWait<1>();  // one group stays in flight
  }
  wgmmaWait<0>();
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) sum += d[i];
  if (sum == 1234.5f) out[blockIdx.x] = sum;  // keeps the work alive; never true for these inputs
}

}  // namespace

// Dense FLOP/s of wgmma m64n128k16 (f16 or bf16 inputs, fp32 accumulate) issued by 2 warpgroups per
// SM (median of 10); 0 when this build has no sm_90a code (the PTX fallback cannot express wgmma).
double wgmmaPeak(bool f16) {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  float* out;
  CK(cudaMalloc(&out, (size_t)sms * 2 * 4));
  const int blocks = sms * 2;
  const double med = medianMs([&](int i) {
    if (f16)
      wgmmaThroughputKernel<true><<<blocks, 128>>>(out, 7u + i);
    else
      wgmmaThroughputKernel<false><<<blocks, 128>>>(out, 7u + i);
  });
  CK(cudaGetLastError());
  CK(cudaFree(out));
  const double flops = 2.0 * 64 * 128 * 16 * (double)kWgPerGroup * kWgIters * blocks;
  return flops / (med * 1e-3);
}
