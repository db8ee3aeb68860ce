// One sequence on the CUDA backend: its KV cache, its parameter block, and the CUDA graphs that
// replay a whole forward.
//
// Per forward (n <= 64): the host packs every per-forward number into one int32 block (params.cuh)
// -> ONE host-to-device copy -> replay of a graph captured once per (batch-size bucket, layer-skip
// plan) whose kernels read n / committed / index lists from that block -> ONE device-to-host copy
// of the results -> one stream sync. Larger forwards (prefill) launch the same kernels directly,
// in pieces of at most kMaxTokens tokens (each piece is a full forward of a prefix of the batch;
// by batch invariance that changes no bits).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../engine/backend.h"
#include "buffer.cuh"
#include "attention.cuh"
#include "cuda_backend.cuh"
#include "device.cuh"

namespace casspec::cuda {

class CudaContext : public BackendContext {
 public:
  CudaContext(CudaBackend& backend, int capacity);
  ~CudaContext() override;
  void forward(const Batch& b, ForwardResult& out) override;
  void moveSlots(const int32_t* src, const int32_t* dst, int n) override;

  // Slots this context's buffers hold (at least what the engine asked for).
  int capacity() const { return capacity_; }
  const CudaBackend& backend() const { return be_; }
  // False after an operation that threw (CUDA error, out of memory): such a context is freed, not recycled.
  bool healthy() const { return healthy_; }
  // Ready for a new sequence (CudaBackend::newContext reusing a recycled context): the KV buffers
  // keep old values, which is harmless (the engine attends only to slots it wrote), and the
  // captured graphs stay valid, since they reference this context's own buffers.
  void reset();

  // Device time of the last forward, from its first copy to its last (all pieces of a long one, with
  // the host's work between them), for benchmarks.
  float lastDeviceMs();
  // Tokens per piece of a long forward (the attention partials are sized for it).
  int piece() const { return piece_; }
  // Benchmark aid: when on, forwards launch directly with an event after every kernel and the
  // time between events accumulates per kernel kind (includes launch gaps; no graph, no overlap).
  void setProfiling(bool on) { profiling_ = on; }
  std::vector<std::pair<std::string, double>> takeProfile();

 private:
  struct Piece {
    int s0, s1;      // tokens
    int o0, o1;      // indices into b.outRows
  };
  void runPiece(const Batch& b, const Piece& p, ForwardResult& out, bool graph);
  int tailRowsFor(int maxTokens) const { return be_.tuning().attnTail ? attnTailRows(maxTokens) : 0; }
  int listTail(const Batch& b, const Piece& p, int stagedKeys, int maxRows, int32_t* ancTail, int32_t* slots);
  void enqueue(int maxTokens, const uint8_t* skip, int quant, bool withHead, int attnGridX);
  cudaGraphExec_t graphFor(int bucket, const uint8_t* skip, int quant);

  CudaBackend& be_;
  int capacity_;
  int maxChunks_;  // attention chunks of the longest key list this context can hold
  int piece_;
  Stream stream_;
  Event start_, stop_, moveDone_;
  DeviceBuffer k_, v_;     // [layer][slot][kvDim]
  DeviceBuffer part_;      // attention chunk partials
  DeviceBuffer params_;    // int32 parameter block (graphs hold its address)
  DeviceBuffer moveArgs_;  // moveSlots: src[n], dst[n]
  PinnedBuffer hostParams_, hostResult_, hostMove_;
  std::vector<int32_t> tailRowOf_;  // listTail's slot -> row map, all -1 between calls
  struct CachedGraph {
    std::string key;
    GraphExec exec;
    uint64_t lastUse;
  };
  std::vector<CachedGraph> graphs_;
  uint64_t useClock_ = 0;
  bool timed_ = false;
  bool healthy_ = true;
  bool profiling_ = false;
  std::vector<Event> marks_;
  std::vector<const char*> markLabels_;
  int nMarks_ = 0;
  std::vector<std::pair<std::string, double>> profile_;
};

}  // namespace casspec::cuda
