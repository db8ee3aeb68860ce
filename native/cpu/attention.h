// Causal attention of one token, one query head, over its visible keys: the committed prefix
// (slots 0..committed-1) then its pending ancestors (root first, itself last). Visiting keys in
// exactly this order, whether the token came alone or in a tree, is what makes tree verification
// reproduce one-token-at-a-time decoding bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kv_cache.h"

namespace casspec::cpu {

struct KeyList {
  int committed;
  const int32_t* ancestors;
  int nAncestors;
  int size() const { return committed + nAncestors; }
  int slot(int j) const { return j < committed ? j : ancestors[j - committed]; }
};

// q: [headDim] (RoPE applied); kvOffset: this head's kv head * headDim within a slot's row;
// scores: scratch of keys.size() floats; out: [headDim].
void attendHead(const float* q, KvCache& kv, int layer, int kvOffset, int headDim, float scale, const KeyList& keys,
                float* scores, float* out);

}  // namespace casspec::cpu
