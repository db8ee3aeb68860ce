// Y = W . X for every weight matrix of the model, one kernel family for every batch size.
//
// Launch shape. One block per (row group rb of 8 weight row tiles, K split s, token group tg).
// A block is 8 warps; warp w owns row tile 8rb + w (16 output rows) and walks the k-tiles of
// split s, streaming 512 contiguous bytes of packed weights per step through a register ring
// (loads issued 4-8 tiles ahead; the first ones before the PDL wait). (A shared-memory ring
// filled by cp.async.bulk copies was measured 3-4% slower at n = 1 and 21% at n = 32 once the
// row tiles were interleaved, and removed; RESULTS-cuda.md.) The B operand (tokens) of
// the block's k range is staged in shared memory (double-buffered rounds) and shared by the 8
// warps. A block covers NTB n-tiles of 8 tokens (1 for n <= 8, ... 8 for n = 64 and prefill,
// where further token groups are further blocks). Several blocks stay resident per SM, so one
// block's prologue and split combine overlap the others' weight streams. (A persistent one-block-
// per-SM variant with a register ring was tried and was 2x slower: its item boundaries drained
// the SM's only stream; see scripts/gpu/RESULTS-cuda.md.)
//
// Invariance. S (the number of K splits) and the k range of each split are a function of the
// matrix shape only (chooseSplits). Within a split the accumulation order is fixed: for each
// k-tile in ascending order, acc += W*x_hi, then acc += W*x_lo. The S partial tiles are summed
// in split order by whichever block of the row block finishes last (an integer atomic counter
// decides who; the float sum order does not depend on it). NTB, token groups and the number of
// blocks only decide which output elements a warp computes, never how. So a token's outputs are
// bitwise the same for every batch size and every batch composition.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "epilogue.cuh"
#include "layout.cuh"

namespace casspec::cuda {

constexpr int kLinWarps = 8;   // row tiles per block
static_assert(kLinWarps == kRowGroup, "a block streams one interleaved row group (layout.cuh)");
constexpr int kLinThreads = kLinWarps * 32;

enum class BSource : int { Packed = 0, Norm = 1 };
enum class Epilogue : int { Qkv = 0, Residual = 1, SwiGlu = 2, Logits = 3 };

struct LinArgs {
  const void* w = nullptr;  // packed weights (uint4 tiles)
  int M = 0, K = 0, MT = 0, KT = 0, S = 1;
  const int32_t* params = nullptr;
  bool countIsOut = false;  // columns are output rows (LM head) rather than the batch's tokens
  // B operand.
  BSource bsrc = BSource::Packed;
  const void* bPacked = nullptr;  // [tiles of 8 tokens][KT][32 lanes] x 16 bytes
  const float* x = nullptr;       // Norm: fp32 residual stream [tokens][ldx]
  int ldx = 0;
  const float* normW = nullptr;
  float eps = 0.f;
  // Split-K.
  float* ws = nullptr;
  int* counters = nullptr;
  // Epilogue.
  Epilogue epi = Epilogue::Residual;
  QkvOut qkv{};                    // Qkv: where queries and K/V go (epilogue.cuh)
  float* resid = nullptr;          // Residual: x [tokens][M] (+=)
  void* hPacked = nullptr;         // SwiGlu: packed down-projection input, KT = hKT
  int hKT = 0;
  float* result = nullptr;  // Logits: result block base (params give the offsets)
  int vocab = 0;
};

// K splits for an MT x KT tile matrix. Measured on H100: a matrix kernel's time is dominated by
// how many waves of blocks it needs (a second, partly empty wave costs as much as a full one), so
// S is the largest count (<= 16, >= 4 k-tiles per split) that keeps rowBlocks * S within one wave
// of kWaveBlocks resident blocks (3 per SM x 132 SMs: the decode configuration). It is a pure
// function of the shape (a constant, not the device's SM count), because S is part of the
// numerics: changing it changes the bits. CASSPEC_CUDA_SPLIT_TARGET overrides kWaveBlocks and
// CASSPEC_CUDA_SPLIT_MIN_TILES the 4 k-tiles, for experiments only (globally).
constexpr int kWaveBlocks = 396;
inline int chooseSplits(int MT, int KT, int waveBlocks = kWaveBlocks, int minTiles = 4) {
  const int rowBlocks = (MT + kLinWarps - 1) / kLinWarps;
  int s = waveBlocks / rowBlocks;
  s = s < 1 ? 1 : s > 16 ? 16 : s;
  const int maxByK = KT / minTiles < 1 ? 1 : KT / minTiles;
  return s < maxByK ? s : maxByK;
}

// ntb: n-tiles per block (1, 2, 4, 8); tokenGroups: blocks along the token axis (each ntb*8
// tokens). bf16: weights/activations in bf16 (else f16). pdl: programmatic dependent launch.
void launchLinear(const LinArgs& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream);
// Once per device before any launch (not during graph capture): shared-memory limits.
void linearPrepare();

// Bytes of split-K workspace and counters a launch needs.
inline size_t linearWorkspaceBytes(int MT, int S, int tokens) {
  if (S <= 1) return 0;
  const int rowBlocks = (MT + kLinWarps - 1) / kLinWarps;
  const int tok = (tokens + 7) / 8 * 8;
  return (size_t)rowBlocks * kLinWarps * 16 * S * tok * sizeof(float);
}
inline int linearCounters(int MT, int tokenGroups) { return (MT + kLinWarps - 1) / kLinWarps * tokenGroups; }

}  // namespace casspec::cuda
