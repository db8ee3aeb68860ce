// One way to launch a kernel: optional programmatic dependent launch (PDL) and an error check that
// names the kernel. With PDL the next kernel's blocks start while this one drains, so its
// prologue (weight prefetch) overlaps the tail of the previous kernel: on a 7B forward of ~200
// short kernels that gap is several percent of the time.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "check.cuh"

namespace casspec::cuda {

template <class... KArgs, class... Args>
void launchKernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                  const char* name, Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) throwCuda(e, name, __FILE__, __LINE__);
}

}  // namespace casspec::cuda
