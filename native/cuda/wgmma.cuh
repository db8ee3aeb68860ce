// sm_90a's asynchronous matrix path, as inline PTX (no CUTLASS): bulk copies from global to shared
// memory that complete on mbarriers, and warpgroup MMA (wgmma) reading both operands from shared
// memory. The matrix kernel (linear.cu) streams weights through a ring of such copies into wgmma.
// Also the thread-block cluster barrier and loads from another block's shared memory (distributed
// shared memory), with which the matrix kernel's K splits combine their partial sums.
//
// Why wgmma is batch invariant: like mma.sync (mma.cuh), each output element of
// wgmma.m64nNk16 is computed on its own; a column's bits do not depend on N or on the other
// columns' values. That was measured on the H200 before anything relied on it (bitwise, N = 8 ..
// 128, bf16 and f16; bench/RESULTS.md, fifth session), and gpu_check's launch-shape check keeps
// checking it through the matrix kernel (every shape, 1..64 tokens, 1..8 n-tiles per block).
//
// Bulk copy protocol for one ring slot (a `full` barrier with arrival count 1): the producer calls
// mbarArriveExpectTx(full, bytes) and issues copies totalling `bytes` on it; the phase completes
// when they have all landed. Consumers wait for the phase parity (uses of the slot so far) & 1, and
// arrive on the slot's `empty` barrier when their wgmmas no longer read it.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace casspec::cuda {

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbarInit(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory");
}
// Makes preceding mbarrier.init visible to the copy engine and the other threads (then a barrier).
__device__ __forceinline__ void mbarInitFence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbarArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory");
}
// Waits for the completion of the phase with the given parity (try_wait suspends in hardware for a
// while before it returns false, so the loop does not spin hot).
__device__ __forceinline__ void mbarWait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smemAddr(bar)), "r"(parity)
        : "memory");
}

// `bytes` (a multiple of 16, both addresses 16-byte aligned) from global memory into this CTA's shared
// memory, completing on `bar` (a launch without clusters is a cluster of one).
__device__ __forceinline__ void bulkCopyG2S(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smemAddr(dst)),
               "l"(src), "r"(bytes), "r"(smemAddr(bar))
               : "memory");
}

// Every thread of every block in the cluster arrives, then waits: shared-memory writes before it
// are visible to loads from any block of the cluster after it.
__device__ __forceinline__ void clusterSync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// 16 bytes at this block's shared address `addr`, read from the same offset in cluster block `rank`.
__device__ __forceinline__ float4 ldClusterF4(uint32_t addr, int rank) {
  uint32_t remote;
  float4 v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(addr), "r"(rank));
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(remote));
  return v;
}

// Orders this thread's earlier generic-proxy writes to shared memory before later async-proxy
// accesses (wgmma operand reads, bulk copies) that another thread's barrier arrival publishes.
__device__ __forceinline__ void fenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory matrix descriptor, no swizzle: K-major core matrices of 8 rows x 16 bytes; lbo is the
// byte distance between core matrices along K, sbo between 8-row groups.
__device__ __forceinline__ uint64_t gmmaDesc(const void* p, uint32_t lbo, uint32_t sbo) {
  return ((smemAddr(p) & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}

// The wgmma bracket: fence before the first wgmma that touches accumulators written by ordinary code,
// commit the issued wgmmas as one group, wait until at most N groups are in flight.
__device__ __forceinline__ void wgmmaFence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmmaCommit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmmaWait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// d (64 x N, fp32, this thread's N / 2 values) += A (64 x 16) * B (16 x N), H = __half or
// __nv_bfloat16, both from shared-memory descriptors. Accumulator i of a thread in warp w (of the
// warpgroup), lane l: row 16 w + l / 4 + 8 ((i / 2) % 2), column 8 (i / 4) + 2 (l % 4) + i % 2:
// per 8 columns, exactly mma.m16n8k16's C fragment. Nothing when the build has no sm_90a code (the
// PTX fallback cannot express wgmma).
template <int N> struct Wgmma;
// Accumulator register lists per N (the asm needs them spelled out), then one specialization body.
#define CASSPEC_WG_REGS_16 "{%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9"
#define CASSPEC_WG_OPS_16 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define CASSPEC_WG_REGS_32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17"
#define CASSPEC_WG_OPS_32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define CASSPEC_WG_REGS_64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33"
#define CASSPEC_WG_OPS_64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define CASSPEC_WG_REGS_128 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65"
#define CASSPEC_WG_OPS_128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CASSPEC_WGMMA_ASM(N, T) \
  asm volatile("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." T "." T " " CASSPEC_WG_REGS_##N ", 1, 1, 1, 0, 0;\n" \
               : CASSPEC_WG_OPS_##N                                                                            \
               : "l"(da), "l"(db))
#else
#define CASSPEC_WGMMA_ASM(N, T)
#endif
#define CASSPEC_WGMMA_SPEC(N)                                                                     \
  template <> struct Wgmma<N> {                                                                   \
    template <class H>                                                                            \
    static __device__ __forceinline__ void mma(float (&d)[N / 2], uint64_t da, uint64_t db) {     \
      if constexpr (std::is_same_v<H, __half>)                                                    \
        CASSPEC_WGMMA_ASM(N, "f16");                                                              \
      else                                                                                        \
        CASSPEC_WGMMA_ASM(N, "bf16");                                                             \
    }                                                                                             \
  };
CASSPEC_WGMMA_SPEC(16)
CASSPEC_WGMMA_SPEC(32)
CASSPEC_WGMMA_SPEC(64)
CASSPEC_WGMMA_SPEC(128)

}  // namespace casspec::cuda
