// Attention on the CUDA cores: every score and every P V sum in fp32 FMAs, one thread per element.
//
// Why: an mma sums its k products inside the instruction, so for P V (k = keys) a token's result
// depends on where its keys sit among the instruction's 16; a tree's branches put them elsewhere
// than a chain does, which forced one pass per token over a tree's tail (attention.cu). Here each
// output element is one thread's fmaf chains in a fixed order, whatever the other rows of the
// launch are: a branch key is looked up per row, and a masked key contributes p = 0 times a finite
// value (an exact no-op), so tree, chain and a lone token give the same bits by construction.
//
// Block = 4 warps for one (kv head, row block, chunk). The chunk's staged keys (Params::stagedKeys)
// are copied to shared memory once, a tree's tail rows (Params::tailSlots) too; each warp then owns
// 4 query rows (a quad): S with lane = key (keys lane and lane + 32), the softmax in registers
// (max and sum by fixed xor butterflies over the key lanes), P to the warp's scratch, and P V with
// lane = head dims (D / 32 each). No block barrier between the phases. Numerics per element:
//   s[j]  = scale * dot(q, k[j]), the dot as eight fmaf chains (head dims e mod 8) in the CPU's tree,
//   m     = max_j s[j], p[j] = expf(s[j] - m), l = the butterfly sum of p over lanes j and j + 32,
//   o[d]  = one fmaf chain over the chunk's keys in order, p[j] * v[j][d].
// The partials go to attnCombine exactly as the mma kernel's do.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "attention.cuh"
#include "check.cuh"
#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "rmsnorm.cuh"

