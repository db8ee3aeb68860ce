// Probe for a wgmma matrix kernel (scripts/gpu/RESULTS-cuda.md, "a plan for the wgmma matrix
// kernel"): before writing one, measure the two things it rests on.
//   invariance: wgmma.m64nNk16 output columns must not depend on N or on the other columns' values
//               (tokens become columns, so a token's bits must not depend on the batch). Checked
//               bitwise for N = 8..128, bf16 and f16, over 32 accumulated k-steps, plus the error
//               against a double-precision reference (which also checks the layouts below).
//   streaming:  each block streams its (row block of 128 rows, K split) weights through a ring of
//               shared-memory stages filled by cp.async.bulk (one producer warp, mbarriers), and two
//               consumer warpgroups issue one wgmma per 16-k stage each. Timed per 7B decode shape
//               for N = 8 (one token, hi + lo) .. 128, with a small B that is reused along K (an
//               optimistic bound: the real kernel stages B and folds splits) and fresh weights per
//               run (copies rotate so that L2 holds none of them).
//
// Layouts (no swizzle, K-major core matrices of 8 rows x 16 bytes):
//   A in global memory: per row block rb and k-tile kt one contiguous 4 KB stage,
//     [warpgroup (2)][k half (2)][row group (8)][row (8)][k (8)] -> descriptor LBO 1024, SBO 128;
//     the stream of (rb, split) is contiguous, as in layout.cuh.
//   B in shared memory, bKT k-tiles: element (column n, k) at ((n / 8) * 2 bKT + k / 8) * 128 +
//     (n % 8) * 16 + (k % 8) * 2 -> k-tile i at byte 256 i, LBO 128, SBO 256 bKT.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../native/cuda/linear.cuh"
#include "bench_util.cuh"

namespace {

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbarInit(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
}
[[maybe_unused]] __device__ __forceinline__ void mbarArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory");
}
__device__ __forceinline__ void mbarWait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smemAddr(bar)), "r"(parity)
        : "memory");
}
__device__ __forceinline__ void bulkCopyG2S(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smemAddr(dst)),
               "l"(src), "r"(bytes), "r"(smemAddr(bar))
               : "memory");
}
[[maybe_unused]] __device__ __forceinline__ uint64_t gmmaDesc(const void* p, uint32_t lbo, uint32_t sbo) {
  return ((smemAddr(p) & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}

// wgmma.m64nNk16, fp32 accumulate, A and B from shared memory (K-major both), scale-d 1.
template <int N> struct Wg;
template <> struct Wg<8> {
  template <bool F16>
  static __device__ __forceinline__ void mma(float (&d)[4], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (F16)
      asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0, %1, %2, %3}, %4, %5, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                   : "l"(da), "l"(db));
    else
      asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                   : "l"(da), "l"(db));
#endif
  }
};
template <> struct Wg<16> {
  template <bool F16>
  static __device__ __forceinline__ void mma(float (&d)[8], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (F16)
      asm volatile("wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                   : "l"(da), "l"(db));
    else
      asm volatile("wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                   : "l"(da), "l"(db));
#endif
  }
};
template <> struct Wg<32> {
  template <bool F16>
  static __device__ __forceinline__ void mma(float (&d)[16], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (F16)
      asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                   : "l"(da), "l"(db));
    else
      asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                   : "l"(da), "l"(db));
#endif
  }
};
template <> struct Wg<64> {
  template <bool F16>
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (F16)
      asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                   : "l"(da), "l"(db));
    else
      asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                   : "l"(da), "l"(db));
#endif
  }
};
template <> struct Wg<128> {
  template <bool F16>
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t da, uint64_t db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (F16)
      asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                   : "l"(da), "l"(db));
    else
      asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, 1, 1, 1, 0, 0;\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                   : "l"(da), "l"(db));
#endif
  }
};
constexpr int kStageBytes = 4096;  // 128 rows x 16 k of 16-bit weights

