// Y = X W^T for a batch of tokens: Y[t][r] = dot(W[r,:], X[t,:]) (W row-major [rows x in], as HF
// stores Linear weights). Each output is one dot() in the fixed lane order of dot.h, whatever the
// batch size; threads split the rows, never a sum.
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

#include "thread_pool.h"

namespace casspec::cpu {

// Rows per task: small enough to spread a single-token product over the threads, large enough that
// a task's weight rows stay in L1/L2 while its tokens stream past them.
constexpr int kRowsPerTask = 32;

// Splits the rows of nJobs products into tasks of kRowsPerTask rows and runs fn(job, r0, r1) for
// each on the pool. Threads split rows, never a sum, so no output depends on the split.
template <class RowsOf, class Fn>
void forRowBlocks(ThreadPool& pool, int nJobs, RowsOf rowsOf, Fn fn) {
  struct Block {
    int job, r0, r1;
  };
  std::vector<Block> blocks;
  for (int j = 0; j < nJobs; ++j)
    for (int r = 0; r < rowsOf(j); r += kRowsPerTask) blocks.push_back({j, r, std::min(rowsOf(j), r + kRowsPerTask)});
  pool.run((int)blocks.size(), [&](int task, int) { fn(blocks[task].job, blocks[task].r0, blocks[task].r1); });
}

struct MatJob {
  const float* w;  // [rows x in]
  int rows;
  int in;
  const float* x;  // [n x ldx], first `in` columns used
  size_t ldx;
  float* y;        // [n x ldy], columns [0, rows) written
  size_t ldy;
};

// Runs several independent products (e.g. q, k and v) as one parallel job, n tokens each.
void matmul(ThreadPool& pool, const MatJob* jobs, int nJobs, int n);

}  // namespace casspec::cpu
