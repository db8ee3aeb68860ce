// Rotary position embedding in Hugging Face's Llama convention ("rotate_half"): dimension i of a
// head is paired with i + headDim/2, both rotated by the angle pos * invFreq[i].
#pragma once
#include <vector>

namespace casspec::cpu {

class Rope {
 public:
  Rope(int headDim, float theta);
  // Rotates `heads` consecutive head vectors of v in place for one token at position pos.
  void apply(float* v, int heads, int pos) const;

 private:
  int headDim_;
  std::vector<float> invFreq_;  // [headDim / 2]
};

}  // namespace casspec::cpu
