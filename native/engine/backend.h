// The narrow interface every compute backend (CPU reference, CUDA) implements.
// The engine (model.h, context.h) owns all bookkeeping and validation; a backend only does math
// on arguments that were already checked.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config.h"

namespace casspec {

// One forward pass over n tokens that form a forest hanging off the committed prefix.
struct Batch {
  int n = 0;
  const int32_t* tokens = nullptr;     // [n] token ids, in [0, vocab)
  const int32_t* slots = nullptr;      // [n] KV slot each token writes, all >= committed, distinct
  const int32_t* positions = nullptr;  // [n] RoPE position = committed + depth in the tree
  // Token i attends to KV slots [0, committed) and then to ancSlots[ancOffsets[i] .. ancOffsets[i+1]),
  // its pending ancestors from root to itself (its own slot is the last entry). Keys are visited in
  // exactly this order, which is the order plain one-token-at-a-time decoding would visit them.
  const int32_t* ancOffsets = nullptr;  // [n+1]
  const int32_t* ancSlots = nullptr;
  int committed = 0;
  // skip[2*l] != 0: skip the attention sub-layer of layer l; skip[2*l+1] != 0: skip its MLP.
  // A skipped attention sub-layer writes no KV for these tokens at layer l.
  const uint8_t* skip = nullptr;  // [2*layers], never null
  int quant = 0;                  // kQuantNone or kQuantInt8 (checked by the engine against the load option)
  // Rows whose outputs are wanted (indices into the batch, ascending). Other rows still write KV.
  const int32_t* outRows = nullptr;
  int nOut = 0;
  bool wantLogits = false;  // fill ForwardResult::logits [nOut x vocab]
  int topk = 0;             // fill topkIds/topkProbs [nOut x topk] (softmax probabilities), 0..kMaxTopK
};

constexpr int kMaxTopK = 16;

// Quant modes of a forward (Batch::quant), a draft variant's only: the full model verifies.
// kQuantInt8 ("W8A8"): the 7 projections of every layer (q, k, v, o, gate, up, down) multiply int8
// weights (per output row: scale = absmax/127, round to nearest even, clamp to +-127) by int8
// activations (the same per token over the K inputs) with exact int32 sums, then
// y = float(sum) * (sx * sw). Embedding, norms, RoPE, attention, residual and LM head are unchanged.
// Its weights are a second copy made at load time, only when BackendOptions::quantWeights asks.
constexpr int kQuantNone = 0;
// Widest projection input an exact int32 sum of int8 products allows: 2^31 / 127^2.
constexpr int64_t kQuantInt8MaxK = 133144;
constexpr int kQuantInt8 = 1;

struct ForwardResult {
  std::vector<int32_t> argmax;    // [nOut]; ties broken towards the lower id
  std::vector<float> logits;      // [nOut * vocab] when wantLogits
  std::vector<int32_t> topkIds;   // [nOut * topk], best first
  std::vector<float> topkProbs;   // [nOut * topk]
};

class BackendContext {
 public:
  virtual ~BackendContext() = default;
  virtual void forward(const Batch& b, ForwardResult& out) = 0;
  // Copy the KV entries (all layers) of slot src[i] to slot dst[i], in order i = 0..n-1.
  // Guaranteed by the engine: dst[i] <= src[i], dst ascending, so in-order copies never clobber a
  // source that is still to be read.
  virtual void moveSlots(const int32_t* src, const int32_t* dst, int n) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;        // "cpu" | "cuda"
  virtual std::string deviceInfo() const = 0;  // human-readable: device, memory, threads...
  // data holds prod(spec.shape) contiguous elements of type src (already checked against the spec).
  virtual void setTensor(int index, const TensorSpec& spec, DType src, const void* data) = 0;
  // Deterministic random weights (dummy load): values from dummyWeight() in dummy.h.
  virtual void fillDummy(int index, const TensorSpec& spec, uint64_t seed) = 0;
  // Capacity: number of KV slots (committed prefix + pending tree tokens). The context may hold
  // more slots than asked for (a recycled one); the engine never uses more than `capacity`.
  virtual std::unique_ptr<BackendContext> newContext(int capacity) = 0;
  // Takes back a context the engine is done with. A backend may keep it for a later newContext
  // (its device buffers and captured graphs then survive between generations); the default frees it.
  virtual void recycle(std::unique_ptr<BackendContext> ctx) {}
  virtual int64_t weightBytes() const = 0;
  // Bytes of the quantized weight copy (0 when BackendOptions::quantWeights was kQuantNone).
  virtual int64_t quantBytes() const = 0;
  virtual int64_t kvBytesPerSlot() const = 0;
};

struct BackendOptions {
  std::string kind = "cpu";  // "cpu" | "cuda"
  int threads = 0;           // cpu: 0 = hardware concurrency
  int device = 0;            // cuda device ordinal
  DType weightDType = DType::BF16;  // cuda: storage type for weights (F16 or BF16)
  int quantWeights = kQuantNone;    // kQuantInt8: also keep the int8 copy a kQuantInt8 forward needs
};

std::unique_ptr<Backend> makeCpuBackend(const ModelConfig& c, const BackendOptions& o);
#ifdef CASSPEC_WITH_CUDA
std::unique_ptr<Backend> makeCudaBackend(const ModelConfig& c, const BackendOptions& o);
#endif
// Whether a CUDA backend can run here; `why` says what was found or what is missing.
bool cudaUsable(std::string& why);

}  // namespace casspec
