// Attention's arithmetic primitive: tensor-core mma.sync.m16n8k16 with 16-bit
// inputs (bf16 or f16) and fp32 accumulation, plus the "hi + lo" split that carries an fp32 operand
// through a 16-bit product with ~16 significant bits (the matrix kernel's wgmma uses it too;
// wgmma.cuh).
//
// Why this is batch invariant: an mma computes D[i][j] = C[i][j] + sum_k A[i][k] * B[k][j] for each
// output element on its own; nothing about row i or column j depends on the other rows/columns in
// the instruction. So as long as every output element sees the same sequence of (A row, B column,
// C) inputs, its bits do not depend on which other tokens (columns) or which other weight rows
// share the instructions, the launch shape, or the batch size. Every kernel below keeps that
// sequence a function of the matrix shape (and, for attention, of the key index) alone.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace casspec::cuda {

// Storage/compute 16-bit type traits. H is __nv_bfloat16 or __half.
template <class H> struct Half;
template <> struct Half<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float to(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ uint16_t bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  static __device__ __forceinline__ float fromBits(uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
};
template <> struct Half<__half> {
  static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ float to(__half x) { return __half2float(x); }
  static __device__ __forceinline__ uint16_t bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
  static __device__ __forceinline__ float fromBits(uint16_t b) { return __half2float(__ushort_as_half(b)); }
};

// x = hi + lo with hi = round(x), lo = round(x - hi). x - hi is exact in fp32, so the pair holds
// x to about 2 x (8 or 11) significant bits: two MMAs (W*hi + W*lo) then track an fp32 activation
// far more closely than one bf16 rounding would, for free when the product is memory bound.
template <class H>
__device__ __forceinline__ void splitHiLo(float x, uint16_t& hi, uint16_t& lo) {
  hi = Half<H>::bits(x);
  lo = Half<H>::bits(x - Half<H>::fromBits(hi));
}
__device__ __forceinline__ uint32_t pack2(uint16_t a, uint16_t b) { return (uint32_t)a | ((uint32_t)b << 16); }

// D = A(16x16, row) * B(16x8, col) + C, fp32 accumulate. a: 4 regs (a0..a7), b: 2 regs (b0..b3).
template <class H>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Programmatic dependent launch (sm_90): a kernel launched with the programmatic-serialization
// attribute may start while its predecessor drains; it must not touch the predecessor's outputs
// (nor write anything the predecessor reads) before gridDepWait(). Both are no-ops when the kernel
// was launched without the attribute.
__device__ __forceinline__ void gridDepWait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void gridDepLaunch() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
// Wait, then release the next kernel; or, with `releaseFirst`, release it before waiting. The early
// release lets the next kernel's blocks take SMs (and prefetch their weights) while this kernel's
// own predecessor still drains. Only for kernels whose dependents read nothing but constant data
// (weights, the parameter block) before their own wait, and that themselves release after waiting,
// so a chain of early releases stops one kernel later.
__device__ __forceinline__ void gridDepSync(bool releaseFirst) {
  if (releaseFirst) gridDepLaunch();
  gridDepWait();
  if (!releaseFirst) gridDepLaunch();
}

// Streaming 16-byte load of weights: read once per forward, so keep them out of L1.
__device__ __forceinline__ uint4 ldStream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cpAsyncWaitAll() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

}  // namespace casspec::cuda
