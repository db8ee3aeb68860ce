#include "strict_fp.h"
#include "matmul.h"

#include <algorithm>
#include <vector>

#include "dot.h"

namespace casspec::cpu {

// Register tile: R weight rows x T tokens. Each loaded weight vector is used T times and each
// token vector R times, which is what makes this faster than one dot() per output. The per-output
// arithmetic is exactly dot(): the same 8 lanes in the same order, the same final combination.
template <int R, int T>
static void tile(const float* __restrict w, int in, const float* __restrict x, size_t ldx, float* __restrict y, size_t ldy) {
  float acc[R][T][kLanes] = {};
  int i = 0;
  for (; i + kLanes <= in; i += kLanes)
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t)
        for (int k = 0; k < kLanes; ++k) acc[r][t][k] += w[(size_t)r * in + i + k] * x[t * ldx + i + k];
  for (; i < in; ++i)
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t][i % kLanes] += w[(size_t)r * in + i] * x[t * ldx + i];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[t * ldy + r] = combineLanes(acc[r][t]);
}

constexpr int kTileRows = 4, kTileTokens = 2;
// Rows per task: small enough to spread a single-token matmul over the threads, large enough that
// a task's weight rows stay in L1/L2 while its tokens stream past them.
constexpr int kRowsPerTask = 32;
// Tokens per pass over a task's rows: bounds the activations that must stay cached.
constexpr int kTokensPerBlock = 64;

template <int R>
static void rowsForTokens(const MatJob& j, int r0, int t0, int t1) {
  const float* w = j.w + (size_t)r0 * j.in;
  int t = t0;
  for (; t + kTileTokens <= t1; t += kTileTokens) tile<R, kTileTokens>(w, j.in, j.x + t * j.ldx, j.ldx, j.y + t * j.ldy + r0, j.ldy);
  for (; t < t1; ++t) tile<R, 1>(w, j.in, j.x + t * j.ldx, j.ldx, j.y + t * j.ldy + r0, j.ldy);
}

static void runBlock(const MatJob& j, int rBegin, int rEnd, int n) {
  for (int t0 = 0; t0 < n; t0 += kTokensPerBlock) {
    const int t1 = std::min(n, t0 + kTokensPerBlock);
    int r = rBegin;
    for (; r + kTileRows <= rEnd; r += kTileRows) rowsForTokens<kTileRows>(j, r, t0, t1);
    for (; r < rEnd; ++r) rowsForTokens<1>(j, r, t0, t1);
  }
}

void matmul(ThreadPool& pool, const MatJob* jobs, int nJobs, int n) {
  struct Block {
    int job, r0, r1;
  };
  std::vector<Block> blocks;
  for (int j = 0; j < nJobs; ++j)
    for (int r = 0; r < jobs[j].rows; r += kRowsPerTask) blocks.push_back({j, r, std::min(jobs[j].rows, r + kRowsPerTask)});
  pool.run((int)blocks.size(), [&](int task, int) {
    const Block& b = blocks[task];
    runBlock(jobs[b.job], b.r0, b.r1, n);
  });
}

}  // namespace casspec::cpu
