// Y = dequant(Wq . Xq) for the seven layer projections in quant mode kQuantInt8 (backend.h):
// int8 weights (packed A fragments, layout.cuh) times int8 activations (packed by quant.cuh),
// tensor-core mma.m16n8k32 with int32 accumulation, then y = float(sum) * (sx[t] * sw[row]) and
// the same epilogues as the 16-bit path (RoPE + KV write, residual add, SwiGLU).
//
// Launch shape as linear.cuh: one block of 8 warps per (row group of 8 row tiles, K split, token
// group), each warp streaming its row tile's 512-byte k-tiles through a register ring; the
// block's activations are staged in shared memory. Half the weight bytes of the 16-bit kernel,
// and one mma per k-tile instead of two (no hi/lo split).
//
// Splits: each block adds its int32 partial sums into a zeroed int32 buffer with atomics; the last
// block of a row group (an atomic counter says which) applies the epilogue and zeroes the sums
// again. Integer addition is exact and associative, so the sums, and hence every output bit, are
// the same whatever the split count, the arrival order, the batch size or the batch's other
// tokens: batch invariance with nothing to keep in order.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "epilogue.cuh"
#include "linear.cuh"

namespace casspec::cuda {

enum class Q8Epilogue : int { Qkv = 0, Residual = 1, SwiGlu = 2 };

struct Q8Args {
  const void* w = nullptr;       // packed int8 weights
  const float* wScale = nullptr;  // [MT*16] per packed row
  int M = 0, MT = 0, KT = 0, S = 1;
  const int32_t* params = nullptr;
  const void* xq = nullptr;   // packed int8 activations, KT k-tiles
  const float* sx = nullptr;  // [tokens]
  int* sums = nullptr;        // [tokens][MT*16] int32, zero between launches
  int* counters = nullptr;    // [row groups * token groups], zero between launches
  Q8Epilogue epi = Q8Epilogue::Residual;
  QkvOut qkv{};            // Qkv
  float* resid = nullptr;  // Residual: x [tokens][M] (+=)
  float* h = nullptr;      // SwiGlu: silu(gate) * up, fp32 [tokens][ffn]
  int ffn = 0;
};

// ntb: 8-token tiles per block (1, 2, 4, 8); tokenGroups: blocks along the tokens (ntb*8 each).
// bf16: the KV cache's 16-bit type when it is not fp32.
void launchLinearQ8(const Q8Args& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream);

// K splits: the most (<= 16, >= 4 k-tiles each) that keep the grid in one wave of 3 blocks per SM x
// 132 SMs. Not part of the numerics here (integer sums): any count gives the same bits.
inline int q8Splits(int MT, int KT) {
  int s = 3 * kWaveSms / rowGroupsOf(MT);
  s = s < 1 ? 1 : s > 16 ? 16 : s;
  return s < maxSplitsByK(KT) ? s : maxSplitsByK(KT);
}

}  // namespace casspec::cuda
