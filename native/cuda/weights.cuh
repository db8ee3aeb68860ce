// Weight storage on the device: matrices in the packed mma layout (layout.cuh) in bf16 or f16,
// norm vectors in fp32. Several HF tensors share one packed matrix (q/k/v -> qkv, gate/up ->
// gateUp); each source tensor lands in its rows through a row map.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../engine/config.h"
#include "buffer.cuh"
#include "layout.cuh"

namespace casspec::cuda {

// A matrix stored as mma A-fragment tiles of 16 rows x kTileK columns, 512 bytes each (layout.cuh).
template <int kTileK>
struct TiledMatrix {
  DeviceBuffer buf;
  int M = 0, K = 0, MT = 0, KT = 0;
  void allocate(int rows, int cols, const char* what) {
    M = rows;
    K = cols;
    MT = (rows + 15) / 16;
    KT = (cols + kTileK - 1) / kTileK;
    // 16-bit matrices store whole row groups (layout.cuh); the padding tiles stay zero.
    const int mtAlloc = kTileK == 16 ? (MT + kRowGroup - 1) / kRowGroup * kRowGroup : MT;
    buf.allocate((size_t)mtAlloc * KT * 512, what);
  }
};

// A 16-bit projection: 16 x 16 tiles.
struct PackedMatrix : TiledMatrix<16> {
  const void* data() const { return buf.get(); }
};

// An int8 copy of a projection (quant mode kQuantInt8): 16 x 32 tiles and one fp32 scale per
// packed row. Same row maps as the 16-bit matrix, so the same epilogues apply.
struct Q8Matrix : TiledMatrix<32> {
  DeviceBuffer scale;
  void allocate(int rows, int cols, const char* what) {
    TiledMatrix<32>::allocate(rows, cols, what);
    scale.allocate((size_t)MT * 16 * 4, what);
  }
  int64_t bytes() const { return (int64_t)buf.bytes() + (int64_t)scale.bytes(); }
};

enum class RowMap : int {
  Identity = 0,
  Rope = 1,    // rows are heads of `param` dims: RoPE pair order (layout.cuh)
  Gate = 2,    // ffn row f -> gate tile rows of the interleaved gate/up matrix
  Up = 3,
};

struct RowDest {
  void* dst = nullptr;  // packed matrix data
  int KT = 0;
  int64_t rowOffset = 0;  // packed row of source row 0 (after the map)
  RowMap map = RowMap::Identity;
  int param = 0;
  float* scale = nullptr;  // int8 destinations: per packed row
};

// Source rows [row0, row0 + rows) of a [* x K] tensor (data already on the device, in `src`
// type) converted into the packed matrix.
void launchPackRows(const void* src, DType srcType, int64_t row0, int rows, int K, const RowDest& d, bool bf16,
                    cudaStream_t stream);
// Dummy weights (dummy.h) of tensor `index` directly into the packed matrix: no host traffic.
void launchFillRows(uint64_t seed, int index, int rows, int K, const RowDest& d, bool bf16, cudaStream_t stream);
// The int8 copy of the same rows (d: a Q8Matrix's data, KT and scale), quantized per row from the
// source values (or the dummy values) themselves, exactly as native/cpu/quant.cpp does, so both
// backends hold identical int8 weights.
void launchQuantRows(const void* src, DType srcType, int64_t row0, int rows, int K, const RowDest& d, cudaStream_t stream);
void launchQuantFillRows(uint64_t seed, int index, int rows, int K, const RowDest& d, cudaStream_t stream);
// fp32 vector from a source tensor on the device.
void launchVectorToF32(const void* src, DType srcType, int n, float* dst, cudaStream_t stream);

}  // namespace casspec::cuda
