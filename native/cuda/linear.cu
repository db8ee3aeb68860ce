// The matrix kernel (see linear.cuh for the launch shape and the invariance argument).
#include "linear.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "check.cuh"
#include "epilogue.cuh"
#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "rmsnorm.cuh"
#include "wgmma.cuh"

#include <string>

namespace casspec::cuda {

namespace {

__device__ __forceinline__ unsigned ldAcquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void awaitCount(const unsigned* p, unsigned target) {
  while (ldAcquire(p) < target) __nanosleep(32);
}
// The handover's release: this block's stores are done (after a block barrier), counted in its row
// group and in all.
__device__ __forceinline__ void countDone(unsigned* done, int rb, int rowGroups) {
  __threadfence();
  atomicAdd(done + rb, 1u);
  atomicAdd(done + rowGroups, 1u);
}

__device__ __forceinline__ float4 add4(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }

// Epilogue for one pair of outputs: rows m0 and m0 + 8 of the same tile, token column t. The RoPE,
// KV placement and SwiGLU math live in epilogue.cuh, shared with the int8 kernel.
template <class H>
__device__ __forceinline__ void epiPair(const LinArgs& a, const Params& P, int m0, int t, float v0, float v1,
                                        float vUp0, float vUp1) {
  switch (a.epi) {
    case Epilogue::Qkv:
      qkvPair<H>(a.qkv, P, m0, t, v0, v1);
      break;
    case Epilogue::Residual:  // batched in the kernel's epilogue
      break;
    case Epilogue::SwiGlu: {
      // m0 is a row of a gate tile; (vUp0, vUp1) the same rows of the paired up tile.
      const int f = ffnRowOfGate(m0);
      const float h0 = siluMul(v0, vUp0);
      const float h1 = siluMul(v1, vUp1);
      storePacked<H>(static_cast<uint16_t*>(a.hPacked), t, f, a.hKT, h0);
      storePacked<H>(static_cast<uint16_t*>(a.hPacked), t, f + 8, a.hKT, h1);
      break;
    }
    case Epilogue::Logits: {
      float* row = a.result + resultLogitsOffset(P.nOut(), P.topk()) + (size_t)t * a.vocab;
      if (m0 < a.vocab) row[m0] = v0;
      if (m0 + 8 < a.vocab) row[m0 + 8] = v1;
      break;
    }
  }
}

// normB: pair p (of kLinKps x 64 per stage) of a warpgroup thread `tid` is p = tid + 128 m; tokens
// fastest (li = p % 8), then k pairs 2 q, 2 q + 1 (q = p / 8 % 8) of the stage's k-tile j = p / 64.
constexpr int kNormPairs = kLinKps * 64 / 128;

// Loads x and the norm weight for this thread's pairs of the stage starting at k0 (cnt k-tiles).
__device__ __forceinline__ void normLoad(const LinArgs& a, const Params& P, int tok0, int count, int k0, int cnt, int tid,
                                         float2 (&xv)[kNormPairs], float2 (&wv)[kNormPairs]) {
#pragma unroll
  for (int m = 0; m < kNormPairs; ++m) {
    const int p = tid + 128 * m, li = p & 7, j = p >> 6, k = k0 + j * 16 + ((p >> 3) & 7) * 2, t = tok0 + li;
    xv[m] = wv[m] = make_float2(0.f, 0.f);
    if (j < cnt && t < count && k < a.K) {
      const float* xr = a.x + (size_t)(a.countIsOut ? P.outRows()[t] : t) * a.ldx;
      if (k + 1 < a.K) {
        xv[m] = *reinterpret_cast<const float2*>(xr + k);
        wv[m] = *reinterpret_cast<const float2*>(a.normW + k);
      } else {
        xv[m].x = xr[k];
        wv[m].x = a.normW[k];
      }
    }
  }
}

// Writes the pairs as hi/lo B tiles (layout.cuh: hi at [k half][token][k], lo 256 bytes on) with the
// norm kernel's arithmetic (normValue, splitHiLo): the same bits as the packed path.
template <class H>
__device__ __forceinline__ void normStore(const LinArgs& a, int tok0, int count, int k0, int cnt, int tid, const float* rstd,
                                          const float2 (&xv)[kNormPairs], const float2 (&wv)[kNormPairs], uint8_t* tiles) {
#pragma unroll
  for (int m = 0; m < kNormPairs; ++m) {
    const int p = tid + 128 * m, li = p & 7, j = p >> 6, q = (p >> 3) & 7, k = k0 + j * 16 + 2 * q;
    if (j >= cnt) continue;
    uint16_t h0 = 0, l0 = 0, h1 = 0, l1 = 0;
    if (tok0 + li < count) {
      splitHiLo<H>(k < a.K ? normValue(xv[m].x, wv[m].x, rstd[li]) : 0.f, h0, l0);
      splitHiLo<H>(k + 1 < a.K ? normValue(xv[m].y, wv[m].y, rstd[li]) : 0.f, h1, l1);
    }
    uint8_t* dst = tiles + j * kLinBTile + (q >> 2) * 128 + li * 16 + (q & 3) * 4;
    *reinterpret_cast<uint32_t*>(dst) = pack2(h0, h1);
    *reinterpret_cast<uint32_t*>(dst + 256) = pack2(l0, l1);
  }
}

// Ring geometry: a stage holds kKps k-tiles of the block's weights (one contiguous copy of kKps x
// 4 KB) and of its tokens' B tiles (one copy of all its n-tiles per k-tile). Up to 32 tokens 3
// blocks share an SM (<= 72 registers, 3 stages each); 64 tokens, or DEEP, 2 per SM, DEEP with as
// many stages as half an SM's shared memory holds: for grids of at most 2 blocks per SM, whose
// first stages (requested before the PDL wait) then prefetch as many weight bytes as 3 shallow
// blocks per SM would. The stage count does not change the bits.
template <int NTB, bool DEEP> struct LinCfg {
  static constexpr int kStageA = kLinKps * kLinATile;
  static constexpr int kStage = kStageA + kLinKps * NTB * kLinBTile;
  static constexpr int kPartBytes = kLinWarps * NTB * 512;  // split partials, after the ring is drained
  // normB (NTB == 1): per consumer warpgroup two buffers of a stage's B tiles.
  static constexpr int kNormBytes = NTB == 1 ? 2 * 2 * kLinKps * kLinBTile : 0;
  static constexpr int kHalfSm = 112 * 1024;  // dynamic shared memory of one of 2 blocks per SM (228 KB)
  static constexpr int kStages = DEEP ? (kHalfSm - kNormBytes - 128) / kStage : 3;
  static constexpr int kRingBytes = kStages * kStage;
  static constexpr int kSmemBytes =
      (kRingBytes + kNormBytes > kPartBytes ? kRingBytes + kNormBytes : kPartBytes) + 2 * kStages * 8;
  static constexpr int kMinBlocks = NTB <= 4 && !DEEP ? 3 : 2;
  static_assert(kStages >= 3 && kSmemBytes * kMinBlocks <= 224 * 1024, "shared memory per SM");
};

__device__ __forceinline__ void consumerSync() { asm volatile("bar.sync 1, %0;\n" ::"n"(kLinConsumers) : "memory"); }
// One consumer warpgroup: its normB tiles are written.
__device__ __forceinline__ void warpgroupSync(int wg) {
  // Constant barrier ids: a run-time id makes ptxas reserve all 16.
  if (wg == 0)
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
  else
    asm volatile("bar.sync 3, 128;\n" ::: "memory");
}

// Unit = the partials of warps 2 wp and 2 wp + 1 for one n-tile and lane: part float4s f0 and f1
// (mma C fragment: rows g, g + 8 x tokens 2 (l % 4), + 1). Folded over the S blocks of the cluster
// in split order, 2 splits' loads in flight at a time (4 spill at the 72-register cap).
__device__ __forceinline__ void foldSplits(const float4* part, int f0, int f1, int S, float4& v0, float4& v1) {
  if (S == 1) {
    v0 = part[f0];
    v1 = part[f1];
    return;
  }
  const uint32_t a0 = smemAddr(part + f0), a1 = smemAddr(part + f1);
  for (int j0 = 0; j0 < S; j0 += 2) {
    float4 p0[2], p1[2];
#pragma unroll
    for (int j = 0; j < 2; ++j)
      if (j0 + j < S) p0[j] = ldClusterF4(a0, j0 + j), p1[j] = ldClusterF4(a1, j0 + j);
#pragma unroll
    for (int j = 0; j < 2; ++j)
      if (j0 + j < S) {
        v0 = j0 + j == 0 ? p0[0] : add4(v0, p0[j]);
        v1 = j0 + j == 0 ? p1[0] : add4(v1, p1[j]);
      }
  }
}

// The power of two at or below r (NormOut's s): exact to multiply and to divide by.
__device__ __forceinline__ float pow2Below(float r) {
  const float s = __int_as_float(__float_as_int(r) & 0x7f800000);
  return s == 0.f ? 1.f : s;
}

// NormOut for one unit's new x (nx, the residual epilogue's order; bit i of ok: element i exists)
// of tokens t, t + 1, with the norm weights of its 4 rows (w4: tile m + h, row g + 8 r at 2 h + r)
// and the tokens' scales s. Every lane of the warp calls it (units are dealt out in whole warps:
// the 8 lanes of one token pair, g = 0..7, hold the pair's 32 rows): each token's squares summed in
// unit order, then a butterfly over g.
template <class H>
__device__ __forceinline__ void normOutUnit(const NormOut& no, int m, int t, int g, int count, unsigned ok, const float (&nx)[8],
                                            const float (&w4)[4], const float (&sc)[2]) {
#pragma unroll
  for (int jj = 0; jj < 2; ++jj) {
    float q = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (((i >> 1) & 1) == jj) q = __fadd_rn(q, (ok >> i) & 1 ? __fmul_rn(nx[i], nx[i]) : 0.f);
#pragma unroll
    for (int x = 4; x <= 16; x <<= 1) q = __fadd_rn(q, __shfl_xor_sync(0xffffffffu, q, x));
    if (t + jj >= count) continue;
    if (g == 0) no.part[(size_t)(t + jj) * no.ldPart + m / 2] = q;
    if (g == 0 && m == 0) no.scale[t + jj] = sc[jj];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int h = i >> 2, r = i & 1, m0 = (m + h) * 16 + g + 8 * r;
      if (((i >> 1) & 1) == jj && (ok >> i) & 1)
        storePacked<H>(static_cast<uint16_t*>(no.packed), t + jj, m0, no.KT, __fmul_rn(__fmul_rn(w4[2 * h + r], nx[i]), sc[jj]));
    }
  }
}

// Epilogue of one unit: row tiles m and m + 1 (v0, v1), rows g and g + 8, tokens t and t + 1.
// nc: NormIn's per-token factors r / s of the block's tokens (from token tok0), or null.
template <class H>
__device__ __forceinline__ void epiUnit(const LinArgs& a, const Params& P, int m, int t, int g, int count, float4 v0, float4 v1,
                                        const float* nc, int tok0) {
  if (a.epi == Epilogue::Residual) {
    // x += y. The unit's old values are all loaded before any is stored, so their L2 round trips
    // overlap (a load after a store through the same pointer would wait for it). Element i: row
    // tile m + h, token t + jj, row g + 8 r.
    auto at = [&](int i) { return (t + ((i >> 1) & 1)) * a.M + (m + (i >> 2)) * 16 + g + 8 * (i & 1); };
    unsigned ok = 0;
    float x[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int h = i >> 2, jj = (i >> 1) & 1, m0 = (m + h) * 16 + g + 8 * (i & 1);
      if (m + h < a.MT && t + jj < count && m0 < a.M) ok |= 1u << i;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = (ok >> i) & 1 ? a.resid[at(i)] : 0.f;
    // NormOut's loads go out with the old values: one round trip for all.
    const NormOut& no = a.normOut;
    float w4[4] = {0.f, 0.f, 0.f, 0.f}, sc[2] = {1.f, 1.f};
    if (no.w) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int m0 = (m + (j >> 1)) * 16 + g + 8 * (j & 1);
        if (m0 < a.M) w4[j] = no.w[m0];
      }
#pragma unroll
      for (int jj = 0; jj < 2; ++jj)
        if (t + jj < count) sc[jj] = no.rPrev[t + jj];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float4 v = i >> 2 ? v1 : v0;
      const int jj = (i >> 1) & 1;
      x[i] = x[i] + (i & 1 ? (jj ? v.w : v.z) : (jj ? v.y : v.x));
      if ((ok >> i) & 1) a.resid[at(i)] = x[i];
    }
    if (no.w) {
      sc[0] = pow2Below(sc[0]), sc[1] = pow2Below(sc[1]);
      normOutUnit<H>(no, m, t, g, count, ok, x, w4, sc);
    }
    return;
  }
  if (nc) {  // NormIn: r / s per token (columns x, z are token t; y, w token t + 1)
    const float c0 = nc[t - tok0], c1 = nc[t + 1 - tok0];
    v0 = make_float4(__fmul_rn(v0.x, c0), __fmul_rn(v0.y, c1), __fmul_rn(v0.z, c0), __fmul_rn(v0.w, c1));
    v1 = make_float4(__fmul_rn(v1.x, c0), __fmul_rn(v1.y, c1), __fmul_rn(v1.z, c0), __fmul_rn(v1.w, c1));
  }
  const bool swi = a.epi == Epilogue::SwiGlu;  // row tile m is a gate tile, m + 1 its up tile
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (m + h >= a.MT || (swi && h)) continue;
    const float4 v = h ? v1 : v0;
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
      if (t + jj < count)
        epiPair<H>(a, P, (m + h) * 16 + g, t + jj, jj ? v.y : v.x, jj ? v.w : v.z, jj ? v1.y : v1.x, jj ? v1.w : v1.z);
  }
}

