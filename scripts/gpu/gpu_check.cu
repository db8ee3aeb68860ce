// Standalone correctness + benchmark driver for the CUDA backend (no Node, no N-API): links the
// engine, the CPU reference backend and native/cuda directly.
//
//   gpu_check [--check] [--bench] [--models DIR] [--out DIR]
//
// --check: CUDA vs CPU (argmax identical at every position, logits within 1e-2 relative) on
//          dummy models and on the real models in DIR; batch invariance bitwise (one token at a
//          time vs chain vs random trees of 8/32/64, layer-skip plans, pending ancestors from an
//          earlier forward, rollback, long forwards in pieces, commit with slot moves); the matrix
//          kernel at kernel level on every linear shape, each token's bits against one launch shape.
// --bench: forward time for n = 1..64 at cache length 512 and 2048 (dummy Llama-2-7B shape in fp16
//          and the pycode-small shape), the bandwidth floor measured in the same run, 7B prefill
//          TFLOP/s against the dense bf16/f16 wgmma peak measured in the same run (wgmma_peak.cu), and
//          the mma.sync ceilings attention lives under (gemm_peak.cu).
// --read:  only the read-bandwidth ceilings (read_bw.cu) next to the copy bandwidth.
// --linear: the matrix kernel alone per 7B decode shape (1..64 tokens) next to those ceilings.
// --ncu:   for Nsight Compute (`ncu --profile-from-start off`): one 7B fp16 forward at cache 512 for
//          n = 1 and a random tree of n = 32, graphs replayed, inside cudaProfilerStart/Stop.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../../native/cpu/convert.h"
#include "../../native/cuda/cuda_backend.cuh"
#include "../../native/cuda/cuda_context.cuh"
#include "../../native/cuda/elementwise.cuh"
#include "../../native/cuda/layout.cuh"
#include "../../native/cuda/linear.cuh"
#include "../../native/cuda/params.cuh"
#include "../../native/engine/context.h"
#include "../../native/engine/dummy.h"
#include "../../native/engine/errors.h"
#include "../../native/engine/model.h"
#include "bench_util.cuh"

using namespace casspec;

// ---------------------------------------------------------------- reporting
static int gFailures = 0, gChecks = 0;
static FILE* gLog = stdout;
static std::vector<std::string> gSummary;

#define LOG(...)                       \
  do {                                 \
    std::printf(__VA_ARGS__);          \
    if (gLog != stdout) {              \
      std::fprintf(gLog, __VA_ARGS__); \
      std::fflush(gLog);               \
    }                                  \
    std::fflush(stdout);               \
  } while (0)

static void check(bool ok, const std::string& what) {
  ++gChecks;
  if (!ok) {
    ++gFailures;
    LOG("  FAIL: %s\n", what.c_str());
  }
}

static double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// ---------------------------------------------------------------- configs and weights
static ModelConfig tinyConfig() {  // odd sizes on purpose: padded vocab / ffn, q dim != hidden, untied
  ModelConfig c;
  c.vocab = 300, c.hidden = 64, c.layers = 3, c.heads = 4, c.kvHeads = 2, c.headDim = 32, c.ffn = 100;
  c.maxPositions = 1024, c.ropeTheta = 10000.f, c.rmsEps = 1e-5f, c.tiedEmbeddings = false;
  return c;
}
static ModelConfig head128Config() {  // the 7B shape's attention (MHA, head_dim 128) on a small model
  ModelConfig c;
  c.vocab = 512, c.hidden = 256, c.layers = 2, c.heads = 2, c.kvHeads = 2, c.headDim = 128, c.ffn = 512;
  c.maxPositions = 2048, c.ropeTheta = 10000.f, c.rmsEps = 1e-5f, c.tiedEmbeddings = true;
  return c;
}
static ModelConfig smallConfig(int maxPos = 2048) {  // pycode-small
  ModelConfig c;
  c.vocab = 8192, c.hidden = 256, c.layers = 16, c.heads = 4, c.kvHeads = 2, c.headDim = 64, c.ffn = 704;
  c.maxPositions = maxPos, c.ropeTheta = 10000.f, c.rmsEps = 1e-5f, c.tiedEmbeddings = true;
  return c;
}
static ModelConfig longRowConfig() {  // hidden > 1024: the norm carried through the residual epilogues by default
  ModelConfig c;
  c.vocab = 1000, c.hidden = 2048, c.layers = 2, c.heads = 16, c.kvHeads = 4, c.headDim = 128, c.ffn = 2816;
  c.maxPositions = 2048, c.ropeTheta = 10000.f, c.rmsEps = 1e-5f, c.tiedEmbeddings = false;
  return c;
}
static ModelConfig llama7bConfig() {
  ModelConfig c;
  c.vocab = 32000, c.hidden = 4096, c.layers = 32, c.heads = 32, c.kvHeads = 32, c.headDim = 128, c.ffn = 11008;
  c.maxPositions = 4096, c.ropeTheta = 10000.f, c.rmsEps = 1e-5f, c.tiedEmbeddings = false;
  return c;
}

static uint16_t bf16Bits(float f) {  // round to nearest even, as __float2bfloat16_rn
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static std::shared_ptr<Model> makeModel(const ModelConfig& c, const char* kind, DType wdt = DType::BF16) {
  BackendOptions o;
  o.kind = kind;
  o.weightDType = wdt;
  return std::make_shared<Model>(c, o);
}

// A CUDA model built under environment overrides (the backend reads its knobs when constructed).
using EnvOverrides = std::initializer_list<std::pair<const char*, const char*>>;
static std::shared_ptr<Model> cudaModelWith(const ModelConfig& c, DType wdt, EnvOverrides env) {
  for (const auto& [k, v] : env) setenv(k, v, 1);
  auto m = makeModel(c, "cuda", wdt);
  for (const auto& [k, v] : env) unsetenv(k);
  return m;
}
// The same, with the backend's own dummy weights.
static std::shared_ptr<Model> dummyCuda(const ModelConfig& c, uint64_t seed, DType wdt = DType::BF16, EnvOverrides env = {}) {
  auto m = cudaModelWith(c, wdt, env);
  m->fillDummy(seed);
  return m;
}

enum class DummyUpload { Fill, BF16, F32 };
// Dummy weights. Fill: the backend's own fillDummy. BF16: matrices rounded to bf16 on the host (what
// the GPU stores), norms in fp32 (what the GPU keeps): the CPU reference then sees exactly the
// GPU's weights. F32: exact fp32 values through setTensor (the GPU converts on upload).
static void loadDummy(Model& m, uint64_t seed, DummyUpload how) {
  if (how == DummyUpload::Fill) {
    m.fillDummy(seed);
    return;
  }
  const auto& specs = m.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    size_t n = 1;
    for (int64_t d : s.shape) n *= (size_t)d;
    const bool isNorm = s.shape.size() == 1;
    if (isNorm || how == DummyUpload::F32) {
      std::vector<float> v(n);
      for (size_t e = 0; e < n; ++e) v[e] = dummyWeight(seed, (int)i, e, isNorm);
      m.setTensor(s.name, DType::F32, s.shape, v.data(), n * 4);
    } else {
      std::vector<uint16_t> v(n);
      for (size_t e = 0; e < n; ++e) v[e] = bf16Bits(dummyWeight(seed, (int)i, e, false));
      m.setTensor(s.name, DType::BF16, s.shape, v.data(), n * 2);
    }
  }
}

// ---------------------------------------------------------------- real models (prepare_models.py)
struct RealModel {
  ModelConfig cfg;
  std::string dir;
  struct T {
    std::string name, dtype, file;
    size_t begin, end;
    std::vector<int64_t> shape;
  };
  std::vector<T> tensors;
  struct Case {
    std::vector<int32_t> prompt, greedy, top1;
  };
  std::vector<Case> cases;
};

static bool loadRealManifest(const std::string& dir, RealModel& rm) {
  std::ifstream cf(dir + "/config.txt");
  if (!cf) return false;
  rm.dir = dir;
  std::string k;
  double v;
  while (cf >> k >> v) {
    if (k == "vocab") rm.cfg.vocab = (int)v;
    if (k == "hidden") rm.cfg.hidden = (int)v;
    if (k == "layers") rm.cfg.layers = (int)v;
    if (k == "heads") rm.cfg.heads = (int)v;
    if (k == "kvHeads") rm.cfg.kvHeads = (int)v;
    if (k == "headDim") rm.cfg.headDim = (int)v;
    if (k == "ffn") rm.cfg.ffn = (int)v;
    if (k == "maxPositions") rm.cfg.maxPositions = (int)v;
    if (k == "ropeTheta") rm.cfg.ropeTheta = (float)v;
    if (k == "rmsEps") rm.cfg.rmsEps = (float)v;
    if (k == "tied") rm.cfg.tiedEmbeddings = v != 0;
  }
  std::ifstream tf(dir + "/tensors.txt");
  std::string line;
  while (std::getline(tf, line)) {
    std::istringstream is(line);
    RealModel::T t;
    if (!(is >> t.name >> t.dtype >> t.file >> t.begin >> t.end)) continue;
    int64_t d;
    while (is >> d) t.shape.push_back(d);
    rm.tensors.push_back(t);
  }
  std::ifstream kf(dir + "/cases.txt");
  while (std::getline(kf, line)) {
    RealModel::Case c;
    std::istringstream is(line);
    std::string tok;
    int part = 0;
    while (is >> tok) {
      if (tok == "|") {
        ++part;
        continue;
      }
      (part == 0 ? c.prompt : part == 1 ? c.greedy : c.top1).push_back(std::stoi(tok));
    }
    rm.cases.push_back(c);
  }
  return true;
}

