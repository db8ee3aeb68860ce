// Attention kernels; see attention.cuh for the numerics contract.
//
// Block = 4 warps for one (kv head, row block, chunk): the chunk's keys/values that every token finds in the
// same slot (the committed prefix, and a chain's or prefill's own tokens: Params::stagedKeys) are
// staged in shared memory once; then for each group of 16 query rows (row =
// token * group + head-in-group) of its row block the 4 warps split the chunk's 64 keys, FlashAttention-2 style:
// S = Q K^T and O = P V with the 16 rows as the mma M dimension, so P goes from the S accumulators
// to the A operand in registers. (One warp per row group left 3 of 4 warps idle at decode.)
#include "attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "check.cuh"
#include "launch.cuh"
#include "layout.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "rmsnorm.cuh"

namespace casspec::cuda {

namespace {

constexpr int CH = kAttnChunk;

// Floats of per-warp scratch for the wide path's tree tail: S against the tail rows [16][rows],
// then (reused) the tile's rows per token [16][16].
__host__ __device__ constexpr int attnWarpScratch(int tailRows) { return 16 * tailRows > 256 ? 16 * tailRows : 256; }

// The wide path's pair exchange (attendRowsWide<PAIR>): row maxima per warp, l0 + l1 per pair.
constexpr int kAttnPairFloats = 4 * 16 + 2 * 32;

template <int D> struct AttnCfg {
  static constexpr int LD = D + 8;  // padded shared-memory row (halves): conflict-free ldmatrix
  static constexpr int kArray = CH * LD;
  // Decode path: the 4 warps' partial O (obuf) overlays the staged K/V once P V is done.
  static constexpr int kObufFloats = 4 * 16 * D;
  static_assert(kObufFloats * 4 <= 2 * kArray * 2, "obuf must fit over the staged K and V");
  // Decode path, tree tail: S against the tail rows [16][tailRows], then per key tile the P
  // that goes token by token [4][16 rows][16 keys] and its tail rows [4][16 tokens][16 keys], and
  // one flag per tile.
  static constexpr int decodeTailFloats(int tailRows) { return tailRows ? 16 * tailRows + 2 * 4 * 256 + 4 : 0; }
  // [K, V (+ lo halves)] x (chunk rows + tail rows), then the decode path's cross-warp max and sum
  // (red) and tail scratch, or the wide path's per-warp scratch. Kept small enough for 3 blocks
  // per SM at n = 32 on head_dim 128: a second wave of blocks doubles the kernel's time.
  static constexpr int smemBytes(bool kv32, int tailRows, bool wide) {
    const int decode = (2 * 4 * 16 + 16 + decodeTailFloats(tailRows)) * 4;
    const int scratch = (kAttnWarps * attnWarpScratch(tailRows) + kAttnPairFloats) * 4;
    return (kv32 ? 4 : 2) * (kArray + tailRows * LD) * 2 + (wide ? scratch : decode);
  }
};

__device__ __forceinline__ int mergeSlot(int a, int b) {
  if (a == -2 || b == -2) return -2;
  if (a == -1) return b;
  if (b == -1 || a == b) return a;
  return -2;  // rows disagree
}

// Where key index j of token t's list is read from: a cache slot (global view: map = ancSlots,
// base = 0) or a row of the chunk's staged tree tail (tail view: map = Params::ancTail, base =
// attnTailStart; the host lists the committed slots [base, committed) first). -1 past the list.
struct KeyView {
  const int32_t* ancOff;
  const int32_t* map;
  int committed, base;
  __device__ __forceinline__ int slot(int t, int j) const {
    if (j < committed) return j - base;
    const int off = ancOff[t], i = j - committed;
    return i < ancOff[t + 1] - off ? map[off + i] : -1;
  }
  __device__ __forceinline__ int keys(int t) const { return committed + ancOff[t + 1] - ancOff[t]; }
};

// Two consecutive head-dim values of one cache row as (hi pair, lo pair) B-fragment registers.
template <class H, bool KV32>
__device__ __forceinline__ void loadPair(const void* base, size_t i, uint32_t& hi, uint32_t& lo) {
  if constexpr (KV32) {
    const float2 f = *reinterpret_cast<const float2*>(static_cast<const float*>(base) + i);
    uint16_t h0, l0, h1, l1;
    splitHiLo<H>(f.x, h0, l0);
    splitHiLo<H>(f.y, h1, l1);
    hi = pack2(h0, h1);
    lo = pack2(l0, l1);
  } else {
    hi = *reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(base) + i);
    lo = 0;
  }
}
template <class H, bool KV32>
__device__ __forceinline__ void loadOne(const void* base, size_t i, uint16_t& hi, uint16_t& lo) {
  if constexpr (KV32) {
    splitHiLo<H>(static_cast<const float*>(base)[i], hi, lo);
  } else {
    hi = static_cast<const uint16_t*>(base)[i];
    lo = 0;
  }
}

// K/V rows looked up per token: from the cache in global memory (row = slot), or from the staged
// tree tail in shared memory (row = tail index), split into hi/lo halves by the same splitHiLo at
// staging, so both hand the mma the same fragments. Row -1 (past a list's end: masked) reads row 0.
// The source is a template parameter: selecting between the two at run time put both in local
// memory and cost registers (measured: 3 -> 2 resident decode blocks per SM on the 7B shape).
template <int D> struct GlobalRows {
  const void* k;  // this layer's cache: kvDim per slot, this head at kvOff
  const void* v;
  int kvDim, kvOff;
};
template <int D> struct TailRows {
  const uint16_t *k, *kl, *v, *vl;  // [row][D + 8] hi halves (and lo halves for fp32 caches)
  int count, rows;                  // rows staged, rows allocated (a multiple of 8)
  float* scratch;                   // attnWarpScratch floats per warp (the wide path)
};
template <class Src> struct IsTail : std::false_type {};
template <int D> struct IsTail<TailRows<D>> : std::true_type {};
template <class H, bool KV32, int D>
__device__ __forceinline__ void kPair(const GlobalRows<D>& r, int row, int col, uint32_t& hi, uint32_t& lo) {
  loadPair<H, KV32>(r.k, (size_t)(row < 0 ? 0 : row) * r.kvDim + r.kvOff + col, hi, lo);
}
template <class H, bool KV32, int D>
__device__ __forceinline__ void kPair(const TailRows<D>& r, int row, int col, uint32_t& hi, uint32_t& lo) {
  const int o = (row < 0 ? 0 : row) * (D + 8) + col;
  hi = *reinterpret_cast<const uint32_t*>(r.k + o);
  lo = KV32 ? *reinterpret_cast<const uint32_t*>(r.kl + o) : 0u;
}
template <class H, bool KV32, int D>
__device__ __forceinline__ void vOne(const GlobalRows<D>& r, int row, int col, uint16_t& hi, uint16_t& lo) {
  loadOne<H, KV32>(r.v, (size_t)(row < 0 ? 0 : row) * r.kvDim + r.kvOff + col, hi, lo);
}
template <class H, bool KV32, int D>
__device__ __forceinline__ void vOne(const TailRows<D>& r, int row, int col, uint16_t& hi, uint16_t& lo) {
  const int o = (row < 0 ? 0 : row) * (D + 8) + col;
  hi = r.v[o];
  lo = KV32 ? r.vl[o] : (uint16_t)0;
}

// A lane's 8 values of an mma A fragment (q rows, or a 16-key tile of P) as hi and lo fragments.
template <class H>
__device__ __forceinline__ void aFragments(const float (&v)[8], uint32_t (&hi)[4], uint32_t (&lo)[4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    uint16_t h0, l0, h1, l1;
    splitHiLo<H>(v[2 * r], h0, l0);
    splitHiLo<H>(v[2 * r + 1], h1, l1);
    hi[r] = pack2(h0, h1);
    lo[r] = pack2(l0, l1);
  }
}

// q rows (this lane's rows gq and gq+8) for head-dim tile dt as hi and lo A fragments.
template <class H>
__device__ __forceinline__ void loadQ(const float* qA, const float* qB, int dt, int tq, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  float v[8];
  const int c = dt * 16 + 2 * tq;
  const float2 z = make_float2(0.f, 0.f);
  const float2 a01 = qA ? *reinterpret_cast<const float2*>(qA + c) : z;
  const float2 a23 = qB ? *reinterpret_cast<const float2*>(qB + c) : z;
  const float2 a45 = qA ? *reinterpret_cast<const float2*>(qA + c + 8) : z;
  const float2 a67 = qB ? *reinterpret_cast<const float2*>(qB + c + 8) : z;
  v[0] = a01.x, v[1] = a01.y, v[2] = a23.x, v[3] = a23.y, v[4] = a45.x, v[5] = a45.y, v[6] = a67.x, v[7] = a67.y;
  aFragments<H>(v, hi, lo);
}

// acc += x_hi * y_hi, then x_lo * y_hi, then (fp32 KV: y has a lo half too) x_hi * y_lo: one product of
// hi + lo operands, the sequence every S and P V element goes through.
template <class H, bool KV32>
__device__ __forceinline__ void mmaHiLo(float (&acc)[4], const uint32_t (&xh)[4], const uint32_t (&xl)[4], uint32_t b0,
                                        uint32_t b1, uint32_t bl0, uint32_t bl1) {
  mma16816<H>(acc, xh, b0, b1);
  mma16816<H>(acc, xl, b0, b1);
  if constexpr (KV32) mma16816<H>(acc, xh, bl0, bl1);
}

// S tile (16 rows x 8 keys) for keys looked up per token: row[gq] per lane.
template <class H, bool KV32, int D, class Src>
__device__ __forceinline__ void scoreTile(const Src& src, const float* qA, const float* qB, int tq, int row, float (&s)[4]) {
  s[0] = s[1] = s[2] = s[3] = 0.f;
#pragma unroll
  for (int dt = 0; dt < D / 16; ++dt) {
    uint32_t qh[4], ql[4];
    loadQ<H>(qA, qB, dt, tq, qh, ql);
    uint32_t b0h, b0l, b1h, b1l;
    kPair<H, KV32, D>(src, row, dt * 16 + 2 * tq, b0h, b0l);
    kPair<H, KV32, D>(src, row, dt * 16 + 8 + 2 * tq, b1h, b1l);
    mmaHiLo<H, KV32>(s, qh, ql, b0h, b1h, b0l, b1l);
  }
}

// O += P V for one 16-key tile and all head-dim blocks, rows looked up per token; the lane's four
// keys (2tq, 2tq+1, 2tq+8, 2tq+9 of the tile) have rows sl[0..3].
template <class H, bool KV32, int D, class Src>
__device__ __forceinline__ void pvTile(const Src& src, const uint32_t (&ph)[4], const uint32_t (&pl)[4], int gq,
                                       const int (&sl)[4], float (&o)[D / 8][4]) {
#pragma unroll
  for (int db = 0; db < D / 8; ++db) {
    uint16_t h[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) vOne<H, KV32, D>(src, sl[i], db * 8 + gq, h[i], l[i]);
    mmaHiLo<H, KV32>(o[db], ph, pl, pack2(h[0], h[1]), pack2(h[2], h[3]), pack2(l[0], l[1]), pack2(l[2], l[3]));
  }
}

// One head-dim block db of P V for one 16-key tile, rows looked up per token, into t (from 0).
template <class H, bool KV32, int D, class Src>
__device__ __forceinline__ void pvDb(const Src& src, const uint32_t (&ph)[4], const uint32_t (&pl)[4], int gq,
                                     const int (&sl)[4], int db, float (&t)[4]) {
  uint16_t h[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) vOne<H, KV32, D>(src, sl[i], db * 8 + gq, h[i], l[i]);
  t[0] = t[1] = t[2] = t[3] = 0.f;
  mmaHiLo<H, KV32>(t, ph, pl, pack2(h[0], h[1]), pack2(h[2], h[3]), pack2(l[0], l[1]), pack2(l[2], l[3]));
}
// o = t for the first key tile, o = o + t after: the warp-order fold of attendGroup, in registers.
__device__ __forceinline__ void foldTile(float (&o)[4], const float (&t)[4], bool first) {
#pragma unroll
  for (int e = 0; e < 4; ++e) o[e] = first ? t[e] : o[e] + t[e];
}

// S += Q K^T for one block of 8 keys in shared memory and head-dim tiles dt, dt+1: lane l addresses
// key (l & 7) at head dims 16 dt + (l >> 3) * 8 (`off`), and ldmatrix gives the B fragments of both
// tiles. Staged keys and tree-tail rows both go through here: the same mma sequence.
template <class H, bool KV32>
__device__ __forceinline__ void sPair(const uint16_t* K, const uint16_t* Kl, int off, const uint32_t (&qh0)[4],
                                      const uint32_t (&ql0)[4], const uint32_t (&qh1)[4], const uint32_t (&ql1)[4],
                                      float (&s)[4]) {
  uint32_t b[4], bl[4] = {0, 0, 0, 0};
  ldmatrixX4(b, K + off);
  if constexpr (KV32) ldmatrixX4(bl, Kl + off);
  mmaHiLo<H, KV32>(s, qh0, ql0, b[0], b[1], bl[0], bl[1]);
  mmaHiLo<H, KV32>(s, qh1, ql1, b[2], b[3], bl[2], bl[3]);
}

// P V for head-dim blocks db, db+1 of one 16-key tile from shared memory, into fresh t0, t1: lane l
// addresses the row of tile key ((l >> 3) & 1) * 8 + (l & 7) at rowOff (ldmatrix .trans gives the
// B fragments). Staged keys and tree-tail rows both go through here: the same mma sequence.
template <class H, bool KV32, int D>
__device__ __forceinline__ void pvPair(const uint16_t* V, const uint16_t* Vl, int rowOff, int db, const uint32_t (&ph)[4],
                                       const uint32_t (&pl)[4], float (&t0)[4], float (&t1)[4]) {
  const int off = rowOff + (db + ((threadIdx.x & 31) >> 4)) * 8;
  uint32_t b[4], bl[4] = {0, 0, 0, 0};
  ldmatrixX4Trans(b, V + off);
  if constexpr (KV32) ldmatrixX4Trans(bl, Vl + off);
#pragma unroll
  for (int e = 0; e < 4; ++e) t0[e] = t1[e] = 0.f;
  mmaHiLo<H, KV32>(t0, ph, pl, b[0], b[1], bl[0], bl[1]);
  mmaHiLo<H, KV32>(t1, ph, pl, b[2], b[3], bl[2], bl[3]);
}

// The named barrier of warp pair p (warps 2p, 2p + 1; id 0 is __syncthreads): both wait, or one
// signals without waiting (its shared-memory writes before it are visible after the other's wait).
__device__ __forceinline__ void pairSync(int p) { asm volatile("bar.sync %0, 64;\n" ::"r"(1 + p) : "memory"); }
__device__ __forceinline__ void pairArrive(int p) { asm volatile("bar.arrive %0, 64;\n" ::"r"(1 + p) : "memory"); }

// The same arithmetic as attendGroup, by one warp over the whole chunk: used when a block has
// several row groups (wide batches), so warps work on different row groups in parallel. Every
// per-element operation sequence matches attendGroup's (S chains; l and O as 4 partials of 16
// keys folded in order), so a token's results do not depend on which of the two ran.
// PAIR (two row groups, 17-32 rows): the warp pair 2 rg, 2 rg + 1 shares row group rg, warp `half`
// taking keys 32 half.. (key blocks 4 half.., tiles 2 half, 2 half + 1), so all 4 warps work. The
// pair splits a tree tail's S rows (a pair barrier), meets at the row max (a block barrier, after
// which no warp reads the staged K), and half 0 leaves O0 + O1 (over the staged K) and l0 + l1
// (pairX) for half 1, which adds them in the fold's order, O = ((O0 + O1) + O2) + O3, and writes
// the rows. The 7B shape's tree of 32: 1.6% faster at cache 512, 4.3% at 2048 (bench/RESULTS.md).
template <class H, bool KV32, int D, bool PAIR, class Src>
__device__ void attendRowsWide(const AttnArgs& a, const KeyView kv, const Src& src, int n, int group, int rg, int c, int nStage,
                               const uint16_t* Ks, const uint16_t* Vs, const uint16_t* Ksl, const uint16_t* Vsl, float* pairX) {
  using Cfg = AttnCfg<D>;
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int g = blockIdx.x;  // kv head
  const int rows = n * group;
  const int rA = rg * 16 + gq, rB = rA + 8;
  const bool okA = rA < rows, okB = rB < rows;
  const int tA = okA ? rA / group : -1, tB = okB ? rB / group : -1;
  const int hA = g * group + rA % group, hB = g * group + rB % group;
  const int LA = okA ? kv.keys(tA) : 0, LB = okB ? kv.keys(tB) : 0;
  int Lg = max(LA, LB);
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) Lg = max(Lg, __shfl_xor_sync(0xffffffffu, Lg, m));
  const int j0 = c * CH;
  if (!PAIR && Lg <= j0) return;  // (a pair runs on with everything masked: it must meet its partner)
  const int warp = threadIdx.x >> 5, half = PAIR ? warp & 1 : 0;

