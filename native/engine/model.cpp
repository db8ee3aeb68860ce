#include "model.h"

#include "errors.h"

#include <algorithm>

namespace casspec {

Model::Model(const ModelConfig& c, const BackendOptions& o) : config_(c) {
  config_.validate();
  specs_ = tensorSpecs(config_);
  loaded_.assign(specs_.size(), false);
  require(o.quantWeights == kQuantNone || o.quantWeights == kQuantInt8, "E_INVALID_ARG",
          "quantWeights must be 0 (none) or 1 (int8), got " + std::to_string(o.quantWeights));
  quantWeights_ = o.quantWeights;
  if (quantWeights_ == kQuantInt8) {
    // int8 products are summed exactly in int32: |sum| <= K * 127^2 must stay below 2^31.
    const int64_t k = std::max({(int64_t)config_.hidden, (int64_t)config_.qDim(), (int64_t)config_.ffn});
    require(k <= kQuantInt8MaxK, "E_CONFIG",
            "int8 draft weights need every projection's input width <= " + std::to_string(kQuantInt8MaxK) + " (int32 sums), this config has " +
                std::to_string(k));
  }
  if (o.kind == "cpu") {
    backend_ = makeCpuBackend(config_, o);
  } else if (o.kind == "cuda") {
#ifdef CASSPEC_WITH_CUDA
    backend_ = makeCudaBackend(config_, o);
#else
    fail("E_BACKEND", "this build of casspec has no CUDA backend (built without nvcc)");
#endif
  } else {
    fail("E_INVALID_ARG", "unknown backend '" + o.kind + "' (expected 'cpu' or 'cuda')");
  }
}

int Model::indexOf(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return (int)i;
  return -1;
}

static std::string shapeStr(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void Model::setTensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data, size_t bytes) {
  const int i = indexOf(name);
  require(i >= 0, "E_UNKNOWN_TENSOR", "tensor '" + name + "' is not part of a Llama model with this config");
  const TensorSpec& s = specs_[i];
  require(shape == s.shape, "E_SHAPE",
          "tensor '" + name + "' has shape " + shapeStr(shape) + " but config.json implies " + shapeStr(s.shape));
  size_t elems = 1;
  for (int64_t d : s.shape) elems *= (size_t)d;
  require(bytes == elems * dtypeSize(dtype), "E_SHAPE",
          "tensor '" + name + "' holds " + std::to_string(bytes) + " bytes, expected " + std::to_string(elems * dtypeSize(dtype)));
  backend_->setTensor(i, s, dtype, data);
  loaded_[i] = true;
}

void Model::fillDummy(uint64_t seed) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    backend_->fillDummy((int)i, specs_[i], seed);
    loaded_[i] = true;
  }
}

void Model::requireComplete() const {
  for (size_t i = 0; i < specs_.size(); ++i)
    require(loaded_[i], "E_MISSING_TENSOR", "tensor '" + specs_[i].name + "' was not found in the model files");
}

}  // namespace casspec
