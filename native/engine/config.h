// The model's shape: the one place native code learns it. Filled from JS (parsed config.json).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace casspec {

struct ModelConfig {
  int vocab = 0;
  int hidden = 0;
  int layers = 0;
  int heads = 0;
  int kvHeads = 0;
  int headDim = 0;
  int ffn = 0;
  int maxPositions = 0;
  float ropeTheta = 10000.f;
  float rmsEps = 1e-5f;
  bool tiedEmbeddings = false;

  int qDim() const { return heads * headDim; }
  int kvDim() const { return kvHeads * headDim; }
  void validate() const;  // throws E_CONFIG naming the bad field
};

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };
DType parseDType(const std::string& s);  // "F32" | "F16" | "BF16" (safetensors spelling); throws E_DTYPE
size_t dtypeSize(DType t);

// Weight tensors by role. Index into a model's weight table: globals first, then per layer.
enum class Role : int {
  Embed = 0, FinalNorm, LmHead,                       // globals
  AttnNorm, Wq, Wk, Wv, Wo, MlpNorm, Wgate, Wup, Wdown,  // per layer
  Count
};

// The tensors the int8 draft mode (kQuantInt8) keeps a quantized copy of: every layer's projections.
inline bool isQuantizedRole(Role r) {
  return r == Role::Wq || r == Role::Wk || r == Role::Wv || r == Role::Wo || r == Role::Wgate || r == Role::Wup || r == Role::Wdown;
}

struct TensorSpec {
  std::string name;            // Hugging Face name, e.g. "model.layers.3.self_attn.q_proj.weight"
  Role role;
  int layer;                   // -1 for globals
  std::vector<int64_t> shape;  // row-major, as stored by HF ([out, in] for Linear)
};

// Every tensor the model needs (lm_head omitted when embeddings are tied). Single source of truth
// for names and shapes; JS asks for it via NativeModel.tensorSpecs().
std::vector<TensorSpec> tensorSpecs(const ModelConfig& c);

}  // namespace casspec
