// Y = W . X for every weight matrix of the model, one kernel family for every batch size.
//
// Launch shape. One block per (row group rb of 8 weight row tiles = 128 rows, K split s, token
// group tg). A producer warp streams the block's weights (one contiguous 4 KB per k-tile,
// layout.cuh) and its tokens' B tiles (one copy per k-tile for all its n-tiles) through a ring of
// shared-memory stages of kLinKps k-tiles (3 stages, more for grids of at most 2 blocks per SM:
// linear.cu LinCfg), with bulk copies that complete on mbarriers (wgmma.cuh); the first stages'
// weights are requested before the PDL wait, so they stream while the previous kernel ends. Two
// consumer warpgroups (64 rows each) multiply every k-tile with wgmma, N = 16 NTB columns (the hi
// and lo halves of NTB n-tiles of 8 tokens), reading both operands from shared memory, one
// stage's wgmmas in flight while the next stage is waited for. A block covers NTB n-tiles (1 for n <= 8, ...
// 8 for n = 64 and prefill, where further token groups are further blocks). The S blocks of a row
// group's K splits are one thread-block cluster that shares the split fold and the epilogue
// (below): a single last block per row group made both a serial tail that grew with the tokens.
// For one n-tile on short rows the RMSNorm before qkv, gate/up and the LM head runs inside the
// kernel (normB): the consumer warps compute the tokens' 1/rms while the first weights are in
// flight, and each consumer warpgroup writes the normalised hi/lo B tiles of every stage itself,
// so no norm kernel sits between two matrix kernels. (That costs a memory round trip and a proxy
// fence per stage: it pays where a split is one or two stages, not on the 7B shape;
// bench/RESULTS.md, fifth session.)
// Measured against the register-ring mma.sync kernel this replaced (gpu_check --linear, H200, 7B
// shapes, kernel alone): bench/RESULTS.md, fifth session.
//
// Invariance. S (the number of K splits) and the k range of each split are a function of the
// matrix shape only (linearSplits). Within a split the accumulation is fixed: per k-tile in
// ascending order, wgmma accumulates W*x_hi into one column and W*x_lo into another; the token's
// output is then acc_hi + acc_lo. A wgmma column's bits depend neither on N nor on the other
// columns (wgmma.cuh). The S blocks of a row group's splits form one thread-block cluster: each
// leaves its partial tile in shared memory, and after a cluster barrier block s sums its share of the
// outputs over all S tiles in split order (distributed shared memory) and runs their epilogue.
// NTB, token groups and the number of blocks only decide which output elements a block computes,
// never how. So a token's outputs are bitwise the same for every batch size and every
// batch composition.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "epilogue.cuh"
#include "layout.cuh"

