// The per-token pieces of a Llama block that are not matrix products. Each works on one token's
// vector start to finish, so its result cannot depend on the batch around it.
#pragma once
#include "dot.h"

#include <cmath>

namespace casspec::cpu {

// HF LlamaRMSNorm in fp32: w * (x * rsqrt(mean(x^2) + eps)), in that order of multiplication.
inline void rmsNorm(const float* __restrict x, const float* __restrict w, float* __restrict out, int n, float eps) {
  const float meanSquare = sumSquares(x, n) / (float)n;
  const float r = 1.0f / std::sqrt(meanSquare + eps);
  for (int i = 0; i < n; ++i) out[i] = w[i] * (x[i] * r);
}

// SwiGLU's gate: silu(g) * u with silu(g) = g / (1 + exp(-g)), written into g.
inline void siluMul(float* __restrict g, const float* __restrict u, int n) {
  for (int i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

inline void addInto(float* __restrict x, const float* __restrict d, int n) {
  for (int i = 0; i < n; ++i) x[i] = x[i] + d[i];
}

}  // namespace casspec::cpu
