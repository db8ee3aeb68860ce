// Owning handles for device and pinned host memory. Destructors free; a failed allocation throws
// E_OOM naming the bytes asked for and what they were for, and leaves the handle empty, so a
// half-built object unwinds cleanly.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "check.cuh"

namespace casspec::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const char* what) { allocate(bytes, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }

  // Zero-filled: padding rows/columns of packed weights and unwritten KV slots must read as 0.
  void allocate(size_t bytes, const char* what) {
    release();
    if (bytes == 0) return;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t freeB = 0, totalB = 0;
      cudaMemGetInfo(&freeB, &totalB);
      fail("E_OOM", std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes (" + mib(bytes) + ") for " + what +
                        " failed: " + mib(freeB) + " free of " + mib(totalB));
    }
    if (e != cudaSuccess) throwCuda(e, (std::string("cudaMalloc for ") + what).c_str(), __FILE__, __LINE__);
    p_ = p;
    bytes_ = bytes;
    // cudaMemset runs on the legacy stream, which our non-blocking streams do not wait for: finish
    // it here so no later kernel can see the buffer before it is zero.
    CUDA_CHECK(cudaMemsetAsync(p_, 0, bytes_, 0));
    CUDA_CHECK(cudaStreamSynchronize(0));
  }
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  template <class T = void>
  T* get() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory: what makes the per-forward copies asynchronous and fast.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  // Grows (never shrinks); contents are not preserved.
  void reserve(size_t bytes, const char* what) {
    if (bytes <= bytes_) return;
    release();
    void* p = nullptr;
    cudaError_t e = cudaMallocHost(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail("E_OOM", std::string("cudaMallocHost of ") + std::to_string(bytes) + " bytes for " + what + " failed");
    }
    if (e != cudaSuccess) throwCuda(e, "cudaMallocHost", __FILE__, __LINE__);
    p_ = p;
    bytes_ = bytes;
  }
  void release() {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  template <class T = void>
  T* get() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace casspec::cuda
