// One sequence on the CPU backend: its KV cache and the scratch activations of a forward pass.
#pragma once
#include <vector>

#include "../engine/backend.h"
#include "kv_cache.h"
#include "weights.h"

namespace casspec::cpu {

class CpuBackend;

class CpuContext : public BackendContext {
 public:
  CpuContext(CpuBackend& backend, int capacity);
  void forward(const Batch& b, ForwardResult& out) override;
  void moveSlots(const int32_t* src, const int32_t* dst, int n) override { kv_.moveSlots(src, dst, n); }

 private:
  void attention(const Batch& b, int layer, const LayerWeights& w);
  void mlp(const Batch& b, const LayerWeights& w);
  void head(const Batch& b, ForwardResult& out);

  CpuBackend& be_;
  KvCache kv_;
  // Activations, [n x width] row-major: x is the residual stream, xn its normalised copy.
  std::vector<float> x_, xn_, q_, k_, v_, att_, delta_, gate_, up_, logits_;
  std::vector<std::vector<float>> scores_;  // per pool worker: one head's attention weights
};

}  // namespace casspec::cpu
