// Device selection, owning handles for streams/events/graphs, and the device description.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "check.cuh"

namespace casspec::cuda {

// The runtime's current device is per host thread, and the engine calls in from libuv worker
// threads: every entry point sets it.
struct DeviceGuard {
  explicit DeviceGuard(int device) { CUDA_CHECK(cudaSetDevice(device)); }
};

template <class T, cudaError_t (*Destroy)(T)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T h) : h_(h) {}
  ~Handle() {
    if (h_) Destroy(h_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      if (h_) Destroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  operator T() const { return h_; }
  T get() const { return h_; }

 private:
  T h_ = nullptr;
};

using Stream = Handle<cudaStream_t, cudaStreamDestroy>;
using Event = Handle<cudaEvent_t, cudaEventDestroy>;
using GraphExec = Handle<cudaGraphExec_t, cudaGraphExecDestroy>;

inline Stream makeStream() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}
inline Event makeEvent(bool timing) {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Event(e);
}

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB, driver 13.0, runtime 13.0)"
std::string describeDevice(int device);

}  // namespace casspec::cuda
