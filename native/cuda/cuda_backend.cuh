// The CUDA backend: weights in packed bf16/f16 on one GPU, scratch activations shared by the
// model's contexts (the engine runs one forward at a time per model).
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../engine/backend.h"
#include "buffer.cuh"
#include "device.cuh"
#include "weights.cuh"

namespace casspec::cuda {

// Knobs read once from the environment (for experiments and A/B timing; defaults are the product).
struct Tuning {
  bool pdl = true;     // CASSPEC_CUDA_PDL=0: plain launches
  bool pdlEarly = false;  // CASSPEC_CUDA_PDL_EARLY=1: norm and combine kernels release the next one before waiting
  bool graphs = true;  // CASSPEC_CUDA_GRAPHS=0: launch kernels directly every forward
  int kv = 0;          // CASSPEC_CUDA_KV=f32|half: force the KV cache type (0 = by model size)
  bool attnTail = true;   // CASSPEC_CUDA_ATTN_TAIL=0: tree tails read K/V from global memory (same bits)
  int normCarry = -1;  // CASSPEC_CUDA_NORM_CARRY=0|1: force the norm carried or not (other bits); -1 = by hidden size
  int attnSplitRows = 128;  // CASSPEC_CUDA_ATTN_SPLIT=R: up to R query rows may run the decode path, a block per 16 (same bits)
  int attnWaves = 1;        // CASSPEC_CUDA_ATTN_WAVES=W: ... while its blocks fit W waves
  int attn = 0;             // CASSPEC_CUDA_ATTN=mma|fma: force the attention kernel (other bits); 0 = by KV type
  bool attnPair = true;     // CASSPEC_CUDA_ATTN_PAIR=0: wide launches of 17-32 rows one warp per row group (same bits)
  int handoff = -1;  // CASSPEC_CUDA_HANDOFF=0|1: force the gate/up -> down handover off or on (same bits); -1 = by hidden size
  static Tuning fromEnv();
};

struct LayerWeights {
  PackedMatrix qkv, o, gateUp, down;
  Q8Matrix qkv8, o8, gateUp8, down8;  // quant mode kQuantInt8 only (BackendOptions::quantWeights)
  DeviceBuffer attnNorm, mlpNorm;  // fp32 [hidden]
};

class CudaContext;

class CudaBackend : public Backend {
 public:
  CudaBackend(const ModelConfig& c, const BackendOptions& o);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }
  std::string deviceInfo() const override;
  void setTensor(int index, const TensorSpec& spec, DType src, const void* data) override;
  void fillDummy(int index, const TensorSpec& spec, uint64_t seed) override;
  std::unique_ptr<BackendContext> newContext(int capacity) override;
  void recycle(std::unique_ptr<BackendContext> ctx) override;
  int64_t weightBytes() const override;
  int64_t quantBytes() const override;
  int64_t kvBytesPerSlot() const override { return 2 * (int64_t)c_.layers * c_.kvDim() * kvElemBytes(); }

  // ---- used by CudaContext ----
  const ModelConfig& config() const { return c_; }
  int device() const { return device_; }
  bool bf16() const { return bf16_; }
  bool kvF32() const { return kvF32_; }
  int kvElemBytes() const { return kvF32_ ? 4 : 2; }
  const Tuning& tuning() const { return tune_; }
  // RMSNorm carried through the residual epilogues (linear.cuh NormOut) for every 16-bit forward of
  // this model, or never: part of its numerics, so fixed per model, never per launch.
  bool normCarried() const { return normCarry_; }
  // gate/up hands over to down per row group (linear.cuh LinArgs::doneOut): same bits either way.
  bool handoff() const { return handoff_; }
  int handoffStride() const;  // counters per layer in Scratch::done: gate/up's row groups + the total
  // Attention on the CUDA cores (attention_fma.cu) or the tensor cores (attention.cu): other bits,
  // so fixed per model.
  bool attnFma() const { return attnFma_; }
  const PackedMatrix& embed() const { return embed_; }
  const PackedMatrix& lmHead() const { return c_.tiedEmbeddings ? embed_ : lm_; }
  const float* finalNorm() const { return finalNorm_.get<float>(); }
  const LayerWeights& layer(int l) const { return layers_[l]; }
  const float* invFreq() const { return invFreq_.get<float>(); }
  // K splits per matrix (a function of the shape only: part of the numerics).
  int splitsQkv, splitsO, splitsGateUp, splitsDown, splitsLm;
  // Tokens one launch sequence handles; longer forwards run as several in order.
  static constexpr int kMaxTokens = 256;

  struct Scratch {
    DeviceBuffer x, q, xPack, aPack, hPack, result;
    // RMSNorm carried through the residual epilogues (linear.cuh NormOut / NormIn): per token the
    // row-tile-pair sums of squares, the scale s of the packed input, and the last norm's 1/rms.
    DeviceBuffer normPart, normScale, normR;
    DeviceBuffer done;  // gate/up -> down handover counters (handoffStride per layer), when handoff()
    // Quant mode kQuantInt8: packed int8 input and its per-token scales, fp32 SwiGLU output, and
    // the int8 kernel's int32 sums and counters (zero between launches).
    DeviceBuffer xq, sx, h32, sums, counters8;
  };
  Scratch& scratch() { return scratch_; }
  int64_t resultWords() const { return resultWords_; }

 private:
  void allocateScratch();
  void allocateQuantScratch();
  void upload(int index, const TensorSpec& spec, const void* deviceSrc, DType src, int64_t row0, int rows, bool dummy,
              uint64_t seed);

  ModelConfig c_;
  int device_ = 0;
  bool bf16_ = true;
  bool kvF32_ = false;
  bool quant8_ = false;  // the int8 copies exist
  bool normCarry_ = false;
  bool handoff_ = false;
  bool attnFma_ = false;
  Tuning tune_;
  Stream stream_;  // uploads
  PackedMatrix embed_, lm_;
  DeviceBuffer finalNorm_, invFreq_;
  std::vector<LayerWeights> layers_;
  Scratch scratch_;
  int64_t resultWords_ = 0;
  // The last context the engine released, kept for the next newContext that fits it: a new
  // context costs buffer allocation plus one graph capture per forward shape (~0.8 ms each on
  // pycode-small), paid again by every generation. At most one is kept; it is freed before any
  // context of another size is allocated. Declared last: freed before the weights.
  std::mutex parkMu_;
  std::unique_ptr<CudaContext> parked_;
};

}  // namespace casspec::cuda
