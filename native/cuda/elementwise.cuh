// Small per-token kernels: embedding lookup, RMSNorm into a packed matrix input, KV slot moves.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace casspec::cuda {

// x[t][0..H) = embedding row tokens[t] (packed weight matrix with KT k-tiles), t < n.
void launchEmbed(const void* embedPacked, int KT, int H, const int32_t* params, float* x, int maxTokens, bool bf16, bool pdl,
                 cudaStream_t stream);

// Packed hi/lo of w * x[row] / rms(x[row]) for t < count (count = n, or nOut with rows = outRows).
// releaseFirst: release the next kernel before waiting for the previous one (gridDepSync). rOut
// (null allowed): each token's 1/rms, for a NormOut downstream (linear.cuh).
void launchNormPack(const float* x, int H, const float* w, float eps, const int32_t* params, bool rowsAreOut, void* packed,
                    int KT, int maxTokens, bool bf16, bool pdl, bool releaseFirst, float* rOut, cudaStream_t stream);

// For every layer, K and V of slot src[i] -> dst[i], i in order (dst[i] <= src[i], both ascending).
void launchMoveSlots(void* k, void* v, int layers, int64_t layerStride, int rowElems, int elemBytes, const int32_t* srcDst,
                     int n, cudaStream_t stream);

}  // namespace casspec::cuda
