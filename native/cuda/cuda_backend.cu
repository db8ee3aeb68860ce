#include "cuda_backend.cuh"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../engine/dummy.h"
#include "../engine/errors.h"
#include "attention.cuh"
#include "check.cuh"
#include "cuda_context.cuh"
#include "device.cuh"
#include "layout.cuh"
#include "linear.cuh"
#include "linear_q8.cuh"
#include "params.cuh"

namespace casspec {

std::unique_ptr<Backend> makeCudaBackend(const ModelConfig& c, const BackendOptions& o) {
  return std::make_unique<cuda::CudaBackend>(c, o);
}

namespace cuda {

Tuning Tuning::fromEnv() {
  Tuning t;
  auto flag = [](const char* name, bool def) {
    const char* v = std::getenv(name);
    return v ? !(std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0) : def;
  };
  t.pdl = flag("CASSPEC_CUDA_PDL", true);
  t.pdlEarly = flag("CASSPEC_CUDA_PDL_EARLY", false);  // measured slower with the wgmma matrix kernel
  t.graphs = flag("CASSPEC_CUDA_GRAPHS", true);
  if (std::getenv("CASSPEC_CUDA_HANDOFF")) t.handoff = flag("CASSPEC_CUDA_HANDOFF", true) ? 1 : 0;
  t.attnTail = flag("CASSPEC_CUDA_ATTN_TAIL", true);
  t.attnPair = flag("CASSPEC_CUDA_ATTN_PAIR", true);
  if (const char* v = std::getenv("CASSPEC_CUDA_ATTN")) t.attn = std::strcmp(v, "mma") == 0 ? 1 : std::strcmp(v, "fma") == 0 ? 2 : 0;
  if (std::getenv("CASSPEC_CUDA_NORM_CARRY")) t.normCarry = flag("CASSPEC_CUDA_NORM_CARRY", true) ? 1 : 0;
  if (const char* v = std::getenv("CASSPEC_CUDA_ATTN_SPLIT")) t.attnSplitRows = std::atoi(v);
  if (const char* v = std::getenv("CASSPEC_CUDA_ATTN_WAVES")) t.attnWaves = std::atoi(v);
  if (const char* v = std::getenv("CASSPEC_CUDA_KV")) t.kv = std::strcmp(v, "f32") == 0 ? 1 : std::strcmp(v, "half") == 0 ? 2 : 0;
  return t;
}

static int roundUp(int v, int m) { return (v + m - 1) / m * m; }

CudaBackend::CudaBackend(const ModelConfig& c, const BackendOptions& o) : c_(c) {
  require(o.weightDType == DType::BF16 || o.weightDType == DType::F16, "E_INVALID_ARG",
          "cuda backend: weightDType must be BF16 or F16");
  bf16_ = o.weightDType == DType::BF16;
  quant8_ = o.quantWeights == kQuantInt8;
  std::string why;
  require(cudaUsable(why), "E_BACKEND", "the CUDA backend is not usable: " + why);
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  require(o.device >= 0 && o.device < count, "E_INVALID_ARG",
          "cuda device " + std::to_string(o.device) + " does not exist (" + std::to_string(count) + " found)");
  device_ = o.device;
  DeviceGuard guard(device_);
  cudaDeviceProp p;
  CUDA_CHECK(cudaGetDeviceProperties(&p, device_));
  require(p.major == 9, "E_BACKEND",
          std::string("cuda device ") + p.name + " has compute capability " + std::to_string(p.major) + "." +
              std::to_string(p.minor) + "; this build's matrix kernel uses sm_90a instructions (wgmma): Hopper (9.0) only");
  require(attentionSupportsHeadDim(c.headDim), "E_CONFIG",
          "cuda backend supports head_dim 32, 64 or 128, got " + std::to_string(c.headDim));
  tune_ = Tuning::fromEnv();
  // KV cache type. Small models are launch/latency bound, so fp32 KV (exactly the CPU reference's
  // numbers) costs nothing measurable; large ones are bandwidth bound (7B at 2048 keys reads 1 GB
  // of fp16 KV per token), so they keep K and V in the weight type.
  kvF32_ = tune_.kv == 1 ? true : tune_.kv == 2 ? false : c.hidden <= 1024;
  stream_ = makeStream();

  const int H = c.hidden, Q = c.qDim(), KV = c.kvDim(), F = c.ffn, V = c.vocab;
  const int Fp = roundUp(F, 16);
  embed_.allocate(V, H, "embedding");
  if (!c.tiedEmbeddings) lm_.allocate(V, H, "lm_head");
  finalNorm_.allocate((size_t)H * 4, "final norm");
  layers_.resize(c.layers);
  for (LayerWeights& l : layers_) {
    l.qkv.allocate(Q + 2 * KV, H, "q/k/v projections");
    l.o.allocate(H, Q, "o projection");
    l.gateUp.allocate(2 * Fp, H, "gate/up projections");
    l.down.allocate(H, F, "down projection");
    l.attnNorm.allocate((size_t)H * 4, "attention norm");
    l.mlpNorm.allocate((size_t)H * 4, "mlp norm");
    if (quant8_) {
      l.qkv8.allocate(Q + 2 * KV, H, "int8 q/k/v projections");
      l.o8.allocate(H, Q, "int8 o projection");
      l.gateUp8.allocate(2 * Fp, H, "int8 gate/up projections");
      l.down8.allocate(H, F, "int8 down projection");
    }
  }
  // RoPE inverse frequencies exactly as the CPU reference computes them (host libm, fp32).
  std::vector<float> inv(c.headDim / 2);
  for (int i = 0; i < c.headDim / 2; ++i) inv[i] = 1.0f / std::pow(c.ropeTheta, (float)(2 * i) / (float)c.headDim);
  invFreq_.allocate(inv.size() * 4, "rope frequencies");
  CUDA_CHECK(cudaMemcpyAsync(invFreq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));

  const LayerWeights& l0 = layers_[0];
  splitsQkv = linearSplits(l0.qkv.MT, l0.qkv.KT);
  splitsO = linearSplits(l0.o.MT, l0.o.KT);
  splitsGateUp = linearSplits(l0.gateUp.MT, l0.gateUp.KT);
  splitsDown = linearSplits(l0.down.MT, l0.down.KT);
  splitsLm = linearSplits(lmHead().MT, lmHead().KT);
  // Carried where rows are long (measured on the H200, bench/RESULTS.md, eighth session: the 7B
  // shape 2.6-3.1% faster at n = 1 and 32; pycode-small, hidden 256, whose residual kernels have
  // 8-16 blocks to do the extra epilogue work, 1-3% slower at n = 32).
  normCarry_ = tune_.normCarry >= 0 ? tune_.normCarry == 1 : c.hidden > 1024;
  // The gate/up -> down handover where rows are long (measured on the H200, bench/RESULTS.md, fourteenth
  // session: the 7B shape 0.5% faster at n = 1; pycode-small, whose MLP kernels are a few blocks, 1-2%
  // slower: the per-forward counter reset and the polling cost more than the grid wait they replace).
  handoff_ = tune_.handoff >= 0 ? tune_.handoff == 1 : c.hidden > 1024;
  // fp32 caches (small models) on the CUDA cores. Measured on the H200 (bench/RESULTS.md, twelfth
  // session): pycode-small 4-5% faster per forward at n = 1..64 and cas-spec 8% faster in the product
  // bench; the 7B shape with 16-bit caches 2% faster at n = 1 but 2% slower at a tree of 32 and 14%
  // at 32 tokens over 2048 keys, where the tensor cores' P V pays (the fmaf kernel's work grows
  // with rows x keys), so it keeps the tensor-core kernel.
  attnFma_ = tune_.attn ? tune_.attn == 2 : kvF32_;
  allocateScratch();
  if (quant8_) allocateQuantScratch();
  attentionPrepare(c.headDim, kvF32_, bf16_);
  linearPrepare();
}

void CudaBackend::allocateScratch() {
  const int n = kMaxTokens, tiles = n / 8;
  const int H = c_.hidden, Q = c_.qDim();
  const LayerWeights& l = layers_[0];
  scratch_.x.allocate((size_t)n * H * 4, "activations");
  scratch_.q.allocate((size_t)n * Q * 4, "queries");
  scratch_.xPack.allocate((size_t)tiles * tilesOf(H) * 512, "packed activations");
  scratch_.aPack.allocate((size_t)tiles * tilesOf(Q) * 512, "packed attention output");
  scratch_.hPack.allocate((size_t)tiles * l.down.KT * 512, "packed mlp activations");
  if (normCarry_) {
    scratch_.normPart.allocate((size_t)n * normParts(l.o.MT) * 4, "norm partial sums");
    scratch_.normScale.allocate((size_t)n * 4, "norm input scales");
    scratch_.normR.allocate((size_t)n * 4, "norm factors");
  }
  if (handoff_) scratch_.done.allocate((size_t)c_.layers * handoffStride() * 4, "handover counters");
  resultWords_ = (int64_t)n * (1 + 2 * kMaxTopK) + (int64_t)n * c_.vocab;
  scratch_.result.allocate((size_t)resultWords_ * 4, "results");
}

int CudaBackend::handoffStride() const { return rowGroupsOf(layers_[0].gateUp.MT) + 1; }

void CudaBackend::allocateQuantScratch() {
  const int n = kMaxTokens, tiles = n / 8, groupTok = roundUp(n, 64);
  const LayerWeights& l = layers_[0];
  const int kt8 = std::max({l.qkv8.KT, l.o8.KT, l.gateUp8.KT, l.down8.KT});
  const int ld = std::max({l.qkv8.MT, l.o8.MT, l.gateUp8.MT, l.down8.MT}) * 16;
  const int rowGroups = rowGroupsOf(ld / 16);
  scratch_.xq.allocate((size_t)tiles * kt8 * 256, "int8 activations");
  scratch_.sx.allocate((size_t)n * 4, "int8 activation scales");
  scratch_.h32.allocate((size_t)n * c_.ffn * 4, "mlp activations (fp32)");
  scratch_.sums.allocate((size_t)groupTok * ld * 4, "int8 matrix sums");
  scratch_.counters8.allocate((size_t)rowGroups * (groupTok / 8) * 4, "int8 matrix counters");
}

int64_t CudaBackend::quantBytes() const {
  int64_t b = 0;
  for (const LayerWeights& l : layers_) b += l.qkv8.bytes() + l.o8.bytes() + l.gateUp8.bytes() + l.down8.bytes();
  return b;
}

int64_t CudaBackend::weightBytes() const {
  int64_t b = (int64_t)embed_.buf.bytes() + lm_.buf.bytes() + finalNorm_.bytes();
  for (const LayerWeights& l : layers_)
    b += (int64_t)l.qkv.buf.bytes() + l.o.buf.bytes() + l.gateUp.buf.bytes() + l.down.buf.bytes() + l.attnNorm.bytes() +
         l.mlpNorm.bytes();
  return b;
}

std::string CudaBackend::deviceInfo() const {
  return describeDevice(device_) + "; K splits qkv/o/gateUp/down/lm " + std::to_string(splitsQkv) + "/" +
         std::to_string(splitsO) + "/" + std::to_string(splitsGateUp) + "/" + std::to_string(splitsDown) + "/" +
         std::to_string(splitsLm) + "; weights " + (bf16_ ? "bf16" : "f16") + " (" + mib((size_t)weightBytes()) + ")" +
         (quant8_ ? " + int8 copy (" + mib((size_t)quantBytes()) + ")" : "") + ", KV cache " +
         (kvF32_ ? "fp32" : (bf16_ ? "bf16" : "f16")) + (normCarry_ ? "; norm carried" : "") + (attnFma_ ? "; attention fmaf" : "");
}

namespace {
bool isVector(const TensorSpec& s) { return s.shape.size() == 1; }
}  // namespace

// Where a tensor's rows go, and how (see layout.cuh for the row maps).
void CudaBackend::upload(int index, const TensorSpec& spec, const void* deviceSrc, DType src, int64_t row0, int rows, bool dummy,
                         uint64_t seed) {
  const int d = c_.headDim, Q = c_.qDim(), KV = c_.kvDim();
  if (isVector(spec)) {
    float* dst = spec.role == Role::FinalNorm  ? finalNorm_.get<float>()
                 : spec.role == Role::AttnNorm ? layers_[spec.layer].attnNorm.get<float>()
                                               : layers_[spec.layer].mlpNorm.get<float>();
    launchVectorToF32(deviceSrc, src, rows, dst, stream_);  // (dummy vectors come from the host: fillDummy)
    return;
  }
  const PackedMatrix* m = nullptr;
  Q8Matrix* m8 = nullptr;  // the int8 copy of a layer projection
  RowDest dst;
  LayerWeights* l = spec.layer >= 0 ? &layers_[spec.layer] : nullptr;
  switch (spec.role) {
    case Role::Embed: m = &embed_; break;
    case Role::LmHead: m = &lm_; break;
    case Role::Wq: m = &l->qkv, m8 = &l->qkv8, dst.map = RowMap::Rope, dst.param = d; break;
    case Role::Wk: m = &l->qkv, m8 = &l->qkv8, dst.map = RowMap::Rope, dst.param = d, dst.rowOffset = Q; break;
    case Role::Wv: m = &l->qkv, m8 = &l->qkv8, dst.map = RowMap::Rope, dst.param = d, dst.rowOffset = Q + KV; break;
    case Role::Wo: m = &l->o, m8 = &l->o8; break;
    case Role::Wgate: m = &l->gateUp, m8 = &l->gateUp8, dst.map = RowMap::Gate; break;
    case Role::Wup: m = &l->gateUp, m8 = &l->gateUp8, dst.map = RowMap::Up; break;
    case Role::Wdown: m = &l->down, m8 = &l->down8; break;
    default: fail("E_INTERNAL", "cuda backend: unexpected tensor role for " + spec.name);
  }
  dst.dst = const_cast<void*>(m->data());
  dst.KT = m->KT;
  const int K = (int)spec.shape[1];
  if (dummy)
    launchFillRows(seed, index, rows, K, dst, bf16_, stream_);
  else
    launchPackRows(deviceSrc, src, row0, rows, K, dst, bf16_, stream_);
  if (quant8_ && m8) {
    RowDest q8 = dst;
    q8.dst = m8->buf.get();
    q8.KT = m8->KT;
    q8.scale = m8->scale.get<float>();
    if (dummy)
      launchQuantFillRows(seed, index, rows, K, q8, stream_);
    else
      launchQuantRows(deviceSrc, src, row0, rows, K, q8, stream_);
  }
}

void CudaBackend::setTensor(int index, const TensorSpec& spec, DType src, const void* data) {
  DeviceGuard guard(device_);
  const int64_t rows = spec.shape[0];
  const int64_t rowElems = isVector(spec) ? 1 : spec.shape[1];
  const size_t rowBytes = (size_t)rowElems * dtypeSize(src);
  // Source bytes go up as they are (fp32 sources too) and are converted on the device, in chunks
  // of rows so a 7B embedding does not need a second full-size staging copy.
  const int64_t chunkRows = isVector(spec) ? rows : std::max<int64_t>(1, std::min<int64_t>(rows, (64 << 20) / rowBytes));
  DeviceBuffer staging((size_t)chunkRows * rowBytes, "tensor upload staging");
  for (int64_t r0 = 0; r0 < rows; r0 += chunkRows) {
    const int nr = (int)std::min(chunkRows, rows - r0);
    CUDA_CHECK(cudaMemcpyAsync(staging.get(), static_cast<const uint8_t*>(data) + (size_t)r0 * rowBytes, (size_t)nr * rowBytes,
                               cudaMemcpyHostToDevice, stream_));
    upload(index, spec, staging.get(), src, r0, nr, false, 0);
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::fillDummy(int index, const TensorSpec& spec, uint64_t seed) {
  DeviceGuard guard(device_);
  if (isVector(spec)) {
    // Norm vectors are computed on the host: dummyWeight's "1 + 0.1 * u" is contracted into an
    // FMA in device code, which would differ from the host (CPU backend) values by an ulp. They
    // are tiny; the matrices (a single multiply, no contraction) are generated on the device.
    std::vector<float> v((size_t)spec.shape[0]);
    for (size_t e = 0; e < v.size(); ++e) v[e] = dummyWeight(seed, index, e, true);
    setTensor(index, spec, DType::F32, v.data());
    return;
  }
  upload(index, spec, nullptr, DType::F32, 0, (int)spec.shape[0], true, seed);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaBackend::~CudaBackend() = default;

std::unique_ptr<BackendContext> CudaBackend::newContext(int capacity) {
  DeviceGuard guard(device_);
  std::unique_ptr<CudaContext> parked;
  {
    std::lock_guard<std::mutex> lock(parkMu_);
    parked.swap(parked_);
  }
  // Reuse only when the parked cache fits and wastes at most 3x the request's memory.
  if (parked && parked->capacity() >= capacity && parked->capacity() <= 4 * (int64_t)capacity) {
    parked->reset();
    return parked;
  }
  parked.reset();  // any other size: free it (outside the lock) before allocating
  return std::make_unique<CudaContext>(*this, capacity);
}

void CudaBackend::recycle(std::unique_ptr<BackendContext> ctx) {
  auto* c = dynamic_cast<CudaContext*>(ctx.get());
  if (!c || &c->backend() != this || !c->healthy()) return;  // freed here
  ctx.release();
  std::unique_ptr<CudaContext> mine(c), previous;
  std::lock_guard<std::mutex> lock(parkMu_);  // released before `previous` is freed
  previous.swap(parked_);
  parked_ = std::move(mine);
}

}  // namespace cuda
}  // namespace casspec
