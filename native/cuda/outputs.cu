// Per output row: argmax (ties to the lower id), top-k ids (best first, ties to the lower id) and
// their softmax probabilities. One block per row; every reduction has a fixed shape (thread-strided
// scan, then a fixed butterfly/warp order), so a row's results depend on its logits alone.
#include "outputs.cuh"

#include <cmath>

#include "launch.cuh"
#include "mma.cuh"
#include "params.cuh"

namespace casspec::cuda {

namespace {

constexpr int kOutThreads = 512;

struct Cand {
  float v;
  int i;
};
// Total order: larger value first, then lower id. (NaN never wins against a number.)
__device__ __forceinline__ bool better(const Cand& a, const Cand& b) {
  if (b.i < 0) return a.i >= 0;
  if (a.i < 0) return false;
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

__device__ Cand blockBest(Cand c, Cand* red) {
  for (int m = 16; m >= 1; m >>= 1) {
    Cand o{__shfl_xor_sync(0xffffffffu, c.v, m), __shfl_xor_sync(0xffffffffu, c.i, m)};
    if (better(o, c)) c = o;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = c;
  __syncthreads();
  Cand best = red[0];
  for (int w = 1; w < kOutThreads / 32; ++w)
    if (better(red[w], best)) best = red[w];
  return best;
}

__global__ void __launch_bounds__(kOutThreads) outputKernel(const int32_t* params, float* result, int vocab) {
  __shared__ Cand red[kOutThreads / 32];
  __shared__ float redSum[kOutThreads / 32];
  const Params P{params};
  gridDepWait();
  gridDepLaunch();
  const int r = blockIdx.x, nOut = P.nOut(), k = P.topk();
  if (r >= nOut) return;
  const float* row = result + resultLogitsOffset(nOut, k) + (size_t)r * vocab;
  int32_t* argmaxOut = reinterpret_cast<int32_t*>(result);
  int32_t* ids = reinterpret_cast<int32_t*>(result + resultIdsOffset(nOut));
  float* probs = result + resultProbsOffset(nOut, k);

  // Round j finds the best element strictly after round j-1's winner in the total order.
  Cand prev{INFINITY, -1};
  float maxv = 0.f;
  const int rounds = k > 0 ? k : 1;
  for (int j = 0; j < rounds; ++j) {
    Cand c{-INFINITY, -1};
#pragma unroll 8
    for (int i = threadIdx.x; i < vocab; i += kOutThreads) {
      const Cand e{row[i], i};
      const bool after = prev.i < 0 || better(prev, e);
      if (after && better(e, c)) c = e;
    }
    const Cand b = blockBest(c, red);
    if (j == 0) {
      maxv = b.v;
      if (threadIdx.x == 0) argmaxOut[r] = b.i < 0 ? 0 : b.i;
    }
    if (k > 0 && threadIdx.x == 0) ids[(size_t)r * k + j] = b.i;
    prev = b;
  }
  if (k == 0) return;

  // Softmax denominator: thread-strided sums, then lanes, then warps, all in a fixed order.
  float sum = 0.f;
#pragma unroll 8
  for (int i = threadIdx.x; i < vocab; i += kOutThreads) sum = __fadd_rn(sum, expf(row[i] - maxv));
  for (int m = 16; m >= 1; m >>= 1) sum = __fadd_rn(sum, __shfl_xor_sync(0xffffffffu, sum, m));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) redSum[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < k) {
    float total = redSum[0];
    for (int w = 1; w < kOutThreads / 32; ++w) total = __fadd_rn(total, redSum[w]);
    const int id = ids[(size_t)r * k + threadIdx.x];
    probs[(size_t)r * k + threadIdx.x] = id < 0 ? 0.f : __fdiv_rn(expf(row[id] - maxv), total);
  }
}

}  // namespace

void launchOutputs(const int32_t* params, float* result, int vocab, int maxRows, bool pdl, cudaStream_t stream) {
  launchKernel(outputKernel, dim3(maxRows), dim3(kOutThreads), 0, stream, pdl, "outputKernel", params, result, vocab);
}

}  // namespace casspec::cuda