static void loadReal(Model& m, const RealModel& rm) {
  std::map<std::string, std::vector<char>> files;
  for (const auto& t : rm.tensors) {
    auto& f = files[t.file];
    if (f.empty()) {
      std::ifstream in(rm.dir + "/" + t.file, std::ios::binary);
      f.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    m.setTensor(t.name, parseDType(t.dtype), t.shape, f.data() + t.begin, t.end - t.begin);
  }
}

// ---------------------------------------------------------------- forward helpers (engine Context)
struct Out {
  std::vector<int32_t> argmax;
  std::vector<float> logits;  // [rows x vocab]
  std::vector<int32_t> topk;
};

static Out fwd(Context& ctx, const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
               const std::vector<int32_t>& parents, const std::vector<uint8_t>& skip = {}, int topk = 0,
               std::vector<int32_t> outRows = {}) {
  ForwardArgs a;
  a.tokens = tokens, a.slots = slots, a.parents = parents, a.skip = skip, a.wantLogits = true, a.topk = topk;
  a.outRows = outRows;
  ForwardResult r;
  ctx.forward(a, r);
  return Out{r.argmax, r.logits, r.topkIds};
}
// Chain forward of `tokens` right after the committed prefix (slots committed.., parents chain).
static Out chain(Context& ctx, const std::vector<int32_t>& tokens, const std::vector<uint8_t>& skip = {}, int topk = 0) {
  std::vector<int32_t> slots, parents;
  for (size_t i = 0; i < tokens.size(); ++i) {
    slots.push_back(ctx.committed() + (int)i);
    parents.push_back(i == 0 ? -1 : ctx.committed() + (int)i - 1);
  }
  return fwd(ctx, tokens, slots, parents, skip, topk);
}
static void commitChain(Context& ctx, int n) {
  std::vector<int32_t> path;
  for (int i = 0; i < n; ++i) path.push_back(ctx.committed() + i);
  ctx.commit(path);
}
static bool anySkip(const std::vector<uint8_t>& skip) {
  return std::any_of(skip.begin(), skip.end(), [](uint8_t v) { return v != 0; });
}
// Feeds tokens as one growing chain after the committed prefix. Full-model forwards are committed
// after each call (plain decoding); skip-plan (draft) forwards cannot be committed, so they stay
// pending and the next call's first token hangs off the previous call's last slot.
struct Feeder {
  Context& ctx;
  std::vector<uint8_t> skip;
  bool commit;
  int next, parent;
  Feeder(Context& c, const std::vector<uint8_t>& s) : ctx(c), skip(s), commit(!anySkip(s)), next(c.committed()), parent(-1) {}
  Out feed(const std::vector<int32_t>& tokens, int topk = 0) {
    std::vector<int32_t> slots, parents;
    for (size_t i = 0; i < tokens.size(); ++i) {
      slots.push_back(next + (int)i);
      parents.push_back(i == 0 ? parent : next + (int)i - 1);
    }
    Out o = fwd(ctx, tokens, slots, parents, skip, topk);
    next += (int)tokens.size();
    if (commit) {
      commitChain(ctx, (int)tokens.size());
      parent = -1;
    } else {
      parent = next - 1;
    }
    return o;
  }
};
// One token at a time: logits of every token.
static std::vector<std::vector<float>> oneByOne(Context& ctx, const std::vector<int32_t>& tokens, int vocab,
                                                const std::vector<uint8_t>& skip = {}) {
  Feeder f(ctx, skip);
  std::vector<std::vector<float>> out;
  for (int32_t t : tokens) {
    Out o = f.feed({t});
    out.emplace_back(o.logits.begin(), o.logits.begin() + vocab);
  }
  return out;
}

static double relErr(const float* a, const float* ref, int n) {
  double d = 0, r = 0;
  for (int i = 0; i < n; ++i) {
    d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
    r += (double)ref[i] * ref[i];
  }
  return std::sqrt(d / std::max(r, 1e-30));
}
static bool sameBits(const float* a, const float* b, int n) { return std::memcmp(a, b, (size_t)n * 4) == 0; }

// ---------------------------------------------------------------- CUDA vs CPU
// Prefill `pre` tokens in one forward, then decode the rest one at a time; every position's argmax
// and logits compared.
static void compareWithCpu(const std::string& label, Model& gpu, Model& cpu, const std::vector<int32_t>& seq, int pre,
                           const std::vector<uint8_t>& skip = {}, const std::vector<int32_t>* golden = nullptr,
                           bool strict = true) {
  const int V = gpu.config().vocab;
  Context g(std::shared_ptr<Model>(&gpu, [](Model*) {}), (int)seq.size() + 8);
  Context c(std::shared_ptr<Model>(&cpu, [](Model*) {}), (int)seq.size() + 8);
  std::vector<int32_t> first(seq.begin(), seq.begin() + pre);
  std::vector<int32_t> ga, ca;
  std::vector<float> gl, cl;
  Feeder fg(g, skip), fc(c, skip);
  Out og = fg.feed(first, 8), oc = fc.feed(first, 8);
  ga = og.argmax, ca = oc.argmax, gl = og.logits, cl = oc.logits;
  int topkSame = 0, topkRows = pre;
  for (int r = 0; r < pre; ++r) topkSame += std::equal(og.topk.begin() + r * 8, og.topk.begin() + r * 8 + 8, oc.topk.begin() + r * 8);
  for (size_t i = pre; i < seq.size(); ++i) {
    Out a = fg.feed({seq[i]}, 8), b = fc.feed({seq[i]}, 8);
    ga.push_back(a.argmax[0]), ca.push_back(b.argmax[0]);
    gl.insert(gl.end(), a.logits.begin(), a.logits.end());
    cl.insert(cl.end(), b.logits.begin(), b.logits.end());
    topkSame += std::equal(a.topk.begin(), a.topk.end(), b.topk.begin());
    ++topkRows;
  }
  int same = 0, goldenSame = 0;
  double worst = 0;
  for (size_t i = 0; i < seq.size(); ++i) {
    same += ga[i] == ca[i];
    worst = std::max(worst, relErr(&gl[i * V], &cl[i * V], V));
    if (golden) goldenSame += ga[i] == (*golden)[i];
  }
  LOG("  %-34s argmax %zu/%zu identical, max rel logits err %.2e, top8 lists identical %d/%d", label.c_str(), (size_t)same,
      seq.size(), worst, topkSame, topkRows);
  if (golden) LOG(", GPU top1 = HF golden %d/%zu", goldenSame, seq.size());
  LOG("%s\n", strict ? "" : "  [informational: fp32 weights are stored as bf16 on the GPU]");
  if (!strict) return;
  check(same == (int)seq.size(), label + ": argmax differs from the CPU backend");
  check(worst <= 1e-2, label + ": logits differ from the CPU backend by more than 1e-2");
}

// ---------------------------------------------------------------- batch invariance (GPU only)
struct Tree {
  std::vector<int32_t> parent;  // index into nodes, -1 = root
  std::vector<int32_t> tokens;
};
static Tree randomTree(int n, int vocab, std::mt19937& rng, int maxRoots = 2) {
  Tree t;
  for (int i = 0; i < n; ++i) {
    int p = -1;
    if (i >= maxRoots || (i > 0 && rng() % 4 != 0)) p = (int)(rng() % i);
    if (i > 0 && i >= maxRoots && p < 0) p = 0;
    t.parent.push_back(p);
    t.tokens.push_back((int32_t)(rng() % vocab));
  }
  return t;
}
static std::vector<int> pathOf(const Tree& t, int v) {
  std::vector<int> p;
  for (int u = v; u >= 0; u = t.parent[u]) p.push_back(u);
  std::reverse(p.begin(), p.end());
  return p;
}

// Reference logits of every tree node: its path fed one token at a time after the prefix.
static std::vector<std::vector<float>> treeReference(Context& ctx, int base, const Tree& t, int V,
                                                     const std::vector<uint8_t>& skip) {
  std::vector<std::vector<float>> ref(t.tokens.size());
  for (size_t v = 0; v < t.tokens.size(); ++v) {
    bool leaf = true;
    for (size_t u = 0; u < t.tokens.size(); ++u) leaf &= t.parent[u] != (int)v;
    if (!leaf) continue;
    ctx.truncate(base);
    const std::vector<int> path = pathOf(t, (int)v);
    std::vector<int32_t> toks;
    for (int u : path) toks.push_back(t.tokens[u]);
    auto l = oneByOne(ctx, toks, V, skip);
    for (size_t i = 0; i < path.size(); ++i) {
      if (!ref[path[i]].empty()) check(sameBits(ref[path[i]].data(), l[i].data(), V), "reference not reproducible");
      ref[path[i]] = l[i];
    }
  }
  ctx.truncate(base);
  return ref;
}

static int compareTree(Context& ctx, const Tree& t, int V, const std::vector<std::vector<float>>& ref,
                       const std::vector<uint8_t>& skip, int splitAt) {
  // Nodes at slots base + index; nodes [0, splitAt) in a first forward, the rest in a second one
  // (their ancestors then come from the earlier pending forward).
  const int base = ctx.committed();
  const int n = (int)t.tokens.size();
  int bad = 0;
  auto run = [&](int a, int b) {
    std::vector<int32_t> tok, slots, par;
    for (int i = a; i < b; ++i) {
      tok.push_back(t.tokens[i]);
      slots.push_back(base + i);
      par.push_back(t.parent[i] < 0 ? -1 : base + t.parent[i]);
    }
    Out o = fwd(ctx, tok, slots, par, skip);
    for (int i = a; i < b; ++i) bad += !sameBits(&o.logits[(size_t)(i - a) * V], ref[i].data(), V);
  };
  if (splitAt > 0 && splitAt < n) {
    run(0, splitAt);
    run(splitAt, n);
  } else {
    run(0, n);
  }
  return bad;
}

// capacity: the context's (0: prefix + 400); a large one launches attention for far more chunks
// than the key lists have (graphs are sized by the capacity).
static void invariance(const std::string& label, Model& gpu, int prefix, uint64_t seed, int capacity = 0) {
  const int V = gpu.config().vocab;
  std::mt19937 rng((uint32_t)seed);
  const int cap = capacity ? capacity : prefix + 400;
  Context ctx(std::shared_ptr<Model>(&gpu, [](Model*) {}), cap);
  std::vector<int32_t> pre(prefix);
  for (int& t : pre) t = (int32_t)(rng() % V);
  if (prefix > 0) {
    chain(ctx, pre);
    commitChain(ctx, prefix);
  }
  const int base = ctx.committed();
  std::vector<uint8_t> none(2 * gpu.config().layers, 0), plan = none;
  for (int l = 0; l < gpu.config().layers; ++l) plan[2 * l] = l % 3 == 1, plan[2 * l + 1] = l % 4 == 2;

  // Chain of 64 vs one at a time.
  std::vector<int32_t> toks(64);
  for (int& t : toks) t = (int32_t)(rng() % V);
  for (int p = 0; p < 2; ++p) {
    const std::vector<uint8_t>& skip = p ? plan : none;
    ctx.truncate(base);
    auto ref = oneByOne(ctx, toks, V, skip);
    ctx.truncate(base);
    Out o = chain(ctx, toks, skip);
    int bad = 0;
    for (int i = 0; i < 64; ++i) bad += !sameBits(&o.logits[(size_t)i * V], ref[i].data(), V);
    // Rollback: forget and redo; then again as chains of 5.
    ctx.truncate(base);
    Out o2 = chain(ctx, toks, skip);
    const bool rollback = sameBits(o.logits.data(), o2.logits.data(), 64 * V);
    ctx.truncate(base);
    int badPieces = 0;
    Feeder f(ctx, skip);
    for (int s = 0; s < 64; s += 5) {
      std::vector<int32_t> part(toks.begin() + s, toks.begin() + std::min(64, s + 5));
      Out q = f.feed(part);
      for (size_t i = 0; i < part.size(); ++i) badPieces += !sameBits(&q.logits[i * V], ref[s + i].data(), V);
    }
    LOG("  %-28s prefix %4d %s: chain64 vs 1-by-1 %d/64 differ, rollback %s, chains of 5 %d/64 differ\n", label.c_str(), prefix,
        p ? "skip-plan" : "full     ", bad, rollback ? "bitwise" : "DIFFERS", badPieces);
    check(bad == 0 && badPieces == 0, label + ": chain forward is not bitwise equal to one-at-a-time");
    check(rollback, label + ": truncate + re-forward is not bitwise reproducible");
  }

  // Random trees.
  for (int size : {8, 16, 32, 64}) {  // 16: a GQA shape's 17-32 rows (warp pairs when wide)
    for (int p = 0; p < 2; ++p) {
      const std::vector<uint8_t>& skip = p ? plan : none;
      ctx.truncate(base);
      Tree t = randomTree(size, V, rng);
      auto ref = treeReference(ctx, base, t, V, skip);
      const int bad = compareTree(ctx, t, V, ref, skip, 0);
      ctx.truncate(base);
      const int bad2 = compareTree(ctx, t, V, ref, skip, size / 3);
      LOG("  %-28s prefix %4d %s: tree of %2d: %d differ (one forward), %d differ (two forwards)\n", label.c_str(), prefix,
          p ? "skip-plan" : "full     ", size, bad, bad2);
      check(bad == 0 && bad2 == 0, label + ": tree forward is not bitwise equal to one-at-a-time");
      // Commit a deep branch (slots move), then decode on: must equal the branch fed 1-by-1.
      if (size == 32 && p == 0) {
        int leaf = size - 1;
        const std::vector<int> path = pathOf(t, leaf);
        std::vector<int32_t> slots;
        for (int u : path) slots.push_back(base + u);
        ctx.commit(slots);
        std::vector<int32_t> more(6);
        for (int& m : more) m = (int32_t)(rng() % V);
        auto after = oneByOne(ctx, more, V);
        ctx.truncate(base);
        std::vector<int32_t> all;
        for (int u : path) all.push_back(t.tokens[u]);
        all.insert(all.end(), more.begin(), more.end());
        auto ref2 = oneByOne(ctx, all, V);
        int badMove = 0;
        for (size_t i = 0; i < more.size(); ++i) badMove += !sameBits(after[i].data(), ref2[path.size() + i].data(), V);
        LOG("  %-28s prefix %4d: commit of a %zu-node branch (slot moves) then decode: %d/%zu differ\n", label.c_str(), prefix,
            path.size(), badMove, more.size());
        check(badMove == 0, label + ": decoding after a moved commit is not bitwise equal");
      }
    }
  }
  ctx.truncate(base);
}

// A forward longer than one launch piece (kMaxTokens) equals the same tokens as chains of 50.
static void longForward(const std::string& label, Model& gpu, int n) {
  const int V = gpu.config().vocab;
  std::mt19937 rng(7);
  std::vector<int32_t> toks(n);
  for (int& t : toks) t = (int32_t)(rng() % V);
  Context ctx(std::shared_ptr<Model>(&gpu, [](Model*) {}), n + 8);
  std::vector<int32_t> rows = {0, n / 2, n - 2, n - 1};
  std::vector<int32_t> slots, par;
  for (int i = 0; i < n; ++i) slots.push_back(i), par.push_back(i - 1);
  Out big = fwd(ctx, toks, slots, par, {}, 4, rows);
  ctx.truncate(0);
  std::vector<std::vector<float>> ref;
  for (int s = 0; s < n; s += 50) {
    std::vector<int32_t> part(toks.begin() + s, toks.begin() + std::min(n, s + 50));
    Out o = chain(ctx, part);
    for (size_t i = 0; i < part.size(); ++i) ref.emplace_back(o.logits.begin() + i * V, o.logits.begin() + (i + 1) * V);
    commitChain(ctx, (int)part.size());
  }
  int bad = 0;
  for (size_t r = 0; r < rows.size(); ++r) bad += !sameBits(&big.logits[r * V], ref[rows[r]].data(), V);
  LOG("  %-28s forward of %d tokens (pieces) vs chains of 50: %d/%zu output rows differ\n", label.c_str(), n, bad, rows.size());
  check(bad == 0, label + ": long forward differs from chained forwards");
}

// ---------------------------------------------------------------- benchmark helpers
// Batch built by hand (bypassing Context) so the backend context's device timer is reachable.
struct RawBatch {
  std::vector<int32_t> tokens, slots, positions, ancOffsets{0}, ancSlots, outRows;
  std::vector<uint8_t> skip;
  Batch b;
  void build(int committed, const std::vector<int32_t>& parentIdx, int vocab, int layers, std::mt19937& rng, bool lastOnly) {
    const int n = (int)parentIdx.size();
    std::vector<int> depth(n);
    for (int i = 0; i < n; ++i) {
      tokens.push_back((int32_t)(rng() % vocab));
      slots.push_back(committed + i);
      depth[i] = parentIdx[i] < 0 ? 0 : depth[parentIdx[i]] + 1;
      positions.push_back(committed + depth[i]);
      std::vector<int32_t> ch;
      for (int u = i; u >= 0; u = parentIdx[u]) ch.push_back(committed + u);
      ancSlots.insert(ancSlots.end(), ch.rbegin(), ch.rend());
      ancOffsets.push_back((int32_t)ancSlots.size());
    }
    if (lastOnly)
      outRows = {n - 1};
    else
      for (int i = 0; i < n; ++i) outRows.push_back(i);
    skip.assign(2 * layers, 0);
    b.n = n, b.tokens = tokens.data(), b.slots = slots.data(), b.positions = positions.data();
    b.ancOffsets = ancOffsets.data(), b.ancSlots = ancSlots.data(), b.committed = committed, b.skip = skip.data();
    b.outRows = outRows.data(), b.nOut = (int)outRows.size();
  }
};
static std::vector<int32_t> chainParents(int n) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = i - 1;
  return p;
}
static std::vector<int32_t> treeParents(int n, std::mt19937& rng) {  // verification-like: wide near the root
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = i == 0 ? -1 : (int)(rng() % std::min(i, 1 + i / 2));
  return p;
}

