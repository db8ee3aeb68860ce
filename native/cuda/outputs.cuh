// Argmax / top-k / softmax probabilities of the logits rows in the result block (params.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace casspec::cuda {

void launchOutputs(const int32_t* params, float* result, int vocab, int maxRows, bool pdl, cudaStream_t stream);

}  // namespace casspec::cuda