  const float* qA = okA ? a.q + ((size_t)tA * a.heads + hA) * D : nullptr;
  const float* qB = okB ? a.q + ((size_t)tB * a.heads + hB) * D : nullptr;
  const int tokFirst = (rg * 16) / group, tokLast = (min(rows, rg * 16 + 16) - 1) / group;
  const int nFull = nStage / 8;

  // S of this warp's key blocks kb0 + kl (a pair's half keeps only its own 4 in registers).
  constexpr int NKB = PAIR ? 4 : 8;
  const int kb0 = NKB * half;
  auto mine = [&](int kb) { return !PAIR || (kb >= kb0 && kb < kb0 + NKB); };  // this warp's key blocks
  float s[NKB][4];
#pragma unroll
  for (int kl = 0; kl < NKB; ++kl) s[kl][0] = s[kl][1] = s[kl][2] = s[kl][3] = 0.f;
  if (nFull > kb0) {
#pragma unroll
    for (int dt = 0; dt < D / 16; dt += 2) {
      uint32_t qh0[4], ql0[4], qh1[4], ql1[4];
      loadQ<H>(qA, qB, dt, tq, qh0, ql0);
      loadQ<H>(qA, qB, dt + 1, tq, qh1, ql1);
#pragma unroll
      for (int kl = 0; kl < NKB; ++kl) {
        const int kb = kb0 + kl;
        if (kb < nFull) {
          const int off = (kb * 8 + (lane & 7)) * Cfg::LD + dt * 16 + (lane >> 3) * 8;
          sPair<H, KV32>(Ks, Ksl, off, qh0, ql0, qh1, ql1, s[kl]);
        }
      }
    }
  }
  if constexpr (IsTail<Src>::value) {
    // Tree tail: S of the 16 rows against every staged tail row, with the staged keys' mma
    // sequence (so each element has their bits), then each row takes its own keys' columns. A
    // pair splits the tail rows and shares the first warp's scratch.
    const int sw = PAIR ? warp & ~1 : warp;
    float* st = src.scratch + sw * attnWarpScratch(src.rows);  // [16 rows][src.rows]
    if (nFull < 8 && j0 + nFull * 8 < Lg) {  // the same for both warps of a pair
      for (int ub = half; ub * 8 < src.count; ub += PAIR ? 2 : 1) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int dt = 0; dt < D / 16; dt += 2) {
          uint32_t qh0[4], ql0[4], qh1[4], ql1[4];
          loadQ<H>(qA, qB, dt, tq, qh0, ql0);
          loadQ<H>(qA, qB, dt + 1, tq, qh1, ql1);
          const int off = (ub * 8 + (lane & 7)) * Cfg::LD + dt * 16 + (lane >> 3) * 8;
          sPair<H, KV32>(src.k, src.kl, off, qh0, ql0, qh1, ql1, acc);
        }
        const int u = ub * 8 + 2 * tq;
        *reinterpret_cast<float2*>(st + gq * src.rows + u) = make_float2(acc[0], acc[1]);
        *reinterpret_cast<float2*>(st + (gq + 8) * src.rows + u) = make_float2(acc[2], acc[3]);
      }
      if constexpr (PAIR)
        pairSync(warp >> 1);
      else
        __syncwarp();
      for (int kb = nFull; kb < 8; ++kb) {
        const int jb = j0 + kb * 8;
        if (jb >= Lg) break;
        if (!mine(kb)) continue;
        float t4[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = e < 2 ? tA : tB;
          const int u = t >= 0 ? kv.slot(t, jb + 2 * tq + (e & 1)) : -1;
          t4[e] = u >= 0 ? st[(gq + (e < 2 ? 0 : 8)) * src.rows + u] : 0.f;  // past the list: masked below
        }
#pragma unroll
        for (int i = 0; i < NKB; ++i)
          if (kb0 + i == kb) s[i][0] = t4[0], s[i][1] = t4[1], s[i][2] = t4[2], s[i][3] = t4[3];
      }
      __syncwarp();  // the P V lookups below reuse the scratch (a pair's partner: after the row-max barrier)
    }
  } else {
    for (int kb = nFull; kb < 8; ++kb) {
      const int jb = j0 + kb * 8;
      if (jb >= Lg) break;
      if (!mine(kb)) continue;
      int m = -1;
      for (int tt = tokFirst + (lane >> 3); tt <= tokLast; tt += 4) m = mergeSlot(m, kv.slot(tt, jb + (lane & 7)));
      m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 8));
      m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 16));
      const bool conflict = __any_sync(0xffffffffu, m == -2);
      float t4[4];
      if (!conflict) {
        scoreTile<H, KV32, D>(src, qA, qB, tq, __shfl_sync(0xffffffffu, m, gq), t4);
      } else {
        t4[0] = t4[1] = t4[2] = t4[3] = 0.f;
        for (int tt = tokFirst; tt <= tokLast; ++tt) {
          float u[4];
          scoreTile<H, KV32, D>(src, qA, qB, tq, kv.slot(tt, jb + gq), u);
          if (tA == tt) t4[0] = u[0], t4[1] = u[1];
          if (tB == tt) t4[2] = u[2], t4[3] = u[3];
        }
      }