// Grid (token group tg, split s, row group rb of 8 row tiles), token group fastest (blocks sharing
// weights run together); the S splits of a row group are one cluster of (1, S, 1) blocks. Warps 0-7
// are two consumer warpgroups (row tiles 4 wg .. 4 wg + 3 of the row group), warp 8 the producer
// that fills the ring; all nine share the fold and the epilogue.
template <class H, int NTB, bool DEEP>
__global__ void __launch_bounds__(kLinThreads, LinCfg<NTB, DEEP>::kMinBlocks) linearKernel(const LinArgs a) {
  using C = LinCfg<NTB, DEEP>;
  constexpr int kLinStages = C::kStages;
  extern __shared__ __align__(1024) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + (C::kSmemBytes - 2 * kLinStages * 8));
  uint64_t* empty = full + kLinStages;
  float4* part = reinterpret_cast<float4*>(smem);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tg = blockIdx.x, s = blockIdx.y, rb = blockIdx.z;  // s is also the block's rank in its cluster
  const int kt0 = (int)((int64_t)s * a.KT / a.S), kt1 = (int)((int64_t)(s + 1) * a.KT / a.S);
  const int nStages = (kt1 - kt0 + kLinKps - 1) / kLinKps;

  // The parameter block was copied before the graph started: safe to read before gridDepWait.
  const Params P{a.params};
  const int count = a.countIsOut ? P.nOut() : P.n();
  const int tok0 = tg * NTB * 8;
  if (tok0 >= count) {
    if (a.doneOut && threadIdx.x == 0) countDone(a.doneOut, rb, gridDim.z);
    return;
  }
  const int ntiles = min(NTB, (count - tok0 + 7) / 8);

  // normB (NTB == 1 only): the ring carries weights only; each consumer warpgroup writes the stage's
  // normalised B tiles into its own double buffer (nb) just before its wgmmas.
  const bool normB = NTB == 1 && a.normB;
  uint8_t* nb = smem + C::kRingBytes;
  __shared__ float rstd[8];
  __shared__ float normC[NTB * 8];  // NormIn: r / s per token of the block
  if (threadIdx.x == 0) {
    for (int i = 0; i < kLinStages; ++i) {
      mbarInit(&full[i], 1);
      mbarInit(&empty[i], kLinConsumers);
    }
    mbarInitFence();
  }
  __syncthreads();

  if (warp == kLinWarps) {
    // Producer. The weights of the first stages do not depend on the previous kernel: their copies
    // start before the PDL wait; the B tiles (its outputs) after it.
    const uint8_t* wBase = static_cast<const uint8_t*>(a.w) + ((size_t)rb * a.KT + kt0) * kLinATile;
    // The block's ntiles n-tiles of one k-tile are one contiguous run (layout.cuh): kBGroup tiles per k-tile.
    const int nt0 = tg * NTB;
    const uint8_t* bBase = static_cast<const uint8_t*>(a.bPacked) + ((size_t)nt0 / kBGroup * a.KT * kBGroup + nt0 % kBGroup) * kLinBTile;
    auto stageOf = [&](int i) { return smem + (i % kLinStages) * C::kStage; };
    auto copyA = [&](int i) {
      const int cnt = min(kLinKps, kt1 - kt0 - i * kLinKps);
      mbarArriveExpectTx(&full[i % kLinStages], cnt * (kLinATile + (normB ? 0 : ntiles * kLinBTile)));
      bulkCopyG2S(stageOf(i), wBase + (size_t)i * kLinKps * kLinATile, cnt * kLinATile, &full[i % kLinStages]);
    };
    auto copyB = [&](int i) {
      if (normB) return;  // the consumers build B
      const int cnt = min(kLinKps, kt1 - kt0 - i * kLinKps);
      if (lane < cnt)
        bulkCopyG2S(stageOf(i) + C::kStageA + lane * NTB * kLinBTile,
                    bBase + (size_t)(kt0 + i * kLinKps + lane) * kBGroup * kLinBTile, ntiles * kLinBTile, &full[i % kLinStages]);
    };
    // Handover (LinArgs::doneIn): the gate/up row groups stage i's k-tiles come from are done; the
    // proxy fence orders the B copies (async proxy) after their stores.
    int ready = -1;
    auto await = [&](int i) {
      if (!a.doneIn) return;
      const int k0 = kt0 + i * kLinKps, last = (min(kt1, k0 + kLinKps) - 1) / kHandoffKt;
      for (int g = max(ready + 1, k0 / kHandoffKt); g <= last; ++g) awaitCount(a.doneIn + g, a.doneSplits);
      ready = max(ready, last);
      asm volatile("fence.proxy.async.global;\n" ::: "memory");
    };
    const int first = min(kLinStages, nStages);
    if (lane == 0)
      for (int i = 0; i < first; ++i) copyA(i);
    if (!a.doneIn) gridDepWait();
    gridDepLaunch();
    for (int i = 0; i < first; ++i) await(i), copyB(i);
    for (int i = kLinStages; i < nStages; ++i) {
      mbarWait(&empty[i % kLinStages], ((i / kLinStages) - 1) & 1);
      if (lane == 0) copyA(i);
      await(i);
      copyB(i);
    }
  } else {
    if (!a.doneIn) gridDepWait();  // with the handover, consumers read only what the producer warp staged
    gridDepLaunch();  // every thread: a block counts as released once all of its threads have released or exited
    if (normB) {
      // Token li's 1/rms by warp li (warpRstd: the norm kernel's reduction, so the same bits).
      const int t = tok0 + warp;
      if (t < count) {
        const int row = a.countIsOut ? P.outRows()[t] : t;
        const float r = warpRstd(a.x + (size_t)row * a.ldx, a.K, a.eps, lane);
        if (lane == 0) rstd[warp] = r;
        if (lane == 0 && a.rOut && rb == 0 && s == 0) a.rOut[t] = r;
      }
      consumerSync();
    }
    if (a.normIn.part) {
      // NormIn: r of the block's tokens tl = warp + 8 k (k < NTB) from their row-tile-pair sums:
      // lane-strided in ascending order, then a butterfly; the epilogue's factor r / s. All of a
      // warp's loads go out together (4 per token at a time): one L2 round trip per 128 sums,
      // read while the first stages stream in.
      const NormIn& ni = a.normIn;
      float q[NTB], sInv[NTB];
#pragma unroll
      for (int k = 0; k < NTB; ++k) {
        const int t = tok0 + warp + 8 * k;
        q[k] = 0.f;
        sInv[k] = t < count ? __frcp_rn(ni.scale[t]) : 1.f;  // a power of two: exact
      }
      for (int j0 = 0; j0 * 32 < ni.ldPart; j0 += 4) {
        float v[NTB][4];
#pragma unroll
        for (int k = 0; k < NTB; ++k)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int t = tok0 + warp + 8 * k, i = (j0 + j) * 32 + lane;
            v[k][j] = t < count && i < ni.ldPart ? ni.part[(size_t)t * ni.ldPart + i] : 0.f;
          }
#pragma unroll
        for (int k = 0; k < NTB; ++k)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if ((j0 + j) * 32 + lane < ni.ldPart) q[k] = __fadd_rn(q[k], v[k][j]);
      }
#pragma unroll
      for (int k = 0; k < NTB; ++k) {
        const int t = tok0 + warp + 8 * k;
#pragma unroll
        for (int x = 16; x >= 1; x >>= 1) q[k] = __fadd_rn(q[k], __shfl_xor_sync(0xffffffffu, q[k], x));
        const float r = 1.0f / sqrtf(q[k] / (float)ni.H + ni.eps);
        if (t < count && lane == 0) {
          normC[warp + 8 * k] = __fmul_rn(r, sInv[k]);
          if (a.rOut && rb == 0 && s == 0) a.rOut[t] = r;
        }
      }
    }

    // Consumers: warpgroup wg multiplies its 64 rows of each k-tile by the stage's N = 16 NTB columns:
    // n-tile nt's 8 tokens are column groups 2 nt (hi halves) and 2 nt + 1 (lo halves) (layout.cuh).
    // Per split the wgmma sequence is fixed (k-tiles in ascending order, kLinKps per stage), whatever
    // NTB and ntiles are; a column's bits do not depend on the others (wgmma.cuh).
    float acc[NTB][4];
    {
      constexpr int N = 16 * NTB;
      const int wg = warp >> 2;
      float d[N / 2];
#pragma unroll
      for (int i = 0; i < N / 2; ++i) d[i] = 0.f;
      // normB: this thread's pairs of the next stage, loaded one stage ahead (normLoad / normStore).
      float2 xv[kNormPairs], wv[kNormPairs];
      if (normB) normLoad(a, P, tok0, count, kt0 * 16, min(kLinKps, kt1 - kt0), threadIdx.x & 127, xv, wv);
      for (int i = 0; i < nStages; ++i) {
        const int cnt = min(kLinKps, kt1 - kt0 - i * kLinKps);
        const uint8_t* bTiles = smem + (i % kLinStages) * C::kStage + C::kStageA;
        if (normB) {
          uint8_t* mine = nb + (wg * 2 + (i & 1)) * kLinKps * kLinBTile;  // free: stage i - 2's wgmmas are done
          normStore<H>(a, tok0, count, (kt0 + i * kLinKps) * 16, cnt, threadIdx.x & 127, rstd, xv, wv, mine);
          fenceProxyAsync();  // generic-proxy stores, read by wgmma (the async proxy)
          warpgroupSync(wg);
          if (i + 1 < nStages)
            normLoad(a, P, tok0, count, (kt0 + (i + 1) * kLinKps) * 16, min(kLinKps, kt1 - kt0 - (i + 1) * kLinKps),
                     threadIdx.x & 127, xv, wv);
          bTiles = mine;
        }
        mbarWait(&full[i % kLinStages], (i / kLinStages) & 1);
        const uint8_t* st = smem + (i % kLinStages) * C::kStage;
        wgmmaFence();
        // The last stage of a split can be partial. ptxas serializes wgmmas under this branch (warning
        // C7520); issuing all kLinKps with a zero weight tile for the missing k-tiles was measured slower
        // (bench/RESULTS.md, sixth session).
#pragma unroll
        for (int j = 0; j < kLinKps; ++j)
          if (j < cnt)
            Wgmma<N>::template mma<H>(d, gmmaDesc(st + j * kLinATile + wg * 2048, 1024, 128),
                                      gmmaDesc(bTiles + j * NTB * kLinBTile, 128, 256));
        wgmmaCommit();
        wgmmaWait<1>();  // the previous stage's wgmmas are done: release its slot
        if (i > 0) mbarArrive(&empty[(i - 1) % kLinStages]);
      }
      wgmmaWait<0>();
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
      __trap();  // the PTX fallback has no wgmma: fail loudly (cudaUsable admits sm_90 devices only)
#endif
#pragma unroll
      for (int nt = 0; nt < NTB; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] = d[8 * nt + e] + d[8 * nt + 4 + e];  // x_hi part + x_lo part
    }
    consumerSync();  // every consumer is past the ring: its shared memory becomes the partials