// Fills `ctx` with a committed prefix of `len` tokens (prefill in pieces of 512).
static void prefillRaw(BackendContext& ctx, int len, int vocab, int layers, std::mt19937& rng) {
  for (int s = 0; s < len; s += 512) {
    const int n = std::min(512, len - s);
    RawBatch rb;
    std::vector<int32_t> par(n);
    for (int i = 0; i < n; ++i) par[i] = i - 1;
    rb.build(s, par, vocab, layers, rng, true);
    // chain after committed s: ancestors include the piece's own earlier tokens only; the
    // committed part is implicit.
    ForwardResult r;
    ctx.forward(rb.b, r);
  }
}

struct Timing {
  double deviceMs, hostMs;
};
static Timing timeForward(cuda::CudaContext& ctx, const Batch& b, int reps) {
  ForwardResult r;
  for (int i = 0; i < 3; ++i) ctx.forward(b, r);
  std::vector<double> dev, host;
  for (int i = 0; i < reps; ++i) {
    const double t0 = nowMs();
    ctx.forward(b, r);
    host.push_back(nowMs() - t0);
    dev.push_back(ctx.lastDeviceMs());
  }
  return {median(dev), median(host)};
}
// One forward of n tokens after a committed cache of cache tokens, timed: a chain for n = 1 and for
// n < 0 (a chain of -n), else a verification-like tree (treeParents).
static Timing timeShape(BackendContext& ctx, const ModelConfig& cfg, int cache, int n, std::mt19937& rng) {
  RawBatch rb;
  rb.build(cache, n == 1 || n < 0 ? chainParents(std::abs(n)) : treeParents(n, rng), cfg.vocab, cfg.layers, rng, false);
  return timeForward(*dynamic_cast<cuda::CudaContext*>(&ctx), rb.b, 25);
}

