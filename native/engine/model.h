// A loaded model: config, weights (held by the backend), and which tensors have arrived.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend.h"
#include "config.h"

namespace casspec {

class Context;

class Model : public std::enable_shared_from_this<Model> {
 public:
  Model(const ModelConfig& c, const BackendOptions& o);

  const ModelConfig& config() const { return config_; }
  const std::vector<TensorSpec>& specs() const { return specs_; }
  Backend& backend() { return *backend_; }
  // The quant mode whose weights were made at load time (BackendOptions::quantWeights).
  int quantWeights() const { return quantWeights_; }

  // name: HF tensor name; shape/dtype: as found in the file. Validates against the spec.
  void setTensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data, size_t bytes);
  void fillDummy(uint64_t seed);  // every tensor random (dummy load format)
  void requireComplete() const;   // throws E_MISSING_TENSOR naming the first absent tensor

  // Forward passes of all contexts of one model run one at a time (backends share scratch space).
  std::mutex& computeMutex() { return computeMutex_; }

 private:
  int indexOf(const std::string& name) const;
  ModelConfig config_;
  std::vector<TensorSpec> specs_;
  std::vector<bool> loaded_;
  std::unique_ptr<Backend> backend_;
  int quantWeights_ = kQuantNone;
  std::mutex computeMutex_;
};

}  // namespace casspec
