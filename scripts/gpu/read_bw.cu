// Read-only bandwidth ceilings for the matrix kernels (gpu_check --read):
//   flat:    every thread reads 16 bytes at a grid stride, 4 loads in flight, 64 warps per SM;
//   streams: each warp walks its own contiguous region 512 bytes per step with a per-lane ring of
//            RING loads in flight (the register ring of the mma.sync matrix kernel that wgmma replaced,
//            without its math; also the int8 kernel's pattern), optionally with a
//            block barrier every 32 tiles and two dependent mmas per tile;
//   shapes:  the same streams in the launch shapes of a model's decode matrix kernels, one kernel
//            each: the ceiling of one matrix kernel, ramp and tail included.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../native/cuda/linear.cuh"
#include "../../native/cuda/mma.cuh"
#include "bench_util.cuh"

namespace {

using casspec::cuda::ldStream;

__global__ void flatKernel(const uint4* base, size_t n, uint32_t* sink) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  uint32_t acc = 0;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = ldStream(base + i), b = ldStream(base + i + stride), c = ldStream(base + i + 2 * stride), d = ldStream(base + i + 3 * stride);
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < n; i += stride) acc ^= ldStream(base + i).x;
  if (acc == 0x9e3779b9u) sink[0] = acc;  // keeps the loads alive
}


// SYNC: a block barrier every SYNC tiles (0: none), like the matrix kernel's B rounds. MMA: each
// tile feeds two dependent mmas (x_hi, x_lo) into one accumulator, like kTileMma at n <= 8.
template <int RING, int SYNC, bool MMA>
__global__ void streamKernel(const uint4* base, int tilesPerWarp, uint32_t* sink) {
  const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const uint4* p = base + warp * tilesPerWarp * 32 + (threadIdx.x & 31);
  uint4 ring[RING];
#pragma unroll
  for (int i = 0; i < RING; ++i) ring[i] = ldStream(p + (size_t)i * 32);
  uint32_t acc = 0;
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  for (int k = 0; k < tilesPerWarp; k += RING) {
#pragma unroll
    for (int i = 0; i < RING; ++i) {
      const uint4 v = ring[i];
      if (k + RING + i < tilesPerWarp) ring[i] = ldStream(p + (size_t)(k + RING + i) * 32);
      if constexpr (MMA) {
        const uint32_t A[4] = {v.x, v.y, v.z, v.w};
        casspec::cuda::mma16816<__nv_bfloat16>(d, A, 0x3f803f80u, threadIdx.x);
        casspec::cuda::mma16816<__nv_bfloat16>(d, A, 0x3c003c00u, threadIdx.x);
      } else {
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
      }
    }
    if constexpr (SYNC > 0) {
      if ((k + RING) % SYNC == 0) __syncthreads();
    }
  }
  if (acc == 0x9e3779b9u || d[0] == 1234.5f) sink[0] = acc;
}

}  // namespace

// One line per variant: GB/s read. `shapes`: the decode matrix kernels to mimic (their blocks and
// k-tiles per warp follow from linearSplits, as in the backend).
std::vector<std::string> readBandwidths(const std::vector<ReadShape>& shapes) {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const size_t bytes = (size_t)2 << 30;
  uint4* buf;
  uint32_t* sink;
  CK(cudaMalloc(&buf, bytes));
  CK(cudaMalloc(&sink, 16));
  CK(cudaMemset(buf, 1, bytes));
  std::vector<std::string> out;
  char line[160];
  const size_t n = bytes / 16;
  const double flat = medianMs([&](int) { flatKernel<<<sms * 8, 256>>>(buf, n, sink); });
  std::snprintf(line, sizeof line, "read flat (64 warps/SM, 4 x 16 B in flight per thread): %.0f GB/s", bytes / flat / 1e6);
  out.push_back(line);
  auto streams = [&](const char* what, auto kernel, int ring, int warpsPerSm) {
    const int warps = sms * warpsPerSm;
    const int tiles = (int)(bytes / 512 / warps) / 64 * 64;
    const double moved = (double)tiles * 512 * warps;
    const double ms = medianMs([&](int) { kernel<<<warps / 8, 256>>>(buf, tiles, sink); });
    std::snprintf(line, sizeof line, "read streams (warp-private 512 B steps, ring %d, %d warps/SM%s): %.0f GB/s", ring, warpsPerSm, what,
                  moved / ms / 1e6);
    out.push_back(line);
  };
  // The decode matrix kernel: 3 blocks of 8 warps per SM, 8 tiles in flight per lane.
  streams("", streamKernel<8, 0, false>, 8, 24);
  streams("", streamKernel<4, 0, false>, 4, 24);
  streams("", streamKernel<8, 0, false>, 8, 16);
  streams(", barrier every 32 tiles", streamKernel<8, 32, false>, 8, 24);
  streams(", 2 dependent mmas per tile", streamKernel<8, 0, true>, 8, 24);
  streams(", both", streamKernel<8, 32, true>, 8, 24);
  // The matrix kernels' launch shapes (blocks of 8 warps, k-tiles per warp), reading about the
  // same bytes as their weights with no math: the cost of one short kernel's ramp and tail.
  for (const ReadShape& sh : shapes) {
    const int MT = (sh.M + 15) / 16, KT = (sh.K + 15) / 16, S = casspec::cuda::linearSplits(MT, KT);
    const int blocks = (MT + casspec::cuda::kLinWarps - 1) / casspec::cuda::kLinWarps * S, tiles = KT / S;
    const double moved = (double)blocks * 8 * tiles * 512;
    // Each run reads another copy, so L2 holds none of its bytes (a 33 MB matrix fits in L2).
    const size_t copies = std::max<size_t>(1, bytes / (size_t)moved);
    const double ms = medianMs([&](int i) {
      streamKernel<8, 0, false><<<blocks, 256>>>(buf + (size_t)(i % copies) * ((size_t)moved / 16), tiles, sink);
    });
    std::snprintf(line, sizeof line, "read like %s (%d blocks x 8 warps x %d tiles, %.1f MB): %.2f us, %.0f GB/s", sh.name.c_str(),
                  blocks, tiles, moved / 1e6, ms * 1e3, moved / ms / 1e6);
    out.push_back(line);
  }
  CK(cudaFree(buf));
  CK(cudaFree(sink));
  return out;
}
