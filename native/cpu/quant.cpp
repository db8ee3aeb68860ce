#include "strict_fp.h"
#include "quant.h"

#include "matmul.h"

#include <algorithm>
#include <cmath>

namespace casspec::cpu {

float quantizeRow(const float* x, int n, int8_t* q) {
  float absmax = 0.f;
  for (int i = 0; i < n; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  const float scale = absmax / 127.f;
  for (int i = 0; i < n; ++i) {
    // nearbyint rounds half to even under the default rounding mode (the CUDA kernels use rintf).
    const float v = scale > 0.f ? std::nearbyint(x[i] / scale) : 0.f;
    q[i] = (int8_t)std::min(127.f, std::max(-127.f, v));
  }
  return scale;
}

void quantizeWeights(ThreadPool& pool, const float* w, int rows, int in, QuantRows& out) {
  out.rows = rows;
  out.in = in;
  std::vector<int8_t>((size_t)rows * in).swap(out.q);
  std::vector<float>(rows).swap(out.scale);
  pool.run(rows, [&](int r, int) { out.scale[r] = quantizeRow(w + (size_t)r * in, in, &out.q[(size_t)r * in]); });
}

static inline int32_t dotQ8(const int8_t* __restrict a, const int8_t* __restrict b, int n) {
  int32_t acc = 0;
  for (int i = 0; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
  return acc;
}

// Threads split the rows (as matmul does); each output is one exact integer sum.
void matmulQ8(ThreadPool& pool, const QuantJob* jobs, int nJobs, int n) {
  forRowBlocks(pool, nJobs, [&](int j) { return jobs[j].w->rows; }, [&](int jb, int r0, int r1) {
    const QuantJob& j = jobs[jb];
    const int in = j.w->in;
    for (int t = 0; t < n; ++t)
      for (int r = r0; r < r1; ++r) {
        const int32_t acc = dotQ8(&j.w->q[(size_t)r * in], j.x + t * j.ldx, in);
        j.y[t * j.ldy + r] = (float)acc * (j.sx[t] * j.w->scale[r]);
      }
  });
}

}  // namespace casspec::cpu
