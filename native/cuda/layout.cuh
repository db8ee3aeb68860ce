// Memory layouts shared by the weight packer, the matrix kernel and the kernels that produce
// matrix inputs.
//
// Weights ("A" operand): a matrix W [M x K] is padded to [16*MT x 16*KT] with zeros (MT a multiple
// of kRowGroup) and stored as 16x16 tiles of 512 bytes: 32 lanes x 8 halves, where lane l's 8
// halves are exactly its mma.m16n8k16 A fragment (a0..a7). Tile (mt, kt) sits at tile index
// ((mt / kRowGroup) * KT + kt) * kRowGroup + mt % kRowGroup: the kRowGroup row tiles a matrix-
// kernel block streams lie side by side for each k-tile, so the block reads one contiguous 4 KB
// run per step (one 16-byte load per lane per warp) instead of 8 runs of 512 bytes.
//
// Activations ("B" operand, tokens as columns): X [n x K] is stored as tiles of 8 tokens x 16 k,
// tile (nt, kt) at index nt*KT + kt, 32 lanes x 8 halves = {b0 b1 b2 b3 of hi, b0 b1 b2 b3 of lo}
// (see splitHiLo in mma.cuh). One 16-byte load gives a lane both B fragments of a tile.
#pragma once
#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define CASSPEC_HDI __host__ __device__ __forceinline__
#else
#define CASSPEC_HDI inline
#endif

namespace casspec::cuda {

constexpr int kTile = 16;
constexpr int kRowGroup = 8;  // row tiles per matrix-kernel block (linear.cuh: kLinWarps)
CASSPEC_HDI int tilesOf(int64_t n) { return (int)((n + kTile - 1) / kTile); }

// Element (m, k) of a packed weight matrix with KT k-tiles: index in halves.
CASSPEC_HDI size_t packedA(int64_t m, int64_t k, int KT) {
  const int r = (int)(m & 15), c = (int)(k & 15);
  const int lane = (r & 7) * 4 + ((c & 7) >> 1);
  const int idx = (((c >> 3) << 1) | (r >> 3)) * 2 + (c & 1);
  const int64_t mt = m >> 4;
  return ((((size_t)(mt / kRowGroup) * KT + (k >> 4)) * kRowGroup + mt % kRowGroup) * 32 + lane) * 8 + idx;
}

// Element (token t, k) of a packed activation with KT k-tiles: index (in halves) of its hi half;
// the lo half sits 4 halves later.
CASSPEC_HDI size_t packedB(int64_t t, int64_t k, int KT) {
  const int n = (int)(t & 7), c = (int)(k & 15);
  const int lane = n * 4 + ((c & 7) >> 1);
  const int idx = ((c >> 3) << 1) + (c & 1);
  return ((size_t)((t >> 3) * KT + (k >> 4)) * 32 + lane) * 8 + idx;
}

// Row order inside the fused QKV matrix. Within each head of Wq, Wk and Wv, packed row tile j
// holds head dims 8j..8j+7 in its rows 0..7 and d/2+8j..d/2+8j+7 in rows 8..15. An mma C
// fragment gives each lane rows g and g+8 of a tile, i.e. head dims i and i+d/2: the two halves
// RoPE's rotate_half mixes. So RoPE is applied lane-locally in the epilogue, no shuffles.
CASSPEC_HDI int ropePackedRow(int dim, int headDim) {  // source dim -> packed row within the head
  const int half = headDim / 2;
  return dim < half ? (dim / 8) * 16 + (dim % 8) : ((dim - half) / 8) * 16 + 8 + (dim - half) % 8;
}
CASSPEC_HDI int ropeSourceDim(int row, int headDim) {  // packed row within the head -> source dim
  const int j = row / 16, r = row % 16;
  return r < 8 ? 8 * j + r : headDim / 2 + 8 * j + (r - 8);
}

// Row order inside the fused gate/up matrix: tiles alternate gate tile i, up tile i, so one block
// holds both factors of silu(gate) * up for the same ffn rows.
CASSPEC_HDI int64_t gateUpPackedRow(int64_t f, bool up) { return ((f / 16) * 2 + (up ? 1 : 0)) * 16 + f % 16; }

}  // namespace casspec::cuda

// ---- int8 (quant mode kQuantInt8, mma.m16n8k32.s8) --------------------------------------------
// Same tile idea with 32-wide k-tiles. Weights: tile (mt, kt) of 16 rows x 32 k at tile index
// mt*KT + kt, 512 bytes: lane l's 16 bytes are its A fragment, registers {row g, k 4q..4q+3},
// {row g+8, same k}, {row g, k 16+4q..}, {row g+8, k 16+4q..} with g = l/4, q = l%4.
// Activations: tile (nt, kt) of 8 tokens x 32 k, 256 bytes: lane l's 8 bytes are its B fragment,
// {token g, k 4q..4q+3}, {token g, k 16+4q..}. Four consecutive k of a token share one 32-bit word.
constexpr int kTile8 = 32;
CASSPEC_HDI int tiles8Of(int64_t n) { return (int)((n + kTile8 - 1) / kTile8); }

// Byte offset of int8 weight (m, k) in a packed matrix with KT 32-wide k-tiles.
CASSPEC_HDI size_t packedA8(int64_t m, int64_t k, int KT) {
  const int lane = (int)(m & 7) * 4 + (int)((k & 15) >> 2);
  const int reg = (int)((k >> 4) & 1) * 2 + (int)((m >> 3) & 1);
  return ((size_t)((m >> 4) * KT + (k >> 5)) * 32 + lane) * 16 + reg * 4 + (k & 3);
}

// Byte offset of int8 activation (token t, k) in a packed input with KT 32-wide k-tiles.
CASSPEC_HDI size_t packedB8(int64_t t, int64_t k, int KT) {
  const int lane = (int)(t & 7) * 4 + (int)((k & 15) >> 2);
  return ((size_t)((t >> 3) * KT + (k >> 5)) * 32 + lane) * 8 + ((k >> 4) & 1) * 4 + (k & 3);
}
