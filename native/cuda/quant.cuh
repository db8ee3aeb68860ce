// Activation quantization for quant mode kQuantInt8 (backend.h): per token, scale = absmax / 127
// over the K inputs, codes = clamp(rne(v / scale), -127, 127), written in the packed int8 B layout
// (layout.cuh) with the scale in sx[token]. One block per token; the absmax is a max, so it has
// no order to depend on, and a token's codes never depend on the batch around it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace casspec::cuda {

enum class QuantSource : int {
  Norm = 0,      // RMSNorm of the fp32 residual stream: w * (x * rstd), as the 16-bit path computes it
  Packed16 = 1,  // a packed 16-bit hi + lo activation (layout.cuh B operand): the attention output
  F32 = 2,       // fp32 rows: the SwiGLU output
};

struct QuantArgs {
  const int32_t* params = nullptr;  // tokens: params n
  QuantSource src = QuantSource::F32;
  int K = 0;
  const float* x = nullptr;  // Norm, F32: [tokens][ldx]
  int ldx = 0;
  const float* normW = nullptr;  // Norm
  float eps = 0.f;
  const void* packed = nullptr;  // Packed16
  int packedKT = 0;              // its 16-wide k-tiles
  void* xq = nullptr;            // out: packed int8, KT8 32-wide k-tiles (padding written as 0)
  int KT8 = 0;
  float* sx = nullptr;           // out: [tokens]
};

void launchQuantize(const QuantArgs& a, int maxTokens, bool bf16, bool pdl, cudaStream_t stream);

}  // namespace casspec::cuda