#pragma unroll
      for (int i = 0; i < NKB; ++i)
        if (kb0 + i == kb) s[i][0] = t4[0], s[i][1] = t4[1], s[i][2] = t4[2], s[i][3] = t4[3];
    }
  }

  float mA = -INFINITY, mB = -INFINITY;
#pragma unroll
  for (int kl = 0; kl < NKB; ++kl) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = j0 + (kb0 + kl) * 8 + 2 * tq + (e & 1);
      const bool valid = j < (e < 2 ? LA : LB);
      s[kl][e] = valid ? s[kl][e] * a.scale : -INFINITY;
    }
    mA = fmaxf(mA, fmaxf(s[kl][0], s[kl][1]));
    mB = fmaxf(mB, fmaxf(s[kl][2], s[kl][3]));
  }
#pragma unroll
  for (int x = 1; x <= 2; x <<= 1) {
    mA = fmaxf(mA, __shfl_xor_sync(0xffffffffu, mA, x));
    mB = fmaxf(mB, __shfl_xor_sync(0xffffffffu, mB, x));
  }
  float* exM = pairX;            // [4 warps][16 rows]: row maxima
  float* exL = pairX + 4 * 16;   // [2 pairs][16 rows]: l0 + l1
  float* exO = reinterpret_cast<float*>(const_cast<uint16_t*>(Ks)) + (warp >> 1) * 16 * D;  // [16 rows][D]: O0 + O1
  if constexpr (PAIR) {  // the max is exact in any order
    if (tq == 0) exM[warp * 16 + gq] = mA, exM[warp * 16 + gq + 8] = mB;
    __syncthreads();  // also: every warp is done with the staged K, which exO overlays
    mA = fmaxf(mA, exM[(warp ^ 1) * 16 + gq]);
    mB = fmaxf(mB, exM[(warp ^ 1) * 16 + gq + 8]);
  }
  // l: per 16-key quarter w (key blocks 2w, 2w+1) exactly as attendGroup's warp w, then folded.
  // A pair's half 0 folds quarters 0 and 1; half 1 keeps 2 and 3 for after them.
  float lA = 0.f, lB = 0.f, qA2[2] = {0.f, 0.f}, qB2[2] = {0.f, 0.f};
#pragma unroll
  for (int wl = 0; wl < NKB / 2; ++wl) {
    float qa = 0.f, qb = 0.f;
#pragma unroll
    for (int kbl = 0; kbl < 2; ++kbl) {
      const int kb = 2 * wl + kbl;  // local
      s[kb][0] = mA == -INFINITY ? 0.f : expf(s[kb][0] - mA);
      s[kb][1] = mA == -INFINITY ? 0.f : expf(s[kb][1] - mA);
      s[kb][2] = mB == -INFINITY ? 0.f : expf(s[kb][2] - mB);
      s[kb][3] = mB == -INFINITY ? 0.f : expf(s[kb][3] - mB);
      qa = qa + s[kb][0];
      qa = qa + s[kb][1];
      qb = qb + s[kb][2];
      qb = qb + s[kb][3];
    }
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
      qa = qa + __shfl_xor_sync(0xffffffffu, qa, x);
      qb = qb + __shfl_xor_sync(0xffffffffu, qb, x);
    }
    if (PAIR) qA2[wl] = qa, qB2[wl] = qb;
    lA = wl == 0 ? qa : lA + qa;
    lB = wl == 0 ? qb : lB + qb;
  }

  // O: tile kt (keys 16kt..) into a fresh 4-register chain per head-dim block, folded in kt order.
  float o[D / 8][4];
