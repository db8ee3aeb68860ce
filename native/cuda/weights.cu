#include "weights.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../engine/dummy.h"
#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"

namespace casspec::cuda {

namespace {

__device__ __forceinline__ float srcValue(const void* src, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(src)[i];
    case DType::F16: return __half2float(static_cast<const __half*>(src)[i]);
    default: return __bfloat162float(static_cast<const __nv_bfloat16*>(src)[i]);
  }
}

__device__ __forceinline__ int64_t mapRow(int64_t r, const RowDest& d) {
  switch (d.map) {
    case RowMap::Rope: return (r / d.param) * d.param + ropePackedRow((int)(r % d.param), d.param);
    case RowMap::Gate: return gateUpPackedRow(r, false);
    case RowMap::Up: return gateUpPackedRow(r, true);
    default: return r;
  }
}

template <class H>
__global__ void packRowsKernel(const void* src, DType srcType, int64_t row0, int rows, int K, RowDest d) {
  const size_t total = (size_t)rows * K;
  uint16_t* dst = static_cast<uint16_t*>(d.dst);
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int64_t i = (int64_t)(e / K), k = (int64_t)(e % K);
    const int64_t row = d.rowOffset + mapRow(row0 + i, d);
    dst[packedA(row, k, d.KT)] = Half<H>::bits(srcValue(src, srcType, e));
  }
}

template <class H>
__global__ void fillRowsKernel(uint64_t seed, int index, int rows, int K, RowDest d) {
  const size_t total = (size_t)rows * K;
  uint16_t* dst = static_cast<uint16_t*>(d.dst);
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int64_t i = (int64_t)(e / K), k = (int64_t)(e % K);
    const int64_t row = d.rowOffset + mapRow(i, d);
    // Matrices only: dummyWeight's matrix branch is one multiply, so no FMA contraction can make
    // the device value differ from the host's (norm vectors are generated on the host).
    dst[packedA(row, k, d.KT)] = Half<H>::bits(dummyWeight(seed, index, e, false));
  }
}

// One warp per source row: absmax, scale = absmax / 127, codes (as quantizeRow, native/cpu/quant.cpp).
__global__ void quantRowsKernel(const void* src, DType srcType, int64_t row0, int rows, int K, RowDest d, bool dummy,
                                uint64_t seed, int index) {
  const int i = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x & 31;
  if (i >= rows) return;
  auto value = [&](int64_t k) {
    const size_t e = (size_t)i * K + k;
    return dummy ? dummyWeight(seed, index, e, false) : srcValue(src, srcType, e);
  };
  float m = 0.f;
  for (int k = lane; k < K; k += 32) m = fmaxf(m, fabsf(value(k)));
  for (int s = 16; s >= 1; s >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
  const float scale = __fdiv_rn(m, 127.f);
  const int64_t row = d.rowOffset + mapRow(row0 + i, d);
  if (lane == 0) d.scale[row] = scale;
  int8_t* dst = static_cast<int8_t*>(d.dst);
  for (int k = lane; k < K; k += 32) {
    const float c = scale > 0.f ? rintf(__fdiv_rn(value(k), scale)) : 0.f;
    dst[packedA8(row, k, d.KT)] = (int8_t)fminf(127.f, fmaxf(-127.f, c));
  }
}

__global__ void vectorKernel(const void* src, DType t, int n, float* dst) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dst[i] = srcValue(src, t, i);
}

dim3 gridFor(size_t total) {
  const size_t blocks = (total + 255) / 256;
  return dim3((unsigned)(blocks < 65536 ? (blocks ? blocks : 1) : 65536));
}

}  // namespace

void launchPackRows(const void* src, DType srcType, int64_t row0, int rows, int K, const RowDest& d, bool bf16,
                    cudaStream_t stream) {
  const dim3 g = gridFor((size_t)rows * K);
  if (bf16)
    launchKernel(packRowsKernel<__nv_bfloat16>, g, dim3(256), 0, stream, false, "packRowsKernel", src, srcType, row0, rows, K, d);
  else
    launchKernel(packRowsKernel<__half>, g, dim3(256), 0, stream, false, "packRowsKernel", src, srcType, row0, rows, K, d);
}

void launchFillRows(uint64_t seed, int index, int rows, int K, const RowDest& d, bool bf16, cudaStream_t stream) {
  const dim3 g = gridFor((size_t)rows * K);
  if (bf16)
    launchKernel(fillRowsKernel<__nv_bfloat16>, g, dim3(256), 0, stream, false, "fillRowsKernel", seed, index, rows, K, d);
  else
    launchKernel(fillRowsKernel<__half>, g, dim3(256), 0, stream, false, "fillRowsKernel", seed, index, rows, K, d);
}

// quantRowsKernel runs one warp per row on a grid that gridFor caps at 65536 blocks of 8 warps.
constexpr int kQuantRowsMax = 65536 * 8;
static void checkQuantRows(int rows) {
  if (rows > kQuantRowsMax)
    fail("E_CONFIG", "int8 draft weights: a projection of " + std::to_string(rows) + " rows exceeds the " + std::to_string(kQuantRowsMax) +
                         " the quantizer covers");
}

void launchQuantRows(const void* src, DType srcType, int64_t row0, int rows, int K, const RowDest& d, cudaStream_t stream) {
  checkQuantRows(rows);
  launchKernel(quantRowsKernel, gridFor((size_t)rows * 32), dim3(256), 0, stream, false, "quantRowsKernel", src, srcType, row0,
               rows, K, d, false, (uint64_t)0, 0);
}

void launchQuantFillRows(uint64_t seed, int index, int rows, int K, const RowDest& d, cudaStream_t stream) {
  checkQuantRows(rows);
  launchKernel(quantRowsKernel, gridFor((size_t)rows * 32), dim3(256), 0, stream, false, "quantRowsKernel", (const void*)nullptr,
               DType::F32, (int64_t)0, rows, K, d, true, seed, index);
}

void launchVectorToF32(const void* src, DType srcType, int n, float* dst, cudaStream_t stream) {
  launchKernel(vectorKernel, gridFor(n), dim3(256), 0, stream, false, "vectorKernel", src, srcType, n, dst);
}

}  // namespace casspec::cuda