namespace casspec::cuda {

namespace {

constexpr int CH = kAttnChunk;

// Shared memory: K rows then V rows, each [chunk rows | tail rows | one zero row][LD], then per
// warp its scratch (kWarpFloats).
template <class KT, int D> struct FmaCfg {
  // 16-bit rows of D + 4 halves: 16 lanes reading 8 bytes of consecutive rows hit distinct banks.
  static constexpr int LD = D + 4;
  static constexpr int kPiece = sizeof(KT) == 4 ? 16 : 8;  // bytes per staging copy (rows are 8-byte aligned)
  // Per warp: q rows [4][D], reused for P [64 keys][4 rows]; the row table [64 keys][4 rows]
  // (ints) after it.
  static constexpr int kQFloats = 4 * D > 256 ? 4 * D : 256;
  static constexpr int kWarpFloats = kQFloats + 256;
  __host__ __device__ static constexpr int rows(int tailRows) { return CH + tailRows + 1; }
  __host__ __device__ static constexpr int kvBytes(int tailRows) {
    return (2 * rows(tailRows) * LD * (int)sizeof(KT) + 15) / 16 * 16;
  }
  __host__ __device__ static constexpr int smemBytes(int tailRows) {
    return kvBytes(tailRows) + kAttnWarps * kWarpFloats * 4;
  }
};

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __half* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ float load1(const float* p) { return *p; }
__device__ __forceinline__ float load1(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load1(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// DQ consecutive head-dim values of one row as floats.
template <int DQ, class KT>
__device__ __forceinline__ void loadN(const KT* p, float (&v)[DQ]) {
  if constexpr (DQ == 4) {
    const float4 x = load4(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else if constexpr (DQ == 2) {
    const float2 x = load2(p);
    v[0] = x.x, v[1] = x.y;
  } else {
    v[0] = load1(p);
  }
}

__device__ __forceinline__ void cpAsync8(void* smem, const void* gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem));
}

// Rows [r0, r1) of K and V from cache slots (list ? list[r] : first + r) to rows base + r.
template <class KT, int D>
__device__ __forceinline__ void stage(const AttnArgs& a, int g, KT* K, KT* V, int base, int r0, int r1, const int32_t* list,
                                      int first) {
  using Cfg = FmaCfg<KT, D>;
  constexpr int per = D * (int)sizeof(KT) / Cfg::kPiece;  // copies per row
  const int kvDim = a.kvHeads * D;
  const char* kg = static_cast<const char*>(a.k);
  const char* vg = static_cast<const char*>(a.v);
  for (int e = r0 * per + (int)threadIdx.x; e < r1 * per; e += blockDim.x) {
    const int r = e / per, b = (e % per) * Cfg::kPiece;
    const int slot = list ? list[r] : first + r;
    const size_t src = ((size_t)slot * kvDim + g * D) * sizeof(KT) + b;
    char* kd = reinterpret_cast<char*>(K + (size_t)(base + r) * Cfg::LD) + b;
    char* vd = reinterpret_cast<char*>(V + (size_t)(base + r) * Cfg::LD) + b;
    if constexpr (Cfg::kPiece == 16) {
      cpAsync16(kd, kg + src);
      cpAsync16(vd, vg + src);
    } else {
      cpAsync8(kd, kg + src);
      cpAsync8(vd, vg + src);
    }
  }
}

// Where key `key` of chunk c sits for a row of token t with `cnt` keys in the chunk: a shared-memory
// row (>= 0; the zero row when masked) or, for a tree tail that could not be staged, cache slot
// -(r + 1) in global memory.
__device__ __forceinline__ int keyRow(const Params& P, int t, int cnt, int key, int j0, int staged, bool useTail, int zeroRow) {
  if (key >= cnt) return zeroRow;
  const int j = j0 + key;
  if (j < staged) return key;
  const int e = P.ancOffsets()[t] + j - P.committed();
  return useTail ? CH + P.ancTail()[e] : -(P.ancSlots()[e] + 1);
}
template <class KT, int D, bool SHARED = false>
__device__ __forceinline__ const KT* rowPtr(const KT* smemBase, const void* global, int kvDim, int g, int r) {
  if (SHARED) return smemBase + (size_t)r * FmaCfg<KT, D>::LD;  // lets the compiler use shared-memory loads
  return r >= 0 ? smemBase + (size_t)r * FmaCfg<KT, D>::LD
                : static_cast<const KT*>(global) + (size_t)(-r - 1) * kvDim + g * D;
}

// One warp, rows 4 qd .. 4 qd + RQ - 1 (the quad's rows that exist) against chunk c, keys lane + 32 k
// for k < NK (NK = 1: no row has more than 32 keys here). SHARED: every row's keys in this chunk
// are staged rows 0.. (the committed prefix, a chain), so a key row is loaded once for all rows.
// RQ and NK only drop work that would be masked: the same operations per element.
template <class H, class KT, int D, bool SHARED, int RQ, int NK>
__device__ __forceinline__ void attendQuad(const AttnArgs& a, const Params& P, int g, int group, int rows, int qd, int c,
                                           int nStage, bool useTail, const KT* K, const KT* V, float* wb, int zeroRow) {
  using Cfg = FmaCfg<KT, D>;
  constexpr int DQ = D / 32;
  const int lane = threadIdx.x & 31, j0 = c * CH, staged = P.stagedKeys(), kvDim = a.kvHeads * D;
  const int32_t* ancOff = P.ancOffsets();
  int* rt = reinterpret_cast<int*>(wb + Cfg::kQFloats);  // [64 keys][4 rows]: where each row finds the key
  int t[RQ], h[RQ], L[RQ], cnt[RQ], cmax = 0;
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    const int r = qd * 4 + i;
    t[i] = r < rows ? r / group : -1;
    h[i] = g * group + r % group;
    L[i] = t[i] >= 0 ? P.committed() + ancOff[t[i] + 1] - ancOff[t[i]] : 0;
    cnt[i] = min(max(L[i] - j0, 0), CH);
    cmax = max(cmax, cnt[i]);
  }

  // q rows into the warp's scratch; a tree's key rows into the row table.
  for (int e = lane; e < RQ * (D / 4); e += 32) {
    const int i = e / (D / 4), d = (e % (D / 4)) * 4;
    const float4 v = t[i] >= 0 ? *reinterpret_cast<const float4*>(a.q + ((size_t)t[i] * a.heads + h[i]) * D + d)
                               : make_float4(0.f, 0.f, 0.f, 0.f);
    *reinterpret_cast<float4*>(wb + i * D + d) = v;
  }
  if constexpr (!SHARED) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int key = lane + 32 * k;
      if (key >= cmax) break;
#pragma unroll
      for (int i = 0; i < RQ; ++i) rt[key * 4 + i] = t[i] >= 0 ? keyRow(P, t[i], cnt[i], key, j0, staged, useTail, zeroRow) : zeroRow;
    }
  }
  __syncwarp();
  // The row of key `key` for row i (SHARED: the same for every row).
  auto keyRowOf = [&](int i, int key) { return SHARED ? (key < cmax ? key : zeroRow) : key < cmax ? rt[key * 4 + i] : zeroRow; };