#pragma unroll
    for (int nt = 0; nt < NTB; ++nt)
      part[(warp * NTB + nt) * 32 + lane] = make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
  }

  // The S splits of a row group are one cluster. Once every block's partials are in its shared
  // memory, block s folds units [u0, u1) of all S in split order (distributed shared memory) and
  // runs their epilogue, so the fold and the epilogue are spread over the cluster's blocks.
  if (a.doneIn && threadIdx.x == 0) awaitCount(a.doneIn + a.doneRows, (unsigned)(a.doneRows * a.doneSplits));
  if (a.S > 1)
    clusterSync();
  else
    __syncthreads();
  // Units go to the cluster's blocks in whole warps' worth (32 lanes of one warp pair and n-tile),
  // so NormOut's butterfly finds a token pair's 8 row lanes in one warp.
  constexpr int kUnitWarps = kLinWarps / 2 * NTB;
  const int u0 = 32 * (s * kUnitWarps / a.S), u1 = 32 * ((s + 1) * kUnitWarps / a.S);
  for (int u = u0 + (int)threadIdx.x; u < u1; u += kLinThreads) {
    const int l = u & 31, nt = (u >> 5) % NTB, wp = (u >> 5) / NTB;
    if (nt >= ntiles) continue;
    const int f0 = (2 * wp * NTB + nt) * 32 + l;
    float4 v0, v1;
    foldSplits(part, f0, f0 + NTB * 32, a.S, v0, v1);
    epiUnit<H>(a, P, rb * kLinWarps + 2 * wp, tok0 + nt * 8 + 2 * (l & 3), l >> 2, count, v0, v1,
               a.normIn.part ? normC : nullptr, tok0);
  }
  if (a.doneOut) {
    __syncthreads();
    if (threadIdx.x == 0) countDone(a.doneOut, rb, gridDim.z);
  }
  if (a.S > 1) clusterSync();  // the other blocks may still read this block's partials
}

