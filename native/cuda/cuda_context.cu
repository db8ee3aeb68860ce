#include "cuda_context.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../engine/errors.h"
#include "attention.cuh"
#include "elementwise.cuh"
#include "layout.cuh"
#include "linear.cuh"
#include "linear_q8.cuh"
#include "outputs.cuh"
#include "params.cuh"
#include "quant.cuh"

namespace casspec::cuda {

namespace {
constexpr int kGraphMaxTokens = 64;     // forwards up to this size replay a graph of their bucket
constexpr int kMaxGraphs = 16;          // per context, least recently used evicted
constexpr size_t kPartialBudget = 256u << 20;

int bucketOf(int n) {
  int b = 1;
  while (b < n) b *= 2;
  return b;
}

// The largest d such that, for tokens [s0, s1), every ancestor at depth < d sits in slot
// committed + depth, i.e. at its own key index. Attention stages those keys in shared memory like
// the committed prefix; the rest go through per-token slot lookups (attention.cuh). A prefill
// chunk or a draft chain appended in order is all natural; tree branches end it.
int naturalDepth(const Batch& b, int s0, int s1) {
  int d = 0;  // the longest list seen while every list so far is natural ...
  int cut = INT32_MAX;  // ... up to the first depth where some token's slot is elsewhere
  for (int t = s0; t < s1 && cut > 0; ++t) {
    const int32_t* anc = b.ancSlots + b.ancOffsets[t];
    const int len = b.ancOffsets[t + 1] - b.ancOffsets[t];
    const int lim = std::min(len, cut);
    int i = 0;
    while (i < lim && anc[i] == b.committed + i) ++i;
    if (i < lim) cut = i;
    d = std::max(d, std::min(len, cut));
  }
  return std::min(d, cut);
}
}  // namespace

CudaContext::CudaContext(CudaBackend& be, int capacity) : be_(be), capacity_(capacity) {
  const ModelConfig& c = be.config();
  maxChunks_ = (capacity + kAttnChunk - 1) / kAttnChunk;
  const size_t perToken = (size_t)c.heads * maxChunks_ * (c.headDim + 2) * 4;
  piece_ = maxChunks_ <= 1 ? CudaBackend::kMaxTokens
                           : (int)std::clamp<size_t>(kPartialBudget / perToken, kGraphMaxTokens, CudaBackend::kMaxTokens);
  stream_ = makeStream();
  start_ = makeEvent(true);
  stop_ = makeEvent(true);
  moveDone_ = makeEvent(false);
  const size_t kvBytes = (size_t)c.layers * capacity * c.kvDim() * be.kvElemBytes();
  k_.allocate(kvBytes, "KV cache (keys)");  // zeroed: unwritten slots must read as finite numbers
  v_.allocate(kvBytes, "KV cache (values)");
  if (maxChunks_ > 1) part_.allocate((size_t)piece_ * perToken, "attention partials");
  params_.allocate((size_t)(kP_headerSize + 8 * kGraphMaxTokens + 4096) * 4, "forward parameters");
  moveArgs_.allocate((size_t)2 * capacity * 4, "slot moves");
  hostMove_.reserve((size_t)2 * capacity * 4, "slot moves");
  CUDA_CHECK(cudaEventRecord(moveDone_, stream_));
  healthy_ = true;
}

CudaContext::~CudaContext() {
  cudaSetDevice(be_.device());
  if (stream_) cudaStreamSynchronize(stream_);
}

void CudaContext::reset() {
  DeviceGuard guard(be_.device());
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  timed_ = false;
  profiling_ = false;
  nMarks_ = 0;
  profile_.clear();
}

float CudaContext::lastDeviceMs() {
  if (!timed_) return 0.f;
  float ms = 0.f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
  return ms;
}

void CudaContext::enqueue(int maxTokens, const uint8_t* skip, int quant, bool withHead, int attnGridX) {
  const ModelConfig& c = be_.config();
  const bool bf16 = be_.bf16(), pdl = be_.tuning().pdl, early = be_.tuning().pdlEarly;
  cudaStream_t s = stream_;
  CudaBackend::Scratch& sc = be_.scratch();
  const int32_t* P = params_.get<int32_t>();
  const int ntb = linearNtb(maxTokens);
  const int groups = (maxTokens + ntb * 8 - 1) / (ntb * 8);
  const int H = c.hidden, hKT = tilesOf(H);
  const size_t layerElems = (size_t)capacity_ * c.kvDim();
  const int kvBytes = be_.kvElemBytes();

  nMarks_ = 0;
  auto mark = [&](const char* label) {
    if (!profiling_) return;
    if (nMarks_ >= (int)marks_.size()) marks_.push_back(makeEvent(true));
    if (nMarks_ >= (int)markLabels_.size()) markLabels_.push_back(label);
    markLabels_[nMarks_] = label;
    CUDA_CHECK(cudaEventRecord(marks_[nMarks_++], s));
  };
  mark("begin");
  auto linear = [&](const PackedMatrix& w, int splits, Epilogue epi) {
    LinArgs a;
    a.w = w.data();
    a.M = w.M;
    a.K = w.K;
    a.MT = w.MT;
    a.KT = w.KT;
    a.S = splits;
    a.params = P;
    a.epi = epi;
    return a;
  };
  // RMSNorm of the matrix kernel's input: inside the kernel for one n-tile on short rows (no norm
  // kernel between two matrix kernels), else into the packed B buffer it streams; the same bits.
  // Measured on the H200: in-kernel is 4% faster for pycode-small (hidden 256) at n = 1, 9% slower
  // for the 7B shape (hidden 4096), whose blocks pay the B tiles' build on every stage.
  // Where the previous residual projection already wrote this input (NormOut), the consumer only
  // finishes the norm (NormIn): no kernel in between.
  const bool q8 = quant == kQuantInt8;
  const bool carry = !q8 && be_.normCarried();
  const int ldPart = normParts(be_.layer(0).o.MT);
  bool carried = false;  // the last residual projection wrote the next norm's input
  auto normInput = [&](LinArgs& a, const float* normW, bool rowsAreOut) {
    float* rOut = carry && !rowsAreOut ? sc.normR.get<float>() : nullptr;  // a NormOut downstream scales by it
    if (carried) {
      carried = false;
      a.bPacked = sc.xPack.get();
      a.normIn = NormIn{sc.normPart.get<float>(), sc.normScale.get<float>(), ldPart, H, c.rmsEps};
      a.rOut = rOut;
      return;
    }
    if (ntb == 1 && H <= 1024) {
      a.normB = true;
      a.x = sc.x.get<float>();
      a.ldx = H;
      a.normW = normW;
      a.eps = c.rmsEps;
      a.rOut = rOut;
      return;
    }
    launchNormPack(sc.x.get<float>(), H, normW, c.rmsEps, P, rowsAreOut, sc.xPack.get(), hKT, maxTokens, bf16, pdl, early, rOut, s);
    mark("rmsnorm");
    a.bPacked = sc.xPack.get();
  };
  // The norm weight of the first active sub-layer after sub-layer i (2 l: attention, 2 l + 1: MLP
  // of layer l); null when the LM head (a norm kernel over output rows) or nothing comes next.
  auto nextNorm = [&](int i) -> const float* {
    for (int j = i + 1; j < 2 * c.layers; ++j)
      if (!skip[j]) return j % 2 ? be_.layer(j / 2).mlpNorm.get<float>() : be_.layer(j / 2).attnNorm.get<float>();
    return nullptr;
  };
  auto normOutput = [&](LinArgs& a, int subLayer) {
    const float* w = carry ? nextNorm(subLayer) : nullptr;
    if (!w) return;
    a.normOut = NormOut{w, sc.xPack.get(), hKT, sc.normR.get<float>(), sc.normPart.get<float>(), sc.normScale.get<float>(), ldPart};
    carried = true;
  };

  // Quant mode kQuantInt8: each projection's input is quantized per token into sc.xq / sc.sx,
  // then the int8 matrix kernel runs with the same epilogue as the 16-bit one.
  auto quantize = [&](QuantSource src, int K, const float* normW, int KT8) {
    QuantArgs qa;
    qa.params = P;
    qa.src = src;
    qa.K = K;
    if (src == QuantSource::Packed16) {
      qa.packed = sc.aPack.get();
      qa.packedKT = tilesOf(K);
    } else {
      qa.x = src == QuantSource::Norm ? sc.x.get<float>() : sc.h32.get<float>();
      qa.ldx = src == QuantSource::Norm ? H : c.ffn;
      qa.normW = normW;
      qa.eps = c.rmsEps;
    }
    qa.xq = sc.xq.get();
    qa.KT8 = KT8;
    qa.sx = sc.sx.get<float>();
    launchQuantize(qa, maxTokens, bf16, pdl, s);
    mark("quantize activations");
  };
  auto linearQ8 = [&](const Q8Matrix& w, Q8Epilogue epi) {
    Q8Args a;
    a.w = w.buf.get();
    a.wScale = w.scale.get<float>();
    a.M = w.M;
    a.MT = w.MT;
    a.KT = w.KT;
    a.S = q8Splits(w.MT, w.KT);
    a.params = P;
    a.xq = sc.xq.get();
    a.sx = sc.sx.get<float>();
    a.sums = sc.sums.get<int>();
    a.counters = sc.counters8.get<int>();
    a.epi = epi;
    return a;
  };

  // gate/up -> down handover (LinArgs::doneOut) in launches of one token group: counters per layer,
  // zeroed at the start of every forward.
  const bool handoff = be_.handoff() && !q8 && groups == 1;
  const int doneStride = be_.handoffStride();
  if (handoff) CUDA_CHECK(cudaMemsetAsync(sc.done.get(), 0, (size_t)c.layers * doneStride * 4, s));
  launchEmbed(be_.embed().data(), be_.embed().KT, H, P, sc.x.get<float>(), maxTokens, bf16, pdl, s);
  mark("embed");
  for (int l = 0; l < c.layers; ++l) {
    const LayerWeights& w = be_.layer(l);
    if (!skip[2 * l]) {
      const QkvOut out{sc.q.get<float>(), k_.get<uint8_t>() + l * layerElems * kvBytes, v_.get<uint8_t>() + l * layerElems * kvBytes,
                       be_.kvF32(), c.heads, c.kvHeads, c.headDim, be_.invFreq()};
      if (q8) {
        quantize(QuantSource::Norm, H, w.attnNorm.get<float>(), w.qkv8.KT);
        Q8Args a = linearQ8(w.qkv8, Q8Epilogue::Qkv);
        a.qkv = out;
        launchLinearQ8(a, ntb, groups, bf16, pdl, s);
        mark("int8 qkv (+rope, kv write)");
      } else {
        LinArgs qkv = linear(w.qkv, be_.splitsQkv, Epilogue::Qkv);
        qkv.qkv = out;
        normInput(qkv, w.attnNorm.get<float>(), false);
        launchLinear(qkv, ntb, groups, bf16, pdl, s);
        mark("qkv (+rope, kv write)");
      }

      AttnArgs at;
      at.params = P;
      at.q = out.q;
      at.k = out.kCache;
      at.v = out.vCache;
      at.kvF32 = be_.kvF32();
      at.heads = c.heads;
      at.kvHeads = c.kvHeads;
      at.headDim = c.headDim;
      at.scale = (float)(1.0 / std::sqrt((double)c.headDim));
      at.part = part_.get<float>();
      at.maxChunks = maxChunks_;
      at.outPacked = sc.aPack.get();
      at.outKT = tilesOf(c.qDim());
      const int rows = maxTokens * (c.heads / c.kvHeads);
      const int rowBlocks =
          attnRowBlocks(rows, attnGridX, c.kvHeads, kWaveSms, be_.tuning().attnSplitRows, be_.tuning().attnWaves);
      at.fma = be_.attnFma();
      at.wide = rowBlocks == 0 && !at.fma;
      // The fmaf kernel takes a block per 16 query rows whatever the grid: a warp per 4 rows, and its
      // blocks past the live chunks exit at once.
      at.rowBlocks = at.fma ? (rows + 15) / 16 : rowBlocks == 0 ? 1 : rowBlocks;
      at.pair = at.wide && be_.tuning().attnPair && attnPairRows(rows);
      at.tailRows = tailRowsFor(maxTokens);
      at.listInts = attnListInts(maxTokens, at.tailRows);
      launchAttention(at, attnGridX, bf16, pdl, s);
      mark("attention");
      if (maxChunks_ > 1) launchAttnCombine(at, maxTokens, bf16, pdl, early, s);
      mark("attention combine");

      if (q8) {
        quantize(QuantSource::Packed16, c.qDim(), nullptr, w.o8.KT);
        Q8Args a = linearQ8(w.o8, Q8Epilogue::Residual);
        a.resid = sc.x.get<float>();
        launchLinearQ8(a, ntb, groups, bf16, pdl, s);
        mark("int8 o proj (+residual)");
      } else {
        LinArgs o = linear(w.o, be_.splitsO, Epilogue::Residual);
        o.bPacked = sc.aPack.get();
        o.resid = sc.x.get<float>();
        normOutput(o, 2 * l);
        launchLinear(o, ntb, groups, bf16, pdl, s);
        mark("o proj (+residual)");
      }
    }
    if (!skip[2 * l + 1]) {
      if (q8) {
        quantize(QuantSource::Norm, H, w.mlpNorm.get<float>(), w.gateUp8.KT);
        Q8Args gu = linearQ8(w.gateUp8, Q8Epilogue::SwiGlu);
        gu.h = sc.h32.get<float>();
        gu.ffn = c.ffn;
        launchLinearQ8(gu, ntb, groups, bf16, pdl, s);
        mark("int8 gate/up (+swiglu)");
        quantize(QuantSource::F32, c.ffn, nullptr, w.down8.KT);
        Q8Args down = linearQ8(w.down8, Q8Epilogue::Residual);
        down.resid = sc.x.get<float>();
        launchLinearQ8(down, ntb, groups, bf16, pdl, s);
        mark("int8 down (+residual)");
      } else {
        LinArgs gu = linear(w.gateUp, be_.splitsGateUp, Epilogue::SwiGlu);
        normInput(gu, w.mlpNorm.get<float>(), false);
        gu.hPacked = sc.hPack.get();
        gu.hKT = w.down.KT;
        if (handoff) gu.doneOut = sc.done.get<unsigned>() + (size_t)l * doneStride;
        launchLinear(gu, ntb, groups, bf16, pdl, s);
        mark("gate/up (+swiglu)");

        LinArgs down = linear(w.down, be_.splitsDown, Epilogue::Residual);
        down.bPacked = sc.hPack.get();
        down.resid = sc.x.get<float>();
        normOutput(down, 2 * l + 1);
        if (handoff) down.doneIn = gu.doneOut, down.doneRows = doneStride - 1, down.doneSplits = gu.S;
        launchLinear(down, ntb, groups, bf16, pdl, s);
        mark("down (+residual)");
      }
    }
  }
  if (withHead) {
    LinArgs lm = linear(be_.lmHead(), be_.splitsLm, Epilogue::Logits);
    lm.countIsOut = true;
    normInput(lm, be_.finalNorm(), true);
    lm.result = sc.result.get<float>();
    lm.vocab = c.vocab;
    launchLinear(lm, ntb, groups, bf16, pdl, s);
    mark("lm head");
    launchOutputs(P, sc.result.get<float>(), c.vocab, maxTokens, pdl, s);
    mark("argmax/top-k");
  }
}

cudaGraphExec_t CudaContext::graphFor(int bucket, const uint8_t* skip, int quant) {
  const int nSkip = 2 * be_.config().layers;
  std::string key = std::to_string(bucket) + ":" + std::to_string(quant) + ":";
  key.append(reinterpret_cast<const char*>(skip), nSkip);
  for (CachedGraph& g : graphs_)
    if (g.key == key) {
      g.lastUse = ++useClock_;
      return g.exec;
    }
  const int gridX = maxChunks_;  // one block per chunk of the longest possible key list; unused ones exit
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue(bucket, skip, quant, true, gridX);
  } catch (...) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  if (e != cudaSuccess) throwCuda(e, "cudaGraphInstantiate", __FILE__, __LINE__);
  if ((int)graphs_.size() >= kMaxGraphs) {
    auto lru = std::min_element(graphs_.begin(), graphs_.end(),
                                [](const CachedGraph& a, const CachedGraph& b) { return a.lastUse < b.lastUse; });
    graphs_.erase(lru);
  }
  graphs_.push_back({key, GraphExec(exec), ++useClock_});
  return exec;
}