  float acc[RQ][NK];
  {
    // S: per (row, key) eight partial fmaf chains, lane e taking head dims e mod 8, combined in the
    // CPU backend's fixed tree (native/cpu/dot.h): the same error structure as its dot, where one
    // chain over all head dims lost bits to cancellation (int8 drafts flipped codes against it).
    const KT* kp[RQ][NK];
#pragma unroll
    for (int i = 0; i < RQ; ++i)
#pragma unroll
      for (int k = 0; k < NK; ++k) kp[i][k] = rowPtr<KT, D, SHARED>(K, a.k, kvDim, g, keyRowOf(SHARED ? 0 : i, lane + 32 * k));
#pragma unroll
    for (int k = 0; k < NK; ++k) {
      float p8[RQ][8];
#pragma unroll
      for (int i = 0; i < RQ; ++i)
#pragma unroll
        for (int e = 0; e < 8; ++e) p8[i][e] = 0.f;
#pragma unroll 2
      for (int d = 0; d < D; d += 8) {
        float4 qa[RQ], qb[RQ];
#pragma unroll
        for (int i = 0; i < RQ; ++i) {
          qa[i] = *reinterpret_cast<const float4*>(wb + i * D + d);
          qb[i] = *reinterpret_cast<const float4*>(wb + i * D + d + 4);
        }
        float4 ka, kb;
        if constexpr (SHARED) ka = load4(kp[0][k] + d), kb = load4(kp[0][k] + d + 4);
#pragma unroll
        for (int i = 0; i < RQ; ++i) {
          if constexpr (!SHARED) ka = load4(kp[i][k] + d), kb = load4(kp[i][k] + d + 4);
          p8[i][0] = fmaf(qa[i].x, ka.x, p8[i][0]);
          p8[i][1] = fmaf(qa[i].y, ka.y, p8[i][1]);
          p8[i][2] = fmaf(qa[i].z, ka.z, p8[i][2]);
          p8[i][3] = fmaf(qa[i].w, ka.w, p8[i][3]);
          p8[i][4] = fmaf(qb[i].x, kb.x, p8[i][4]);
          p8[i][5] = fmaf(qb[i].y, kb.y, p8[i][5]);
          p8[i][6] = fmaf(qb[i].z, kb.z, p8[i][6]);
          p8[i][7] = fmaf(qb[i].w, kb.w, p8[i][7]);
        }
      }
#pragma unroll
      for (int i = 0; i < RQ; ++i)
        acc[i][k] = __fadd_rn(__fadd_rn(__fadd_rn(p8[i][0], p8[i][1]), __fadd_rn(p8[i][2], p8[i][3])),
                              __fadd_rn(__fadd_rn(p8[i][4], p8[i][5]), __fadd_rn(p8[i][6], p8[i][7])));
    }
  }

  // Softmax of each row over the chunk's keys: the max is exact in any order; l sums lane pairs
  // (keys j, j + 32; the second is 0 for NK = 1), then a fixed xor butterfly (every lane ends
  // with the same bits).
  float m[RQ], l[RQ], p[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i][0] = p[i][1] = 0.f;
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
#pragma unroll
    for (int k = 0; k < NK; ++k) p[i][k] = lane + 32 * k < cnt[i] ? acc[i][k] * a.scale : -INFINITY;
    m[i] = NK == 2 ? fmaxf(p[i][0], p[i][1]) : p[i][0];
#pragma unroll
    for (int x = 16; x >= 1; x >>= 1) m[i] = fmaxf(m[i], __shfl_xor_sync(0xffffffffu, m[i], x));
#pragma unroll
    for (int k = 0; k < NK; ++k) p[i][k] = m[i] == -INFINITY ? 0.f : expf(p[i][k] - m[i]);
    l[i] = p[i][0] + p[i][1];
#pragma unroll
    for (int x = 16; x >= 1; x >>= 1) l[i] = l[i] + __shfl_xor_sync(0xffffffffu, l[i], x);
  }
  __syncwarp();  // every lane is done with the q rows: the scratch now takes P
  float4* pw = reinterpret_cast<float4*>(wb);  // [64 keys] (p of rows 0..3)
#pragma unroll
  for (int k = 0; k < NK; ++k) pw[lane + 32 * k] = make_float4(p[0][k], p[1][k], p[2][k], p[3][k]);
  __syncwarp();