// Grids of at most 2 blocks per SM run the deep ring.
constexpr int kDeepBlocks = 2 * kWaveSms;

template <class H, int NTB, bool DEEP>
void launchT(const LinArgs& a, int tokenGroups, bool pdl, cudaStream_t stream) {
  launchKernelCluster(linearKernel<H, NTB, DEEP>, dim3(tokenGroups, a.S, rowGroupsOf(a.MT)), dim3(kLinThreads), dim3(1, a.S, 1),
                      LinCfg<NTB, DEEP>::kSmemBytes, stream, pdl, "linearKernel", a);
}
template <class H, int NTB>
void launchN(const LinArgs& a, int tokenGroups, bool pdl, cudaStream_t stream) {
  // (The 8-n-tile kernel already runs 2 blocks per SM: it has no deep form to instantiate.)
  if (NTB < 8 && rowGroupsOf(a.MT) * a.S * tokenGroups <= kDeepBlocks)
    launchT<H, NTB, NTB < 8>(a, tokenGroups, pdl, stream);
  else
    launchT<H, NTB, false>(a, tokenGroups, pdl, stream);
}

template <class H, int NTB, bool DEEP>
void prepareT() {
  auto kernel = linearKernel<H, NTB, DEEP>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, LinCfg<NTB, DEEP>::kSmemBytes));
  // Clusters past 8 blocks (the portable limit) for experiments with more splits (gpu_check --splits).
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
}
template <class H>
void prepareH() {
  prepareT<H, 1, false>();
  prepareT<H, 2, false>();
  prepareT<H, 4, false>();
  prepareT<H, 8, false>();
  prepareT<H, 1, true>();
  prepareT<H, 2, true>();
  prepareT<H, 4, true>();
}