// The tree tail for attention (attention.cuh): the distinct slots of key indices from
// attnTailStart(stagedKeys) on, committed ones first, and each ancestor entry's row among them.
// Returns the row count, or 0 when they exceed maxRows (attention then reads global memory).
int CudaContext::listTail(const Batch& b, const Piece& p, int stagedKeys, int maxRows, int32_t* ancTail, int32_t* slots) {
  const int start = attnTailStart(stagedKeys);
  const int a0 = b.ancOffsets[p.s0];
  if (maxRows <= 0 || b.committed - start > maxRows) return 0;  // `slots` has room for maxRows
  int rows = 0;
  for (int j = start; j < b.committed; ++j) slots[rows++] = j;
  if ((int)tailRowOf_.size() < capacity_) tailRowOf_.assign(capacity_, -1);
  bool fits = true;
  for (int t = p.s0; t < p.s1 && fits; ++t) {
    for (int e = b.ancOffsets[t]; e < b.ancOffsets[t + 1]; ++e) {
      const int j = b.committed + (e - b.ancOffsets[t]), slot = b.ancSlots[e];
      int32_t& row = ancTail[e - a0];
      row = -1;
      if (j < start) continue;
      if (slot < 0 || slot >= capacity_) {  // the engine validated slots; never index past the map
        fits = false;
        break;
      }
      if (tailRowOf_[slot] < 0) {
        if (rows == maxRows) {
          fits = false;
          break;
        }
        slots[rows] = slot;
        tailRowOf_[slot] = rows++;
      }
      row = tailRowOf_[slot];
    }
  }
  for (int r = 0; r < rows; ++r)
    if (slots[r] >= 0 && slots[r] < capacity_) tailRowOf_[slots[r]] = -1;
  return fits ? rows : 0;
}

