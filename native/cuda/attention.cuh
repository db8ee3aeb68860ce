// Tree-masked GQA attention over the KV cache, batch invariant. Two kernels share this interface,
// the chunks, the partials and the combine: the tensor-core kernel (attention.cu, described here)
// and the CUDA-core one (attention_fma.cu, AttnArgs::fma); a model uses one of them (other bits).
//
// Token i attends to its ordered key list: slots [0, committed) then its pending ancestors (root
// to itself). The list is cut into chunks at FIXED key indices (multiples of kAttnChunk); a chunk
// yields, per (token, head), max m, sum l of exp(s - m) and the unnormalised sum of p * V. Chunks
// are combined in chunk order (attnCombine). Inside a chunk every product goes through mma with
// the same per-element input sequence (q_hi*K, q_lo*K[, q_hi*K_lo] over head-dim tiles in order;
// p_hi*V, p_lo*V[, p_hi*V_lo] over 16-key tiles in order), and the softmax sums run in a fixed lane
// pattern keyed by the key index. Keys shared by all rows of a warp (the committed prefix, or a
// chain's common ancestors) feed one mma for 16 rows; where rows disagree on the slot at a key
// index (tree branches), the warp runs one mma per token and keeps that token's rows. Either way
// an element sees the same inputs, so results do not depend on n, tree shape or neighbours.
//
// Tree tails. The per-token lookups start at attnTailStart(stagedKeys). The host lists the
// distinct slots they reach (the committed ones first: Params::tailSlots) and, per ancestor entry,
// its row in that list (Params::ancTail); a chunk with such keys stages those rows in shared
// memory once, so a branch's per-token mmas read K/V there instead of from global memory. A
// launch for up to maxTokens tokens has room for attnTailRows(maxTokens) rows; a longer list
// (tailCount 0) keeps the global lookups. The fragments are the same either way, and so are the
// bits. Both paths compute S of their 16 rows against all tail rows at once (the decode path
// spreads the row blocks over its 4 warps) and gather each row's columns (an S element depends
// only on its own q row and key); P V stays per token where branches differ (the k order inside
// an mma is the key index), and the decode path spreads those passes over its 4 warps (a tree
// tile's owner alone made the tail chunk 3x a committed one). A block whose chunk has a tail
// copies the key lists (ancestor offsets, tail rows, tail slots) to shared memory before its wait.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "check.cuh"

