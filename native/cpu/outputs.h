// What a forward pass reports for one output row, derived from its fp32 logits.
#pragma once
#include <cstddef>
#include <cstdint>

namespace casspec::cpu {

// Index of the largest logit; ties go to the lower id.
int32_t argmaxRow(const float* logits, int vocab);

// The k most likely ids (best first; ties to the lower id) and their probabilities under the
// softmax over the whole vocabulary, computed in fp32 with the max subtracted.
void topkRow(const float* logits, int vocab, int k, int32_t* ids, float* probs);

}  // namespace casspec::cpu
