// Bulk asynchronous copies (global -> shared, sm_90) completing on mbarriers: inline PTX, no CUTLASS.
//
// Why: a load through registers keeps its destination registers busy until the data arrives, so
// the bytes a warp can have in flight are bounded by its registers (the register ring of the matrix
// kernel: 8 x 16 bytes per lane). A bulk copy is one instruction from one thread that moves up to
// megabytes into shared memory through the copy engine; the bytes in flight are then bounded by
// shared memory (228 KB per SM) instead. The copy signals its completion by decrementing the
// transaction count of an mbarrier ("complete_tx"); a consumer waits on the barrier's phase.
//
// Protocol for one ring slot (one barrier with arrival count 1):
//   producer: arriveExpectTx(bar, bytes); bulkCopyG2S(dst, src, bytes, bar)   -> phase completes when
//             the arrival and all `bytes` have landed
//   consumer: mbarWait(bar, parity) with parity = (number of earlier uses of this slot) & 1
// Before a slot is refilled, every reader must be done with it (here: the readers are the lanes of
// the producer's own warp, ordered by __syncwarp after their last use).
#pragma once
#include <cstdint>

namespace casspec::cuda {

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbarInit(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory");
}
// Makes preceding mbarrier.init visible to the other proxies (the copy engine) and threads.
__device__ __forceinline__ void mbarInitFence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

// One arrival plus `bytes` more expected transaction bytes for the current phase.
__device__ __forceinline__ void mbarArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ bool mbarTryWait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      " .reg .pred p;\n"
      " mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      " selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(smemAddr(bar)), "r"(parity)
      : "memory");
  return done != 0;
}
// Waits until the phase with the given parity has completed (try_wait suspends in hardware for a
// while before returning false, so this loop does not spin hot).
__device__ __forceinline__ void mbarWait(uint64_t* bar, uint32_t parity) {
  while (!mbarTryWait(bar, parity)) {
  }
}

// L2 policy for data read exactly once (weights streamed per forward): evict first, so the small
// reused data (activations, split-K partials, KV of the current step) stays in L2.
__device__ __forceinline__ uint64_t l2EvictFirst() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global to this CTA's shared
// memory, completing on `bar`. The shared::cluster destination with a CTA-local address names this
// CTA's own shared memory (a launch without clusters is a cluster of one).
__device__ __forceinline__ void bulkCopyG2S(void* dst, const void* src, uint32_t bytes, uint64_t* bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(
          smemAddr(dst)),
      "l"(src), "r"(bytes), "r"(smemAddr(bar)), "l"(policy)
      : "memory");
}

}  // namespace casspec::cuda
