// Keys (after RoPE) and values of every slot, layer-major: [layer][slot][kvHeads * headDim], so one
// head's keys for consecutive slots sit close together when attention walks them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace casspec::cpu {

class KvCache {
 public:
  KvCache(int layers, int capacity, int kvDim)
      : layers_(layers), capacity_(capacity), kvDim_(kvDim),
        // Zero-filled: slots nobody wrote (a draft pass skipped that layer) must still hold finite
        // numbers, because a later draft pass may attend to them.
        k_((size_t)layers * capacity * kvDim, 0.f), v_((size_t)layers * capacity * kvDim, 0.f) {}

  float* k(int layer, int slot) { return k_.data() + ((size_t)layer * capacity_ + slot) * kvDim_; }
  float* v(int layer, int slot) { return v_.data() + ((size_t)layer * capacity_ + slot) * kvDim_; }

  // Copies slot src[i] to dst[i] in every layer, in order i = 0..n-1.
  void moveSlots(const int32_t* src, const int32_t* dst, int n);

 private:
  int layers_, capacity_, kvDim_;
  std::vector<float> k_, v_;
};

}  // namespace casspec::cpu
