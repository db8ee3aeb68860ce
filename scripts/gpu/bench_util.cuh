// What the standalone GPU benchmarks share (gpu_check, gemm_peak, wgmma_peak, read_bw): a CUDA call check that
// exits with the call site, and the median-of-launches timer.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CK(x)                                                                                    \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(2);                                                                              \
    }                                                                                            \
  } while (0)

// Median time (ms) of 10 runs after 3 warm-ups, each timed with events; launch(i) enqueues run i.
template <class F>
double medianMs(F launch) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    CK(cudaEventRecord(e0));
    launch(i);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 3) ms.push_back(t);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A weight matrix (M rows x K columns) whose decode kernel read_bw.cu mimics.
struct ReadShape {
  std::string name;
  int M, K;
};
std::vector<std::string> readBandwidths(const std::vector<ReadShape>& shapes);  // read_bw.cu
