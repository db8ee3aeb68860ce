// Tensor-core ceilings the prefill number is compared against. mmaPeak: the instruction's own throughput
// (register operands only). gemmPeak: a conventional tensor-core GEMM built
// from the same instruction the backend uses (mma.sync.m16n8k16, fp32 accumulate), C = A * B^T
// with A [M x K], B [N x K] row-major, 128x128x64 block tiles, 8 warps of 64x32, 3-stage cp.async
// pipeline, ldmatrix fragments. Not wgmma: on H100 wgmma reaches higher (~750-800 TFLOP/s); this
// is the ceiling for mma.sync code like ours.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "../../native/cuda/mma.cuh"
#include "bench_util.cuh"

namespace {

constexpr int BM = 128, BN = 128, BK = 64, STAGES = 3, LDS = BK + 8;  // padded rows: conflict-free ldmatrix

// The backend's own instruction wrappers (cp.async 16 B and its groups, ldmatrix x4, mma.sync m16n8k16
// with fp32 accumulate).
using casspec::cuda::cpAsync16;
using casspec::cuda::cpAsyncCommit;
using casspec::cuda::cpAsyncWait;
using casspec::cuda::ldmatrixX4;
using casspec::cuda::mma16816;

__global__ void __launch_bounds__(256) gemmKernel(const __nv_bfloat16* A, const __nv_bfloat16* B, float* C, int M, int N, int K) {
  extern __shared__ __align__(16) __nv_bfloat16 sm[];
  __nv_bfloat16* As = sm;                          // [STAGES][BM][LDS]
  __nv_bfloat16* Bs = sm + STAGES * BM * LDS;      // [STAGES][BN][LDS]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 2, wn = warp & 3;  // 2 x 4 warps, each 64 x 32
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  float acc[4][4][4] = {};
  auto load = [&](int stage, int kt) {
    const int k0 = kt * BK;
    for (int e = tid; e < BM * BK / 8; e += 256) {
      const int r = e / (BK / 8), c = (e % (BK / 8)) * 8;
      cpAsync16(As + (stage * BM + r) * LDS + c, A + (size_t)(m0 + r) * K + k0 + c);
      cpAsync16(Bs + (stage * BN + r) * LDS + c, B + (size_t)(n0 + r) * K + k0 + c);
    }
  };
  const int KT = K / BK;
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load(s, s);
    cpAsyncCommit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cpAsyncWait<STAGES - 2>();
    __syncthreads();
    if (kt + STAGES - 1 < KT) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cpAsyncCommit();
    const int st = kt % STAGES;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t a[4][4], b[2][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        ldmatrixX4(a[i], As + (st * BM + wm * 64 + i * 16 + (lane & 15)) * LDS + kk + (lane >> 4) * 8);
#pragma unroll
      for (int j = 0; j < 2; ++j)
        ldmatrixX4(b[j], Bs + (st * BN + wn * 32 + j * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma16816<__nv_bfloat16>(acc[i][j], a[i], b[j >> 1][(j & 1) * 2], b[j >> 1][(j & 1) * 2 + 1]);
    }
  }
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = m0 + wm * 64 + i * 16 + g, c = n0 + wn * 32 + j * 8 + 2 * t;
      *reinterpret_cast<float2*>(C + (size_t)r * N + c) = make_float2(acc[i][j][0], acc[i][j][1]);
      *reinterpret_cast<float2*>(C + (size_t)(r + 8) * N + c) = make_float2(acc[i][j][2], acc[i][j][3]);
    }
}

__global__ void randomFill(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2bfloat16((float)(h & 0xffff) / 32768.0f - 1.0f);
  }
}

