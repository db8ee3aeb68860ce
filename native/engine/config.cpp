#include "config.h"

#include "errors.h"

namespace casspec {

void ModelConfig::validate() const {
  auto positive = [](int v, const char* field) {
    require(v > 0, "E_CONFIG", std::string("config field ") + field + " must be a positive integer, got " + std::to_string(v));
  };
  positive(vocab, "vocab_size");
  positive(hidden, "hidden_size");
  positive(layers, "num_hidden_layers");
  positive(heads, "num_attention_heads");
  positive(kvHeads, "num_key_value_heads");
  positive(headDim, "head_dim");
  positive(ffn, "intermediate_size");
  positive(maxPositions, "max_position_embeddings");
  require(heads % kvHeads == 0, "E_CONFIG", "num_attention_heads must be a multiple of num_key_value_heads");
  require(headDim % 2 == 0, "E_CONFIG", "head_dim must be even (RoPE rotates pairs)");
  require(ropeTheta > 0, "E_CONFIG", "rope_theta must be positive");
  require(rmsEps > 0, "E_CONFIG", "rms_norm_eps must be positive");
  // Bound sizes so products below cannot overflow int64 and silly configs fail fast.
  require(vocab <= (1 << 22) && hidden <= (1 << 16) && ffn <= (1 << 18) && layers <= 1024 && headDim <= 1024 && heads <= 1024,
          "E_CONFIG", "config dimensions are out of the supported range");
}

DType parseDType(const std::string& s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  fail("E_DTYPE", "unsupported dtype '" + s + "' (supported: F32, F16, BF16)");
}

size_t dtypeSize(DType t) { return t == DType::F32 ? 4 : 2; }

std::vector<TensorSpec> tensorSpecs(const ModelConfig& c) {
  std::vector<TensorSpec> s;
  const int64_t H = c.hidden, Q = c.qDim(), KV = c.kvDim(), F = c.ffn, V = c.vocab;
  s.push_back({"model.embed_tokens.weight", Role::Embed, -1, {V, H}});
  s.push_back({"model.norm.weight", Role::FinalNorm, -1, {H}});
  if (!c.tiedEmbeddings) s.push_back({"lm_head.weight", Role::LmHead, -1, {V, H}});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", Role::AttnNorm, l, {H}});
    s.push_back({p + "self_attn.q_proj.weight", Role::Wq, l, {Q, H}});
    s.push_back({p + "self_attn.k_proj.weight", Role::Wk, l, {KV, H}});
    s.push_back({p + "self_attn.v_proj.weight", Role::Wv, l, {KV, H}});
    s.push_back({p + "self_attn.o_proj.weight", Role::Wo, l, {H, Q}});
    s.push_back({p + "post_attention_layernorm.weight", Role::MlpNorm, l, {H}});
    s.push_back({p + "mlp.gate_proj.weight", Role::Wgate, l, {F, H}});
    s.push_back({p + "mlp.up_proj.weight", Role::Wup, l, {F, H}});
    s.push_back({p + "mlp.down_proj.weight", Role::Wdown, l, {H, F}});
  }
  return s;
}

}  // namespace casspec