  // P V: lane owns head dims DQ lane.., one fmaf chain per (row, dim) over the keys in order. A key
  // past a row's list has p = 0 against a finite row (staged, or the zero row): no change.
  const int d0 = lane * DQ;
  float o[RQ][DQ];
#pragma unroll
  for (int i = 0; i < RQ; ++i)
#pragma unroll
    for (int e = 0; e < DQ; ++e) o[i][e] = 0.f;
#pragma unroll 8
  for (int key = 0; key < cmax; ++key) {
    float pr[4];
    if constexpr (RQ == 1) {
      pr[0] = wb[4 * key];
    } else {
      const float4 p4 = pw[key];
      pr[0] = p4.x, pr[1] = p4.y, pr[2] = p4.z, pr[3] = p4.w;
    }
    if constexpr (SHARED) {
      float v[DQ];
      loadN<DQ>(V + (size_t)key * Cfg::LD + d0, v);
#pragma unroll
      for (int i = 0; i < RQ; ++i)
#pragma unroll
        for (int e = 0; e < DQ; ++e) o[i][e] = fmaf(pr[i], v[e], o[i][e]);
    } else {
      const int4 r4 = *reinterpret_cast<const int4*>(rt + key * 4);
      const int rr[4] = {r4.x, r4.y, r4.z, r4.w};
#pragma unroll
      for (int i = 0; i < RQ; ++i) {
        float v[DQ];
        loadN<DQ>(rowPtr<KT, D>(V, a.v, kvDim, g, rr[i]) + d0, v);
#pragma unroll
        for (int e = 0; e < DQ; ++e) o[i][e] = fmaf(pr[i], v[e], o[i][e]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    if (cnt[i] == 0) continue;
    if (L[i] <= CH) {  // one chunk: out = acc / l, exactly what attnCombine computes for C = 1
#pragma unroll
      for (int e = 0; e < DQ; ++e)
        storePacked<H>(static_cast<uint16_t*>(a.outPacked), t[i], h[i] * D + d0 + e, a.outKT, __fdiv_rn(o[i][e], l[i]));
    } else {
      float* pp = a.part + (((size_t)t[i] * a.heads + h[i]) * a.maxChunks + c) * (D + 2);
      if (lane == 0) pp[0] = m[i], pp[1] = l[i];
      if constexpr (DQ == 4) {  // pp + 2 is 8-byte aligned (D + 2 floats per record)
        *reinterpret_cast<float2*>(pp + 2 + d0) = make_float2(o[i][0], o[i][1]);
        *reinterpret_cast<float2*>(pp + 4 + d0) = make_float2(o[i][2], o[i][3]);
      } else {
#pragma unroll
        for (int e = 0; e < DQ; ++e) pp[2 + d0 + e] = o[i][e];
      }
    }
  }
  __syncwarp();  // the next quad rewrites the scratch
}

// The quad's instance: rows that exist (1, 2 or 4) and whether any row has more than 32 keys here.
template <class H, class KT, int D, bool SHARED>
__device__ __forceinline__ void attendQuadBy(int rq, int cmax, const AttnArgs& a, const Params& P, int g, int group, int rows,
                                             int qd, int c, int nStage, bool useTail, const KT* K, const KT* V, float* wb,
                                             int zeroRow) {
#define CASSPEC_QUAD(RQ, NK) attendQuad<H, KT, D, SHARED, RQ, NK>(a, P, g, group, rows, qd, c, nStage, useTail, K, V, wb, zeroRow)
  if (rq == 1)
    cmax > 32 ? CASSPEC_QUAD(1, 2) : CASSPEC_QUAD(1, 1);
  else if (rq == 2)
    cmax > 32 ? CASSPEC_QUAD(2, 2) : CASSPEC_QUAD(2, 1);
  else
    cmax > 32 ? CASSPEC_QUAD(4, 2) : CASSPEC_QUAD(4, 1);
#undef CASSPEC_QUAD
}

// 3 resident blocks per SM at head_dim 128 up to 48 tail rows (a tree of 32).
template <class H, class KT, int D>
__global__ void __launch_bounds__(kAttnWarps * 32, kAttnBlocksPerSm) attnFmaKernel(const AttnArgs a) {
  using Cfg = FmaCfg<KT, D>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int nRows = Cfg::rows(a.tailRows), zeroRow = CH + a.tailRows;
  KT* K = reinterpret_cast<KT*>(smem);
  KT* V = K + (size_t)nRows * Cfg::LD;
  const int warp = threadIdx.x >> 5;
  float* wb = reinterpret_cast<float*>(smem + Cfg::kvBytes(a.tailRows)) + warp * Cfg::kWarpFloats;
  const int g = blockIdx.x;  // kv head

  const Params P{a.params};
  const int n = P.n(), committed = P.committed(), staged = P.stagedKeys(), maxKeys = P.maxKeys();
  const int group = a.heads / a.kvHeads, rows = n * group, quads = (rows + 3) / 4;
  if ((int)blockIdx.y * kAttnWarps >= quads) return;  // a row block past this batch's rows
  for (int i = threadIdx.x; i < Cfg::LD; i += blockDim.x) {
    reinterpret_cast<uint16_t*>(K + (size_t)zeroRow * Cfg::LD)[i] = 0;  // the zero row: a masked key's K and V
    reinterpret_cast<uint16_t*>(V + (size_t)zeroRow * Cfg::LD)[i] = 0;
    if constexpr (sizeof(KT) == 4) {
      reinterpret_cast<uint16_t*>(K + (size_t)zeroRow * Cfg::LD)[Cfg::LD + i] = 0;
      reinterpret_cast<uint16_t*>(V + (size_t)zeroRow * Cfg::LD)[Cfg::LD + i] = 0;
    }
  }
  // Chunks from the last (a tree's tail chunk, the longest, in the first wave). Every key below
  // `committed` was written by an earlier forward: the first chunk's committed rows are copied
  // before waiting for the qkv projection, which writes only this forward's slots.
  const int nChunks = (maxKeys + CH - 1) / CH;
  const int c0 = nChunks - 1 - (int)blockIdx.z;
  int pre = c0 >= 0 ? min(max(committed - c0 * CH, 0), CH) : 0;
  stage<KT, D>(a, g, K, V, 0, 0, pre, nullptr, c0 * CH);
  gridDepWait();
  gridDepLaunch();
  const int tailCount = P.tailCount();
  for (int c = c0; c >= 0; c -= gridDim.z) {
    const int j0 = c * CH;
    const int nStage = min(max(staged - j0, 0), CH);  // keys in their own slot (params.cuh)
    if (c != c0) {
      __syncthreads();  // the previous chunk's readers are done with shared memory
      pre = 0;
    }
    stage<KT, D>(a, g, K, V, 0, pre, nStage, nullptr, j0);
    // Keys past the staged ones (a tree's branches) come from the staged tail rows, or global memory
    // when the host could not list them in a.tailRows rows.
    const bool useTail = tailCount > 0 && tailCount <= a.tailRows && nStage < CH && j0 + nStage < maxKeys;
    if (useTail) stage<KT, D>(a, g, K, V, CH, 0, tailCount, P.tailSlots(), 0);
    cpAsyncWaitAll();
    __syncthreads();
    for (int qd = blockIdx.y * kAttnWarps + warp; qd < quads; qd += gridDim.y * kAttnWarps) {
      int cmax = 0;  // warp-uniform: does every row's key list in this chunk sit in staged rows?
      for (int i = 0; i < 4; ++i) {
        const int r = qd * 4 + i;
        if (r >= rows) break;
        const int t = r / group;
        cmax = max(cmax, min(max(committed + P.ancOffsets()[t + 1] - P.ancOffsets()[t] - j0, 0), CH));
      }
      if (cmax == 0) continue;
      const int rq = min(rows - qd * 4, 4) > 2 ? 4 : min(rows - qd * 4, 4);
      if (cmax <= nStage)
        attendQuadBy<H, KT, D, true>(rq, cmax, a, P, g, group, rows, qd, c, nStage, useTail, K, V, wb, zeroRow);
      else
        attendQuadBy<H, KT, D, false>(rq, cmax, a, P, g, group, rows, qd, c, nStage, useTail, K, V, wb, zeroRow);
    }
  }
}

template <class H, class KT, int D>
void launchFmaT(const AttnArgs& a, int gridX, bool pdl, cudaStream_t stream) {
  using Cfg = FmaCfg<KT, D>;
  if (gridX < 0) {  // attentionPrepare: lift the 48 KB default
    CUDA_CHECK(cudaFuncSetAttribute(attnFmaKernel<H, KT, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg::smemBytes(kAttnMaxTailRows)));
    return;
  }
  launchKernel(attnFmaKernel<H, KT, D>, dim3(a.kvHeads, a.rowBlocks, gridX), dim3(kAttnWarps * 32), Cfg::smemBytes(a.tailRows),
               stream, pdl, "attnFmaKernel", a);
}

template <class H, class KT>
void launchFmaD(const AttnArgs& a, int gridX, bool pdl, cudaStream_t stream) {
  withHeadDim(a.headDim, [&](auto d) { launchFmaT<H, KT, decltype(d)::value>(a, gridX, pdl, stream); });
}

}  // namespace

void launchAttentionFma(const AttnArgs& a, int gridX, bool bf16, bool pdl, cudaStream_t stream) {
  if (bf16)
    a.kvF32 ? launchFmaD<__nv_bfloat16, float>(a, gridX, pdl, stream) : launchFmaD<__nv_bfloat16, __nv_bfloat16>(a, gridX, pdl, stream);
  else
    a.kvF32 ? launchFmaD<__half, float>(a, gridX, pdl, stream) : launchFmaD<__half, __half>(a, gridX, pdl, stream);
}

}  // namespace casspec::cuda
