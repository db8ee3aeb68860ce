#include "convert.h"

#include <cstring>

namespace casspec::cpu {

static inline float fromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16 is the top half of an fp32.
float bf16ToF32(uint16_t h) { return fromBits((uint32_t)h << 16); }

// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Done on the bits rather than with a
// compiler half type so subnormals, infinities and NaN payloads convert the same everywhere.
float f16ToF32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return fromBits(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    if (man == 0) return fromBits(sign);  // +-0
    // Subnormal: value = man * 2^-24. Normalise so the leading 1 becomes the implicit bit.
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400) == 0);
    man &= 0x3ff;
    return fromBits(sign | (uint32_t)(127 - 15 - e) << 23 | (man << 13));
  }
  return fromBits(sign | (exp + 127 - 15) << 23 | (man << 13));
}

void toF32(DType t, const void* src, float* dst, size_t count) {
  if (t == DType::F32) {
    std::memcpy(dst, src, count * 4);
    return;
  }
  // Copy the 16-bit words out first: the source may be unaligned (it is a slice of a file).
  const auto* bytes = static_cast<const uint8_t*>(src);
  constexpr size_t kChunk = 4096;
  uint16_t h[kChunk];
  for (size_t base = 0; base < count; base += kChunk) {
    const size_t n = count - base < kChunk ? count - base : kChunk;
    std::memcpy(h, bytes + 2 * base, 2 * n);  // little-endian hosts only, like safetensors itself
    if (t == DType::BF16)
      for (size_t i = 0; i < n; ++i) dst[base + i] = bf16ToF32(h[i]);
    else
      for (size_t i = 0; i < n; ++i) dst[base + i] = f16ToF32(h[i]);
  }
}

}  // namespace casspec::cpu
