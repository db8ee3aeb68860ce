#include "strict_fp.h"
#include "attention.h"

#include <cmath>

#include "simd.h"

namespace casspec::cpu {

CASSPEC_INLINE void attend(const float* q, KvCache& kv, int layer, int kvOffset, int headDim, float scale, const KeyList& keys,
                           float* scores, float* out) {
  const int n = keys.size();
  float max = -INFINITY;
  for (int j = 0; j < n; ++j) {
    scores[j] = dot8(q, kv.k(layer, keys.slot(j)) + kvOffset, headDim) * scale;
    max = scores[j] > max ? scores[j] : max;
  }
  // Softmax with the max subtracted, then normalised weights times values, as HF's eager path does.
  float sum = 0.f;
  for (int j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max);
    sum += scores[j];
  }
  for (int d = 0; d < headDim; ++d) out[d] = 0.f;
  for (int j = 0; j < n; ++j) {
    const float p = scores[j] / sum;
    const float* v = kv.v(layer, keys.slot(j)) + kvOffset;
    for (int d = 0; d < headDim; ++d) out[d] += p * v[d];
  }
}

static void attendBaseline(const float* q, KvCache& kv, int layer, int kvOffset, int headDim, float scale, const KeyList& keys,
                           float* scores, float* out) {
  attend(q, kv, layer, kvOffset, headDim, scale, keys, scores, out);
}
CASSPEC_AVX2 static void attendAvx2(const float* q, KvCache& kv, int layer, int kvOffset, int headDim, float scale,
                                    const KeyList& keys, float* scores, float* out) {
  attend(q, kv, layer, kvOffset, headDim, scale, keys, scores, out);
}

void attendHead(const float* q, KvCache& kv, int layer, int kvOffset, int headDim, float scale, const KeyList& keys,
                float* scores, float* out) {
  (useAvx2() ? attendAvx2 : attendBaseline)(q, kv, layer, kvOffset, headDim, scale, keys, scores, out);
}

}  // namespace casspec::cpu