template <class H>
void launchH(const LinArgs& a, int ntb, int tokenGroups, bool pdl, cudaStream_t stream) {
  switch (ntb) {
    case 1: return launchN<H, 1>(a, tokenGroups, pdl, stream);
    case 2: return launchN<H, 2>(a, tokenGroups, pdl, stream);
    case 4: return launchN<H, 4>(a, tokenGroups, pdl, stream);
    case 8: return launchN<H, 8>(a, tokenGroups, pdl, stream);
  }
  // A launch shape no kernel is instantiated for must fail loudly, never skip the projection.
  fail("E_INTERNAL", "linear kernel: no kernel for " + std::to_string(ntb) + " n-tiles per block");
}

}  // namespace

void linearPrepare() {
  prepareH<__nv_bfloat16>();
  prepareH<__half>();
}

int linearActiveClusters(int ntb, int S, bool bf16) {
  auto query = [&](auto kernel, int smem) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1, S, 1);
    cfg.blockDim = dim3(kLinThreads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 1, attr.val.clusterDim.y = S, attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg));
    return n;
  };
  auto forH = [&](auto h) {
    using H = decltype(h);
    switch (ntb) {
      case 1: return query(linearKernel<H, 1, false>, LinCfg<1, false>::kSmemBytes);
      case 2: return query(linearKernel<H, 2, false>, LinCfg<2, false>::kSmemBytes);
      case 4: return query(linearKernel<H, 4, false>, LinCfg<4, false>::kSmemBytes);
      default: return query(linearKernel<H, 8, false>, LinCfg<8, false>::kSmemBytes);
    }
  };
  return bf16 ? forH(__nv_bfloat16()) : forH(__half());
}

void launchLinear(const LinArgs& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream) {
  bf16 ? launchH<__nv_bfloat16>(a, ntb, tokenGroups, pdl, stream) : launchH<__half>(a, ntb, tokenGroups, pdl, stream);
}

}  // namespace casspec::cuda
