// Turning CUDA failures into casspec::Error. Every runtime call goes through CUDA_CHECK and every
// launch through CUDA_CHECK_LAUNCH, so a failure names the call site instead of surfacing later as
// a wrong number. Allocation failures are E_OOM (the caller can free something and retry);
// everything else is E_CUDA.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../engine/errors.h"

namespace casspec::cuda {

[[noreturn]] inline void throwCuda(cudaError_t e, const char* what, const char* file, int line) {
  std::string where = std::string(what) + " at " + file + ":" + std::to_string(line);
  // Clear a non-sticky error so the backend stays usable (sticky ones, like an illegal address,
  // poison the context; nothing but a new process fixes those).
  cudaGetLastError();
  if (e == cudaErrorMemoryAllocation) fail("E_OOM", "CUDA out of device memory in " + where);
  fail("E_CUDA", std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + where);
}

inline std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

}  // namespace casspec::cuda

#define CUDA_CHECK(call)                                                          \
  do {                                                                            \
    cudaError_t e_ = (call);                                                      \
    if (e_ != cudaSuccess) ::casspec::cuda::throwCuda(e_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors show up in cudaGetLastError.
#define CUDA_CHECK_LAUNCH(name)                                                    \
  do {                                                                             \
    cudaError_t e_ = cudaGetLastError();                                           \
    if (e_ != cudaSuccess) ::casspec::cuda::throwCuda(e_, name, __FILE__, __LINE__); \
  } while (0)
