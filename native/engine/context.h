// One sequence's decoding state: a KV cache whose first `committed` slots hold the accepted
// prefix, and whose later slots hold pending draft/verification tokens arranged as a tree.
//
//   forward(tokens, slots, parents)  write pending tokens (parents: a pending slot, or -1 for a
//                                    root that follows the committed prefix directly)
//   commit(path)                     keep one root-to-node chain of pending slots, compact it to
//                                    the end of the prefix, drop every other pending slot
//   truncate(n)                      forget committed tokens past n (and all pending ones)
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "model.h"

namespace casspec {

struct ForwardArgs {
  std::vector<int32_t> tokens, slots, parents;
  std::vector<uint8_t> skip;     // empty = run every sub-layer
  std::vector<int32_t> outRows;  // empty = every row
  int quant = 0;
  bool wantLogits = false;
  int topk = 0;
};

class Context {
 public:
  Context(std::shared_ptr<Model> model, int capacity);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int committed() const { return committed_; }
  int capacity() const { return capacity_; }
  Model& model() { return *model_; }

  void forward(const ForwardArgs& a, ForwardResult& out);
  void commit(const std::vector<int32_t>& path);
  void truncate(int n);

 private:
  void clearPending();
  std::shared_ptr<Model> model_;
  int capacity_;
  int committed_ = 0;
  // Per slot: parent slot while pending (-1 = root), -2 when the slot holds no pending token.
  std::vector<int32_t> parent_;
  std::vector<int32_t> depth_;
  // Per slot: whether every layer's KV was written in full precision (no skip, no quant). The full
  // model may only attend to exact ancestors: that is what keeps verification lossless.
  std::vector<uint8_t> exact_;
  std::vector<int32_t> pendingSlots_;
  std::vector<int32_t> batchIndex_;  // scratch for forward(): slot -> index in the current batch, else -1
  std::unique_ptr<BackendContext> impl_;
};

}  // namespace casspec
