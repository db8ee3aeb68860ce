// Deterministic random weights for the dummy load format: a pure function of (seed, tensor index,
// element index), so every backend (and the host or the device) produces identical values.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define CASSPEC_HD __host__ __device__
#else
#define CASSPEC_HD
#endif

namespace casspec {

CASSPEC_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Norm weights are 1 +- 0.1; matrices uniform with std 0.02 (Llama's initializer_range).
CASSPEC_HD inline float dummyWeight(uint64_t seed, int tensorIndex, uint64_t element, bool isNorm) {
  uint64_t h = splitmix64(seed ^ splitmix64((uint64_t)tensorIndex * 0x100000001B3ull + element));
  float u = (float)(h >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // uniform in [-1, 1)
  // Explicit round-to-nearest ops: nvcc would otherwise fuse 1 + 0.1*u into one FMA on the device
  // and the host and device values would differ in the last bit.
#ifdef __CUDA_ARCH__
  return isNorm ? __fadd_rn(1.0f, __fmul_rn(0.1f, u)) : __fmul_rn(0.034641016f, u);
#else
  return isNorm ? 1.0f + 0.1f * u : 0.034641016f * u;  // 0.034641016 = sqrt(3) * 0.02
#endif
}

}  // namespace casspec
