#include "strict_fp.h"
#include "matmul.h"

#include <algorithm>
#include <vector>

#include "simd.h"

namespace casspec::cpu {

// Register tile: R weight rows x T tokens. Each loaded weight vector is used T times and each
// token vector R times. Per output the arithmetic is exactly dot(): same lanes, same order, same
// final combination, so a token's numbers do not depend on which tile shape covered it.
template <int R, int T>
CASSPEC_INLINE void tile(const float* __restrict w, int in, const float* __restrict x, size_t ldx, float* __restrict y,
                         size_t ldy) {
  Vec8 acc[R][T] = {};
  int i = 0;
  for (; i + kLanes <= in; i += kLanes) {
    Vec8 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = load8(x + t * ldx + i);
    for (int r = 0; r < R; ++r) {
      const Vec8 wv = load8(w + (size_t)r * in + i);
      for (int t = 0; t < T; ++t) acc[r][t] += wv * xv[t];
    }
  }
  for (; i < in; ++i)  // rows whose length is not a multiple of 8: same lanes as dot()
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t][i % kLanes] += w[(size_t)r * in + i] * x[t * ldx + i];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = combine8(acc[r][t]);
}

// 4 x 3 measured fastest on x86 with both SSE and AVX (no FMA) without spilling accumulators.
constexpr int kTileRows = 4, kTileTokens = 3;
// Tokens per pass over a task's rows: bounds the activations that must stay cached.
constexpr int kTokensPerBlock = 60;

template <int R>
CASSPEC_INLINE void rowsForTokens(const MatJob& j, int r0, int t0, int t1) {
  const float* w = j.w + (size_t)r0 * j.in;
  int t = t0;
  for (; t + kTileTokens <= t1; t += kTileTokens)
    tile<R, kTileTokens>(w, j.in, j.x + t * j.ldx, j.ldx, j.y + t * j.ldy + r0, j.ldy);
  for (; t < t1; ++t) tile<R, 1>(w, j.in, j.x + t * j.ldx, j.ldx, j.y + t * j.ldy + r0, j.ldy);
}

CASSPEC_INLINE void block(const MatJob& j, int rBegin, int rEnd, int n) {
  for (int t0 = 0; t0 < n; t0 += kTokensPerBlock) {
    const int t1 = std::min(n, t0 + kTokensPerBlock);
    int r = rBegin;
    for (; r + kTileRows <= rEnd; r += kTileRows) rowsForTokens<kTileRows>(j, r, t0, t1);
    for (; r < rEnd; ++r) rowsForTokens<1>(j, r, t0, t1);
  }
}

static void blockBaseline(const MatJob& j, int rBegin, int rEnd, int n) { block(j, rBegin, rEnd, n); }
CASSPEC_AVX2 static void blockAvx2(const MatJob& j, int rBegin, int rEnd, int n) { block(j, rBegin, rEnd, n); }

void matmul(ThreadPool& pool, const MatJob* jobs, int nJobs, int n) {
  const bool avx2 = useAvx2();
  forRowBlocks(pool, nJobs, [&](int j) { return jobs[j].rows; },
               [&](int j, int r0, int r1) { (avx2 ? blockAvx2 : blockBaseline)(jobs[j], r0, r1, n); });
}

}  // namespace casspec::cpu
