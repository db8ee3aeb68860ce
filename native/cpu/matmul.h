// Y = X W^T for a batch of tokens: Y[t][r] = dot(W[r,:], X[t,:]) (W row-major [rows x in], as HF
// stores Linear weights). Each output is one dot() in the fixed lane order of dot.h, whatever the
// batch size; threads split the rows, never a sum.
#pragma once
#include <cstddef>

#include "thread_pool.h"

namespace casspec::cpu {

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