// The instruction ceiling: every warp issues independent mma.sync chains on register operands
// (no memory traffic), enough of them in flight to hide the pipeline latency. The clock the tensor
// cores sustain depends on the operands' bit activity (power), so the ceiling is the best of f16 and
// bf16 with random and with zero operands: the backend's hi + lo halves are far from random bits
// (7B prefill measured 105-124% of the random-bf16 figure).
constexpr int kChains = 8, kIters = 4096;  // 16 chains measured lower (594 vs 612 TFLOP/s on the H200)
template <bool F16>
__global__ void __launch_bounds__(256) mmaThroughputKernel(float* out, uint32_t seed, bool zeros) {
  const uint32_t z = zeros ? 0u : 0xffffffffu;
  uint32_t a[4], b0 = (seed ^ threadIdx.x) & z, b1 = (seed * 3 + threadIdx.x) & z;
  for (int i = 0; i < 4; ++i) a[i] = (seed + i * 0x01010101u + threadIdx.x) & z;
  float c[kChains][4] = {};
  for (int it = 0; it < kIters; ++it)
#pragma unroll
    for (int j = 0; j < kChains; ++j) mma16816<std::conditional_t<F16, __half, __nv_bfloat16>>(c[j], a, b0, b1);
  float sum = 0.f;
  for (int j = 0; j < kChains; ++j) sum += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  if (sum == 1234.5f) out[blockIdx.x] = sum;  // keeps the work alive; never true for these inputs
}

}  // namespace

// FLOP/s of mma.sync.m16n8k16 issued back to back from registers by every SM (median of 10), the
// best of f16/bf16 x random/zero operands; `detail` gets the four figures.
double mmaPeak(std::string* detail) {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  float* out;
  CK(cudaMalloc(&out, (size_t)sms * 8 * 4));
  const int blocks = sms * 8;  // 8 blocks of 8 warps per SM
  const double flops = 2.0 * 16 * 8 * 16 * (double)kChains * kIters * blocks * 8;
  double best = 0;
  std::string d;
  for (int f16 = 0; f16 < 2; ++f16)
    for (int zeros = 0; zeros < 2; ++zeros) {
      const double med = medianMs([&](int i) {
        if (f16)
          mmaThroughputKernel<true><<<blocks, 256>>>(out, 7u + i, zeros);
        else
          mmaThroughputKernel<false><<<blocks, 256>>>(out, 7u + i, zeros);
      });
      const double r = flops / (med * 1e-3);
      best = std::max(best, r);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%s %s %.0f", d.empty() ? "" : ", ", f16 ? "f16" : "bf16", zeros ? "zeros" : "random",
                    r / 1e12);
      d += buf;
    }
  CK(cudaFree(out));
  if (detail) *detail = d;
  return best;
}

// FLOP/s of an 8192^3 GEMM on random data (median of 10 after warm-up); relErr: a few entries
// against an fp64 host dot product.
double gemmPeak(double* relErr) {
  const int M = 8192, N = 8192, K = 8192;
  __nv_bfloat16 *A, *B;
  float* C;
  CK(cudaMalloc(&A, (size_t)M * K * 2));
  CK(cudaMalloc(&B, (size_t)N * K * 2));
  CK(cudaMalloc(&C, (size_t)M * N * 4));
  randomFill<<<4096, 256>>>(A, (size_t)M * K, 1);
  randomFill<<<4096, 256>>>(B, (size_t)N * K, 2);
  CK(cudaGetLastError());
  const int smem = STAGES * (BM + BN) * LDS * 2;
  CK(cudaFuncSetAttribute(gemmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const double med = medianMs([&](int) { gemmKernel<<<dim3(N / BN, M / BM), 256, smem>>>(A, B, C, M, N, K); });
  // Spot check.
  std::vector<__nv_bfloat16> ha((size_t)K), hb((size_t)K);
  double worst = 0;
  for (int s = 0; s < 8; ++s) {
    const int r = (s * 1237) % M, c = (s * 3571 + 11) % N;
    CK(cudaMemcpy(ha.data(), A + (size_t)r * K, (size_t)K * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), B + (size_t)c * K, (size_t)K * 2, cudaMemcpyDeviceToHost));
    double ref = 0, mag = 0;
    for (int k = 0; k < K; ++k) {
      const double p = (double)__bfloat162float(ha[k]) * (double)__bfloat162float(hb[k]);
      ref += p;
      mag += std::fabs(p);
    }
    float got;
    CK(cudaMemcpy(&got, C + (size_t)r * N + c, 4, cudaMemcpyDeviceToHost));
    worst = std::max(worst, std::fabs(got - ref) / std::max(mag, 1e-30));
  }
  *relErr = worst;
  CK(cudaFree(A));
  CK(cudaFree(B));
  CK(cudaFree(C));
  return 2.0 * M * N * K / (med * 1e-3);
}
