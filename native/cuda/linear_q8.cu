// The int8 matrix kernel (see linear_q8.cuh for the launch shape and the invariance argument).
#include "linear_q8.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "launch.cuh"
#include "mma.cuh"
#include "params.cuh"

namespace casspec::cuda {

namespace {

constexpr int kWarps = kLinWarps, kThreads = kWarps * 32;  // row tiles per block, as linear.cuh

// D = A(16x32, row) * B(32x8, col) + C, int8 inputs, int32 accumulation (fragments: layout.cuh).
__device__ __forceinline__ void mma16832s8(int (&c)[4], const uint4& a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

template <int NTB> struct Q8Cfg {
  static constexpr int kRing = NTB <= 2 ? 8 : 4;  // weight tiles in flight per lane
  static constexpr int kStage = 64 / NTB;         // k-tiles of activations staged per round (16 KB)
  static_assert(kStage % kRing == 0, "rounds must keep the weight ring aligned");
  // 3 resident blocks per SM (<= 85 registers) up to 32 tokens, as q8Splits' one wave of
  // 396 blocks assumes; decode-sized launches then finish in one wave.
  static constexpr int kMinBlocks = NTB <= 4 ? 3 : 2;
};

template <class H, int NTB>
__global__ void __launch_bounds__(kThreads, Q8Cfg<NTB>::kMinBlocks) linearQ8Kernel(const Q8Args a, int tokenGroups) {
  using C = Q8Cfg<NTB>;
  __shared__ __align__(16) uint2 stage[C::kStage * NTB * 32];
  __shared__ int isLast;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tg = blockIdx.x % tokenGroups;
  const int rest = blockIdx.x / tokenGroups;
  const int s = rest % a.S, rb = rest / a.S;
  const int mt = rb * kWarps + warp;
  const bool rowOk = mt < a.MT;
  const int kt0 = (int)((int64_t)s * a.KT / a.S), kt1 = (int)((int64_t)(s + 1) * a.KT / a.S);
  const int ld = a.MT * 16;

  const Params P{a.params};
  const int count = P.n();
  const int tok0 = tg * NTB * 8;
  if (tok0 >= count) return;
  const int ntiles = min(NTB, (count - tok0 + 7) / 8);

  // Weights do not depend on the previous kernel: start streaming them before the PDL wait.
  const uint4* wrow = static_cast<const uint4*>(a.w) + (size_t)(rowOk ? mt : 0) * a.KT * 32 + lane;
  uint4 ring[C::kRing];
#pragma unroll
  for (int i = 0; i < C::kRing; ++i)
    if (rowOk && kt0 + i < kt1) ring[i] = ldStream(wrow + (size_t)(kt0 + i) * 32);
  gridDepWait();
  gridDepLaunch();

  int acc[NTB][4];
#pragma unroll
  for (int nt = 0; nt < NTB; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0;

  const uint2* xq = static_cast<const uint2*>(a.xq);
  for (int r0 = kt0; r0 < kt1; r0 += C::kStage) {
    const int r1 = min(kt1, r0 + C::kStage);
    // Stage activations of k-tiles [r0, r1) x ntiles: stage[((kk - r0) * NTB + nt) * 32 + lane].
    const int items = (r1 - r0) * ntiles * 32;
    for (int e = threadIdx.x; e < items; e += kThreads) {
      const int l = e & 31, nt = (e >> 5) % ntiles, kk = r0 + (e >> 5) / ntiles;
      stage[((kk - r0) * NTB + nt) * 32 + l] = xq[((size_t)(tg * NTB + nt) * a.KT + kk) * 32 + l];
    }
    __syncthreads();
    if (rowOk) {
      for (int kb = r0; kb < r1; kb += C::kRing) {
#pragma unroll
        for (int i = 0; i < C::kRing; ++i) {
          const int kk = kb + i;
          if (kk < r1) {
            const uint4 av = ring[i];
            if (kk + C::kRing < kt1) ring[i] = ldStream(wrow + (size_t)(kk + C::kRing) * 32);
            const uint2* bs = stage + (kk - r0) * NTB * 32 + lane;
#pragma unroll
            for (int nt = 0; nt < NTB; ++nt)
              if (nt < ntiles) {
                const uint2 bv = bs[nt * 32];
                mma16832s8(acc[nt], av, bv.x, bv.y);
              }
          }
        }
      }
    }
    __syncthreads();
  }

  // Add this split's sums (C fragment: rows g, g+8; tokens 2q, 2q+1 of the tile).
  if (rowOk) {
    const int row = mt * 16 + (lane >> 2);
#pragma unroll
    for (int nt = 0; nt < NTB; ++nt)
      if (nt < ntiles) {
        const int t = tok0 + nt * 8 + 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int tt = t + (j & 1), rr = row + (j >> 1) * 8;
          if (tt < count) atomicAdd(a.sums + (size_t)tt * ld + rr, acc[nt][j]);
        }
      }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // The barrier orders the block's atomics before this fence; the counter then says whether
    // every split of this (row group, token group) has added its share.
    __threadfence();
    int* counter = a.counters + rb * tokenGroups + tg;
    isLast = atomicAdd(counter, 1) == a.S - 1;
    if (isLast) {
      *counter = 0;  // ready for the next launch
      __threadfence();
    }
  }
  __syncthreads();
  if (!isLast) return;

  // Epilogue over (row tile, n-tile, lane, token of the pair): rows g and g + 8 of the tile.
  const bool swi = a.epi == Q8Epilogue::SwiGlu;
  const int itemCount = kWarps * ntiles * 64;
  for (int e = threadIdx.x; e < itemCount; e += kThreads) {
    const auto [w, nt, l, jj] = epiItem(e, ntiles);
    const int m = rb * kWarps + w;
    if (m >= a.MT || (swi && (w & 1))) continue;  // up tiles are read with their gate tile
    const int t = tok0 + nt * 8 + 2 * (l & 3) + jj;
    if (t >= count) continue;
    const int m0 = m * 16 + (l >> 2);
    int* st = a.sums + (size_t)t * ld;
    const float sx = a.sx[t];
    auto take = [&](int row) {
      const int v = __ldcg(st + row);
      __stcg(st + row, 0);
      return __fmul_rn((float)v, __fmul_rn(sx, a.wScale[row]));
    };
    const float v0 = take(m0), v1 = take(m0 + 8);
    switch (a.epi) {
      case Q8Epilogue::Qkv: qkvPair<H>(a.qkv, P, m0, t, v0, v1); break;
      case Q8Epilogue::Residual: {
        float* r = a.resid + (size_t)t * a.M;
        if (m0 < a.M) r[m0] = r[m0] + v0;
        if (m0 + 8 < a.M) r[m0 + 8] = r[m0 + 8] + v1;
        break;
      }
      case Q8Epilogue::SwiGlu: {
        const float u0 = take(m0 + 16), u1 = take(m0 + 24);  // the paired up tile follows its gate tile
        const int f = ffnRowOfGate(m0);
        float* h = a.h + (size_t)t * a.ffn;
        if (f < a.ffn) h[f] = siluMul(v0, u0);
        if (f + 8 < a.ffn) h[f + 8] = siluMul(v1, u1);
        break;
      }
    }
  }
}

template <class H, int NTB>
void launchT(const Q8Args& a, int tokenGroups, bool pdl, cudaStream_t stream) {
  const dim3 grid(rowGroupsOf(a.MT) * a.S * tokenGroups);
  launchKernel(linearQ8Kernel<H, NTB>, grid, dim3(kThreads), 0, stream, pdl, "linearQ8Kernel", a, tokenGroups);
}

template <class H>
void launchH(const Q8Args& a, int ntb, int tokenGroups, bool pdl, cudaStream_t stream) {
  switch (ntb) {
    case 1: return launchT<H, 1>(a, tokenGroups, pdl, stream);
    case 2: return launchT<H, 2>(a, tokenGroups, pdl, stream);
    case 4: return launchT<H, 4>(a, tokenGroups, pdl, stream);
    default: return launchT<H, 8>(a, tokenGroups, pdl, stream);
  }
}

}  // namespace

void launchLinearQ8(const Q8Args& a, int ntb, int tokenGroups, bool bf16, bool pdl, cudaStream_t stream) {
  if (bf16)
    launchH<__nv_bfloat16>(a, ntb, tokenGroups, pdl, stream);
  else
    launchH<__half>(a, ntb, tokenGroups, pdl, stream);
}

}  // namespace casspec::cuda
