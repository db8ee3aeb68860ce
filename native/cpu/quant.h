// Int8 W8A8 (quant mode kQuantInt8, backend.h): the reference of the quantized draft forward.
//
//   weights, per output row r:  sw[r] = absmax(W[r,:]) / 127,  qw = clamp(rne(w / sw), -127, 127)
//   activations, per token t:   sx[t] = absmax(x[t,:]) / 127,  qx likewise
//   y[t][r] = float(sum_k qw[r][k] * qx[t][k]) * (sx[t] * sw[r])
//
// All in fp32 with one rounding per operation (a row of zeros gets scale 0 and codes 0). The sum
// is an exact int32 (|sum| <= K * 127^2 < 2^31 for K <= kQuantInt8MaxK, checked at load), so it has no order to get wrong:
// results are bitwise independent of batching, tiling and threads, and the CUDA kernels, whatever
// their split of K, produce the same integer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "thread_pool.h"

namespace casspec::cpu {

// An int8 copy of a [rows x in] weight matrix with its per-row scales.
struct QuantRows {
  std::vector<int8_t> q;     // [rows x in]
  std::vector<float> scale;  // [rows]
  int rows = 0, in = 0;
  int64_t bytes() const { return (int64_t)q.size() + (int64_t)scale.size() * 4; }
};

// Quantizes x[0..n) to q[0..n) and returns the scale.
float quantizeRow(const float* x, int n, int8_t* q);

void quantizeWeights(ThreadPool& pool, const float* w, int rows, int in, QuantRows& out);

// Y = dequant(Wq . Xq) for n tokens; like MatJob (matmul.h), with the quantized input.
struct QuantJob {
  const QuantRows* w;
  const int8_t* x;   // [n x ldx], first w->in columns used
  size_t ldx;
  const float* sx;   // [n]
  float* y;          // [n x ldy], columns [0, w->rows) written
  size_t ldy;
};
void matmulQ8(ThreadPool& pool, const QuantJob* jobs, int nJobs, int n);

}  // namespace casspec::cpu
