#include "elementwise.cuh"

#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "rmsnorm.cuh"

namespace casspec::cuda {

namespace {

template <class H>
__global__ void embedKernel(const uint16_t* __restrict__ e, int KT, int H_, const int32_t* params, float* __restrict__ x) {
  const Params P{params};
  gridDepWait();
  gridDepLaunch();
  const int t = blockIdx.x;
  if (t >= P.n()) return;
  const int64_t tok = P.tokens()[t];
  for (int k = threadIdx.x; k < H_; k += blockDim.x) x[(size_t)t * H_ + k] = Half<H>::fromBits(e[packedA(tok, k, KT)]);
}

// One block per token: warp 0 computes 1/rms (warpRstd, 16 loads in flight per lane), then the block
// writes the token's packed hi and lo runs of 8 k each, one run per thread up to hidden 4096. It sits
// between two matrix kernels, so its latency (memory round trips) is what counts.
constexpr int kNormThreads = 512;

template <class H>
__global__ void __launch_bounds__(kNormThreads) normPackKernel(const float* __restrict__ x, int H_, const float* __restrict__ w, float eps,
                               const int32_t* params, bool rowsAreOut, uint16_t* __restrict__ packed, int KT, bool releaseFirst,
                               float* __restrict__ rOut) {
  __shared__ float r;
  const Params P{params};
  gridDepSync(releaseFirst);  // its dependent, a matrix kernel, reads only weights before waiting
  const int t = blockIdx.x;
  const int count = rowsAreOut ? P.nOut() : P.n();
  if (t >= count) return;
  const int row = rowsAreOut ? P.outRows()[t] : t;
  const float* xr = x + (size_t)row * H_;
  if (threadIdx.x < 32) {
    const float v = warpRstd<16>(xr, H_, eps, threadIdx.x);
    if (threadIdx.x == 0) r = v;
    if (threadIdx.x == 0 && rOut) rOut[t] = v;  // for a NormOut downstream (linear.cuh)
  }
  __syncthreads();
  for (int e = threadIdx.x; e < KT * 2; e += blockDim.x) {
    uint4 hi, lo;
    normRun8<H>(xr, w, r, 8 * e, H_, hi, lo);
    uint16_t* dst = packed + packedB(t, 8 * e, KT);
    *reinterpret_cast<uint4*>(dst) = hi;
    *reinterpret_cast<uint4*>(dst + kPackedLo) = lo;
  }
}

// One block per (layer, row slice); copies run in order with a barrier between them, because a
// later copy may overwrite the slot an earlier one reads (dst[j] == src[i], i < j).
__global__ void moveSlotsKernel(uint8_t* k, uint8_t* v, int64_t layerStride, int rowBytes, const int32_t* srcDst, int n) {
  const int layer = blockIdx.y;
  const int chunk = 16 * blockDim.x;
  const int b0 = blockIdx.x * chunk;
  for (int i = 0; i < n; ++i) {
    const int src = srcDst[i], dst = srcDst[n + i];
    if (src != dst) {
      for (int b = b0 + 16 * threadIdx.x; b < min(rowBytes, b0 + chunk); b += 16 * blockDim.x) {
        const size_t so = (size_t)layer * layerStride + (size_t)src * rowBytes + b;
        const size_t d = (size_t)layer * layerStride + (size_t)dst * rowBytes + b;
        const uint4 kv = *reinterpret_cast<const uint4*>(k + so);
        const uint4 vv = *reinterpret_cast<const uint4*>(v + so);
        *reinterpret_cast<uint4*>(k + d) = kv;
        *reinterpret_cast<uint4*>(v + d) = vv;
      }
    }
    __syncthreads();
  }
}

}  // namespace

void launchEmbed(const void* embedPacked, int KT, int H, const int32_t* params, float* x, int maxTokens, bool bf16, bool pdl,
                 cudaStream_t stream) {
  const auto* e = static_cast<const uint16_t*>(embedPacked);
  if (bf16)
    launchKernel(embedKernel<__nv_bfloat16>, dim3(maxTokens), dim3(256), 0, stream, pdl, "embedKernel", e, KT, H, params, x);
  else
    launchKernel(embedKernel<__half>, dim3(maxTokens), dim3(256), 0, stream, pdl, "embedKernel", e, KT, H, params, x);
}

void launchNormPack(const float* x, int H, const float* w, float eps, const int32_t* params, bool rowsAreOut, void* packed,
                    int KT, int maxTokens, bool bf16, bool pdl, bool releaseFirst, float* rOut, cudaStream_t stream) {
  auto* p = static_cast<uint16_t*>(packed);
  const int threads = std::min(kNormThreads, std::max(64, (2 * KT + 31) / 32 * 32));  // one run of 8 k each
  if (bf16)
    launchKernel(normPackKernel<__nv_bfloat16>, dim3(maxTokens), dim3(threads), 0, stream, pdl, "normPackKernel", x, H, w, eps,
                 params, rowsAreOut, p, KT, releaseFirst, rOut);
  else
    launchKernel(normPackKernel<__half>, dim3(maxTokens), dim3(threads), 0, stream, pdl, "normPackKernel", x, H, w, eps, params,
                 rowsAreOut, p, KT, releaseFirst, rOut);
}

void launchMoveSlots(void* k, void* v, int layers, int64_t layerStride, int rowElems, int elemBytes, const int32_t* srcDst,
                     int n, cudaStream_t stream) {
  const int rowBytes = rowElems * elemBytes;  // a multiple of 16: kvDim is a multiple of 16 (headDim % 16 == 0)
  const int threads = 128, chunk = 16 * threads;
  launchKernel(moveSlotsKernel, dim3((rowBytes + chunk - 1) / chunk, layers), dim3(threads), 0, stream, false, "moveSlotsKernel",
               static_cast<uint8_t*>(k), static_cast<uint8_t*>(v), layerStride * elemBytes, rowBytes, srcDst, n);
}

}  // namespace casspec::cuda
