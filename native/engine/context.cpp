#include "context.h"

#include <algorithm>

#include "errors.h"

namespace casspec {

static constexpr int32_t kFree = -2;

Context::Context(std::shared_ptr<Model> model, int capacity) : model_(std::move(model)), capacity_(capacity) {
  require(capacity > 0 && capacity <= model_->config().maxPositions, "E_INVALID_ARG",
          "context size " + std::to_string(capacity) + " must be in 1.." + std::to_string(model_->config().maxPositions) +
              " (max_position_embeddings)");
  model_->requireComplete();
  parent_.assign(capacity, kFree);
  depth_.assign(capacity, 0);
  exact_.assign(capacity, 0);
  batchIndex_.assign(capacity, -1);
  impl_ = model_->backend().newContext(capacity);
}

Context::~Context() {
  if (impl_) model_->backend().recycle(std::move(impl_));
}

void Context::clearPending() {
  for (int32_t s : pendingSlots_) parent_[s] = kFree;
  pendingSlots_.clear();
}

void Context::forward(const ForwardArgs& a, ForwardResult& out) {
  const ModelConfig& c = model_->config();
  const int n = (int)a.tokens.size();
  require(n > 0, "E_INVALID_ARG", "forward needs at least one token");
  require(a.slots.size() == (size_t)n && a.parents.size() == (size_t)n, "E_INVALID_ARG",
          "tokens, slots and parents must have the same length");
  require(a.skip.empty() || a.skip.size() == (size_t)(2 * c.layers), "E_INVALID_ARG",
          "skip plan must have 2 entries per layer (" + std::to_string(2 * c.layers) + "), got " + std::to_string(a.skip.size()));
  require(a.topk >= 0 && a.topk <= kMaxTopK, "E_INVALID_ARG", "topk must be in 0.." + std::to_string(kMaxTopK));
  require(a.quant == kQuantNone || a.quant == kQuantInt8, "E_INVALID_ARG",
          "quant mode must be 0 (full precision) or 1 (int8), got " + std::to_string(a.quant));
  require(a.quant == kQuantNone || model_->quantWeights() == a.quant, "E_INVALID_ARG",
          "quant mode " + std::to_string(a.quant) + " needs the model loaded with its quantized weights (draftQuant: 'int8')");
  for (size_t r = 0; r < a.outRows.size(); ++r)
    require(a.outRows[r] >= 0 && a.outRows[r] < n && (r == 0 || a.outRows[r] > a.outRows[r - 1]), "E_INVALID_ARG",
            "outRows must be ascending indices into the batch");

  const bool full = a.quant == 0 && std::none_of(a.skip.begin(), a.skip.end(), [](uint8_t s) { return s != 0; });

  // Validate the whole batch before touching any state, so a rejected call changes nothing.
  // batchIndex_[slot] = index of the batch token writing that slot, -1 otherwise (reset on exit).
  struct Marks {
    std::vector<int32_t>& m;
    const std::vector<int32_t>& slots;
    int upTo = 0;
    ~Marks() {
      for (int i = 0; i < upTo; ++i) m[slots[i]] = -1;
    }
  } marks{batchIndex_, a.slots};
  // Per-token checks build their message only on failure: a prefill chunk of 256 tokens runs the
  // ancestor check 33K times, and eager messages cost milliseconds per forward.
  std::vector<int32_t> depth(n);
  for (int i = 0; i < n; ++i) {
    const int32_t t = a.tokens[i], s = a.slots[i], p = a.parents[i];
    auto at = [i] { return " (token " + std::to_string(i) + ")"; };
    if (t < 0 || t >= c.vocab) fail("E_INVALID_ARG", "token id " + std::to_string(t) + " is outside the vocabulary" + at());
    if (s < committed_ || s >= capacity_)
      fail("E_INVALID_ARG", "slot " + std::to_string(s) + " must be in " + std::to_string(committed_) + ".." +
                                std::to_string(capacity_ - 1) + at());
    if (batchIndex_[s] >= 0) fail("E_INVALID_ARG", "slot " + std::to_string(s) + " is used twice" + at());
    if (p != -1 && (p < committed_ || p >= s))
      fail("E_INVALID_ARG", "parent slot " + std::to_string(p) + " must be -1 or a pending slot below the token's own slot" + at());
    if (p >= 0 && batchIndex_[p] < 0 && parent_[p] == kFree)
      fail("E_INVALID_ARG", "parent slot " + std::to_string(p) + " holds no pending token" + at());
    if (parent_[s] != kFree && parent_[s] != p)
      fail("E_INVALID_ARG", "slot " + std::to_string(s) + " is already pending with another parent" + at());
    depth[i] = p < 0 ? 0 : (batchIndex_[p] >= 0 ? depth[batchIndex_[p]] : depth_[p]) + 1;
    if (committed_ + depth[i] >= c.maxPositions) fail("E_CONTEXT_FULL", "position exceeds max_position_embeddings");
    batchIndex_[s] = i;
    marks.upTo = i + 1;
  }

  // Each token's ancestors, root first and itself last. A pending slot keeps its parent when
  // re-forwarded (checked above), so a.parents and parent_ agree wherever both are set.
  std::vector<int32_t> positions(n), ancOffsets(n + 1, 0), ancSlots, chain;
  for (int i = 0; i < n; ++i) {
    chain.clear();
    for (int32_t s = a.slots[i]; s >= 0;) {
      chain.push_back(s);
      const int32_t bi = batchIndex_[s];
      s = bi >= 0 ? a.parents[bi] : parent_[s];
    }
    positions[i] = committed_ + depth[i];
    if (full)
      for (size_t k = 1; k < chain.size(); ++k)
        if (batchIndex_[chain[k]] < 0 && !exact_[chain[k]])
          fail("E_INVALID_ARG", "full-model forward of slot " + std::to_string(a.slots[i]) + " would attend to slot " +
                                    std::to_string(chain[k]) + " whose KV came from a draft pass; re-forward it in the same batch");
    ancSlots.insert(ancSlots.end(), chain.rbegin(), chain.rend());
    ancOffsets[i + 1] = (int32_t)ancSlots.size();
  }

  std::vector<uint8_t> skip = a.skip;
  if (skip.empty()) skip.assign(2 * c.layers, 0);
  std::vector<int32_t> rows = a.outRows;
  if (rows.empty())
    for (int i = 0; i < n; ++i) rows.push_back(i);

  Batch b;
  b.n = n;
  b.tokens = a.tokens.data();
  b.slots = a.slots.data();
  b.positions = positions.data();
  b.ancOffsets = ancOffsets.data();
  b.ancSlots = ancSlots.data();
  b.committed = committed_;
  b.skip = skip.data();
  b.quant = a.quant;
  b.outRows = rows.data();
  b.nOut = (int)rows.size();
  b.wantLogits = a.wantLogits;
  b.topk = a.topk;
  try {
    impl_->forward(b, out);
  } catch (...) {
    // The pass may have overwritten some of these slots' KV: none of them is exact any more.
    for (int i = 0; i < n; ++i)
      if (parent_[a.slots[i]] != kFree) exact_[a.slots[i]] = 0;
    throw;
  }
  // Record the tree only once the pass succeeded.
  for (int i = 0; i < n; ++i) {
    const int32_t s = a.slots[i];
    if (parent_[s] == kFree) pendingSlots_.push_back(s);
    parent_[s] = a.parents[i];
    depth_[s] = depth[i];
    exact_[s] = full;
  }
}

void Context::commit(const std::vector<int32_t>& path) {
  const int k = (int)path.size();
  require(committed_ + k <= capacity_, "E_INVALID_ARG", "commit path is longer than the context");
  for (int j = 0; j < k; ++j) {
    const int32_t s = path[j];
    if (s < committed_ || s >= capacity_ || parent_[s] == kFree)
      fail("E_INVALID_ARG", "commit: slot " + std::to_string(s) + " holds no pending token");
    if (parent_[s] != (j == 0 ? -1 : path[j - 1]))
      fail("E_INVALID_ARG", "commit: slots must form a chain from a root (slot " + std::to_string(s) + " breaks it)");
    if (!exact_[s])
      fail("E_INVALID_ARG", "commit: slot " + std::to_string(s) + " was not computed by the full model; verify it before committing");
  }
  // Parents sit below children, so path[j] >= committed + j and in-order compaction is safe.
  std::vector<int32_t> src, dst;
  for (int j = 0; j < k; ++j)
    if (path[j] != committed_ + j) {
      src.push_back(path[j]);
      dst.push_back(committed_ + j);
    }
  if (!src.empty()) impl_->moveSlots(src.data(), dst.data(), (int)src.size());
  clearPending();
  for (int j = 0; j < k; ++j) exact_[committed_ + j] = 1;
  committed_ += k;
}

void Context::truncate(int n) {
  require(n >= 0 && n <= committed_, "E_INVALID_ARG",
          "truncate: length " + std::to_string(n) + " must be in 0.." + std::to_string(committed_));
  clearPending();
  committed_ = n;
}

}  // namespace casspec
