#include "cpu_backend.h"

#include <algorithm>
#include <thread>

#include "../engine/dummy.h"
#include "../engine/errors.h"
#include "convert.h"
#include "cpu_context.h"

namespace casspec {

std::unique_ptr<Backend> makeCpuBackend(const ModelConfig& c, const BackendOptions& o) {
  return std::make_unique<cpu::CpuBackend>(c, o);
}

namespace cpu {

static int threadCount(int requested) {
  require(requested >= 0 && requested <= 1024, "E_INVALID_ARG", "threads must be in 0..1024 (0 = one per core)");
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

CpuBackend::CpuBackend(const ModelConfig& c, const BackendOptions& o)
    : config_(c), quantWeights_(o.quantWeights), weights_(c), rope_(c.headDim, c.ropeTheta), pool_(threadCount(o.threads)) {}

std::string CpuBackend::deviceInfo() const {
  return "cpu (" + std::to_string(pool_.size()) + (pool_.size() == 1 ? " thread)" : " threads)");
}

static size_t elementCount(const TensorSpec& s) {
  size_t n = 1;
  for (int64_t d : s.shape) n *= (size_t)d;
  return n;
}

void CpuBackend::setTensor(int index, const TensorSpec& spec, DType src, const void* data) {
  const size_t n = elementCount(spec);
  toF32(src, data, weights_.allocate(index, n), n);
  quantizeIfWanted(index, spec);
}

void CpuBackend::quantizeIfWanted(int index, const TensorSpec& spec) {
  if (quantWeights_ != kQuantInt8 || !isQuantizedRole(spec.role)) return;
  quantizeWeights(pool_, weights_.data(index), (int)spec.shape[0], (int)spec.shape[1], weights_.quant(index));
}

void CpuBackend::fillDummy(int index, const TensorSpec& spec, uint64_t seed) {
  const size_t n = elementCount(spec);
  float* w = weights_.allocate(index, n);
  const bool isNorm = spec.role == Role::AttnNorm || spec.role == Role::MlpNorm || spec.role == Role::FinalNorm;
  constexpr size_t kChunk = 1 << 16;
  pool_.run((int)((n + kChunk - 1) / kChunk), [&](int task, int) {
    const size_t end = std::min(n, (size_t)(task + 1) * kChunk);
    for (size_t e = (size_t)task * kChunk; e < end; ++e) w[e] = dummyWeight(seed, index, e, isNorm);
  });
  quantizeIfWanted(index, spec);
}

std::unique_ptr<BackendContext> CpuBackend::newContext(int capacity) { return std::make_unique<CpuContext>(*this, capacity); }

}  // namespace cpu
}  // namespace casspec