// Grid: one block per (row block rb, split s), s fastest. Warps 0-7: two consumer warpgroups (rows
// 64 wg .. 64 wg + 63 of the row block); warp 8: the producer.
template <int N, bool F16, int STAGES>
__global__ void __launch_bounds__(288) wgStreamKernel(const uint8_t* A, const uint4* B, int KT, int S, int bKT, float* out) {
  extern __shared__ __align__(1024) uint8_t sm[];
  uint8_t* ring = sm;
  uint4* bs = reinterpret_cast<uint4*>(sm + STAGES * kStageBytes);
  uint64_t* full = reinterpret_cast<uint64_t*>(sm + STAGES * kStageBytes + N * bKT * 32);
  uint64_t* empty = full + STAGES;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rb = blockIdx.x / S, s = blockIdx.x % S;
  const int kt0 = (int)((int64_t)s * KT / S), nk = (int)((int64_t)(s + 1) * KT / S) - kt0;
  for (int i = threadIdx.x; i < N * bKT * 2; i += blockDim.x) bs[i] = B[i];
  if (threadIdx.x == 0) {
    for (int i = 0; i < STAGES; ++i) {
      mbarInit(&full[i], 1);
      mbarInit(&empty[i], 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // B's generic stores -> wgmma reads
  __syncthreads();
  if (warp == 8) {
    if (lane == 0)
      for (int i = 0; i < nk; ++i) {
        const int st = i % STAGES;
        if (i >= STAGES) mbarWait(&empty[st], ((i / STAGES) - 1) & 1);
        mbarArriveExpectTx(&full[st], kStageBytes);
        bulkCopyG2S(ring + st * kStageBytes, A + ((size_t)rb * KT + kt0 + i) * kStageBytes, kStageBytes, &full[st]);
      }
    return;
  }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma is sm_90a only; the PTX fallback's kernel does nothing
  const int wg = warp >> 2;
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = 0.f;
  for (int i = 0; i < nk; ++i) {
    const int st = i % STAGES;
    mbarWait(&full[st], (i / STAGES) & 1);
    const uint64_t da = gmmaDesc(ring + st * kStageBytes + wg * 2048, 1024, 128);
    const uint64_t db = gmmaDesc(reinterpret_cast<uint8_t*>(bs) + (i % bKT) * 256, 128, bKT * 256);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    Wg<N>::template mma<F16>(d, da, db);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    mbarArrive(&empty[st]);
  }
  const int r = (warp & 3) * 16 + (lane >> 2);
  float* o = out + ((size_t)blockIdx.x * 128 + wg * 64) * N;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) o[(size_t)(r + 8 * ((i >> 1) & 1)) * N + 8 * (i >> 2) + 2 * (lane & 3) + (i & 1)] = d[i];
#endif
}

template <int N, bool F16, int STAGES>
size_t smemFor(int bKT) {
  return (size_t)STAGES * kStageBytes + (size_t)N * bKT * 32 + 2 * STAGES * 8;
}

template <int N, bool F16, int STAGES>
void launchStream(const uint8_t* A, const uint4* B, int rowBlocks, int KT, int S, int bKT, float* out) {
  const size_t smem = smemFor<N, F16, STAGES>(bKT);
  CK(cudaFuncSetAttribute(wgStreamKernel<N, F16, STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  wgStreamKernel<N, F16, STAGES><<<rowBlocks * S, 288, smem>>>(A, B, KT, S, bKT, out);
}

// Host 16-bit conversions (round to nearest even), as the device's.
uint16_t toHalfBits(float x, bool f16) {
  if (f16) {
    const __half h = __float2half_rn(x);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  const __nv_bfloat16 h = __float2bfloat16_rn(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float fromHalfBits(uint16_t b, bool f16) {
  if (f16) {
    __half_raw h;
    h.x = b;
    return __half2float(__half(h));
  }
  __nv_bfloat16_raw h;
  h.x = b;
  return __bfloat162float(__nv_bfloat16(h));
}
size_t aOffset(int m, int k, int KT) {  // byte offset of weight (m, k), 128-row blocks
  const int rb = m / 128, wg = (m % 128) / 64, rg = (m % 64) / 8, r = m % 8, kt = k / 16, kg = (k % 16) / 8, c = k % 8;
  return ((size_t)rb * KT + kt) * kStageBytes + wg * 2048 + kg * 1024 + rg * 128 + r * 16 + c * 2;
}
size_t bOffset(int n, int k, int bKT) { return ((size_t)(n / 8) * 2 * bKT + k / 8) * 128 + (n % 8) * 16 + (k % 8) * 2; }

// Runs one 128 x (16 KT) block against the N columns `cols` (N x K floats, already 16-bit values).
template <int N, bool F16>
std::vector<float> runOne(const std::vector<uint8_t>& a, const std::vector<float>& cols, int KT) {
  const int K = KT * 16;
  std::vector<uint8_t> b((size_t)N * KT * 32);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) {
      const uint16_t v = toHalfBits(cols[(size_t)n * K + k], F16);
      std::memcpy(&b[bOffset(n, k, KT)], &v, 2);
    }
  uint8_t *dA, *dB;
  float* dO;
  CK(cudaMalloc(&dA, a.size()));
  CK(cudaMalloc(&dB, b.size()));
  CK(cudaMalloc(&dO, (size_t)128 * N * 4));
  CK(cudaMemcpy(dA, a.data(), a.size(), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dB, b.data(), b.size(), cudaMemcpyHostToDevice));
  launchStream<N, F16, 8>(dA, reinterpret_cast<const uint4*>(dB), 1, KT, 1, KT, dO);
  CK(cudaGetLastError());
  std::vector<float> o((size_t)128 * N);
  CK(cudaMemcpy(o.data(), dO, o.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaFree(dA));
  CK(cudaFree(dB));
  CK(cudaFree(dO));
  return o;
}

template <int N, bool F16>
void invarianceAt(const std::vector<uint8_t>& a, const std::vector<float>& wRef, const std::vector<float>& base8,
                  const std::vector<float>& out8, int KT, std::mt19937& rng, int& bad, double& err, std::vector<std::string>& lines) {
  const int K = KT * 16;
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  for (int place = 0; place < 2; ++place) {
    const int p = place ? N - 8 : 0;  // where the 8 reference columns sit
    std::vector<float> cols((size_t)N * K);
    for (auto& v : cols) v = fromHalfBits(toHalfBits(u(rng), F16), F16);
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < K; ++k) cols[(size_t)(p + j) * K + k] = base8[(size_t)j * K + k];
    const std::vector<float> o = runOne<N, F16>(a, cols, KT);
    int diff = 0;
    for (int m = 0; m < 128; ++m)
      for (int j = 0; j < 8; ++j) {
        const float x = o[(size_t)m * N + p + j], y = out8[(size_t)m * 8 + j];
        if (std::memcmp(&x, &y, 4) != 0) ++diff;
      }
    // Every column against double precision (checks the layouts).
    for (int m = 0; m < 128; ++m)
      for (int n = 0; n < N; ++n) {
        double ref = 0, mag = 0;
        for (int k = 0; k < K; ++k) {
          ref += (double)wRef[(size_t)m * K + k] * cols[(size_t)n * K + k];
          mag += std::fabs((double)wRef[(size_t)m * K + k] * cols[(size_t)n * K + k]);
        }
        err = std::max(err, std::fabs(o[(size_t)m * N + n] - ref) / std::max(mag, 1e-30));
      }
    bad += diff;
    char line[160];
    std::snprintf(line, sizeof line, "wgmma invariance %s N=%3d, reference columns at %3d: %d of 1024 outputs differ from N=8",
                  F16 ? "f16 " : "bf16", N, p, diff);
    lines.push_back(line);
  }
}

template <bool F16>
void invariance(std::vector<std::string>& lines, int& bad, double& err) {
  constexpr int KT = 32, K = KT * 16;
  std::mt19937 rng(F16 ? 11 : 7);
  std::normal_distribution<float> w(0.f, 0.05f);
  std::uniform_real_distribution<float> x(-3.f, 3.f);
  std::vector<uint8_t> a((size_t)KT * kStageBytes);
  std::vector<float> wRef((size_t)128 * K);
  for (int m = 0; m < 128; ++m)
    for (int k = 0; k < K; ++k) {
      const uint16_t v = toHalfBits(w(rng), F16);
      wRef[(size_t)m * K + k] = fromHalfBits(v, F16);
      std::memcpy(&a[aOffset(m, k, KT)], &v, 2);
    }
  // 4 tokens as hi + lo column pairs (splitHiLo in mma.cuh).
  std::vector<float> base8((size_t)8 * K);
  for (int t = 0; t < 4; ++t)
    for (int k = 0; k < K; ++k) {
      const float v = x(rng) * std::exp2((float)(k % 7) - 3.f);
      const float hi = fromHalfBits(toHalfBits(v, F16), F16);
      base8[(size_t)(2 * t) * K + k] = hi;
      base8[(size_t)(2 * t + 1) * K + k] = fromHalfBits(toHalfBits(v - hi, F16), F16);
    }
  const std::vector<float> out8 = runOne<8, F16>(a, base8, KT);
  invarianceAt<16, F16>(a, wRef, base8, out8, KT, rng, bad, err, lines);
  invarianceAt<32, F16>(a, wRef, base8, out8, KT, rng, bad, err, lines);
  invarianceAt<64, F16>(a, wRef, base8, out8, KT, rng, bad, err, lines);
  invarianceAt<128, F16>(a, wRef, base8, out8, KT, rng, bad, err, lines);
}

template <int N>
double timeShape(const uint8_t* pool, size_t poolBytes, const uint4* B, int rowBlocks, int KT, int S, int bKT, float* out) {
  const size_t bytes = (size_t)rowBlocks * KT * kStageBytes;
  const int copies = (int)std::max<size_t>(1, poolBytes / bytes);
  return medianMs([&](int i) { launchStream<N, false, 8>(pool + (size_t)(i % copies) * bytes, B, rowBlocks, KT, S, bKT, out); });
}

}  // namespace

// Lines for gpu_check --wgmma; `bad` counts outputs whose bits changed with N.
std::vector<std::string> wgmmaProbe(const std::vector<ReadShape>& shapes, int& bad) {
  std::vector<std::string> lines;
  bad = 0;
  double err = 0;
  invariance<false>(lines, bad, err);
  invariance<true>(lines, bad, err);
  char line[200];
  std::snprintf(line, sizeof line, "wgmma invariance: %d outputs differ in all; max error vs double %.2e (relative to sum |w x|)", bad, err);
  lines.push_back(line);

  const size_t poolBytes = (size_t)1536 << 20;
  uint8_t* pool;
  float* out;
  uint4* B;
  CK(cudaMalloc(&pool, poolBytes));
  CK(cudaMemset(pool, 0, poolBytes));
  CK(cudaMalloc(&B, (size_t)128 * 16 * 32));
  CK(cudaMemset(B, 0, (size_t)128 * 16 * 32));
  CK(cudaMalloc(&out, (size_t)64 << 20));
  for (const ReadShape& sh : shapes) {
    const int MT = (sh.M + 15) / 16, KT = (sh.K + 15) / 16, S = casspec::cuda::chooseSplits(MT, KT);
    const int rowBlocks = (MT + 7) / 8, bKT = 16;
    const double mb = (double)rowBlocks * KT * kStageBytes / 1e6;
    const double t8 = timeShape<8>(pool, poolBytes, B, rowBlocks, KT, S, bKT, out);
    const double t16 = timeShape<16>(pool, poolBytes, B, rowBlocks, KT, S, bKT, out);
    const double t32 = timeShape<32>(pool, poolBytes, B, rowBlocks, KT, S, bKT, out);
    const double t64 = timeShape<64>(pool, poolBytes, B, rowBlocks, KT, S, bKT, out);
    const double t128 = timeShape<128>(pool, poolBytes, B, rowBlocks, KT, S, bKT, out);
    std::snprintf(line, sizeof line,
                  "wgmma stream %-12s (%d blocks, %.1f MB): N=8 %.2f us (%.0f GB/s), 16 %.2f, 32 %.2f, 64 %.2f (%.2fx N=8), 128 %.2f",
                  sh.name.c_str(), rowBlocks * S, mb, t8 * 1e3, mb / t8, t16 * 1e3, t32 * 1e3, t64 * 1e3, t64 / t8, t128 * 1e3);
    lines.push_back(line);
  }
  CK(cudaFree(pool));
  CK(cudaFree(out));
  CK(cudaFree(B));
  return lines;
}
