// One sequence on the CPU backend: its KV cache and the scratch activations of a forward pass.
#pragma once
#include <vector>

#include "../engine/backend.h"
#include "kv_cache.h"
#include "matmul.h"
#include "quant.h"
#include "weights.h"

namespace casspec::cpu {

class CpuBackend;

class CpuContext : public BackendContext {
 public:
  CpuContext(CpuBackend& backend, int capacity);
  void forward(const Batch& b, ForwardResult& out) override;
  void moveSlots(const int32_t* src, const int32_t* dst, int n) override { kv_.moveSlots(src, dst, n); }

 private:
  void attention(const Batch& b, int layer, const LayerWeights& w, const LayerQuant& wq);
  void mlp(const Batch& b, const LayerWeights& w, const LayerQuant& wq);
  // Runs products that share one input (jobs[i].x): in fp32, or (quant) through their int8
  // copies q[i] with the input quantized once per token.
  void project(bool quant, const MatJob* jobs, const QuantRows* const* q, int nJobs, int n);
  void head(const Batch& b, ForwardResult& out);

  CpuBackend& be_;
  KvCache kv_;
  // Activations, [n x width] row-major: x is the residual stream, xn its normalised copy.
  std::vector<float> x_, xn_, q_, k_, v_, att_, delta_, gate_, up_, logits_;
  std::vector<int8_t> xq_;  // quant: the current input, quantized per token
  std::vector<float> sx_;   // and its per-token scales
  std::vector<std::vector<float>> scores_;  // per pool worker: one head's attention weights
};

}  // namespace casspec::cpu