namespace casspec::cuda {

constexpr int kAttnChunk = 64;  // keys per chunk: fixed, part of the numerics
constexpr int kAttnWarps = 4;
constexpr int kAttnMaxTailRows = 80;

// Tail rows a launch for up to maxTokens tokens stages: a tree's own slots plus the committed
// keys of its first lookup tile. None for one token (a decode step is all staged) or for
// launches past the graph sizes (prefill chunks are all staged).
__host__ __device__ inline int attnTailRows(int maxTokens) {
  const int rows = (maxTokens + 16 + 7) / 8 * 8;  // whole key blocks of 8 (the wide path's S tiles)
  return maxTokens <= 1 || maxTokens > 64 ? 0 : rows < kAttnMaxTailRows ? rows : kAttnMaxTailRows;
}
// Ints of shared memory for a launch's tree lists: the ancestor offsets of up to maxTokens tokens,
// their tail rows (a token lists at most its position + 1 entries) and the tail slots. None
// without a tree tail.
__host__ __device__ inline int attnListInts(int maxTokens, int tailRows) {
  return tailRows ? maxTokens + 1 + maxTokens * (maxTokens + 1) / 2 + tailRows : 0;
}
// Blocks along the query rows for a launch of `rows` query rows (tokens x heads per kv head) over
// gridX chunk blocks of kvHeads heads: the decode path (4 warps on 16 rows) with one block per row
// group, while rows <= maxRows and the blocks fit maxWaves waves (kAttnBlocksPerSm resident per SM
// on waveSms SMs); 0 = the wide path (one warp per row group). Measured on the H200 against the
// wide path (bench/RESULTS.md, eighth session): pycode-small (2 kv heads: 20 chunk blocks at cache
// 512) n = 16 / 32 / 64 5% / 7% / 24% faster in one wave; the 7B shape (32 kv heads), whose chunk
// blocks already fill the GPU, 1.2% slower at n = 32 in two waves (in the last runs; earlier
// ones had it 2.5% faster) and 6% at n = 64 in four. The grid runs chunks from the last
// (attnKernel), so a tree's tail chunk, the longest block, starts in the first wave.
constexpr int kAttnBlocksPerSm = 3;
__host__ __device__ inline int attnRowBlocks(int rows, int gridX, int kvHeads, int waveSms, int maxRows, int maxWaves) {
  const int blocks = (rows + 15) / 16;
  if (blocks <= 1) return 1;
  return rows <= maxRows && gridX * kvHeads * blocks <= maxWaves * kAttnBlocksPerSm * waveSms ? blocks : 0;
}
// Whether a wide launch of `rows` query rows runs its row groups by warp pairs.
__host__ __device__ inline bool attnPairRows(int rows) { return rows > 16 && rows <= 32; }
// First key index looked up per token: the staged keys rounded down to a whole P V tile of 16.
__host__ __device__ inline int attnTailStart(int stagedKeys) { return stagedKeys / 16 * 16; }

struct AttnArgs {
  const int32_t* params = nullptr;
  const float* q = nullptr;  // [n][heads * headDim], RoPE applied
  const void* k = nullptr;   // this layer's keys   [slot][kvHeads * headDim]
  const void* v = nullptr;   // this layer's values
  bool kvF32 = false;
  int heads = 0, kvHeads = 0, headDim = 0;
  float scale = 0.f;
  float* part = nullptr;  // [(t * heads + h) * maxChunks + c] x (headDim + 2): m, l, acc[headDim]
  int maxChunks = 0;
  void* outPacked = nullptr;  // packed O-projection input, KT = heads * headDim / 16
  int outKT = 0;
  int tailRows = 0;  // attnTailRows of the launch: shared-memory rows for the tree tail
  int listInts = 0;  // attnListInts of the launch
  // Execution strategy, same bits either way: wide (one warp per 16-row group), or decode (the
  // block's 4 warps split each chunk's keys) with rowBlocks blocks along the query rows (grid y),
  // block y taking row groups y, y + rowBlocks, ... (attnRowBlocks).
  bool wide = false;
  int rowBlocks = 1;
  // Wide launches of 17-32 rows (attnPairRows): two row groups, each by a pair of warps that split
  // the chunk's keys, so all 4 warps work (attendRowsWide<PAIR>; same bits).
  bool pair = false;
  // The CUDA-core kernel (attention_fma.cu): other numerics, the same contract; a block per
  // rowBlocks' share of the 4-row quads (wide and pair do not apply).
  bool fma = false;
};

// gridX: blocks along chunks (grid z; block z takes chunks nChunks - 1 - z - i * gridX, the last first).
void launchAttention(const AttnArgs& a, int gridX, bool bf16, bool pdl, cudaStream_t stream);
void launchAttentionFma(const AttnArgs& a, int gridX, bool bf16, bool pdl, cudaStream_t stream);
// Combines chunk partials of tokens whose key list spans more than one chunk; maxTokens: grid size.
// releaseFirst: release the next kernel before waiting for the attention kernel (gridDepSync).
void launchAttnCombine(const AttnArgs& a, int maxTokens, bool bf16, bool pdl, bool releaseFirst, cudaStream_t stream);
// The head dims the kernels are built for, and the one dispatch on them: f(integral_constant<D>).
inline bool attentionSupportsHeadDim(int d) { return d == 32 || d == 64 || d == 128; }
template <class F>
void withHeadDim(int headDim, F&& f) {
  switch (headDim) {
    case 32: f(std::integral_constant<int, 32>{}); return;
    case 64: f(std::integral_constant<int, 64>{}); return;
    case 128: f(std::integral_constant<int, 128>{}); return;
    default: fail("E_CONFIG", "cuda backend: unsupported head_dim " + std::to_string(headDim));
  }
}
// Once per device before any launch (not during graph capture): shared-memory limits.
void attentionPrepare(int headDim, bool kvF32, bool bf16);

}  // namespace casspec::cuda
