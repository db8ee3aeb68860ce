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

#include <string>

namespace casspec::cuda {

namespace {

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

// One k-tile of weights (A, this lane's fragment) against the staged B tiles of the block's tokens:
// acc += W * x_hi, then acc += W * x_lo, per n-tile. (Computing every n-tile without the predicate,
// or the hi products of all n-tiles before the lo ones, measured 10-35% slower at 7B n = 16..64; in
// one form the compiler copied each refilled ring slot through a temporary at once, serialising the
// weight loads. bench/RESULTS.md, fourth session.)
template <class H, int NTB>
__device__ __forceinline__ void kTileMma(float (&acc)[NTB][4], const uint32_t (&A)[4], const uint4* bs, int ntiles) {
#pragma unroll
  for (int nt = 0; nt < NTB; ++nt) {
    if (nt < ntiles) {
      const uint4 bv = bs[nt * 32];
      mma16816<H>(acc[nt], A, bv.x, bv.y);  // W * x_hi
      mma16816<H>(acc[nt], A, bv.z, bv.w);  // W * x_lo
    }
  }
}

template <int NTB> struct LinCfg {
  static constexpr int kRing = NTB <= 2 ? 8 : 4;  // weight tiles in flight per lane
  static constexpr int kStage = 32 / NTB;         // k-tiles of B staged per round (16 KB)
  static constexpr int kStageBytes = kStage * NTB * 512;
  static constexpr int kPartBytes = kLinWarps * NTB * 512;
  // Two stage buffers (packed B is prefetched one round ahead with cp.async), later reused for
  // the split partials; then 64 floats of per-token 1/rms.
  static constexpr int kSmemBytes = (2 * kStageBytes > kPartBytes ? 2 * kStageBytes : kPartBytes) + 64 * 4;
  static_assert(kStage % kRing == 0, "rounds must keep the weight ring aligned");
  // 3 resident blocks per SM (<= 85 registers) up to 32 tokens: more loads in flight, one block's
  // prologue/epilogue overlapped by two others' streams, and chooseSplits' one-wave sizing holds.
  static constexpr int kMinBlocks = NTB <= 4 ? 3 : 2;
};

// Grid: one block per (row group rb of 8 row tiles, split s, token group tg), token group fastest
// (blocks sharing weights run together). Several blocks per SM stay resident, so one block's
// prologue (B staging) and epilogue (split combine) overlap the others' weight streams.
template <class H, int NTB>
__global__ void __launch_bounds__(kLinThreads, LinCfg<NTB>::kMinBlocks) linearKernel(const LinArgs a, int tokenGroups) {
  using C = LinCfg<NTB>;
  extern __shared__ __align__(128) uint8_t smem[];
  const bool packed = a.bsrc == BSource::Packed;
  uint4* stage = reinterpret_cast<uint4*>(smem);
  float4* part = reinterpret_cast<float4*>(smem);
  float* rstd = reinterpret_cast<float*>(smem + C::kSmemBytes - 64 * 4);
  __shared__ int isLast;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tg = blockIdx.x % tokenGroups;
  const int rest = blockIdx.x / tokenGroups;
  const int s = rest % a.S, rb = rest / a.S;
  const int mt = rb * kLinWarps + warp;
  const bool rowOk = mt < a.MT;
  const int kt0 = (int)((int64_t)s * a.KT / a.S), kt1 = (int)((int64_t)(s + 1) * a.KT / a.S);

  // The parameter block was copied before the graph started: safe to read before gridDepWait.
  const Params P{a.params};
  const int count = a.countIsOut ? P.nOut() : P.n();
  const int tok0 = tg * NTB * 8;
  if (tok0 >= count) return;
  const int ntiles = min(NTB, (count - tok0 + 7) / 8);

  // Start streaming weights before waiting for the previous kernel: they do not depend on it.
  // The block's row tiles are interleaved per k-tile (layout.cuh): k-tile kk of this warp's tile
  // is at wrow + kk * kStep.
  constexpr int kStep = kLinWarps * 32;
  const uint4* wrow = static_cast<const uint4*>(a.w) + ((size_t)rb * a.KT * kLinWarps + warp) * 32 + lane;
  uint4 ring[C::kRing];
#pragma unroll
  for (int i = 0; i < C::kRing; ++i)
    if (rowOk && kt0 + i < kt1) ring[i] = ldStream(wrow + (size_t)(kt0 + i) * kStep);
  if (rowOk)
    for (int kk = kt0 + C::kRing; kk < min(kt1, kt0 + 3 * C::kRing); ++kk) prefetchL2(wrow + (size_t)kk * kStep);
  gridDepWait();
  gridDepLaunch();

  if (a.bsrc == BSource::Norm) {
    // Fused RMSNorm: per-token 1/rms with the same warp reduction the standalone norm kernel uses.
    for (int li = warp; li < ntiles * 8; li += kLinWarps) {
      const int t = tok0 + li;
      if (t < count) {
        const int row = a.countIsOut ? P.outRows()[t] : t;
        const float r = warpRstd(a.x + (size_t)row * a.ldx, a.K, a.eps, lane);
        if (lane == 0) rstd[li] = r;
      }
    }
    __syncthreads();
  }

  float acc[NTB][4];
#pragma unroll
  for (int nt = 0; nt < NTB; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

  // Stage B for k-tiles [r0, min(r0 + kStage, kt1)) x NTB n-tiles: buf[((kk - r0) * NTB + nt) * 32 + lane];
  // n-tiles past the block's tokens are zero. Walking all NTB n-tiles lets the index arithmetic
  // divide by a constant (7B n = 1 4.67 -> 4.52 ms, prefill 40.2 -> 37.5 ms).
  auto stageRound = [&](int r0, uint4* buf) {
    const int r1 = min(kt1, r0 + C::kStage);
    const int items = (r1 - r0) * NTB * 32;
#pragma unroll 4
    for (int e = threadIdx.x; e < items; e += kLinThreads) {
      const int l = e & 31, nt = (e >> 5) % NTB, kk = r0 + (e >> 5) / NTB;
      uint4* dst = buf + ((kk - r0) * NTB + nt) * 32 + l;
      if (nt >= ntiles) {
        *dst = make_uint4(0, 0, 0, 0);
      } else if (a.bsrc == BSource::Packed) {
        cpAsync16(dst, static_cast<const uint4*>(a.bPacked) + ((size_t)(tg * NTB + nt) * a.KT + kk) * 32 + l);
      } else {
        const int li = nt * 8 + (l >> 2), t = tok0 + li;
        if (t < count) {
          const int row = a.countIsOut ? P.outRows()[t] : t;
          *dst = packNormSlot<H>(a.x + (size_t)row * a.ldx, a.normW, rstd[li], kk * 16 + 2 * (l & 3), a.K);
        } else {
          *dst = make_uint4(0, 0, 0, 0);
        }
      }
    }
  };
  constexpr int kBuf = C::kStageBytes / 16;  // buffer b starts at stage + b * kBuf
  auto bbuf = [&](int b) { return stage + b * kBuf; };
  if (packed && kt0 < kt1) {
    stageRound(kt0, stage);
    cpAsyncCommit();
  }
  int cur = 0;
  for (int r0 = kt0; r0 < kt1; r0 += C::kStage, cur ^= 1) {
    const int r1 = min(kt1, r0 + C::kStage);
    if (packed) {
      // Prefetch the next round into the other buffer (free since the barrier ending the last round).
      if (r1 < kt1) {
        stageRound(r1, bbuf(cur ^ 1));
        cpAsyncCommit();
        cpAsyncWait<1>();
      } else {
        cpAsyncWait<0>();
      }
    } else {
      stageRound(r0, bbuf(cur));
    }
    __syncthreads();

    if (rowOk) {
      const uint4* sb = stage + cur * kBuf;
      for (int kb = r0; kb < r1; kb += C::kRing) {
#pragma unroll
        for (int i = 0; i < C::kRing; ++i) {
          const int kk = kb + i;
          if (kk < r1) {
            const uint4 av = ring[i];
            if (kk + C::kRing < kt1) ring[i] = ldStream(wrow + (size_t)(kk + C::kRing) * kStep);
            const uint32_t A[4] = {av.x, av.y, av.z, av.w};
            kTileMma<H, NTB>(acc, A, sb + (kk - r0) * NTB * 32 + lane, ntiles);
          }
        }
      }
    }
    __syncthreads();
  }

  // Combine the S splits of this row block in split order (whichever block finishes last folds).
#pragma unroll
  for (int nt = 0; nt < NTB; ++nt)
    part[(warp * NTB + nt) * 32 + lane] = make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
  if (a.S > 1) {
    const size_t blockPart = (size_t)kLinWarps * NTB * 32;
    float4* ws = reinterpret_cast<float4*>(a.ws) + ((size_t)(rb * tokenGroups + tg) * a.S) * blockPart;
#pragma unroll
    for (int nt = 0; nt < NTB; ++nt)
      if (nt < ntiles) __stcg(ws + (size_t)s * blockPart + (warp * NTB + nt) * 32 + lane, part[(warp * NTB + nt) * 32 + lane]);
    __syncthreads();
    if (threadIdx.x == 0) {
      // One thread publishes the block's partials: the barrier orders the other threads' stores
      // before this fence (cumulativity), and only this warp waits for the fence, not all 8 (a
      // fence also waits for the warp's in-flight weight loads).
      __threadfence();
      const int prev = atomicAdd(a.counters + rb * tokenGroups + tg, 1);
      isLast = prev == a.S - 1;
      if (isLast) {
        a.counters[rb * tokenGroups + tg] = 0;  // ready for the next launch
        __threadfence();
      }
    }
    __syncthreads();
    if (!isLast) return;
    for (int e = threadIdx.x; e < kLinWarps * NTB * 32; e += kLinThreads) {
      if (((e >> 5) % NTB) >= ntiles) continue;
      // Loads 8 at a time (one L2 round trip per 8 splits), folded in split order.
      float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int j0 = 0; j0 < a.S; j0 += 8) {
        float4 p[8];
#pragma unroll
        for (int j = 0; j < 8; ++j)
          if (j0 + j < a.S) p[j] = __ldcg(ws + (size_t)(j0 + j) * blockPart + e);
#pragma unroll
        for (int j = 0; j < 8; ++j)
          if (j0 + j < a.S) sum = j0 + j == 0 ? p[0] : add4(sum, p[j]);
      }
      part[e] = sum;
    }
  }
  __syncthreads();

  // Epilogue over (warp tile, n-tile, lane, column pair): rows g and g+8, token 2*(lane%4) + jj.
  const bool swi = a.epi == Epilogue::SwiGlu;
  const int items = kLinWarps * ntiles * 64;
  if (a.epi == Epilogue::Residual) {
    // x += y. Each element belongs to one thread; the old values of kBatch items are loaded
    // before any is stored, so their L2 round trips overlap (a load after a store through the
    // same pointer would wait for it: 8 serial round trips per thread at n = 32).
    constexpr int kBatch = 8;
    for (int e0 = threadIdx.x; e0 < items; e0 += kBatch * kLinThreads) {
      int idx[kBatch][2];
      float old[kBatch][2], val[kBatch][2];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        idx[i][0] = idx[i][1] = -1;
        const int e = e0 + i * kLinThreads;
        if (e >= items) continue;
        const auto [w, nt, l, jj] = epiItem(e, ntiles);
        const int m = rb * kLinWarps + w;
        const int t = tok0 + nt * 8 + 2 * (l & 3) + jj;
        if (m >= a.MT || t >= count) continue;
        const float4 v = part[(w * NTB + nt) * 32 + l];
        const int m0 = m * 16 + (l >> 2);
        val[i][0] = jj ? v.y : v.x;
        val[i][1] = jj ? v.w : v.z;
        if (m0 < a.M) idx[i][0] = t * a.M + m0;
        if (m0 + 8 < a.M) idx[i][1] = t * a.M + m0 + 8;
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (idx[i][h] >= 0) old[i][h] = a.resid[idx[i][h]];
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (idx[i][h] >= 0) a.resid[idx[i][h]] = old[i][h] + val[i][h];
    }
    return;
  }
  for (int e = threadIdx.x; e < items; e += kLinThreads) {
    const auto [w, nt, l, jj] = epiItem(e, ntiles);
    const int m = rb * kLinWarps + w;
    if (m >= a.MT || (swi && (w & 1))) continue;
    const int t = tok0 + nt * 8 + 2 * (l & 3) + jj;
    if (t >= count) continue;
    const float4 v = part[(w * NTB + nt) * 32 + l];
    float up0 = 0.f, up1 = 0.f;
    if (swi) {
      const float4 u = part[((w + 1) * NTB + nt) * 32 + l];
      up0 = jj ? u.y : u.x;
      up1 = jj ? u.w : u.z;
    }
    epiPair<H>(a, P, m * 16 + (l >> 2), t, jj ? v.y : v.x, jj ? v.w : v.z, up0, up1);
  }
}

template <class H, int NTB>
void launchT(const LinArgs& a, int tokenGroups, bool pdl, cudaStream_t stream) {
  const int rowGroups = (a.MT + kLinWarps - 1) / kLinWarps;
  launchKernel(linearKernel<H, NTB>, dim3(rowGroups * a.S * tokenGroups), dim3(kLinThreads), LinCfg<NTB>::kSmemBytes, stream,
               pdl, "linearKernel", a, tokenGroups);
}

template <class H>
void prepareH() {
  CUDA_CHECK(cudaFuncSetAttribute(linearKernel<H, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, LinCfg<1>::kSmemBytes));
  CUDA_CHECK(cudaFuncSetAttribute(linearKernel<H, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, LinCfg<2>::kSmemBytes));
  CUDA_CHECK(cudaFuncSetAttribute(linearKernel<H, 4>, cudaFuncAttributeMaxDynamicSharedMemorySize, LinCfg<4>::kSmemBytes));
  CUDA_CHECK(cudaFuncSetAttribute(linearKernel<H, 8>, cudaFuncAttributeMaxDynamicSharedMemorySize, LinCfg<8>::kSmemBytes));
}

template <class H>
void launchH(const LinArgs& a, int ntb, int tokenGroups, bool pdl, cudaStream_t stream) {
  switch (ntb) {
    case 1: return launchT<H, 1>(a, tokenGroups, pdl, stream);
    case 2: return launchT<H, 2>(a, tokenGroups, pdl, stream);
    case 4: return launchT<H, 4>(a, tokenGroups, pdl, stream);
    case 8: return launchT<H, 8>(a, tokenGroups, pdl, stream);
  }
  // A launch shape no kernel is instantiated for must fail loudly, never skip the projection.
  fail("E_INTERNAL", "linear kernel: no kernel for " + std::to_string(ntb) + " n-tiles per block");
}

}  // namespace

void linearPrepare() {
  prepareH<__nv_bfloat16>();
  prepareH<__half>();
}

void launchLinear(const LinArgs& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream) {
  bf16 ? launchH<__nv_bfloat16>(a, ntb, tokenGroups, pdl, stream) : launchH<__half>(a, ntb, tokenGroups, pdl, stream);
}

}  // namespace casspec::cuda
