// One way to launch a kernel: optional programmatic dependent launch (PDL) and an error check that
// names the kernel. With PDL the next kernel's blocks start while this one drains, so its
// prologue (weight prefetch) overlaps the tail of the previous kernel: on a 7B forward of ~200
// short kernels that gap is several percent of the time.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "check.cuh"

namespace casspec::cuda {

// cluster: blocks per thread-block cluster along each axis (1, 1, 1: no clusters); the grid must
// be a whole number of clusters.
template <class... KArgs, class... Args>
void launchKernelCluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, dim3 cluster, size_t smem, cudaStream_t stream,
                         bool pdl, const char* name, Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  int n = 0;
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n++].val.clusterDim.z = cluster.z;
  }
  cfg.attrs = n ? attr : nullptr;
  cfg.numAttrs = n;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) throwCuda(e, name, __FILE__, __LINE__);
}

template <class... KArgs, class... Args>
void launchKernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                  const char* name, Args&&... args) {
  launchKernelCluster(kernel, grid, block, dim3(1, 1, 1), smem, stream, pdl, name, std::forward<Args>(args)...);
}

}  // namespace casspec::cuda
