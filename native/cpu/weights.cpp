#include "weights.h"

namespace casspec::cpu {

Weights::Weights(const ModelConfig& c) {
  const std::vector<TensorSpec> specs = tensorSpecs(c);
  tensors_.resize(specs.size());
  quant_.resize(specs.size());
  layerIndex_.assign(c.layers, std::vector<int>((int)Role::Count - (int)Role::AttnNorm, -1));
  for (int i = 0; i < (int)specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (s.role == Role::Embed) embed_ = i;
    else if (s.role == Role::FinalNorm) finalNorm_ = i;
    else if (s.role == Role::LmHead) lmHead_ = i;
    else layerIndex_[s.layer][(int)s.role - (int)Role::AttnNorm] = i;
  }
  if (lmHead_ < 0) lmHead_ = embed_;  // tie_word_embeddings: the output projection is the embedding
}

float* Weights::allocate(int index, size_t elements) {
  // Fresh storage each time, so a reload never leaves a mix of old and new values.
  std::vector<float>(elements).swap(tensors_[index]);
  return tensors_[index].data();
}

int64_t Weights::bytes() const {
  int64_t b = 0;
  for (const auto& t : tensors_) b += (int64_t)t.size() * 4;
  return b;
}

int64_t Weights::quantBytes() const {
  int64_t b = 0;
  for (const auto& q : quant_) b += q.bytes();
  return b;
}

LayerQuant Weights::layerQuant(int l) const {
  auto p = [&](Role r) { return &quant_[layerIndex_[l][(int)r - (int)Role::AttnNorm]]; };
  return {p(Role::Wq), p(Role::Wk), p(Role::Wv), p(Role::Wo), p(Role::Wgate), p(Role::Wup), p(Role::Wdown)};
}

LayerWeights Weights::layer(int l) const {
  auto p = [&](Role r) { return tensors_[layerIndex_[l][(int)r - (int)Role::AttnNorm]].data(); };
  return {p(Role::AttnNorm), p(Role::Wq), p(Role::Wk), p(Role::Wv), p(Role::Wo),
          p(Role::MlpNorm), p(Role::Wgate), p(Role::Wup), p(Role::Wdown)};
}

}  // namespace casspec::cpu
