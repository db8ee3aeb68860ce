#include "strict_fp.h"
#include "outputs.h"

#include <cmath>

namespace casspec::cpu {

int32_t argmaxRow(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

void topkRow(const float* logits, int vocab, int k, int32_t* ids, float* probs) {
  for (int j = vocab; j < k; ++j) {  // a vocabulary smaller than k: pad with id -1, probability 0
    ids[j] = -1;
    probs[j] = 0.f;
  }
  if (k > vocab) k = vocab;
  // Insertion into a sorted list of k: ids arrive in increasing order, so "strictly greater"
  // keeps the lower id ahead on ties. k <= 16, so this beats a heap.
  int have = 0;
  for (int i = 0; i < vocab; ++i) {
    const float x = logits[i];
    if (have == k && !(x > logits[ids[k - 1]])) continue;
    int p = have < k ? have++ : k - 1;
    while (p > 0 && x > logits[ids[p - 1]]) {
      ids[p] = ids[p - 1];
      --p;
    }
    ids[p] = i;
  }
  const float max = logits[ids[0]];
  float sum = 0.f;
  for (int i = 0; i < vocab; ++i) sum += std::exp(logits[i] - max);
  for (int j = 0; j < k; ++j) probs[j] = std::exp(logits[ids[j]] - max) / sum;
}

}  // namespace casspec::cpu