#pragma unroll
  for (int db = 0; db < D / 8; ++db) o[db][0] = o[db][1] = o[db][2] = o[db][3] = 0.f;
#pragma unroll
  for (int i = 0; i < NKB / 2; ++i) {
    const int kt = kb0 / 2 + i;
    const int jt = j0 + kt * 16;
    const bool first = i == 0;
    if (PAIR && half == 1 && i == 1) {
      // Half 0's O0 + O1 comes before this warp's O2: O = (O0 + O1) + O2 (+ is commutative).
      pairSync(warp >> 1);
#pragma unroll
      for (int db = 0; db < D / 8; ++db) {
        const int d = db * 8 + 2 * tq;
        const float2 x0 = *reinterpret_cast<const float2*>(exO + gq * D + d);
        const float2 x1 = *reinterpret_cast<const float2*>(exO + (gq + 8) * D + d);
        o[db][0] = x0.x + o[db][0], o[db][1] = x0.y + o[db][1], o[db][2] = x1.x + o[db][2], o[db][3] = x1.y + o[db][3];
      }
    }
    if (jt >= Lg) {  // all masked: attendGroup's warp kt contributes zeros
      const float z[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int db = 0; db < D / 8; ++db) foldTile(o[db], z, first);
      continue;
    }
    const float pv[8] = {s[2 * i][0], s[2 * i][1], s[2 * i][2], s[2 * i][3],
                         s[2 * i + 1][0], s[2 * i + 1][1], s[2 * i + 1][2], s[2 * i + 1][3]};
    uint32_t ph[4], pl[4];
    aFragments<H>(pv, ph, pl);
    const int kk = ((lane >> 3) & 1) * 8 + (lane & 7);  // the tile key whose row this lane addresses
    if (kt * 16 + 16 <= nStage) {
#pragma unroll
      for (int db = 0; db < D / 8; db += 2) {
        float t0[4], t1[4];
        pvPair<H, KV32, D>(Vs, Vsl, (kt * 16 + kk) * Cfg::LD, db, ph, pl, t0, t1);
        foldTile(o[db], t0, first);
        foldTile(o[db + 1], t1, first);
      }
    } else if constexpr (IsTail<Src>::value) {
      // Tree tail: the tile's rows per token go to the warp's scratch (lookups in parallel), then
      // one pass if the tokens agree, else one pass per token keeping that token's rows.
      int* mp = reinterpret_cast<int*>(src.scratch + warp * attnWarpScratch(src.rows));  // [token][16 keys]
      const int ntok = tokLast - tokFirst + 1;
      for (int i = lane; i < ntok * 16; i += 32) mp[i] = kv.slot(tokFirst + i / 16, jt + i % 16);
      __syncwarp();
      int m = -1;
      for (int tt = lane >> 4; tt < ntok; tt += 2) m = mergeSlot(m, mp[tt * 16 + (lane & 15)]);
      m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 16));
      const bool conflict = __any_sync(0xffffffffu, m == -2);
      if (!conflict) {
        const int row = __shfl_sync(0xffffffffu, m, kk);
#pragma unroll
        for (int db = 0; db < D / 8; db += 2) {
          float t0[4], t1[4];
          pvPair<H, KV32, D>(src.v, src.vl, (row < 0 ? 0 : row) * Cfg::LD, db, ph, pl, t0, t1);
          foldTile(o[db], t0, first);
          foldTile(o[db + 1], t1, first);
        }
      } else {
        for (int tt = 0; tt < ntok; ++tt) {
          const int row = mp[tt * 16 + kk];
          const bool mineA = tA == tokFirst + tt, mineB = tB == tokFirst + tt;
#pragma unroll
          for (int db = 0; db < D / 8; db += 2) {
            float t0[4], t1[4];
            pvPair<H, KV32, D>(src.v, src.vl, (row < 0 ? 0 : row) * Cfg::LD, db, ph, pl, t0, t1);
            if (mineA) o[db][0] = first ? t0[0] : o[db][0] + t0[0], o[db][1] = first ? t0[1] : o[db][1] + t0[1];
            if (mineB) o[db][2] = first ? t0[2] : o[db][2] + t0[2], o[db][3] = first ? t0[3] : o[db][3] + t0[3];
            if (mineA) o[db + 1][0] = first ? t1[0] : o[db + 1][0] + t1[0], o[db + 1][1] = first ? t1[1] : o[db + 1][1] + t1[1];
            if (mineB) o[db + 1][2] = first ? t1[2] : o[db + 1][2] + t1[2], o[db + 1][3] = first ? t1[3] : o[db + 1][3] + t1[3];
          }
        }
      }
      __syncwarp();  // the next tile rewrites the scratch
    } else {
      int m = -1;
      for (int tt = tokFirst + (lane >> 4); tt <= tokLast; tt += 2) m = mergeSlot(m, kv.slot(tt, jt + (lane & 15)));
      m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 16));
      const bool conflict = __any_sync(0xffffffffu, m == -2);
      if (!conflict) {
        const int sl[4] = {__shfl_sync(0xffffffffu, m, 2 * tq), __shfl_sync(0xffffffffu, m, 2 * tq + 1),
                           __shfl_sync(0xffffffffu, m, 2 * tq + 8), __shfl_sync(0xffffffffu, m, 2 * tq + 9)};
#pragma unroll
        for (int db = 0; db < D / 8; ++db) {
          float t[4];
          pvDb<H, KV32, D>(src, ph, pl, gq, sl, db, t);
          foldTile(o[db], t, first);
        }
      } else {
        // Token by token (slot lookups once per token); each row belongs to exactly one token, so
        // it is folded exactly once for this tile, as in attendGroup.
        for (int tt = tokFirst; tt <= tokLast; ++tt) {
          const int sl[4] = {kv.slot(tt, jt + 2 * tq), kv.slot(tt, jt + 2 * tq + 1), kv.slot(tt, jt + 2 * tq + 8),
                             kv.slot(tt, jt + 2 * tq + 9)};
#pragma unroll
          for (int db = 0; db < D / 8; ++db) {
            float t[4];
            pvDb<H, KV32, D>(src, ph, pl, gq, sl, db, t);
            if (tA == tt) o[db][0] = first ? t[0] : o[db][0] + t[0], o[db][1] = first ? t[1] : o[db][1] + t[1];
            if (tB == tt) o[db][2] = first ? t[2] : o[db][2] + t[2], o[db][3] = first ? t[3] : o[db][3] + t[3];
          }
        }
        // Rows of no token in the group (past n) keep whatever they had: they are never written.
      }
    }
  }

  if constexpr (PAIR) {
    if (half == 0) {  // O0 + O1 and l0 + l1 for half 1, which writes the rows
#pragma unroll
      for (int db = 0; db < D / 8; ++db) {
        const int d = db * 8 + 2 * tq;
        *reinterpret_cast<float2*>(exO + gq * D + d) = make_float2(o[db][0], o[db][1]);
        *reinterpret_cast<float2*>(exO + (gq + 8) * D + d) = make_float2(o[db][2], o[db][3]);
      }
      if (tq == 0) exL[(warp >> 1) * 32 + gq] = lA, exL[(warp >> 1) * 32 + gq + 8] = lB;
      pairArrive(warp >> 1);
      return;
    }
    // (The barrier above, in the tile loop, made exL visible too.)
    lA = (exL[(warp >> 1) * 32 + gq] + qA2[0]) + qA2[1];
    lB = (exL[(warp >> 1) * 32 + gq + 8] + qB2[0]) + qB2[1];
  }
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const bool ok = hf ? okB : okA;
    const int L = hf ? LB : LA;
    if (!ok || L <= j0) continue;
    const int t = hf ? tB : tA, h = hf ? hB : hA;
    const float m = hf ? mB : mA, l = hf ? lB : lA;
    if (L <= CH) {
#pragma unroll
      for (int db = 0; db < D / 8; ++db) {
        const int d = db * 8 + 2 * tq;
        storePacked<H>(static_cast<uint16_t*>(a.outPacked), t, h * D + d, a.outKT, __fdiv_rn(o[db][2 * hf], l));
        storePacked<H>(static_cast<uint16_t*>(a.outPacked), t, h * D + d + 1, a.outKT, __fdiv_rn(o[db][2 * hf + 1], l));
      }
    } else {
      float* p = a.part + (((size_t)t * a.heads + h) * a.maxChunks + c) * (D + 2);
      if (tq == 0) p[0] = m, p[1] = l;
#pragma unroll
      for (int db = 0; db < D / 8; ++db)
        *reinterpret_cast<float2*>(p + 2 + db * 8 + 2 * tq) = make_float2(o[db][2 * hf], o[db][2 * hf + 1]);
    }
  }
}

