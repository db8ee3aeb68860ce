// The dense tensor-core ceiling the prefill number is reported against: wgmma (sm_90a's
// warpgroup MMA, the instruction that reaches Hopper's datasheet rate) issued back to back by every
// SM, m64n128k16 with fp32 accumulation, operands in shared memory (their values do not matter for
// the rate, only that they are ordinary numbers). Our kernels use mma.sync, which tops out lower
// (gemm_peak.cu measures that ceiling).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "bench_util.cuh"

namespace {

constexpr int kWgIters = 2048, kWgPerGroup = 4;  // wgmma per commit group (k-steps of a 64-deep tile)

__device__ __forceinline__ uint64_t smemDesc(const void* p) {
  // No swizzle; leading byte offset 128 B, stride byte offset 256 B (in 16-byte units): every
  // address the descriptors reach stays inside the 32 KB buffer below.
  const uint64_t a = (uint64_t)__cvta_generic_to_shared(p);
  return ((a & 0x3FFFF) >> 4) | ((uint64_t)(128 >> 4) << 16) | ((uint64_t)(256 >> 4) << 32);
}

// One m64n128k16 wgmma of type T (f16 or bf16) accumulating into d[0..64) (fp32), A and B from the
// shared-memory descriptors da, db.
#define WG_D_REGS \
  "%0, %1, %2, %3, %4, %5, %6, %7, " \
  "%8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, " \
  "%56, %57, %58, %59, %60, %61, %62, %63"
#define WG_D_OPS \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define WGMMA_64X128(T)                                                                             \
  asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." T "." T " {" WG_D_REGS "}, %64, %65, 1, 1, 1, 0, 0;\n" \
               : WG_D_OPS                                                                                     \
               : "l"(da), "l"(db))

template <bool F16>
__device__ __forceinline__ void wgmma64x128(float (&d)[64], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (F16)
    WGMMA_64X128("f16");
  else
    WGMMA_64X128("bf16");
#endif
}

template <bool F16>
__global__ void __launch_bounds__(128) wgmmaThroughputKernel(float* out, uint32_t seed) {
  __shared__ __align__(1024) uint16_t sm[16384];  // 32 KB of operands
  for (int i = threadIdx.x; i < 16384; i += 128) {
    const float v = (float)((i * 2654435761u ^ seed) >> 24) / 256.0f - 0.5f;  // [-0.5, 0.5)
    const uint32_t bits = __float_as_uint(v);
    sm[i] = F16 ? __half_as_ushort(__float2half_rn(v)) : (uint16_t)(bits >> 16);
  }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // generic-proxy writes -> wgmma reads
#endif
  __syncthreads();
  float d[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) d[i] = 0.f;
  const uint64_t da = smemDesc(sm), db = smemDesc(sm + 4096);
  for (int it = 0; it < kWgIters; ++it) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
#pragma unroll
    for (int k = 0; k < kWgPerGroup; ++k) wgmma64x128<F16>(d, da + 2 * k, db + 2 * k);  // next 32 bytes along K
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // one group stays in flight
#endif
  }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
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
