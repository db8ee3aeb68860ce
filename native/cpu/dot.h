// The one way this backend sums products. Eight running partial sums, lane k taking the terms
// whose index is k mod 8, combined in a fixed tree at the end. The order depends only on the
// vector length, never on batch size, tiling or thread, so every caller gets the same bits for the
// same inputs; eight independent lanes are what lets the compiler use SIMD without reassociating.
#pragma once
#include "strict_fp.h"

namespace casspec::cpu {

constexpr int kLanes = 8;

inline float combineLanes(const float* a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

inline float dot(const float* __restrict a, const float* __restrict b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) acc[i % kLanes] += a[i] * b[i];
  return combineLanes(acc);
}

inline float sumSquares(const float* __restrict a, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += a[i + k] * a[i + k];
  for (; i < n; ++i) acc[i % kLanes] += a[i] * a[i];
  return combineLanes(acc);
}

}  // namespace casspec::cpu
