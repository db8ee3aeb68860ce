// The CPU reference backend: fp32 weights, fp32 math, results bitwise independent of batching and
// threading. Slow next to the GPU, but the yardstick the other backends are tested against.
#pragma once
#include <memory>

#include "../engine/backend.h"
#include "rope.h"
#include "thread_pool.h"
#include "weights.h"

namespace casspec::cpu {

class CpuBackend : public Backend {
 public:
  CpuBackend(const ModelConfig& c, const BackendOptions& o);
  std::string name() const override { return "cpu"; }
  std::string deviceInfo() const override;
  void setTensor(int index, const TensorSpec& spec, DType src, const void* data) override;
  void fillDummy(int index, const TensorSpec& spec, uint64_t seed) override;
  std::unique_ptr<BackendContext> newContext(int capacity) override;
  int64_t weightBytes() const override { return weights_.bytes(); }
  int64_t quantBytes() const override { return weights_.quantBytes(); }
  int64_t kvBytesPerSlot() const override { return 2 * (int64_t)config_.layers * config_.kvDim() * 4; }

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  const Rope& rope() const { return rope_; }
  ThreadPool& pool() { return pool_; }

 private:
  // The int8 copy of a just-filled projection, when the model asked for one.
  void quantizeIfWanted(int index, const TensorSpec& spec);

  ModelConfig config_;
  int quantWeights_;
  Weights weights_;
  Rope rope_;
  ThreadPool pool_;
};

}  // namespace casspec::cpu
