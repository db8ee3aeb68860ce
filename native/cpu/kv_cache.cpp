#include "kv_cache.h"

#include <cstring>

namespace casspec::cpu {

void KvCache::moveSlots(const int32_t* src, const int32_t* dst, int n) {
  for (int l = 0; l < layers_; ++l)
    for (int i = 0; i < n; ++i) {
      if (src[i] == dst[i]) continue;
      std::memcpy(k(l, dst[i]), k(l, src[i]), (size_t)kvDim_ * 4);
      std::memcpy(v(l, dst[i]), v(l, src[i]), (size_t)kvDim_ * 4);
    }
}

}  // namespace casspec::cpu
