#include "strict_fp.h"
#include "rope.h"

#include <cmath>

namespace casspec::cpu {

// Every step in fp32, as HF does: inv_freq = 1 / theta^(float(2i) / float(d)), then
// freq = float(pos) * inv_freq, then cos and sin of that fp32 angle. Rounding the same way keeps
// far positions close to the reference (an angle error grows with pos).
Rope::Rope(int headDim, float theta) : headDim_(headDim), invFreq_(headDim / 2) {
  for (int i = 0; i < headDim / 2; ++i) {
    const float e = (float)(2 * i) / (float)headDim;
    invFreq_[i] = 1.0f / std::pow(theta, e);
  }
}

void Rope::apply(float* v, int heads, int pos) const {
  const int half = headDim_ / 2;
  float cs[512], sn[512];  // headDim <= 1024 (config.cpp)
  for (int i = 0; i < half; ++i) {
    const float a = (float)pos * invFreq_[i];
    cs[i] = std::cos(a);
    sn[i] = std::sin(a);
  }
  for (int h = 0; h < heads; ++h) {
    float* x = v + (size_t)h * headDim_;
    for (int i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      // HF: x * cos + rotate_half(x) * sin, with rotate_half(x) = (-x2, x1).
      x[i] = a * cs[i] + (-b) * sn[i];
      x[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

}  // namespace casspec::cpu