namespace casspec::cuda {

constexpr int kLinWarps = 8;  // row tiles per block: two consumer warpgroups of 4 warps
static_assert(kLinWarps == kRowGroup, "a block streams one interleaved row group (layout.cuh)");
constexpr int kLinConsumers = kLinWarps * 32;
constexpr int kLinThreads = kLinConsumers + 32;  // + the producer warp
constexpr int kLinATile = kRowGroup * 512;       // weight bytes per (row group, k-tile)
constexpr int kLinBTile = 512;                   // B bytes per (n-tile, k-tile)
constexpr int kLinKps = 4;                       // k-tiles per ring stage
// SMs of an H100 / H200: the wave sizes that choose K splits (a constant, not the device's count,
// because the splits are part of the numerics) and the deep ring (linear.cu).
constexpr int kWaveSms = 132;

enum class Epilogue : int { Qkv = 0, Residual = 1, SwiGlu = 2, Logits = 3 };

// RMSNorm carried through the residual epilogue, so no norm kernel sits between the o or down
// projection and the next qkv or gate/up. The residual kernel, which holds each token's new x in
// pieces across its blocks, writes the next sub-layer's B as w * x * s (no 1/rms yet: no block has
// the whole row) and each piece's sum of squares; the consumer sums a token's pieces in a fixed
// order, r = 1 / sqrt(mean + eps), and scales its outputs by r / s before RoPE or SwiGLU. s is the
// token's previous r rounded down to a power of two: it keeps the 16-bit halves of B at normalised
// magnitudes (f16 overflows near 65504 and its lo halves go subnormal below 6e-5) and multiplies
// exactly. A piece is one row-tile pair (32 rows) of one token, reduced in a fixed lane pattern, so
// its bits depend on M only: batch invariant like everything else here.
struct NormOut {               // Residual epilogue, when the next sub-layer is a 16-bit qkv or gate/up
  const float* w = nullptr;    // its norm weight; null: a plain residual add
  void* packed = nullptr;      // its B operand (packedB, KT k-tiles): w * x * s
  int KT = 0;
  const float* rPrev = nullptr;  // per token: the last norm's 1/rms (LinArgs::rOut, or the norm kernel's)
  float* part = nullptr;         // per token: ldPart sums of squares, one per row-tile pair
  float* scale = nullptr;        // per token: s
  int ldPart = 0;
};
struct NormIn {                // a qkv or gate/up whose B came from a NormOut
  const float* part = nullptr;  // null: B is already normalised
  const float* scale = nullptr;
  int ldPart = 0, H = 0;
  float eps = 0.f;
};

struct LinArgs {
  const void* w = nullptr;  // packed weights (layout.cuh packedA)
  int M = 0, K = 0, MT = 0, KT = 0, S = 1;
  const int32_t* params = nullptr;
  bool countIsOut = false;  // columns are output rows (LM head) rather than the batch's tokens
  // B operand: packed activations (layout.cuh packedB), or with normB (one n-tile per block only)
  // RMSNorm(x) built per stage by the consumer warpgroups, the norm kernel's exact values.
  const void* bPacked = nullptr;
  bool normB = false;
  const float* x = nullptr;  // fp32 residual stream [rows][ldx]; rows are outRows with countIsOut
  int ldx = 0;
  const float* normW = nullptr;
  float eps = 0.f;
  // Epilogue.
  Epilogue epi = Epilogue::Residual;
  QkvOut qkv{};                    // Qkv: where queries and K/V go (epilogue.cuh)
  float* resid = nullptr;          // Residual: x [tokens][M] (+=)
  NormOut normOut{};               // Residual: the next sub-layer's normalised input, carried
  NormIn normIn{};                 // Qkv, SwiGlu: input carried from a NormOut
  float* rOut = nullptr;           // normB, NormIn: the tokens' 1/rms, for the next NormOut (null: unused)
  void* hPacked = nullptr;         // SwiGlu: packed down-projection input, KT = hKT
  int hKT = 0;
  float* result = nullptr;  // Logits: result block base (params give the offsets)
  int vocab = 0;
  // gate/up -> down handover (launches of one token group; CudaContext::enqueue). gate/up counts its
  // finished blocks per row group (doneOut[rb]) and in all (doneOut[row groups]). Down does not wait
  // for the whole gate/up grid: before each stage's B tiles it waits for the row groups those k-tiles
  // come from (doneSplits blocks each), and before its epilogue, which overwrites what gate/up reads
  // (x, the carried norm's buffers), for all of them (doneIn[doneRows] = doneRows * doneSplits).
  unsigned* doneOut = nullptr;
  const unsigned* doneIn = nullptr;
  int doneRows = 0, doneSplits = 0;
};
// Down's k-tiles per gate/up row group: 128 interleaved gate/up rows = 64 ffn rows (layout.cuh).
constexpr int kHandoffKt = kLinWarps * 16 / 2 / 16;

// Row groups (kLinWarps row tiles, one block's rows) of a matrix with MT row tiles.
inline int rowGroupsOf(int MT) { return (MT + kLinWarps - 1) / kLinWarps; }
// NormOut's sums of squares per token for a residual matrix of MT row tiles: one per row-tile pair
// of its row groups (those past the rows sum nothing and are written as zeros).
inline int normParts(int MT) { return rowGroupsOf(MT) * kLinWarps / 2; }
// The most K splits that leave every split at least 4 k-tiles.
inline int maxSplitsByK(int KT) { return KT / 4 < 1 ? 1 : KT / 4; }

// K splits for an MT x KT tile matrix. A matrix kernel's time is dominated by how many waves of
// blocks it needs (a second, partly empty wave costs as much as a full one), and a row group's S
// blocks are one cluster, which the GPU places whole, inside one GPC. Measured on the H200
// (gpu_check --splits; bench/RESULTS.md, sixth session), S is the most splits such that
//  - S <= 6: clusters of 12 left 336 of 396 blocks resident, clusters of 6 372 (3 blocks per SM);
//  - rowGroups * S <= 264, one wave at 2 blocks per SM (the residency of 64-token launches); except
//    that S = 2 may fill 396 (3 per SM, launches of up to 32 tokens), which pairs of blocks do fully;
//  - every split has at least 4 k-tiles.
// It is a pure function of the shape (constants, not the device's SM count), because S is part of
// the numerics: changing it changes the bits.
inline int linearSplits(int MT, int KT) {
  const int rowGroups = rowGroupsOf(MT);
  int s = 2 * kWaveSms / rowGroups;
  s = s > 6 ? 6 : s;
  if (s < 2 && 2 * rowGroups <= 3 * kWaveSms) s = 2;
  s = s < maxSplitsByK(KT) ? s : maxSplitsByK(KT);
  return s < 1 ? 1 : s;
}

// n-tiles (of 8 tokens) per block for a launch of up to maxTokens tokens.
inline int linearNtb(int maxTokens) { return maxTokens <= 8 ? 1 : maxTokens <= 16 ? 2 : maxTokens <= 32 ? 4 : 8; }

// ntb: n-tiles per block (1, 2, 4, 8); tokenGroups: blocks along the token axis (each ntb*8
// tokens). bf16: weights/activations in bf16 (else f16). pdl: programmatic dependent launch.
void launchLinear(const LinArgs& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream);
// Once per device before any launch (not during graph capture): shared-memory limits.
void linearPrepare();
// Clusters of S blocks (one row group's splits) the device keeps resident at once, for launches of
// ntb n-tiles per block (cudaOccupancyMaxActiveClusters): times S, one wave of blocks.
int linearActiveClusters(int ntb, int S, bool bf16);

}  // namespace casspec::cuda
