// The model's weights in fp32, one buffer per tensor spec (same index as tensorSpecs()).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../engine/config.h"
#include "quant.h"

namespace casspec::cpu {

struct LayerWeights {
  const float *attnNorm, *wq, *wk, *wv, *wo;
  const float *mlpNorm, *wgate, *wup, *wdown;
};

// The int8 copies of a layer's projections (quant mode kQuantInt8), when the model made them.
struct LayerQuant {
  const QuantRows *wq, *wk, *wv, *wo, *wgate, *wup, *wdown;
};

// Whether tensors of this role get an int8 copy: the 7 projections of a layer, nothing else.

class Weights {
 public:
  Weights(const ModelConfig& c);
  float* data(int index) { return tensors_[index].data(); }
  // Allocates tensor `index` (prod(shape) floats) and returns it for the caller to fill.
  float* allocate(int index, size_t elements);
  int64_t bytes() const;
  // Storage for tensor `index`'s int8 copy (isQuantizedRole only).
  QuantRows& quant(int index) { return quant_[index]; }
  int64_t quantBytes() const;

  // Views, valid once every tensor is set (the engine checks that before any forward).
  LayerWeights layer(int l) const;
  LayerQuant layerQuant(int l) const;
  const float* embed() const { return tensors_[embed_].data(); }
  const float* finalNorm() const { return tensors_[finalNorm_].data(); }
  const float* lmHead() const { return tensors_[lmHead_].data(); }  // the embedding when tied

 private:
  std::vector<std::vector<float>> tensors_;
  std::vector<QuantRows> quant_;  // per tensor; empty unless quantized
  int embed_ = -1, finalNorm_ = -1, lmHead_ = -1;
  std::vector<std::vector<int>> layerIndex_;  // [layer][role - AttnNorm]
};

}  // namespace casspec::cpu