void CudaContext::runPiece(const Batch& b, const Piece& p, ForwardResult& out, bool graph) {
  const ModelConfig& c = be_.config();
  const int n = p.s1 - p.s0, nOut = p.o1 - p.o0;
  const int a0 = b.ancOffsets[p.s0], a1 = b.ancOffsets[p.s1];
  const int nAnc = a1 - a0;
  const bool replay = graph && !profiling_;
  const int tailRows = tailRowsFor(replay ? bucketOf(n) : n);
  const size_t words = (size_t)kP_headerSize + 3 * n + (n + 1) + 2 * nAnc + nOut + tailRows;

  hostParams_.reserve(words * 4, "forward parameters");
  int32_t* h = hostParams_.get<int32_t>();
  int maxAnc = 0;
  for (int i = 0; i < n; ++i) maxAnc = std::max(maxAnc, b.ancOffsets[p.s0 + i + 1] - b.ancOffsets[p.s0 + i]);
  int o = kP_headerSize;
  h[kP_n] = n;
  h[kP_committed] = b.committed;
  h[kP_nOut] = nOut;
  h[kP_topk] = b.topk;
  h[kP_maxKeys] = b.committed + maxAnc;
  h[kP_vocab] = c.vocab;
  h[kP_stagedKeys] = b.committed + naturalDepth(b, p.s0, p.s1);
  h[kP_tokens] = o;
  std::memcpy(h + o, b.tokens + p.s0, n * 4), o += n;
  h[kP_slots] = o;
  std::memcpy(h + o, b.slots + p.s0, n * 4), o += n;
  h[kP_positions] = o;
  std::memcpy(h + o, b.positions + p.s0, n * 4), o += n;
  h[kP_ancOffsets] = o;
  for (int i = 0; i <= n; ++i) h[o + i] = b.ancOffsets[p.s0 + i] - a0;
  o += n + 1;
  h[kP_ancSlots] = o;
  std::memcpy(h + o, b.ancSlots + a0, (size_t)nAnc * 4), o += nAnc;
  h[kP_outRows] = o;
  for (int r = 0; r < nOut; ++r) h[o + r] = b.outRows[p.o0 + r] - p.s0;
  o += nOut;
  h[kP_ancTail] = o;
  h[kP_tailSlots] = o + nAnc;
  h[kP_tailCount] = listTail(b, p, h[kP_stagedKeys], tailRows, h + o, h + o + nAnc);

  if (params_.bytes() < words * 4) {
    graphs_.clear();  // they hold the old block's address
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    params_.allocate(words * 4 * 2, "forward parameters");
  }

  if (p.s0 == 0) CUDA_CHECK(cudaEventRecord(start_, stream_));  // lastDeviceMs spans every piece
  CUDA_CHECK(cudaMemcpyAsync(params_.get(), h, words * 4, cudaMemcpyHostToDevice, stream_));
  if (replay) {
    const cudaGraphExec_t exec = graphFor(bucketOf(n), b.skip, b.quant);
    CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  } else {
    const int gridX = std::max(1, (b.committed + maxAnc + kAttnChunk - 1) / kAttnChunk);
    enqueue(n, b.skip, b.quant, nOut > 0, gridX);
  }
  const size_t headWords = (size_t)nOut * (1 + 2 * b.topk);
  const size_t resWords = headWords + (b.wantLogits ? (size_t)nOut * c.vocab : 0);
  if (nOut > 0) {
    hostResult_.reserve(resWords * 4, "results");
    CUDA_CHECK(cudaMemcpyAsync(hostResult_.get(), be_.scratch().result.get(), resWords * 4, cudaMemcpyDeviceToHost, stream_));
  }
  CUDA_CHECK(cudaEventRecord(stop_, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  timed_ = true;
  if (profiling_) {
    for (int i = 1; i < nMarks_; ++i) {
      float ms = 0.f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[i - 1], marks_[i]));
      auto it = std::find_if(profile_.begin(), profile_.end(), [&](const auto& e) { return e.first == markLabels_[i]; });
      if (it == profile_.end()) profile_.emplace_back(markLabels_[i], ms);
      else it->second += ms;
    }
  }
  if (nOut == 0) return;

  const int32_t* ri = hostResult_.get<int32_t>();
  const float* rf = hostResult_.get<float>();
  const int k = b.topk;
  std::memcpy(out.argmax.data() + p.o0, ri, (size_t)nOut * 4);
  if (k > 0) {
    std::memcpy(out.topkIds.data() + (size_t)p.o0 * k, ri + resultIdsOffset(nOut), (size_t)nOut * k * 4);
    std::memcpy(out.topkProbs.data() + (size_t)p.o0 * k, rf + resultProbsOffset(nOut, k), (size_t)nOut * k * 4);
  }
  if (b.wantLogits)
    std::memcpy(out.logits.data() + (size_t)p.o0 * c.vocab, rf + resultLogitsOffset(nOut, k), (size_t)nOut * c.vocab * 4);
}

