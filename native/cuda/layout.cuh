// Memory layouts shared by the weight packer, the matrix kernel and the kernels that produce
// matrix inputs. Both are wgmma's no-swizzle K-major layout (wgmma.cuh): core matrices of 8 rows
// x 8 k (16 bytes per row, 128 bytes per core matrix).
//
// Weights ("A" operand): a matrix W [M x K] is padded to [16*MT x 16*KT] with zeros (MT a multiple
// of kRowGroup). A row group (kRowGroup row tiles = 128 rows) stores each k-tile as one contiguous
// 4 KB run at ((rowGroup * KT) + kt) * 4 KB, so a (row group, K split) stream is contiguous and one
// bulk copy moves several k-tiles. Inside the run: [warpgroup half (64 rows)][k half (8 k)][row
// group of 8][row][k], i.e. for one warpgroup's wgmma: LBO 1024 bytes (k halves), SBO 128 (8-row
// groups).
//
// Activations ("B" operand, tokens as columns): X [n x K] is stored as tiles of 8 tokens x 16 k,
// each holding the tokens' hi halves then their lo halves (splitHiLo in mma.cuh): [hi/lo][k
// half][token][k], i.e. wgmma columns 8 tokens of hi then 8 of lo: LBO 128 bytes, SBO 256 when a
// stage stores a k-tile's n-tiles side by side. Tiles go k-tile-major within groups of kBGroup
// n-tiles (64 tokens): tile (nt, kt) at byte ((nt / 8 * KT + kt) * 8 + nt % 8) * 512, so the 1, 2,
// 4 or 8 aligned n-tiles a matrix block takes are contiguous for each k-tile (one bulk copy), and a
// buffer holds whole groups.
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
  const int r = (int)(m & 127), c = (int)(k & 15);
  const int inRun = (r >> 6) * 1024 + (c >> 3) * 512 + ((r >> 3) & 7) * 64 + (r & 7) * 8 + (c & 7);
  return ((size_t)(m >> 7) * KT + (k >> 4)) * (kRowGroup * 256) + inRun;
}

// Element (token t, k) of a packed activation with KT k-tiles: index (in halves) of its hi half;
// the lo half sits kPackedLo halves later.
constexpr int kPackedLo = 128;
constexpr int kBGroup = 8;
CASSPEC_HDI size_t packedB(int64_t t, int64_t k, int KT) {
  const int c = (int)(k & 15);
  return (((size_t)(t >> 6) * KT + (k >> 4)) * kBGroup + ((t >> 3) & 7)) * 256 + (c >> 3) * 64 + (int)(t & 7) * 8 + (c & 7);
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
