// Weight storage is fp32 on the CPU backend; checkpoints arrive as F32, F16 or BF16. Every F16 and
// BF16 value is exactly representable in fp32, so conversion loses nothing.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../engine/config.h"

namespace casspec::cpu {

float bf16ToF32(uint16_t h);
float f16ToF32(uint16_t h);
// src holds count elements of type t (any alignment).
void toF32(DType t, const void* src, float* dst, size_t count);

}  // namespace casspec::cpu
