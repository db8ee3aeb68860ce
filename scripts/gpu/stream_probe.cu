// How fast one block can stream weights through a bulk-copy ring (gpu_check --stream): the matrix
// kernel's producer/consumer skeleton (linear.cu), bare or with its wgmmas. A producer warp requests
// stage after stage of its block's own contiguous region (one bulk copy per stage, or several), eight
// consumer warps wait for each stage, use it and release it. Varying the block count, the ring
// depth, the stage size and the copies per stage separates what bounds a block's stream rate
// (latency x bytes in flight, the copy engine, the consumers) from what bounds the memory system.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../native/cuda/linear.cuh"
#include "../../native/cuda/wgmma.cuh"
#include "bench_util.cuh"

namespace {

using namespace casspec::cuda;

// MMA: the consumers run the matrix kernel's math on each stage (two warpgroups, kLinKps wgmma
// m64n16k16 over the stage's "weights" and then its "B" tiles, at linear.cu's descriptors) and release a stage once the next
// stage's wgmmas are issued and the previous group is done, as linear.cu does.
template <bool MMA>
__global__ void __launch_bounds__(kLinThreads, 1)
    ringProbe(const uint8_t* src, size_t bytesPerBlock, int stages, int stageBytes, int copies, uint32_t* sink) {
  extern __shared__ __align__(1024) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + (size_t)stages * stageBytes);
  uint64_t* empty = full + stages;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages; ++i) mbarInit(&full[i], 1), mbarInit(&empty[i], kLinConsumers);
    mbarInitFence();
  }
  __syncthreads();
  const uint8_t* base = src + blockIdx.x * bytesPerBlock;
  const int n = (int)(bytesPerBlock / stageBytes), part = stageBytes / copies;
  if (warp == kLinWarps) {
    for (int i = 0; i < n; ++i) {
      const int s = i % stages;
      if (i >= stages) mbarWait(&empty[s], ((i / stages) - 1) & 1);
      if (lane == 0) mbarArriveExpectTx(&full[s], stageBytes);
      __syncwarp();
      if (lane < copies) bulkCopyG2S(smem + (size_t)s * stageBytes + lane * part, base + (size_t)i * stageBytes + lane * part, part, &full[s]);
    }
  } else if constexpr (MMA) {
    float d[8] = {};
    const int wg = warp >> 2;
    for (int i = 0; i < n; ++i) {
      const int s = i % stages;
      mbarWait(&full[s], (i / stages) & 1);
      const uint8_t* st = smem + (size_t)s * stageBytes;
      wgmmaFence();
#pragma unroll
      for (int j = 0; j < kLinKps; ++j)
        Wgmma<16>::mma<__half>(d, gmmaDesc(st + j * kLinATile + wg * 2048, 1024, 128),
                               gmmaDesc(st + kLinKps * kLinATile + j * kLinBTile, 128, 256));
      wgmmaCommit();
      wgmmaWait<1>();
      if (i > 0) mbarArrive(&empty[(i - 1) % stages]);
    }
    wgmmaWait<0>();
    float acc = 0.f;
    for (float v : d) acc += v;
    if (acc == 1234.5f) sink[0] = 1;
  } else {
    uint32_t acc = 0;
    for (int i = 0; i < n; ++i) {
      const int s = i % stages;
      mbarWait(&full[s], (i / stages) & 1);
      acc ^= reinterpret_cast<const uint32_t*>(smem + (size_t)s * stageBytes)[threadIdx.x];
      mbarArrive(&empty[s]);
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
  }
}

}  // namespace

// One line per (configuration, block count): total and per-block stream rate.
std::vector<std::string> streamProbe() {
  const size_t perBlock = (size_t)2 << 20;  // 2 MiB per block: tens of us per block at any rate here
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  void* src = nullptr;
  uint32_t* sink = nullptr;
  const int most = 3 * sms, blockCounts[] = {sms / 2, sms, 2 * sms, most};
  CK(cudaMalloc(&src, perBlock * most));
  CK(cudaMemset(src, 1, perBlock * most));
  CK(cudaMalloc(&sink, 4));
  CK(cudaFuncSetAttribute(ringProbe<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 220 * 1024));
  CK(cudaFuncSetAttribute(ringProbe<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 220 * 1024));
  struct Cfg {
    int stages, kb, copies;
    bool mma;
  };
  // (The +wgmma rows use the matrix kernel's stage: kLinKps k-tiles of weights and one n-tile of B, 18 KB.)
  const Cfg cfgs[] = {{3, 16, 1, false}, {6, 16, 1, false}, {6, 16, 4, false}, {12, 16, 1, false}, {6, 32, 1, false},
                      {24, 8, 1, false}, {48, 4, 1, false}, {6, 18, 1, false}, {6, 18, 1, true},  {3, 18, 1, true},
                      {12, 18, 1, true}};
  std::vector<std::string> out;
  for (const Cfg& c : cfgs) {
    const int smem = c.stages * c.kb * 1024 + 16 * c.stages;
    auto kernel = c.mma ? ringProbe<true> : ringProbe<false>;
    int perSm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kernel, kLinThreads, smem));
    for (int blocks : blockCounts) {
      if (blocks > perSm * sms) continue;
      const size_t bytes = perBlock / (c.kb * 1024) * (c.kb * 1024);  // whole stages
      const double ms = medianMs([&](int) {
        kernel<<<blocks, kLinThreads, smem>>>(static_cast<const uint8_t*>(src), bytes, c.stages, c.kb * 1024, c.copies, sink);
      });
      CK(cudaGetLastError());
      const double total = (double)bytes * blocks / (ms * 1e-3) / 1e9;
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "stream probe%s: %3d blocks (%d per SM max) ring %2d x %2d KB in %d copies: %6.0f GB/s total, %5.1f GB/s per block",
                    c.mma ? " +wgmma" : "", blocks, perSm, c.stages, c.kb, c.copies, total, total / blocks);
      out.push_back(buf);
    }
  }
  CK(cudaFree(src));
  CK(cudaFree(sink));
  return out;
}