void CudaContext::forward(const Batch& b, ForwardResult& out) {
  DeviceGuard guard(be_.device());
  healthy_ = false;  // until this forward completes (a failed one keeps the context out of recycling)
  const ModelConfig& c = be_.config();
  out.argmax.assign(b.nOut, 0);
  out.topkIds.assign((size_t)b.nOut * b.topk, -1);
  out.topkProbs.assign((size_t)b.nOut * b.topk, 0.f);
  if (b.wantLogits)
    out.logits.resize((size_t)b.nOut * c.vocab);
  else
    out.logits.clear();

  const bool graphs = be_.tuning().graphs;
  if (b.n <= kGraphMaxTokens) {
    runPiece(b, Piece{0, b.n, 0, b.nOut}, out, graphs);
    healthy_ = true;
    return;
  }
  // Long forward: pieces of whole tokens in batch order. A piece's ancestors sit in earlier
  // pieces or earlier forwards (the engine lists parents before children), whose KV is written.
  int o = 0;
  for (int s0 = 0; s0 < b.n; s0 += piece_) {
    const int s1 = std::min(b.n, s0 + piece_);
    int o1 = o;
    while (o1 < b.nOut && b.outRows[o1] < s1) ++o1;
    runPiece(b, Piece{s0, s1, o, o1}, out, graphs && s1 - s0 <= kGraphMaxTokens);
    o = o1;
  }
  healthy_ = true;
}