// One group of 16 query rows against one 64-key chunk, by all 4 warps of the block: warp w owns
// keys 16w..16w+15 (key blocks 2w, 2w+1 for S; key tile w for P V). Cross-warp reductions go
// through shared memory in warp order, the same for every n, so they are part of the fixed
// numerics: row max (exact), l = ((l0 + l1) + l2) + l3, O = ((O0 + O1) + O2) + O3.
template <class H, bool KV32, int D, class Src>
__device__ void attendGroup(const AttnArgs& a, const KeyView kv, const Src& src, int n, int group, int rg, int c, int nStage,
                            const uint16_t* Ks, const uint16_t* Vs, const uint16_t* Ksl, const uint16_t* Vsl, float* red,
                            float* obuf) {
  using Cfg = AttnCfg<D>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int g = blockIdx.x;  // kv head
  const int rows = n * group;
  const int rA = rg * 16 + gq, rB = rA + 8;
  const bool okA = rA < rows, okB = rB < rows;
  const int tA = okA ? rA / group : -1, tB = okB ? rB / group : -1;
  const int hA = g * group + rA % group, hB = g * group + rB % group;
  const int LA = okA ? kv.keys(tA) : 0, LB = okB ? kv.keys(tB) : 0;
  int Lg = max(LA, LB);
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) Lg = max(Lg, __shfl_xor_sync(0xffffffffu, Lg, m));
  const int j0 = c * CH;
  if (Lg <= j0) return;  // block-uniform: no row of this group has keys in this chunk

  const float* qA = okA ? a.q + ((size_t)tA * a.heads + hA) * D : nullptr;
  const float* qB = okB ? a.q + ((size_t)tB * a.heads + hB) * D : nullptr;
  const int tokFirst = (rg * 16) / group, tokLast = (min(rows, rg * 16 + 16) - 1) / group;
  const int nFull = nStage / 8;  // key blocks whose 8 keys are all staged
  // The rows' q as A fragments, loaded once (from L2: the previous kernel wrote them) for the staged
  // keys and every row block of a tree tail.
  uint32_t qh[D / 16][4], ql[D / 16][4];
#pragma unroll
  for (int dt = 0; dt < D / 16; ++dt) loadQ<H>(qA, qB, dt, tq, qh[dt], ql[dt]);

  // ---- S = Q K^T for this warp's key blocks kb = 2w + kbl ----
  float s[2][4];
#pragma unroll
  for (int kbl = 0; kbl < 2; ++kbl) s[kbl][0] = s[kbl][1] = s[kbl][2] = s[kbl][3] = 0.f;
  if (2 * warp < nFull) {
#pragma unroll
    for (int dt = 0; dt < D / 16; dt += 2) {
#pragma unroll
      for (int kbl = 0; kbl < 2; ++kbl) {
        const int kb = 2 * warp + kbl;
        if (kb < nFull) {
          // Matrices: keys kb*8.., head dims 16dt+0, +8, +16, +24: B fragments of tiles dt, dt+1.
          const int off = (kb * 8 + (lane & 7)) * Cfg::LD + dt * 16 + (lane >> 3) * 8;
          sPair<H, KV32>(Ks, Ksl, off, qh[dt], ql[dt], qh[dt + 1], ql[dt + 1], s[kbl]);
        }
      }
    }
  }
  // Key blocks past the staged prefix: slots from the per-token key lists.
  if constexpr (IsTail<Src>::value) {
    // Tree tail: S of the 16 rows against every staged tail row, the row blocks spread over the 4
    // warps, with the staged keys' mma sequence (so each element has their bits); then each warp
    // takes its key blocks' columns per row, as attendRowsWide does.
    float* st = src.scratch;  // [16 rows][src.rows]
    if (nFull < 8 && j0 + nFull * 8 < Lg) {  // block-uniform: every warp has the same 16 rows
      for (int ub = warp; ub * 8 < src.count; ub += kAttnWarps) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int dt = 0; dt < D / 16; dt += 2) {
          const int off = (ub * 8 + (lane & 7)) * Cfg::LD + dt * 16 + (lane >> 3) * 8;
          sPair<H, KV32>(src.k, src.kl, off, qh[dt], ql[dt], qh[dt + 1], ql[dt + 1], acc);
        }
        const int u = ub * 8 + 2 * tq;
        *reinterpret_cast<float2*>(st + gq * src.rows + u) = make_float2(acc[0], acc[1]);
        *reinterpret_cast<float2*>(st + (gq + 8) * src.rows + u) = make_float2(acc[2], acc[3]);
      }
      __syncthreads();
#pragma unroll
      for (int kbl = 0; kbl < 2; ++kbl) {
        const int kb = 2 * warp + kbl, jb = j0 + kb * 8;
        if (kb < nFull || jb >= Lg) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = e < 2 ? tA : tB;
          const int u = t >= 0 ? kv.slot(t, jb + 2 * tq + (e & 1)) : -1;
          s[kbl][e] = u >= 0 ? st[(gq + (e < 2 ? 0 : 8)) * src.rows + u] : 0.f;  // past the list: masked below
        }
      }
    }
  } else {
#pragma unroll
  for (int kbl = 0; kbl < 2; ++kbl) {
    const int kb = 2 * warp + kbl, jb = j0 + kb * 8;
    if (kb < nFull || jb >= Lg) continue;
    // Merge slots of key (lane & 7) over the group's tokens, 4 token subsets in lanes >> 3.
    int m = -1;
    for (int tt = tokFirst + (lane >> 3); tt <= tokLast; tt += 4) m = mergeSlot(m, kv.slot(tt, jb + (lane & 7)));
    m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 8));
    m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 16));
    const bool conflict = __any_sync(0xffffffffu, m == -2);
    if (!conflict) {
      scoreTile<H, KV32, D>(src, qA, qB, tq, __shfl_sync(0xffffffffu, m, gq), s[kbl]);
    } else {
      for (int tt = tokFirst; tt <= tokLast; ++tt) {
        float u[4];
        scoreTile<H, KV32, D>(src, qA, qB, tq, kv.slot(tt, jb + gq), u);
        if (tA == tt) s[kbl][0] = u[0], s[kbl][1] = u[1];
        if (tB == tt) s[kbl][2] = u[2], s[kbl][3] = u[3];
      }
    }
  }
  }

  // ---- softmax over the chunk: row max and sum across the 4 warps ----
  float mA = -INFINITY, mB = -INFINITY;
#pragma unroll
  for (int kbl = 0; kbl < 2; ++kbl) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = j0 + (2 * warp + kbl) * 8 + 2 * tq + (e & 1);
      const bool valid = j < (e < 2 ? LA : LB);
      s[kbl][e] = valid ? s[kbl][e] * a.scale : -INFINITY;
    }
    mA = fmaxf(mA, fmaxf(s[kbl][0], s[kbl][1]));
    mB = fmaxf(mB, fmaxf(s[kbl][2], s[kbl][3]));
  }
#pragma unroll
  for (int x = 1; x <= 2; x <<= 1) {
    mA = fmaxf(mA, __shfl_xor_sync(0xffffffffu, mA, x));
    mB = fmaxf(mB, __shfl_xor_sync(0xffffffffu, mB, x));
  }
  float* redM = red;            // [4 warps][16 rows]
  float* redL = red + 4 * 16;   // [4 warps][16 rows]
  int* redK = reinterpret_cast<int*>(red + 2 * 4 * 16);  // [16 rows]
  if (tq == 0) redM[warp * 16 + gq] = mA, redM[warp * 16 + gq + 8] = mB;
  if (warp == 0 && tq == 0) redK[gq] = LA, redK[gq + 8] = LB;  // key counts for the output loop
  __syncthreads();
  mA = fmaxf(fmaxf(redM[gq], redM[16 + gq]), fmaxf(redM[32 + gq], redM[48 + gq]));
  mB = fmaxf(fmaxf(redM[gq + 8], redM[24 + gq]), fmaxf(redM[40 + gq], redM[56 + gq]));
  float lA = 0.f, lB = 0.f;
#pragma unroll
  for (int kbl = 0; kbl < 2; ++kbl) {
    s[kbl][0] = mA == -INFINITY ? 0.f : expf(s[kbl][0] - mA);
    s[kbl][1] = mA == -INFINITY ? 0.f : expf(s[kbl][1] - mA);
    s[kbl][2] = mB == -INFINITY ? 0.f : expf(s[kbl][2] - mB);
    s[kbl][3] = mB == -INFINITY ? 0.f : expf(s[kbl][3] - mB);
    lA = lA + s[kbl][0];
    lA = lA + s[kbl][1];
    lB = lB + s[kbl][2];
    lB = lB + s[kbl][3];
  }
