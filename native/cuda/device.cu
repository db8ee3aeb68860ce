// cudaUsable() and the device description.
#include "device.cuh"

#include <cstdio>

#include "../engine/backend.h"

namespace casspec {

namespace {
std::string version(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
}  // namespace

bool cudaUsable(std::string& why) {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  if (driver == 0) {
    why = "no NVIDIA driver found (libcuda could not be loaded); this build needs a driver for CUDA " + version(runtime) + "+";
    return false;
  }
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e) + " (driver supports CUDA " + version(driver) +
          ", this build uses runtime " + version(runtime) + (e == cudaErrorInsufficientDriver ? ": update the driver)" : ")");
    return false;
  }
  if (count == 0) {
    why = "no CUDA device found (driver " + version(driver) + ")";
    return false;
  }
  std::string found;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    if (p.major == 9) {  // sm_90a code runs on compute capability 9.0 only (wgmma has no portable PTX)
      why = "device " + std::to_string(d) + ": " + cuda::describeDevice(d);
      return true;
    }
    found += (found.empty() ? "" : ", ") + std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
  }
  why = "no Hopper GPU (compute capability 9.0) found; this build's matrix kernel uses sm_90a instructions (wgmma). Found: " + found;
  return false;
}

namespace cuda {

std::string describeDevice(int device) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    cudaGetLastError();
    return "cuda device " + std::to_string(device) + " (properties unavailable)";
  }
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.1f GiB", (double)p.totalGlobalMem / (1 << 30));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs, " + mem + ", driver " + version(driver) + ", runtime " + version(runtime) +
         ")";
}

}  // namespace cuda
}  // namespace casspec