// Per-kernel-kind time of one forward (direct launches with events in between).
static std::string profileRun(cuda::CudaContext& ctx, const Batch& b, const std::string& label) {
  ForwardResult r;
  ctx.forward(b, r);
  ctx.setProfiling(true);
  ctx.takeProfile();
  const int reps = 10;
  for (int i = 0; i < reps; ++i) ctx.forward(b, r);
  ctx.setProfiling(false);
  auto p = ctx.takeProfile();
  double total = 0;
  for (auto& e : p) total += e.second / reps;
  std::string out = "profile " + label + " (direct launches, " + std::to_string(total).substr(0, 6) + " ms/forward):";
  for (auto& e : p) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " %s %.3f;", e.first.c_str(), e.second / reps);
    out += buf;
  }
  return out;
}


// A prompt of 1024 tokens prefilled into a fresh context of m: device time (median of 5) and the
// per-kernel profile.
static std::pair<double, std::string> prefill1024(Model& m, const std::string& label) {
  const ModelConfig& cfg = m.config();
  auto bctx = m.backend().newContext(1024 + 16);
  auto* cctx = dynamic_cast<cuda::CudaContext*>(bctx.get());
  std::mt19937 rng(1);
  RawBatch rb;
  rb.build(0, chainParents(1024), cfg.vocab, cfg.layers, rng, true);
  const double ms = timeForward(*cctx, rb.b, 5).deviceMs;
  return {ms, profileRun(*cctx, rb.b, label)};
}