#pragma unroll
  for (int x = 1; x <= 2; x <<= 1) {
    lA = lA + __shfl_xor_sync(0xffffffffu, lA, x);
    lB = lB + __shfl_xor_sync(0xffffffffu, lB, x);
  }
  if (tq == 0) redL[warp * 16 + gq] = lA, redL[warp * 16 + gq + 8] = lB;

  // ---- O_w = P V over this warp's key tile kt = w ----
  float o[D / 8][4];
#pragma unroll
  for (int db = 0; db < D / 8; ++db) o[db][0] = o[db][1] = o[db][2] = o[db][3] = 0.f;
  const int kt = warp, jt = j0 + kt * 16;
  // Decode tree tail: tail scratch after S's [16][rows]: P per tile, tail rows per tile, flags.
  float* tailP = nullptr;
  int *tailMap = nullptr, *tailFlag = nullptr;
  if constexpr (IsTail<Src>::value) {
    tailP = src.scratch + 16 * src.rows;
    tailMap = reinterpret_cast<int*>(tailP + 4 * 256);
    tailFlag = tailMap + 4 * 256;
  }
  bool deferred = false;  // this warp's tile goes token by token, over all 4 warps
  if (jt < Lg) {
    const float pv[8] = {s[0][0], s[0][1], s[0][2], s[0][3], s[1][0], s[1][1], s[1][2], s[1][3]};
    uint32_t ph[4], pl[4];
    aFragments<H>(pv, ph, pl);
    if (kt * 16 + 16 <= nStage) {
#pragma unroll
      for (int db = 0; db < D / 8; db += 2) {
        // Matrices: keys kt*16 + {0..7, 8..15} x head dims 8db.., 8(db+1)..; .trans gives B fragments.
        const int mi = lane >> 3;
        const int off = (kt * 16 + (mi & 1) * 8 + (lane & 7)) * Cfg::LD + (db + (mi >> 1)) * 8;
        uint32_t b[4];
        ldmatrixX4Trans(b, Vs + off);
        mma16816<H>(o[db], ph, b[0], b[1]);
        mma16816<H>(o[db], pl, b[0], b[1]);
        if constexpr (KV32) {
          uint32_t bl[4];
          ldmatrixX4Trans(bl, Vsl + off);
          mma16816<H>(o[db], ph, bl[0], bl[1]);
          mma16816<H>(o[db + 1], ph, b[2], b[3]);
          mma16816<H>(o[db + 1], pl, b[2], b[3]);
          mma16816<H>(o[db + 1], ph, bl[2], bl[3]);
        } else {
          mma16816<H>(o[db + 1], ph, b[2], b[3]);
          mma16816<H>(o[db + 1], pl, b[2], b[3]);
        }
      }
    } else {
      // Merge slots of key (lane & 15) over the group's tokens, 2 token subsets in lanes >> 4.
      int m = -1;
      for (int tt = tokFirst + (lane >> 4); tt <= tokLast; tt += 2) m = mergeSlot(m, kv.slot(tt, jt + (lane & 15)));
      m = mergeSlot(m, __shfl_xor_sync(0xffffffffu, m, 16));
      const bool conflict = __any_sync(0xffffffffu, m == -2);
      if (!conflict) {
        const int sl[4] = {__shfl_sync(0xffffffffu, m, 2 * tq), __shfl_sync(0xffffffffu, m, 2 * tq + 1),
                           __shfl_sync(0xffffffffu, m, 2 * tq + 8), __shfl_sync(0xffffffffu, m, 2 * tq + 9)};
        pvTile<H, KV32, D>(src, ph, pl, gq, sl, o);
      } else if constexpr (IsTail<Src>::value) {
        // Tree tail: the tile goes token by token, the passes spread over all 4 warps below; here
        // its P and each token's tail rows are left for them.
        deferred = true;
        float* pb = tailP + kt * 256;  // [16 rows][16 keys]
        *reinterpret_cast<float2*>(pb + gq * 16 + 2 * tq) = make_float2(pv[0], pv[1]);
        *reinterpret_cast<float2*>(pb + (gq + 8) * 16 + 2 * tq) = make_float2(pv[2], pv[3]);
        *reinterpret_cast<float2*>(pb + gq * 16 + 8 + 2 * tq) = make_float2(pv[4], pv[5]);
        *reinterpret_cast<float2*>(pb + (gq + 8) * 16 + 8 + 2 * tq) = make_float2(pv[6], pv[7]);
        int* mp = tailMap + kt * 256;  // [token][16 keys]
        for (int i = lane; i < (tokLast - tokFirst + 1) * 16; i += 32) mp[i] = kv.slot(tokFirst + i / 16, jt + i % 16);
      } else {
        for (int tt = tokFirst; tt <= tokLast; ++tt) {
          const int sl[4] = {kv.slot(tt, jt + 2 * tq), kv.slot(tt, jt + 2 * tq + 1), kv.slot(tt, jt + 2 * tq + 8),
                             kv.slot(tt, jt + 2 * tq + 9)};
          float u[D / 8][4];
#pragma unroll
          for (int db = 0; db < D / 8; ++db) u[db][0] = u[db][1] = u[db][2] = u[db][3] = 0.f;
          pvTile<H, KV32, D>(src, ph, pl, gq, sl, u);
#pragma unroll
          for (int db = 0; db < D / 8; ++db) {
            if (tA == tt) o[db][0] = u[db][0], o[db][1] = u[db][1];
            if (tB == tt) o[db][2] = u[db][2], o[db][3] = u[db][3];
          }
        }
      }
    }
  }
  if constexpr (IsTail<Src>::value)
    if (lane == 0) tailFlag[warp] = deferred;
  __syncthreads();  // every warp is done with the staged V, which obuf overlays; tail P is visible
  if (!deferred) {
#pragma unroll
    for (int db = 0; db < D / 8; ++db) {
      const int d = db * 8 + 2 * tq;
      *reinterpret_cast<float2*>(obuf + (warp * 16 + gq) * D + d) = make_float2(o[db][0], o[db][1]);
      *reinterpret_cast<float2*>(obuf + (warp * 16 + gq + 8) * D + d) = make_float2(o[db][2], o[db][3]);
    }
  }
  if constexpr (IsTail<Src>::value) {
    // Deferred tiles, pass (tile, token) by warp (pass mod 4): the token's rows of that tile's O,
    // from the same fragments its owner would have used (so the same bits).
    const int ntok = tokLast - tokFirst + 1;
    const int kk = ((lane >> 3) & 1) * 8 + (lane & 7);  // the tile key whose row this lane addresses
    int pass = 0;
    for (int w = 0; w < kAttnWarps; ++w) {
      if (!tailFlag[w]) continue;
      for (int tt = 0; tt < ntok; ++tt, ++pass) {
        if (pass % kAttnWarps != warp) continue;
        const float* pb = tailP + w * 256;
        const float2 p0 = *reinterpret_cast<const float2*>(pb + gq * 16 + 2 * tq);
        const float2 p1 = *reinterpret_cast<const float2*>(pb + (gq + 8) * 16 + 2 * tq);
        const float2 p2 = *reinterpret_cast<const float2*>(pb + gq * 16 + 8 + 2 * tq);
        const float2 p3 = *reinterpret_cast<const float2*>(pb + (gq + 8) * 16 + 8 + 2 * tq);
        const float pv[8] = {p0.x, p0.y, p1.x, p1.y, p2.x, p2.y, p3.x, p3.y};
        uint32_t ph[4], pl[4];
        aFragments<H>(pv, ph, pl);
        const int row = tailMap[w * 256 + tt * 16 + kk];
        const bool mineA = tA == tokFirst + tt, mineB = tB == tokFirst + tt;
#pragma unroll
        for (int db = 0; db < D / 8; db += 2) {
          float t0[4], t1[4];
          pvPair<H, KV32, D>(src.v, src.vl, (row < 0 ? 0 : row) * Cfg::LD, db, ph, pl, t0, t1);
          const int d = db * 8 + 2 * tq;
          if (mineA) {
            *reinterpret_cast<float2*>(obuf + (w * 16 + gq) * D + d) = make_float2(t0[0], t0[1]);
            *reinterpret_cast<float2*>(obuf + (w * 16 + gq) * D + d + 8) = make_float2(t1[0], t1[1]);
          }
          if (mineB) {
            *reinterpret_cast<float2*>(obuf + (w * 16 + gq + 8) * D + d) = make_float2(t0[2], t0[3]);
            *reinterpret_cast<float2*>(obuf + (w * 16 + gq + 8) * D + d + 8) = make_float2(t1[2], t1[3]);
          }
        }
      }
    }
  }
  __syncthreads();

  // ---- combine the 4 warps' partial O in warp order; write output or chunk partial ----
  for (int e = threadIdx.x; e < 16 * D; e += blockDim.x) {
    const int r = e / D, d = e % D;
    const int row = rg * 16 + r;
    if (row >= rows) continue;
    const int t = row / group, h = g * group + row % group;
    const int L = redK[r];
    if (L <= j0) continue;
    const float m = fmaxf(fmaxf(redM[r], redM[16 + r]), fmaxf(redM[32 + r], redM[48 + r]));
    const float l = ((redL[r] + redL[16 + r]) + redL[32 + r]) + redL[48 + r];
    const float val = ((obuf[r * D + d] + obuf[(16 + r) * D + d]) + obuf[(32 + r) * D + d]) + obuf[(48 + r) * D + d];
    if (L <= CH) {  // one chunk: out = acc / l, exactly what attnCombine computes for C = 1
      storePacked<H>(static_cast<uint16_t*>(a.outPacked), t, h * D + d, a.outKT, __fdiv_rn(val, l));
    } else {
      float* p = a.part + (((size_t)t * a.heads + h) * a.maxChunks + c) * (D + 2);
      if (d == 0) p[0] = m, p[1] = l;
      p[2 + d] = val;
    }
  }
  __syncthreads();  // red / obuf are reused by the next group
}