std::vector<std::pair<std::string, double>> CudaContext::takeProfile() {
  std::vector<std::pair<std::string, double>> p;
  p.swap(profile_);
  return p;
}

void CudaContext::moveSlots(const int32_t* src, const int32_t* dst, int n) {
  if (n <= 0) return;
  DeviceGuard guard(be_.device());
  healthy_ = false;
  const ModelConfig& c = be_.config();
  // The previous move's copy must have left the pinned buffer before it is rewritten.
  CUDA_CHECK(cudaEventSynchronize(moveDone_));
  if (moveArgs_.bytes() < (size_t)8 * n) moveArgs_.allocate((size_t)8 * n, "slot moves");
  hostMove_.reserve((size_t)8 * n, "slot moves");
  int32_t* h = hostMove_.get<int32_t>();
  std::memcpy(h, src, (size_t)n * 4);
  std::memcpy(h + n, dst, (size_t)n * 4);
  CUDA_CHECK(cudaMemcpyAsync(moveArgs_.get(), h, (size_t)8 * n, cudaMemcpyHostToDevice, stream_));
  launchMoveSlots(k_.get(), v_.get(), c.layers, (int64_t)capacity_ * c.kvDim(), c.kvDim(), be_.kvElemBytes(),
                  moveArgs_.get<int32_t>(), n, stream_);
  CUDA_CHECK(cudaEventRecord(moveDone_, stream_));
  healthy_ = true;
}

}  // namespace casspec::cuda
