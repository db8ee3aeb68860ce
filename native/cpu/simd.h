// Eight fp32 lanes as one value (GCC/Clang vector extension). Lane k of an accumulator is dot.h's
// partial sum k. The compiler emits two SSE registers for it in a baseline build and one AVX
// register inside functions marked CASSPEC_AVX2; both do the same lane-wise multiply then add, so
// both produce the same bits. FMA is deliberately never enabled: it rounds differently.
#pragma once
#include <cstdlib>

#include "dot.h"

// These helpers are always inlined, so a Vec8 never crosses a call boundary and GCC's note that
// passing one by value differs between SSE and AVX builds does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace casspec::cpu {

typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec8Unaligned __attribute__((vector_size(32), aligned(4), may_alias));
static_assert(kLanes == 8, "Vec8 holds one lane per partial sum of dot()");

#define CASSPEC_INLINE __attribute__((always_inline)) inline

CASSPEC_INLINE Vec8 load8(const float* p) { return *(const Vec8Unaligned*)p; }

CASSPEC_INLINE float combine8(const Vec8& a) {
  float lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = a[k];
  return combineLanes(lanes);
}

// dot() of dot.h, written with Vec8 so it vectorises the same way in every build.
CASSPEC_INLINE float dot8(const float* __restrict a, const float* __restrict b, int n) {
  Vec8 acc = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += load8(a + i) * load8(b + i);
  for (; i < n; ++i) acc[i % kLanes] += a[i] * b[i];
  return combine8(acc);
}

// Hot loops are compiled twice: as is, and with CASSPEC_AVX2 (x86-64 only). useAvx2() picks one
// for the whole process. CASSPEC_CPU_NO_AVX2=1 forces the baseline, so tests can check that both
// give identical bits.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CASSPEC_AVX2 __attribute__((target("avx2")))
inline bool useAvx2() {
  static const bool yes = [] {
    const char* off = std::getenv("CASSPEC_CPU_NO_AVX2");
    return __builtin_cpu_supports("avx2") && !(off && *off && *off != '0');
  }();
  return yes;
}
#else
#define CASSPEC_AVX2  // one build only; both entry points run the same code
inline bool useAvx2() { return false; }
#endif

}  // namespace casspec::cpu