// Copies cache rows to shared rows r in [r0, r1) (row stride D + 8): slot list[r], or first + r
// without a list. fp32 caches are split into hi/lo arrays; 16-bit ones go by cp.async (the caller
// waits).
template <class H, bool KV32, int D>
__device__ __forceinline__ void stageRows(const AttnArgs& a, int g, int r0, int r1, const int32_t* list, int first, uint16_t* K,
                                          uint16_t* V, uint16_t* Kl, uint16_t* Vl) {
  constexpr int ld = AttnCfg<D>::LD;
  const int kvDim = a.kvHeads * D;
  if constexpr (KV32) {
    const float* kf = static_cast<const float*>(a.k);
    const float* vf = static_cast<const float*>(a.v);
    for (int e = r0 * (D / 4) + threadIdx.x; e < r1 * (D / 4); e += blockDim.x) {
      const int r = e / (D / 4), c4 = (e % (D / 4)) * 4;
      const size_t src = (size_t)(list ? list[r] : first + r) * kvDim + g * D + c4;
      const float4 kx = *reinterpret_cast<const float4*>(kf + src);
      const float4 vx = *reinterpret_cast<const float4*>(vf + src);
      const float kk[4] = {kx.x, kx.y, kx.z, kx.w}, vv[4] = {vx.x, vx.y, vx.z, vx.w};
      uint16_t kh[4], kl[4], vh[4], vl[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        splitHiLo<H>(kk[i], kh[i], kl[i]);
        splitHiLo<H>(vv[i], vh[i], vl[i]);
      }
      const int o = r * ld + c4;
      *reinterpret_cast<uint2*>(K + o) = make_uint2(pack2(kh[0], kh[1]), pack2(kh[2], kh[3]));
      *reinterpret_cast<uint2*>(Kl + o) = make_uint2(pack2(kl[0], kl[1]), pack2(kl[2], kl[3]));
      *reinterpret_cast<uint2*>(V + o) = make_uint2(pack2(vh[0], vh[1]), pack2(vh[2], vh[3]));
      *reinterpret_cast<uint2*>(Vl + o) = make_uint2(pack2(vl[0], vl[1]), pack2(vl[2], vl[3]));
    }
  } else {
    const uint16_t* kh = static_cast<const uint16_t*>(a.k);
    const uint16_t* vh = static_cast<const uint16_t*>(a.v);
    for (int e = r0 * (D / 8) + threadIdx.x; e < r1 * (D / 8); e += blockDim.x) {
      const int r = e / (D / 8), c8 = (e % (D / 8)) * 8;
      const size_t src = (size_t)(list ? list[r] : first + r) * kvDim + g * D + c8;
      cpAsync16(K + r * ld + c8, kh + src);
      cpAsync16(V + r * ld + c8, vh + src);
    }
  }
}

// Every row group of the launch against chunk c, lookups through (kv, src).
template <class H, bool KV32, int D, bool WIDE, bool PAIR, class Src>
__device__ __forceinline__ void attendChunk(const AttnArgs& a, const KeyView kv, const Src& src, int n, int group, int c, int nStage,
                                            const uint16_t* Ks, const uint16_t* Vs, const uint16_t* Ksl, const uint16_t* Vsl,
                                            float* red, float* obuf, float* pairX) {
  if constexpr (PAIR) {  // two row groups, a warp pair each (every warp, whatever this batch's rows)
    attendRowsWide<H, KV32, D, true>(a, kv, src, n, group, threadIdx.x >> 6, c, nStage, Ks, Vs, Ksl, Vsl, pairX);
  } else if constexpr (WIDE) {  // several row groups: one warp each
    for (int rg = threadIdx.x >> 5; rg * 16 < n * group; rg += kAttnWarps)
      attendRowsWide<H, KV32, D, false>(a, kv, src, n, group, rg, c, nStage, Ks, Vs, Ksl, Vsl, pairX);
  } else {  // decode: all 4 warps on one row group; the grid's y blocks take turns
    for (int rg = blockIdx.y; rg * 16 < n * group; rg += gridDim.y)
      attendGroup<H, KV32, D>(a, kv, src, n, group, rg, c, nStage, Ks, Vs, Ksl, Vsl, red, obuf);
  }
}

