// The per-forward parameter block: one int32 array the host fills and copies to the device once
// per forward. Kernels (replayed from a CUDA graph captured once per batch-size bucket) read the
// batch size, cache length and index lists from here instead of from launch arguments, which is
// what lets one captured graph serve every forward of its bucket.
#pragma once
#include <cstdint>

namespace casspec::cuda {

enum ParamField : int {
  kP_n = 0,          // tokens in this forward
  kP_committed,      // committed prefix length (keys [0, committed) are shared by every token)
  kP_nOut,           // rows with outputs
  kP_topk,           // 0..16
  kP_maxKeys,        // max over tokens of (committed + ancestors): bounds attention chunks
  kP_tokens,         // offsets (in int32 units) of the arrays below
  kP_slots,
  kP_positions,
  kP_ancOffsets,     // [n+1], relative to ancSlots
  kP_ancSlots,
  kP_outRows,        // [nOut]
  kP_vocab,          // copy of the config's vocab (result layout)
  kP_stagedKeys,     // >= committed: every key index j below it sits in slot j for each token that has
                     // it (the committed prefix, then a chain's or a prefill's own tokens)
  kP_tailCount,      // rows of tailSlots, 0 when the tail is not staged (attention.cuh)
  kP_tailSlots,      // [tailCount] distinct slots of the key indices from attnTailStart(stagedKeys) on
  kP_ancTail,        // [like ancSlots] row of each ancestor entry in tailSlots (-1 below the start)
  kP_headerSize = 16
};

static_assert(kP_ancTail < kP_headerSize, "header fields must fit the header");

struct Params {
  const int32_t* p;
  __device__ __forceinline__ int n() const { return p[kP_n]; }
  __device__ __forceinline__ int committed() const { return p[kP_committed]; }
  __device__ __forceinline__ int nOut() const { return p[kP_nOut]; }
  __device__ __forceinline__ int topk() const { return p[kP_topk]; }
  __device__ __forceinline__ int maxKeys() const { return p[kP_maxKeys]; }
  __device__ __forceinline__ int stagedKeys() const { return p[kP_stagedKeys]; }
  __device__ __forceinline__ const int32_t* tokens() const { return p + p[kP_tokens]; }
  __device__ __forceinline__ const int32_t* slots() const { return p + p[kP_slots]; }
  __device__ __forceinline__ const int32_t* positions() const { return p + p[kP_positions]; }
  __device__ __forceinline__ const int32_t* ancOffsets() const { return p + p[kP_ancOffsets]; }
  __device__ __forceinline__ const int32_t* ancSlots() const { return p + p[kP_ancSlots]; }
  __device__ __forceinline__ const int32_t* outRows() const { return p + p[kP_outRows]; }
  __device__ __forceinline__ int tailCount() const { return p[kP_tailCount]; }
  __device__ __forceinline__ const int32_t* tailSlots() const { return p + p[kP_tailSlots]; }
  __device__ __forceinline__ const int32_t* ancTail() const { return p + p[kP_ancTail]; }
};

// Results (device, then one copy to the host): [argmax nOut][topkIds nOut*k][topkProbs nOut*k]
// [logits nOut*vocab], offsets in 4-byte words.
__host__ __device__ inline int64_t resultIdsOffset(int nOut) { return nOut; }
__host__ __device__ inline int64_t resultProbsOffset(int nOut, int k) { return (int64_t)nOut + (int64_t)nOut * k; }
__host__ __device__ inline int64_t resultLogitsOffset(int nOut, int k) { return (int64_t)nOut + 2 * (int64_t)nOut * k; }

}  // namespace casspec::cuda