// Device-to-device copy bandwidth (bytes read + written) on 2 GiB.
static double copyBandwidth() {
  const size_t bytes = (size_t)2 << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  const double ms = medianMs([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * bytes / (ms * 1e-3);
}

double gemmPeak(double* relErrOut);  // gemm_peak.cu
double mmaPeak(std::string* detail);  // gemm_peak.cu
double wgmmaPeak(bool f16);           // wgmma_peak.cu
std::vector<std::string> streamProbe();  // stream_probe.cu
// The 7B shape's decode matrices, for read_bw.cu's launch-shape ceilings.
static std::vector<ReadShape> readShapes7b() {
  const ModelConfig c = llama7bConfig();
  return {{"7B o", c.hidden, c.qDim()},
          {"7B qkv", c.qDim() + 2 * c.kvDim(), c.hidden},
          {"7B down", c.hidden, c.ffn},
          {"7B gate/up", 2 * c.ffn, c.hidden},
          {"7B lm head", c.vocab, c.hidden}};
}

// A fresh model built with an environment override (read by the backend constructor), timed at
// cache length ctx for the given batch sizes.
static std::string variant(const ModelConfig& cfg, DType wdt, const char* env, const char* value, std::vector<int> ns,
                           int ctx = 512) {
  auto m = dummyCuda(cfg, 1, wdt, {{env, value}});
  auto bctx = m->backend().newContext(ctx + 64 + 16);
  std::mt19937 rng(42);
  prefillRaw(*bctx, ctx, cfg.vocab, cfg.layers, rng);
  std::string r = std::string(env) + "=" + value + (ctx != 512 ? " ctx " + std::to_string(ctx) : std::string()) + " (" +
                  m->backend().deviceInfo().substr(m->backend().deviceInfo().find("K splits")) + "):";
  for (int n : ns) {  // n < 0: a chain of -n
    const Timing t = timeShape(*bctx, cfg, ctx, n, rng);
    char buf[96];
    std::snprintf(buf, sizeof buf, " %s=%d %.3f ms (host %.3f)", n < 0 ? "chain" : "n", std::abs(n), t.deviceMs, t.hostMs);
    r += buf;
  }
  return r;
}

// ---------------------------------------------------------------- matrix kernel, kernel level

__global__ void fillRandomHalf(uint16_t* p, size_t n, uint32_t seed, bool bf16, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    const float v = ((float)(h >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
    p[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
  }
}
__global__ void fillRandomFloat(float* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2246822519u ^ seed;
    h ^= h >> 15, h *= 2654435761u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    p[i] = lo + (hi - lo) * ((float)(h >> 8) * (1.0f / 16777216.0f));
  }
}

struct DevMem {  // minimal owning device allocation for the kernel-level test
  void* p = nullptr;
  explicit DevMem(size_t bytes) {
    if (cudaMalloc(&p, std::max<size_t>(bytes, 16)) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
    cudaMemset(p, 0, std::max<size_t>(bytes, 16));
  }
  ~DevMem() { cudaFree(p); }
  template <class T> T* as() const { return static_cast<T*>(p); }
};

// What a kernel-level matrix launch needs besides weights and B: the parameter block (n tokens,
// token i in row i; only n / nOut / outRows matter for the residual epilogue) and a residual output
// for up to maxTok tokens.
struct LinearRig {
  int M, K, MT, KT, S, maxTok;
  std::vector<int32_t> hp;
  DevMem params, out;
  LinearRig(int M_, int K_, int maxTok_ = 64)
      : M(M_), K(K_), MT((M_ + 15) / 16), KT((K_ + 15) / 16), S(cuda::linearSplits(MT, KT)), maxTok(maxTok_),
        hp(cuda::kP_headerSize + 4 * maxTok_ + 1, 0), params(hp.size() * 4), out((size_t)maxTok_ * M_ * 4) {}
  int rowGroupTiles() const { return cuda::rowGroupsOf(MT) * cuda::kLinWarps; }  // whole row groups (layout.cuh)
  void setTokens(int n) {
    hp[cuda::kP_n] = n, hp[cuda::kP_nOut] = n, hp[cuda::kP_topk] = 0;
    const int o = cuda::kP_headerSize;
    for (int f : {cuda::kP_tokens, cuda::kP_slots, cuda::kP_positions, cuda::kP_ancOffsets, cuda::kP_ancSlots, cuda::kP_outRows})
      hp[f] = o;
    for (int i = 0; i < n; ++i) hp[o + i] = i;
    CK(cudaMemcpy(params.p, hp.data(), hp.size() * 4, cudaMemcpyHostToDevice));
  }
  cuda::LinArgs args(const void* w, const void* bPacked) const {
    cuda::LinArgs a;
    a.w = w, a.M = M, a.K = K, a.MT = MT, a.KT = KT, a.S = S, a.params = params.as<int32_t>(), a.bPacked = bPacked;
    a.epi = cuda::Epilogue::Residual, a.resid = out.as<float>();
    return a;
  }
};

// One matrix shape, launched directly (no model): random packed weights and packed B, residual
// epilogue into a zeroed output. Reference: 64 tokens in one block of 8 n-tiles. Every other launch
// (n tokens with the n-tiles per block of a bucket >= n: full blocks, and partial ones as a graph
// bucket replays them) must give each of its tokens the reference's bits. Then the in-kernel RMSNorm
// (random fp32 x) against the norm kernel's packed output, bitwise, and the values against a host
// reference where that is cheap.
static void linearShapeBitwise(const std::string& label, int M, int K, bool bf16) {
  LinearRig rig(M, K);
  const int KT = rig.KT, S = rig.S, maxTok = rig.maxTok, MTa = rig.rowGroupTiles();
  DevMem w((size_t)MTa * KT * 512), bp((size_t)(maxTok / 8) * KT * 512), x((size_t)maxTok * K * 4), nw((size_t)K * 4);
  const uint32_t seed = (uint32_t)(M * 31 + K);
  fillRandomHalf<<<1024, 256>>>(w.as<uint16_t>(), (size_t)MTa * KT * 256, seed, bf16, 0.05f);
  fillRandomHalf<<<256, 256>>>(bp.as<uint16_t>(), (size_t)(maxTok / 8) * KT * 256, seed + 1, bf16, 1.0f);
  fillRandomFloat<<<256, 256>>>(x.as<float>(), (size_t)maxTok * K, seed + 2, -2.f, 2.f);
  fillRandomFloat<<<64, 256>>>(nw.as<float>(), (size_t)K, seed + 3, 0.5f, 1.5f);
  CK(cudaGetLastError());
  // Launches n tokens with ntb n-tiles per block; the output's first n rows.
  auto run = [&](const cuda::LinArgs& a, int n, int ntb) {
    rig.setTokens(n);
    CK(cudaMemset(rig.out.p, 0, (size_t)maxTok * M * 4));
    cuda::launchLinear(a, ntb, (n + ntb * 8 - 1) / (ntb * 8), bf16, /*pdl=*/false, 0);
    CK(cudaDeviceSynchronize());
    std::vector<float> got((size_t)n * M);
    CK(cudaMemcpy(got.data(), rig.out.p, got.size() * 4, cudaMemcpyDeviceToHost));
    return got;
  };
  // (tokens, n-tiles per block): the reference first.
  const std::pair<int, int> launches[] = {{64, 8}, {1, 1}, {3, 1}, {8, 1}, {5, 2}, {12, 2}, {16, 2}, {5, 4},
                                          {20, 4}, {32, 4}, {20, 8}, {40, 8}, {64, 1}, {64, 4}};
  int bad = 0, runs = 0;
  double mag = 0;
  std::vector<float> ref;
  for (const auto& [n, ntb] : launches) {
    const std::vector<float> got = run(rig.args(w.p, bp.p), n, ntb);
    ++runs;
    if (ref.empty()) {
      ref = got;
      for (float v : got) mag = std::max(mag, (double)std::fabs(v));
    } else if (!sameBits(got.data(), ref.data(), (int)got.size())) {
      ++bad;
      LOG("  FAIL detail: %s %dx%d n=%d ntb=%d: differs from 64 tokens in one block\n", label.c_str(), M, K, n, ntb);
    }
  }
  // The in-kernel RMSNorm (one n-tile per block) against the norm kernel + packed B, bitwise: the
  // 64-token reference launch streams the norm kernel's output.
  {
    DevMem bn((size_t)(maxTok / 8) * KT * 512);
    rig.setTokens(maxTok);
    cuda::launchNormPack(x.as<float>(), K, nw.as<float>(), 1e-5f, rig.params.as<int32_t>(), false, bn.p, KT, maxTok, bf16, false,
                         false, nullptr, 0);
    const std::vector<float> nref = run(rig.args(w.p, bn.p), maxTok, 8);
    cuda::LinArgs a = rig.args(w.p, nullptr);
    a.normB = true, a.x = x.as<float>(), a.ldx = K, a.normW = nw.as<float>(), a.eps = 1e-5f;
    for (int n : {1, 3, 8}) {
      const std::vector<float> got = run(a, n, 1);
      ++runs;
      if (!sameBits(got.data(), nref.data(), (int)got.size())) {
        ++bad;
        LOG("  FAIL detail: %s %dx%d n=%d in-kernel norm: differs from the norm kernel + 64 tokens in one block\n", label.c_str(),
            M, K, n);
      }
    }
  }
  // The values too, where a host reference is cheap: y[t][m] = sum_k W[m][k] (x_hi + x_lo)[t][k]
  // through the layout functions, in double, against the 64-token launch.
  if ((size_t)M * K * maxTok <= ((size_t)1 << 26)) {
    std::vector<uint16_t> hw((size_t)MTa * KT * 256), hb((size_t)(maxTok / 8) * KT * 256);
    CK(cudaMemcpy(hw.data(), w.p, hw.size() * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), bp.p, hb.size() * 2, cudaMemcpyDeviceToHost));
    auto h2f = [&](uint16_t b) { return bf16 ? cpu::bf16ToF32(b) : cpu::f16ToF32(b); };
    double worst = 0;
    for (int t = 0; t < maxTok; ++t)
      for (int m = 0; m < M; ++m) {
        double y = 0, sumAbs = 0;
        for (int k = 0; k < 16 * KT; ++k) {  // the padding too: the random fill covers it
          const size_t bi = cuda::packedB(t, k, KT);
          const double xv = (double)h2f(hb[bi]) + h2f(hb[bi + cuda::kPackedLo]);
          const double p = h2f(hw[cuda::packedA(m, k, KT)]) * xv;
          y += p;
          sumAbs += std::fabs(p);
        }
        worst = std::max(worst, std::fabs(ref[(size_t)t * M + m] - y) / std::max(sumAbs, 1e-30));
      }
    LOG("  %-26s values against the host reference: max error %.2e of sum |w x|\n", label.c_str(), worst);
    check(worst < 1e-5, label + ": matrix kernel values differ from the host reference");
  }
  LOG("  %-26s %5d x %5d (%s, S=%2d): %d launches, %d differ from the 64-token reference (max |y| %.3g)\n", label.c_str(), M, K,
      bf16 ? "bf16" : "f16", S, runs, bad, mag);
  check(bad == 0, label + ": a token's matrix output depends on the launch shape");
  check(mag > 0 && std::isfinite(mag), label + ": matrix test produced no output");
}

// The matrix kernel alone on one shape (residual epilogue, packed B), n tokens: median us over
// weight copies that rotate through 1.5 GB, so L2 holds none of the run's weights.
static double linearShapeUs(int M, int K, int n, int splits = 0) {
  LinearRig rig(M, K);
  if (splits > 0) rig.S = splits;
  const int ntb = cuda::linearNtb(n), groups = (n + ntb * 8 - 1) / (ntb * 8);
  const size_t bytes = (size_t)rig.rowGroupTiles() * rig.KT * 512, poolBytes = (size_t)1536 << 20;
  const int copies = (int)std::max<size_t>(1, poolBytes / bytes);
  DevMem pool(poolBytes), bp((size_t)8 * rig.KT * 512);
  rig.setTokens(n);
  cuda::LinArgs a = rig.args(nullptr, bp.p);
  return 1e3 * medianMs([&](int i) {
    a.w = static_cast<const uint8_t*>(pool.p) + (size_t)(i % copies) * bytes;
    cuda::launchLinear(a, ntb, groups, /*bf16=*/false, /*pdl=*/false, 0);
  });
}

// Every linear shape of a model config (qkv, o, gate/up, down, lm head as the backend packs them).
static void linearShapesBitwise(const std::string& label, const ModelConfig& c, bool bf16) {
  const int Fp = (c.ffn + 15) / 16 * 16;
  linearShapeBitwise(label + " qkv", c.qDim() + 2 * c.kvDim(), c.hidden, bf16);
  linearShapeBitwise(label + " o", c.hidden, c.qDim(), bf16);
  linearShapeBitwise(label + " gate/up", 2 * Fp, c.hidden, bf16);
  linearShapeBitwise(label + " down", c.hidden, c.ffn, bf16);
  linearShapeBitwise(label + " lm head", c.vocab, c.hidden, bf16);
}

// The matrix kernel at kernel level: every linear shape of the 7B, pycode-small and tiny configs.
static void linearChecks(bool quick) {
  LOG("== matrix kernel: launch shapes (bitwise) ==\n");
  cuda::linearPrepare();  // shared-memory limits (a backend does this; the kernel-level test runs without one)
  if (quick) {
    linearShapeBitwise("tiny qkv", 128, 64, true);
    linearShapeBitwise("tiny down", 64, 100, false);
    return;
  }
  linearShapesBitwise("7B", llama7bConfig(), false);
  linearShapesBitwise("7B", llama7bConfig(), true);
  linearShapesBitwise("pycode-small", smallConfig(), true);
  linearShapesBitwise("pycode-small", smallConfig(), false);
  linearShapesBitwise("tiny", tinyConfig(), true);
}

// ---------------------------------------------------------------- main
int main(int argc, char** argv) {
  bool doCheck = false, doBench = false, quick = false, doNcu = false;
  std::string models = ".gpubin/models", outDir = ".";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--check") doCheck = true;
    if (a == "--bench") doBench = true;
    if (a == "--quick") quick = doCheck = true;  // tiny shape only (for compute-sanitizer)
    if (a == "--ncu") doNcu = true;
    if (a == "--read") {  // read-only bandwidth ceilings only (read_bw.cu)
      std::printf("device-to-device copy: %.0f GB/s (read + written)\n", copyBandwidth() / 1e9);
      for (const std::string& l : readBandwidths(readShapes7b())) std::printf("%s\n", l.c_str());
      return 0;
    }
    if (a == "--splits") {  // the matrix kernel per 7B shape and K split count (cluster residency, time)
      cuda::linearPrepare();
      for (const ReadShape& sh : readShapes7b()) {
        const int MT = (sh.M + 15) / 16, KT = (sh.K + 15) / 16, rg = cuda::rowGroupsOf(MT);
        for (int S : {1, 2, 3, 4, 6, 8, 9, 10, 12, 16}) {
          if (S > KT / 4 || rg * S > 792) continue;
          std::printf("splits %-8s S=%2d blocks %4d resident %3d/%3d  n=1 %.2f us n=8 %.2f n=32 %.2f n=64 %.2f\n", sh.name.c_str(), S,
                      rg * S, cuda::linearActiveClusters(1, S, false) * S, cuda::linearActiveClusters(8, S, false) * S,
                      linearShapeUs(sh.M, sh.K, 1, S), linearShapeUs(sh.M, sh.K, 8, S), linearShapeUs(sh.M, sh.K, 32, S),
                      linearShapeUs(sh.M, sh.K, 64, S));
        }
      }
      return 0;
    }
    if (a == "--linear") {  // the matrix kernel alone per 7B decode shape, next to the read-only ceilings
      cuda::linearPrepare();
      for (const ReadShape& sh : readShapes7b()) {
        const int MT = (sh.M + 15) / 16, S = cuda::linearSplits(MT, (sh.K + 15) / 16), blocks = cuda::rowGroupsOf(MT) * S;
        std::printf("linear kernel %-12s n=1 %.2f us, n=8 %.2f, n=16 %.2f, n=32 %.2f, n=64 %.2f  (%d blocks, clusters of %d:"
                    " %d / %d blocks resident at 1 / 8 n-tiles)\n",
                    sh.name.c_str(), linearShapeUs(sh.M, sh.K, 1), linearShapeUs(sh.M, sh.K, 8), linearShapeUs(sh.M, sh.K, 16),
                    linearShapeUs(sh.M, sh.K, 32), linearShapeUs(sh.M, sh.K, 64), blocks, S,
                    cuda::linearActiveClusters(1, S, false) * S, cuda::linearActiveClusters(8, S, false) * S);
      }
      for (const std::string& l : readBandwidths(readShapes7b())) std::printf("%s\n", l.c_str());
      return 0;
    }
    if (a == "--stream") {  // one block's bulk-copy ring stream rate (stream_probe.cu)
      for (const std::string& l : streamProbe()) std::printf("%s\n", l.c_str());
      return 0;
    }
    if (a == "--prefill") {  // the 7B prefill of 1024 tokens alone: time and per-kernel profile
      auto m = makeModel(llama7bConfig(), "cuda", DType::F16);
      m->fillDummy(1);
      const auto [ms, profile] = prefill1024(*m, "7B f16 prefill 1024 tokens");
      std::printf("7B f16 prefill 1024 tokens: %.1f ms device\n%s\n", ms, profile.c_str());
      return 0;
    }
    // ENV=v1,v2,...: the 7B shape (--ab-small: pycode-small's) at cache 512 per value, values in turn, twice
    if ((a == "--ab" || a == "--ab-small") && i + 1 < argc) {
      const bool small = a == "--ab-small";
      const std::string spec = argv[++i];
      const size_t eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::fprintf(stderr, "--ab takes ENV=v1,v2,...; got '%s'\n", spec.c_str());
        return 2;
      }
      const std::string env = spec.substr(0, eq);
      std::vector<std::string> values;
      for (size_t p = eq + 1; p <= spec.size();) {
        const size_t c = std::min(spec.find(',', p), spec.size());
        values.push_back(spec.substr(p, c - p));
        p = c + 1;
      }
      for (int round = 0; round < 2; ++round)
        for (const std::string& v : values)
          std::printf("%s\n", variant(small ? smallConfig() : llama7bConfig(), small ? DType::BF16 : DType::F16, env.c_str(), v.c_str(),
                                       small ? std::vector<int>{1, 8, 32, -32} : std::vector<int>{1, 32, -32})
                                   .c_str()),
              std::fflush(stdout);
      return 0;
    }
    if (a == "--models" && i + 1 < argc) models = argv[++i];
    if (a == "--out" && i + 1 < argc) outDir = argv[++i];
  }
  if (!doCheck && !doBench) doCheck = doBench = true;
  gLog = std::fopen(
      (outDir + (quick ? "/quick.log" : doBench && !doCheck ? "/bench.log" : "/check.log"))
          .c_str(),
      "w");
  if (!gLog) gLog = stdout;
  std::string why;
  const bool usable = cudaUsable(why);
  LOG("cudaUsable: %s (%s)\n", usable ? "yes" : "no", why.c_str());
  if (!usable) return 1;

  try {
    if (doNcu) {
      const ModelConfig cfg = llama7bConfig();
      auto m = makeModel(cfg, "cuda", DType::F16);
      m->fillDummy(1);
      auto bctx = m->backend().newContext(512 + 64 + 16);
      auto* cctx = dynamic_cast<cuda::CudaContext*>(bctx.get());
      std::mt19937 rng(42);
      prefillRaw(*bctx, 512, cfg.vocab, cfg.layers, rng);
      for (int n : {1, 32}) {
        RawBatch rb;
        rb.build(512, n == 1 ? chainParents(1) : treeParents(n, rng), cfg.vocab, cfg.layers, rng, false);
        const Timing t = timeForward(*cctx, rb.b, 5);  // captures the graph, warms up
        cudaProfilerStart();
        ForwardResult r;
        cctx->forward(rb.b, r);
        cudaProfilerStop();
        LOG("7B f16 ctx 512 n %d: %.3f ms device (unprofiled median)\n", n, t.deviceMs);
      }
      return 0;
    }
    if (doCheck) {
      LOG("== CUDA vs CPU reference ==\n");
      for (int which = 0; which < (quick ? 1 : 2); ++which) {
        const ModelConfig cfg = which ? smallConfig() : tinyConfig();
        const char* name = which ? "dummy pycode-small shape" : "dummy tiny shape";
        auto gpu = makeModel(cfg, "cuda"), cpu = makeModel(cfg, "cpu");
        loadDummy(*gpu, 11, DummyUpload::Fill);
        loadDummy(*cpu, 11, DummyUpload::BF16);
        LOG(" %s: %s\n", name, gpu->backend().deviceInfo().c_str());
        std::mt19937 rng(3 + which);
        std::vector<int32_t> seq(100);
        for (int& t : seq) t = (int32_t)(rng() % cfg.vocab);
        compareWithCpu(std::string(name) + " (60 prefill + 40 decode)", *gpu, *cpu, seq, 60);
        std::vector<uint8_t> plan(2 * cfg.layers, 0);
        for (int l = 0; l < cfg.layers; ++l) plan[2 * l] = l % 2, plan[2 * l + 1] = l % 3 == 0;
        compareWithCpu(std::string(name) + " skip plan", *gpu, *cpu, seq, 30, plan);

        // Upload paths: fp32 and bf16 sources through setTensor must give the fillDummy bits.
        auto g32 = makeModel(cfg, "cuda"), g16 = makeModel(cfg, "cuda");
        loadDummy(*g32, 11, DummyUpload::F32);
        loadDummy(*g16, 11, DummyUpload::BF16);
        std::vector<int32_t> first(seq.begin(), seq.begin() + 40);
        Context c0(gpu, 64), c1(g32, 64), c2(g16, 64);
        Out o0 = chain(c0, first), o1 = chain(c1, first), o2 = chain(c2, first);
        const bool same = sameBits(o0.logits.data(), o1.logits.data(), (int)o0.logits.size()) &&
                          sameBits(o0.logits.data(), o2.logits.data(), (int)o0.logits.size());
        LOG("  %-34s fillDummy / setTensor(F32) / setTensor(BF16): %s\n", name, same ? "bitwise identical" : "DIFFER");
        check(same, std::string(name) + ": upload paths differ");
      }
      // The norm carried through the residual epilogues (NormOut / NormIn: by default from hidden
      // 1024 on), forced on the small shapes: other numerics, the same tolerance.
      if (!quick) {
        const ModelConfig cfg = smallConfig();
        auto gpu = cudaModelWith(cfg, DType::BF16, {{"CASSPEC_CUDA_NORM_CARRY", "1"}});
        auto cpu = makeModel(cfg, "cpu");
        loadDummy(*gpu, 11, DummyUpload::Fill);
        loadDummy(*cpu, 11, DummyUpload::BF16);
        LOG(" dummy pycode-small shape: %s\n", gpu->backend().deviceInfo().c_str());
        std::mt19937 rng(4);
        std::vector<int32_t> seq(100);
        for (int& t : seq) t = (int32_t)(rng() % cfg.vocab);
        compareWithCpu("dummy pycode-small shape [norm carried]", *gpu, *cpu, seq, 60);
        std::vector<uint8_t> plan(2 * cfg.layers, 0);
        for (int l = 0; l < cfg.layers; ++l) plan[2 * l] = l % 2, plan[2 * l + 1] = l % 3 == 0;
        compareWithCpu("dummy pycode-small shape [norm carried] skip plan", *gpu, *cpu, seq, 30, plan);
        const ModelConfig lc = longRowConfig();
        auto lg = makeModel(lc, "cuda"), lcpu = makeModel(lc, "cpu");
        loadDummy(*lg, 12, DummyUpload::Fill);
        loadDummy(*lcpu, 12, DummyUpload::BF16);
        LOG(" dummy hidden 2048: %s\n", lg->backend().deviceInfo().c_str());
        for (int& t : seq) t = (int32_t)(rng() % lc.vocab);
        compareWithCpu("dummy hidden 2048 (60 prefill + 40 decode)", *lg, *lcpu, seq, 60);
      }
      // Real models (pycode-small also with the norm carried).
      for (const char* rmName : {"pycode-small", "pycode-tiny", "pycode-small [norm carried]"}) {
        if (quick) break;
        RealModel rm;
        const bool carried = std::strstr(rmName, "[norm carried]") != nullptr;
        const std::string dir = models + "/" + (carried ? std::string("pycode-small") : std::string(rmName));
        if (!loadRealManifest(dir, rm)) {
          LOG(" %s: not found under %s (skipped)\n", rmName, models.c_str());
          continue;
        }
        auto gpu = carried ? cudaModelWith(rm.cfg, DType::BF16, {{"CASSPEC_CUDA_NORM_CARRY", "1"}}) : makeModel(rm.cfg, "cuda");
        auto cpu = makeModel(rm.cfg, "cpu");
        loadReal(*gpu, rm);
        loadReal(*cpu, rm);
        bool f32 = false;
        for (const auto& t : rm.tensors) f32 |= t.dtype == "F32";
        LOG(" %s (real weights): %s\n", rmName, gpu->backend().deviceInfo().c_str());
        for (size_t ci = 0; ci < rm.cases.size(); ++ci) {
          const auto& cs = rm.cases[ci];
          std::vector<int32_t> seq = cs.prompt;
          seq.insert(seq.end(), cs.greedy.begin(), cs.greedy.end());
          compareWithCpu(std::string(rmName) + " case " + std::to_string(ci), *gpu, *cpu, seq, (int)cs.prompt.size(), {}, &cs.top1,
                         !f32);
        }
      }

      LOG("== batch invariance (bitwise) ==\n");
      {
        auto tiny = makeModel(tinyConfig(), "cuda");
        tiny->fillDummy(5);
        invariance("tiny bf16", *tiny, 37, 1);
        if (quick) {
          linearChecks(true);
          LOG("== checks: %d, failures: %d ==\nRESULT: %s\n", gChecks, gFailures, gFailures ? "FAIL" : "PASS");
          return gFailures ? 1 : 0;
        }
        auto tiny16 = makeModel(tinyConfig(), "cuda", DType::F16);
        tiny16->fillDummy(5);
        invariance("tiny f16", *tiny16, 150, 2);
        auto small = makeModel(smallConfig(), "cuda");
        small->fillDummy(9);
        invariance("pycode-small shape", *small, 0, 3);
        invariance("pycode-small shape", *small, 37, 4);
        invariance("pycode-small shape", *small, 200, 5);
        invariance("pycode-small shape [context of 2048]", *small, 500, 12, 2048);
        longForward("pycode-small shape", *small, 300);
        auto smallH = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_KV", "half"}});  // the large-model KV path
        LOG("  (KV forced to bf16: %s)\n", smallH->backend().deviceInfo().c_str());
        invariance("pycode-small shape, bf16 KV", *smallH, 130, 6);
        longForward("pycode-small shape, bf16 KV", *smallH, 600);
        smallH.reset();
        // Tree tails from global memory: the same bits.
        auto smallG = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_ATTN_TAIL", "0"}});
        invariance("pycode-small shape [tail global]", *smallG, 37, 4);
        smallG.reset();
        auto smallGH = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_ATTN_TAIL", "0"}, {"CASSPEC_CUDA_KV", "half"}});
        invariance("pycode-small bf16 KV [tail global]", *smallGH, 130, 6);
        smallGH.reset();
        // The 7B shape's attention: head_dim 128, MHA, f16 KV.
        auto h128 = dummyCuda(head128Config(), 13, DType::F16, {{"CASSPEC_CUDA_KV", "half"}});
        invariance("head_dim 128 f16, f16 KV", *h128, 37, 7);
        invariance("head_dim 128 f16, f16 KV", *h128, 500, 8);
        invariance("head_dim 128 f16, f16 KV [context of 2048]", *h128, 500, 13, 2048);
        h128.reset();
        // The wide attention path (one warp per 16 query rows) from 17 rows on, as prefill runs it:
        // the same bits as the decode path's row blocks.
        auto smallW = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_ATTN_SPLIT", "16"}});
        invariance("pycode-small shape [wide from 17 rows]", *smallW, 37, 4);
        invariance("pycode-small shape [wide from 17 rows]", *smallW, 64, 10);  // a tree tail opening a chunk
        smallW.reset();
        auto h128W = dummyCuda(head128Config(), 13, DType::F16, {{"CASSPEC_CUDA_ATTN_SPLIT", "16"}, {"CASSPEC_CUDA_KV", "half"}});
        invariance("head_dim 128 f16, f16 KV [wide from 17 rows]", *h128W, 37, 7);
        invariance("head_dim 128 f16, f16 KV [wide from 17 rows]", *h128W, 64, 11);
        h128W.reset();
        // Each model's other attention kernel (CASSPEC_CUDA_ATTN): its own bits, the same contract.
        auto smallM = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_ATTN", "mma"}});
        invariance("pycode-small shape [mma attention]", *smallM, 37, 4);
        invariance("pycode-small shape [mma attention]", *smallM, 64, 10);
        smallM.reset();
        auto h128F = dummyCuda(head128Config(), 13, DType::F16, {{"CASSPEC_CUDA_ATTN", "fma"}, {"CASSPEC_CUDA_KV", "half"}});
        invariance("head_dim 128 f16, f16 KV [fmaf attention]", *h128F, 37, 7);
        invariance("head_dim 128 f16, f16 KV [fmaf attention]", *h128F, 64, 11);
        h128F.reset();
        // The norm carried through the residual epilogues: by default from hidden 1024 on, forced
        // on the small shapes (odd sizes included).
        auto longRow = dummyCuda(longRowConfig(), 15);
        invariance("hidden 2048 [norm carried]", *longRow, 37, 9);
        longForward("hidden 2048 [norm carried]", *longRow, 300);  // prefill pieces of up to 256 tokens
        longRow.reset();
        auto tinyC = dummyCuda(tinyConfig(), 5, DType::BF16, {{"CASSPEC_CUDA_NORM_CARRY", "1"}});
        invariance("tiny bf16 [norm carried]", *tinyC, 37, 1);
        tinyC.reset();
        auto smallC = dummyCuda(smallConfig(), 9, DType::BF16, {{"CASSPEC_CUDA_NORM_CARRY", "1"}});
        invariance("pycode-small shape [norm carried]", *smallC, 200, 5);
      }
      linearChecks(false);
      LOG("== checks: %d, failures: %d ==\n", gChecks, gFailures);
    }

    if (doBench) {
      LOG("== benchmark ==\n");
      const double bw = copyBandwidth();
      double gemmErr = 0;
      const double gemm = gemmPeak(&gemmErr);
      std::string peakDetail;
      const double peak = mmaPeak(&peakDetail);
      const double wgBf16 = wgmmaPeak(false), wgF16 = wgmmaPeak(true);
      LOG(" device-to-device copy: %.0f GB/s (read + written); dense wgmma peak: bf16 %.0f, f16 %.0f TFLOP/s; mma.sync from "
          "registers: %.0f TFLOP/s (%s); bf16 mma.sync GEMM 8192^3: %.0f TFLOP/s (rel err %.1e)\n",
          bw / 1e9, wgBf16 / 1e12, wgF16 / 1e12, peak / 1e12, peakDetail.c_str(), gemm / 1e12, gemmErr);
      for (const std::string& l : readBandwidths(readShapes7b())) LOG(" %s\n", l.c_str());
      struct Row {
        std::string model;
        int ctx, n;
        double dev, host, floorMs;
      };
      std::vector<Row> rows;
      std::vector<std::string> extra;
      for (int which = 0; which < 2; ++which) {
        const bool big = which == 0;
        ModelConfig cfg = big ? llama7bConfig() : smallConfig(4096);
        const char* mname = big ? "llama2-7B fp16 (dummy)" : "pycode-small bf16 (dummy)";
        auto m = makeModel(cfg, "cuda", big ? DType::F16 : DType::BF16);
        m->fillDummy(1);
        const double floorMs = (double)m->backend().weightBytes() / bw * 1e3;
        LOG(" %s: %s; weight bytes %.3f GB, floor %.3f ms\n", mname, m->backend().deviceInfo().c_str(),
            m->backend().weightBytes() / 1e9, floorMs);
        for (int ctxLen : {512, 2048}) {
          auto bctx = m->backend().newContext(ctxLen + 64 + 16);
          auto* cctx = dynamic_cast<cuda::CudaContext*>(bctx.get());
          std::mt19937 rng(42);
          prefillRaw(*bctx, ctxLen, cfg.vocab, cfg.layers, rng);
          for (int n : {1, 2, 4, 8, 16, 32, 64}) {
            const Timing t = timeShape(*bctx, cfg, ctxLen, n, rng);
            rows.push_back({mname, ctxLen, n, t.deviceMs, t.hostMs, floorMs});
            LOG("  ctx %4d n %2d: device %.3f ms, host %.3f ms\n", ctxLen, n, t.deviceMs, t.hostMs);
          }
          if (ctxLen == 512 && !big) {  // where a prefill chunk's time goes (last row only, like prefill)
            auto pctx = m->backend().newContext(ctxLen + 256 + 16);
            auto* pc = dynamic_cast<cuda::CudaContext*>(pctx.get());
            prefillRaw(*pctx, ctxLen, cfg.vocab, cfg.layers, rng);
            for (int n : {64, 256}) {
              RawBatch rb;
              rb.build(ctxLen, chainParents(n), cfg.vocab, cfg.layers, rng, true);
              extra.push_back(profileRun(*pc, rb.b, std::string(mname) + " ctx 512 prefill chain " + std::to_string(n)));
              LOG("  %s\n", extra.back().c_str());
            }
          }
          if (ctxLen == 2048) {
            for (int n : {1, 32}) {
              RawBatch rb;
              rb.build(ctxLen, n == 1 ? chainParents(1) : treeParents(n, rng), cfg.vocab, cfg.layers, rng, false);
              extra.push_back(profileRun(*cctx, rb.b, std::string(mname) + " ctx 2048 n " + std::to_string(n)));
              LOG("  %s\n", extra.back().c_str());
            }
          }
          if (ctxLen == 512) {  // a chain of 32 (draft-like) next to the tree of 32
            const Timing t = timeShape(*bctx, cfg, ctxLen, -32, rng);
            char buf[160];
            std::snprintf(buf, sizeof buf, "%s ctx 512: chain of 32 %.3f ms (tree of 32 above)", mname, t.deviceMs);
            extra.push_back(buf);
            // The same cache length in a context of 4096: graphs launch attention for its longest key list.
            auto wctx = m->backend().newContext(4096);
            prefillRaw(*wctx, ctxLen, cfg.vocab, cfg.layers, rng);
            std::string line = std::string(mname) + " ctx 512 in a context of 4096:";
            for (int n : {1, 32}) {
              std::snprintf(buf, sizeof buf, " n %d %.3f ms;", n, timeShape(*wctx, cfg, ctxLen, n, rng).deviceMs);
              line += buf;
            }
            extra.push_back(line);
          }
        }
        if (big) {
          // Prefill of 1024 tokens, and where its time goes.
          const auto [prefillMs, profile] = prefill1024(*m, "7B f16 prefill 1024 tokens");
          double matParams = 0;
          const double H = cfg.hidden, Q = cfg.qDim(), KV = cfg.kvDim(), F = cfg.ffn;
          matParams = cfg.layers * (H * (Q + 2 * KV) + Q * H + 3 * H * F);
          const double flops = 2 * matParams * 1024 + 2.0 * cfg.vocab * H;  // LM head on the last row only
          // Attention (QK^T and PV, causal): 2 * 2 * heads * headDim * sum_i (i+1).
          const double attn = 4.0 * cfg.heads * cfg.headDim * (1024.0 * 1025 / 2) * cfg.layers;
          const double tf = flops / (prefillMs * 1e-3);
          char buf[384];
          std::snprintf(buf, sizeof buf,
                        "7B prefill 1024 tokens: %.1f ms device -> %.0f TFLOP/s model matmul FLOPs (%.0f incl. attention) = "
                        "%.0f%% of the dense bf16 wgmma peak measured in this run (%.0f%% of f16's); the tensor cores do 2x "
                        "that (hi and lo activation columns): %.0f%% of the f16 peak",
                        prefillMs, tf / 1e12, (flops + attn) / (prefillMs * 1e-3) / 1e12, 100.0 * tf / wgBf16,
                        100.0 * tf / wgF16, 100.0 * 2 * tf / wgF16);
          extra.push_back(buf);
          LOG("  %s\n", buf);
          extra.push_back(profile);
          LOG("  %s\n", profile.c_str());
        }
        // Ablations at ctx 512 (each a fresh model; the first model is freed first).
        m.reset();
        const DType wdt = big ? DType::F16 : DType::BF16;
        const std::string tag = big ? "7B ablation " : "pycode-small ablation ";
        const size_t firstAblation = extra.size();
        extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_PDL", "0", {1, 32}));
        for (const char* v : {"0", "1"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_PDL_EARLY", v, {1, 8, 32}));
        if (!big) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_GRAPHS", "0", {1, 32}));
        if (!big) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_KV", "half", {1, 32}));
        extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_TAIL", "0", {8, 32, 64}));
        extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_TAIL", "1", {8, 32, 64}));
        for (const char* v : {"0", "1"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_NORM_CARRY", v, {1, 8, 32}));
        for (const char* v : {"16", "128"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_SPLIT", v, {16, 32, 64}));
        for (const char* v : {"2", "4"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_WAVES", v, {16, 32, 64}));
        for (const char* v : {"0", "1", "0", "1"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_PAIR", v, {32, -32}));
        for (const char* v : {"0", "1"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN_PAIR", v, {32, -32}, 2048));
        for (const char* v : {"mma", "fma", "mma", "fma"})
          extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN", v, {1, 8, 16, 32, -32, 64}));
        for (const char* v : {"mma", "fma"}) extra.push_back(tag + variant(cfg, wdt, "CASSPEC_CUDA_ATTN", v, {1, 32, -32}, 2048));
        for (size_t i = firstAblation; i < extra.size(); ++i) LOG("  %s\n", extra[i].c_str());
      }
      LOG("\n| model | ctx | n | device ms | host ms | floor ms | floor/device | vs n=1 |\n|---|---|---|---|---|---|---|---|\n");
      for (const Row& r : rows) {
        double one = 0;
        for (const Row& q : rows)
          if (q.model == r.model && q.ctx == r.ctx && q.n == 1) one = q.dev;
        LOG("| %s | %d | %d | %.3f | %.3f | %.3f | %.0f%% | %.2fx |\n", r.model.c_str(), r.ctx, r.n, r.dev, r.host, r.floorMs,
            100.0 * r.floorMs / r.dev, r.dev / one);
      }
      for (const std::string& e : extra) LOG("%s\n", e.c_str());
      LOG("copy bandwidth %.0f GB/s; dense wgmma peak bf16 %.0f / f16 %.0f TFLOP/s; mma.sync peak %.0f TFLOP/s (from registers, "
          "best of %s; an 8192^3 bf16 mma.sync GEMM: %.0f)\n",
          bw / 1e9, wgBf16 / 1e12, wgF16 / 1e12, peak / 1e12, peakDetail.c_str(), gemm / 1e12);
    }
  } catch (const Error& e) {
    LOG("ERROR %s: %s\n", e.code.c_str(), e.what());
    return 3;
  } catch (const std::exception& e) {
    LOG("ERROR: %s\n", e.what());
    return 3;
  }
  if (doCheck) LOG("RESULT: %s (%d checks, %d failures)\n", gFailures ? "FAIL" : "PASS", gChecks, gFailures);
  return gFailures ? 1 : 0;
}
