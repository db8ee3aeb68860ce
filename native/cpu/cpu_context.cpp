// The Llama forward pass, written for clarity first. Per layer:
//   x += Wo . attention(rope(Wq . norm(x)), rope(Wk . norm(x)), Wv . norm(x))   unless skipped
//   x += Wdown . (silu(Wgate . norm(x)) * (Wup . norm(x)))                      unless skipped
// then logits = lm_head . norm(x) for the rows the caller asked about. With quant mode kQuantInt8
// the seven projections W. run through quant.h instead; nothing else changes.
#include "strict_fp.h"
#include "cpu_context.h"

#include <cmath>
#include <cstring>

#include "../engine/errors.h"
#include "attention.h"
#include "cpu_backend.h"
#include "layers.h"
#include "matmul.h"
#include "outputs.h"

namespace casspec::cpu {

CpuContext::CpuContext(CpuBackend& backend, int capacity)
    : be_(backend), kv_(backend.config().layers, capacity, backend.config().kvDim()),
      scores_(backend.pool().size(), std::vector<float>(capacity)) {}

template <class T>
static void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

void CpuContext::forward(const Batch& b, ForwardResult& out) {
  const ModelConfig& c = be_.config();
  const int n = b.n, H = c.hidden;
  grow(x_, (size_t)n * H);
  grow(xn_, (size_t)n * H);
  grow(delta_, (size_t)n * H);
  grow(q_, (size_t)n * c.qDim());
  grow(att_, (size_t)n * c.qDim());
  grow(k_, (size_t)n * c.kvDim());
  grow(v_, (size_t)n * c.kvDim());
  grow(gate_, (size_t)n * c.ffn);
  grow(up_, (size_t)n * c.ffn);

  const float* embed = be_.weights().embed();
  for (int i = 0; i < n; ++i) std::memcpy(&x_[(size_t)i * H], embed + (size_t)b.tokens[i] * H, (size_t)H * 4);

  for (int l = 0; l < c.layers; ++l) {
    const LayerWeights w = be_.weights().layer(l);
    const LayerQuant wq = be_.weights().layerQuant(l);
    if (!b.skip[2 * l]) attention(b, l, w, wq);
    if (!b.skip[2 * l + 1]) mlp(b, w, wq);
  }
  head(b, out);
}

void CpuContext::project(bool quant, const MatJob* jobs, const QuantRows* const* q, int nJobs, int n) {
  if (!quant) {
    matmul(be_.pool(), jobs, nJobs, n);
    return;
  }
  const int in = jobs[0].in;
  grow(xq_, (size_t)n * in);
  grow(sx_, (size_t)n);
  be_.pool().run(n, [&](int t, int) { sx_[t] = quantizeRow(jobs[0].x + t * jobs[0].ldx, in, &xq_[(size_t)t * in]); });
  QuantJob qj[3];
  for (int j = 0; j < nJobs; ++j) qj[j] = {q[j], xq_.data(), (size_t)in, sx_.data(), jobs[j].y, jobs[j].ldy};
  matmulQ8(be_.pool(), qj, nJobs, n);
}

void CpuContext::attention(const Batch& b, int layer, const LayerWeights& w, const LayerQuant& wq) {
  const ModelConfig& c = be_.config();
  ThreadPool& pool = be_.pool();
  const int n = b.n, H = c.hidden, Q = c.qDim(), KV = c.kvDim(), D = c.headDim;

  pool.run(n, [&](int i, int) { rmsNorm(&x_[(size_t)i * H], w.attnNorm, &xn_[(size_t)i * H], H, c.rmsEps); });
  const MatJob qkv[3] = {{w.wq, Q, H, xn_.data(), (size_t)H, q_.data(), (size_t)Q},
                         {w.wk, KV, H, xn_.data(), (size_t)H, k_.data(), (size_t)KV},
                         {w.wv, KV, H, xn_.data(), (size_t)H, v_.data(), (size_t)KV}};
  const QuantRows* qkvQ[3] = {wq.wq, wq.wk, wq.wv};
  project(b.quant == kQuantInt8, qkv, qkvQ, 3, n);

  // Position-encode, then publish every token's key and value before anyone attends: a token's
  // pending ancestors may sit anywhere earlier in this batch.
  pool.run(n, [&](int i, int) {
    be_.rope().apply(&q_[(size_t)i * Q], c.heads, b.positions[i]);
    be_.rope().apply(&k_[(size_t)i * KV], c.kvHeads, b.positions[i]);
    std::memcpy(kv_.k(layer, b.slots[i]), &k_[(size_t)i * KV], (size_t)KV * 4);
    std::memcpy(kv_.v(layer, b.slots[i]), &v_[(size_t)i * KV], (size_t)KV * 4);
  });

  // GQA: query head h reads kv head h / (heads / kvHeads), as HF's repeat_kv lays them out.
  const int group = c.heads / c.kvHeads;
  const float scale = (float)(1.0 / std::sqrt((double)D));
  pool.run(n * c.heads, [&](int task, int worker) {
    const int i = task / c.heads, h = task % c.heads;
    const KeyList keys{b.committed, b.ancSlots + b.ancOffsets[i], b.ancOffsets[i + 1] - b.ancOffsets[i]};
    attendHead(&q_[(size_t)i * Q + (size_t)h * D], kv_, layer, (h / group) * D, D, scale, keys, scores_[worker].data(),
               &att_[(size_t)i * Q + (size_t)h * D]);
  });

  const MatJob o{w.wo, H, Q, att_.data(), (size_t)Q, delta_.data(), (size_t)H};
  project(b.quant == kQuantInt8, &o, &wq.wo, 1, n);
  for (int i = 0; i < n; ++i) addInto(&x_[(size_t)i * H], &delta_[(size_t)i * H], H);
}

void CpuContext::mlp(const Batch& b, const LayerWeights& w, const LayerQuant& wq) {
  const ModelConfig& c = be_.config();
  ThreadPool& pool = be_.pool();
  const int n = b.n, H = c.hidden, F = c.ffn;

  pool.run(n, [&](int i, int) { rmsNorm(&x_[(size_t)i * H], w.mlpNorm, &xn_[(size_t)i * H], H, c.rmsEps); });
  const MatJob gateUp[2] = {{w.wgate, F, H, xn_.data(), (size_t)H, gate_.data(), (size_t)F},
                            {w.wup, F, H, xn_.data(), (size_t)H, up_.data(), (size_t)F}};
  const QuantRows* gateUpQ[2] = {wq.wgate, wq.wup};
  project(b.quant == kQuantInt8, gateUp, gateUpQ, 2, n);
  pool.run(n, [&](int i, int) { siluMul(&gate_[(size_t)i * F], &up_[(size_t)i * F], F); });
  const MatJob down{w.wdown, H, F, gate_.data(), (size_t)F, delta_.data(), (size_t)H};
  project(b.quant == kQuantInt8, &down, &wq.wdown, 1, n);
  for (int i = 0; i < n; ++i) addInto(&x_[(size_t)i * H], &delta_[(size_t)i * H], H);
}

void CpuContext::head(const Batch& b, ForwardResult& out) {
  const ModelConfig& c = be_.config();
  ThreadPool& pool = be_.pool();
  const int m = b.nOut, H = c.hidden, V = c.vocab;

  // Only the requested rows go through the LM head: for a prefill that is one row of n.
  for (int r = 0; r < m; ++r)
    rmsNorm(&x_[(size_t)b.outRows[r] * H], be_.weights().finalNorm(), &xn_[(size_t)r * H], H, c.rmsEps);
  float* logits;
  if (b.wantLogits) {
    out.logits.resize((size_t)m * V);
    logits = out.logits.data();
  } else {
    out.logits.clear();
    grow(logits_, (size_t)m * V);
    logits = logits_.data();
  }
  const MatJob lm{be_.weights().lmHead(), V, H, xn_.data(), (size_t)H, logits, (size_t)V};
  matmul(pool, &lm, 1, m);

  out.argmax.resize(m);
  out.topkIds.resize((size_t)m * b.topk);
  out.topkProbs.resize((size_t)m * b.topk);
  pool.run(m, [&](int r, int) {
    const float* row = logits + (size_t)r * V;
    out.argmax[r] = argmaxRow(row, V);
    if (b.topk > 0) topkRow(row, V, b.topk, &out.topkIds[(size_t)r * b.topk], &out.topkProbs[(size_t)r * b.topk]);
  });
}

}  // namespace casspec::cpu