// 3 resident blocks per SM (<= 168 registers): a launch of 288 blocks (7B, cache 512) fits one wave.
template <class H, bool KV32, int D, bool WIDE, bool PAIR>
__global__ void __launch_bounds__(kAttnWarps * 32, kAttnBlocksPerSm) attnKernel(const AttnArgs a) {
  using Cfg = AttnCfg<D>;
  extern __shared__ __align__(16) uint16_t sm[];
  // [K V (K lo, V lo: fp32 caches)] x kAttnChunk rows, the same x a.tailRows rows, then red, obuf.
  constexpr int arrays = KV32 ? 4 : 2;
  uint16_t* Ks = sm;
  uint16_t* Vs = sm + Cfg::kArray;
  uint16_t* Ksl = sm + 2 * Cfg::kArray;  // KV32: lo halves
  uint16_t* Vsl = sm + 3 * Cfg::kArray;
  const int tailArray = a.tailRows * Cfg::LD;
  uint16_t* Kt = sm + arrays * Cfg::kArray;  // then Vt, Ktl, Vtl
  float* red = reinterpret_cast<float*>(Kt + arrays * tailArray);  // [2][4 warps][16 rows], [16]; wide: scratch
  float* obuf = reinterpret_cast<float*>(sm);                      // decode: [4 warps][16 rows][D] over K, V
  float* tailScratch = WIDE ? red : red + 2 * 4 * 16 + 16;
  float* pairX = red + kAttnWarps * attnWarpScratch(a.tailRows);  // WIDE only
  const int g = blockIdx.x;  // kv head

  // The parameter block was copied before the graph started, and every key below `committed` was
  // written by an earlier forward: the first chunk's committed rows are staged before waiting
  // for the previous kernel (the qkv projection, which writes only this forward's slots).
  const Params P{a.params};
  const int n = P.n(), committed = P.committed(), staged = P.stagedKeys();
  const int nChunks = (P.maxKeys() + CH - 1) / CH;
  if ((int)blockIdx.y * 16 >= n * (a.heads / a.kvHeads)) return;  // a row block past this batch's rows
  // Chunks from the last: a tree's tail chunk, the longest to run, goes first when the blocks take
  // more than one wave.
  const int c0 = nChunks - 1 - (int)blockIdx.z;
  int preRows = c0 >= 0 ? min(max(committed - c0 * CH, 0), CH) : 0;
  stageRows<H, KV32, D>(a, g, 0, preRows, nullptr, c0 * CH, Ks, Vs, Ksl, Vsl);
  const int tailCount = P.tailCount();
  // A block whose chunk has a tree tail copies the tree's lists (ancestor offsets, their tail
  // rows, the tail slots) into shared memory before the wait (the parameter block was copied
  // before the graph started): its lookups in S, P V and the tail staging are then shared-memory
  // accesses instead of L2 round trips. Other blocks skip it: in a second wave of blocks the copy
  // is no longer hidden behind the previous kernel.
  const int32_t* ancOff = P.ancOffsets();
  const int32_t* ancTail = P.ancTail();
  const int32_t* tailSlots = P.tailSlots();
  // Chunk c has keys past the staged ones, served by the staged tree tail (the host listed at most
  // a.tailRows slots; else they are read from global memory).
  auto hasTail = [&](int c) {
    const int nStage = min(max(staged - c * CH, 0), CH);
    return tailCount > 0 && tailCount <= a.tailRows && nStage < CH && c * CH + nStage < P.maxKeys();
  };
  if (c0 >= 0 && hasTail(c0)) {
    const int nAnc = ancOff[n];
    if (n + 1 + nAnc + tailCount <= a.listInts) {
      int32_t* sl = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(sm) + Cfg::smemBytes(KV32, a.tailRows, WIDE));
      for (int i = threadIdx.x; i <= n; i += blockDim.x) sl[i] = ancOff[i];
      for (int i = threadIdx.x; i < nAnc; i += blockDim.x) sl[n + 1 + i] = ancTail[i];
      for (int i = threadIdx.x; i < tailCount; i += blockDim.x) sl[n + 1 + nAnc + i] = tailSlots[i];
      ancOff = sl, ancTail = sl + n + 1, tailSlots = sl + n + 1 + nAnc;
      __syncthreads();  // the tail staging below reads the slots list
    }
  }
  gridDepWait();
  gridDepLaunch();
  const int group = a.heads / a.kvHeads;

  for (int c = c0; c >= 0; c -= gridDim.z) {
    const int j0 = c * CH;
    const int nStage = min(max(staged - j0, 0), CH);  // keys in their own slot (params.cuh)
    if (c != c0) {
      __syncthreads();  // the previous chunk's readers are done with shared memory
      preRows = 0;
    }
    stageRows<H, KV32, D>(a, g, preRows, nStage, nullptr, j0, Ks, Vs, Ksl, Vsl);
    // Keys past the staged ones are looked up per token: from the staged tree tail, or global memory.
    const bool useTail = hasTail(c);
    if (useTail) stageRows<H, KV32, D>(a, g, 0, tailCount, tailSlots, 0, Kt, Kt + tailArray, Kt + 2 * tailArray, Kt + 3 * tailArray);
    if constexpr (!KV32) cpAsyncWaitAll();
    __syncthreads();
    if (useTail) {
      const KeyView kv{ancOff, ancTail, committed, attnTailStart(staged)};
      const TailRows<D> src{Kt, Kt + 2 * tailArray, Kt + tailArray, Kt + 3 * tailArray, tailCount, a.tailRows, tailScratch};
      attendChunk<H, KV32, D, WIDE, PAIR>(a, kv, src, n, group, c, nStage, Ks, Vs, Ksl, Vsl, red, obuf, pairX);
    } else {
      const KeyView kv{ancOff, P.ancSlots(), committed, 0};
      const GlobalRows<D> src{a.k, a.v, a.kvHeads * D, g * D};
      attendChunk<H, KV32, D, WIDE, PAIR>(a, kv, src, n, group, c, nStage, Ks, Vs, Ksl, Vsl, red, obuf, pairX);
    }
  }
}

// One block per (token, head), one thread per head dim: chunks combined in chunk order. Every
// thread reads the chunk maxima and sums itself (broadcast loads) and issues a batch of chunks'
// loads at once: one L2 round trip per batch and no barrier, where a shared-memory exchange cost
// four dependent steps.
template <class H, int D>
__global__ void combineKernel(const AttnArgs a, bool releaseFirst) {
  constexpr int kBatch = 16;
  const Params P{a.params};
  gridDepSync(releaseFirst);  // its dependent, the o projection, reads only weights before waiting
  const int t = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  if (t >= P.n()) return;
  const int L = P.committed() + P.ancOffsets()[t + 1] - P.ancOffsets()[t];
  const int C = (L + CH - 1) / CH;
  if (C <= 1) return;  // written directly by the attention kernel
  const float* base = a.part + ((size_t)t * a.heads + h) * a.maxChunks * (D + 2);
  float M = -INFINITY;
  if (C > kBatch)
    for (int c = 0; c < C; ++c) M = fmaxf(M, base[(size_t)c * (D + 2)]);
  float S = 0.f, acc = 0.f;
  for (int c0 = 0; c0 < C; c0 += kBatch) {
    float m[kBatch], l[kBatch], o[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      if (c0 + i >= C) break;
      const float* p = base + (size_t)(c0 + i) * (D + 2);
      m[i] = p[0], l[i] = p[1], o[i] = p[2 + d];
    }
    if (C <= kBatch) {
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
        if (i < C) M = fmaxf(M, m[i]);
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      if (c0 + i >= C) break;
      const float w = expf(m[i] - M);
      S = __fadd_rn(S, __fmul_rn(l[i], w));
      acc = __fadd_rn(acc, __fmul_rn(o[i], w));
    }
  }
  storePacked<H>(static_cast<uint16_t*>(a.outPacked), t, h * D + d, a.outKT, __fdiv_rn(acc, S));
}

template <class H, bool KV32, int D>
void launchAttnT(const AttnArgs& a, int gridX, bool pdl, cudaStream_t stream) {
  using Cfg = AttnCfg<D>;
  if (gridX < 0) {  // attentionPrepare: lift the 48 KB default (K/V staging, tree tail, partials or scratch)
    const int list = attnListInts(64, kAttnMaxTailRows) * 4;
    CUDA_CHECK(cudaFuncSetAttribute(attnKernel<H, KV32, D, false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg::smemBytes(KV32, kAttnMaxTailRows, false) + list));
    CUDA_CHECK(cudaFuncSetAttribute(attnKernel<H, KV32, D, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg::smemBytes(KV32, kAttnMaxTailRows, true) + list));
    CUDA_CHECK(cudaFuncSetAttribute(attnKernel<H, KV32, D, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg::smemBytes(KV32, kAttnMaxTailRows, true) + list));
    return;
  }
  const int smem = Cfg::smemBytes(KV32, a.tailRows, a.wide) + a.listInts * 4;
  const dim3 block(kAttnWarps * 32);
  if (a.wide && a.pair)
    launchKernel(attnKernel<H, KV32, D, true, true>, dim3(a.kvHeads, 1, gridX), block, smem, stream, pdl, "attnKernel", a);
  else if (a.wide)
    launchKernel(attnKernel<H, KV32, D, true, false>, dim3(a.kvHeads, 1, gridX), block, smem, stream, pdl, "attnKernel", a);
  else
    launchKernel(attnKernel<H, KV32, D, false, false>, dim3(a.kvHeads, a.rowBlocks, gridX), block, smem, stream, pdl,
                 "attnKernel", a);
}

template <class H, bool KV32>
void launchAttnD(const AttnArgs& a, int gridX, bool pdl, cudaStream_t stream) {
  withHeadDim(a.headDim, [&](auto d) { launchAttnT<H, KV32, decltype(d)::value>(a, gridX, pdl, stream); });
}

template <class H>
void launchCombineH(const AttnArgs& a, int maxTokens, bool pdl, bool releaseFirst, cudaStream_t stream) {
  withHeadDim(a.headDim, [&](auto d) {
    constexpr int D = decltype(d)::value;
    launchKernel(combineKernel<H, D>, dim3(maxTokens, a.heads), dim3(D), 0, stream, pdl, "combineKernel", a, releaseFirst);
  });
}

}  // namespace

void launchAttention(const AttnArgs& a, int gridX, bool bf16, bool pdl, cudaStream_t stream) {
  if (a.fma) return launchAttentionFma(a, gridX, bf16, pdl, stream);
  if (bf16)
    a.kvF32 ? launchAttnD<__nv_bfloat16, true>(a, gridX, pdl, stream) : launchAttnD<__nv_bfloat16, false>(a, gridX, pdl, stream);
  else
    a.kvF32 ? launchAttnD<__half, true>(a, gridX, pdl, stream) : launchAttnD<__half, false>(a, gridX, pdl, stream);
}

void attentionPrepare(int headDim, bool kvF32, bool bf16) {
  AttnArgs a;
  a.headDim = headDim;
  a.kvF32 = kvF32;
  launchAttention(a, -1, bf16, false, nullptr);
  launchAttentionFma(a, -1, bf16, false, nullptr);
}

void launchAttnCombine(const AttnArgs& a, int maxTokens, bool bf16, bool pdl, bool releaseFirst, cudaStream_t stream) {
  bf16 ? launchCombineH<__nv_bfloat16>(a, maxTokens, pdl, releaseFirst, stream)
       : launchCombineH<__half>(a, maxTokens, pdl, releaseFirst, stream);
}

}  // namespace casspec::cuda
