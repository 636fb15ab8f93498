// What the two AVX-512 tile kernels share (tile_avx512.cpp: float32 FMAs; tile_avx512_bf16.cpp:
// bfloat16 pairs): a register tile of 6 pixels x 32 channels as two 16-lane float32 vectors a
// pixel, its store, and the one-vector form for a panel with at most 16 valid channels (a group's
// last, as for 144 = 4 x 32 + 16 outputs), which skips the zero half. Included by those files
// only, after <immintrin.h>; everything in an unnamed namespace, so that each keeps its own copy.
#pragma once

#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {
namespace {  // NOLINT(build/namespaces): one copy per kernel file, see above

constexpr int kMR = kAvx512Tile.pixels;
constexpr int kNR = kAvx512Tile.channels;
constexpr int kLanes = 16;
static_assert(kAvx512Bf16Tile.pixels == kMR && kAvx512Bf16Tile.channels == kNR);

// Stores the register tile's valid pixels and channels: store(at, mask, vector) writes the lanes
// of `mask` of one 16-channel vector at `at`.
template <int kVectors, typename T, typename Store>
inline void store_tile(const TileArgs<T>& a, const __m512 (&acc)[kMR][kVectors], Store&& store) {
  __mmask16 valid[kVectors];
#pragma GCC unroll 8
  for (int v = 0; v < kVectors; ++v) {
    const int lanes = a.cols - v * kLanes;
    valid[v] = lanes >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << (lanes > 0 ? lanes : 0)) - 1);
  }
  // Locals: the vector stores may alias anything, so fields of `a` would be reloaded after each.
  T* out = a.out;
  const int64_t out_stride = a.out_stride;
  const int64_t rows = a.rows;
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i, out += out_stride) {
    if (i >= rows) break;
#pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) store(out + v * kLanes, valid[v], acc[i][v]);
  }
}

// Runs the tiles of `a` with kTwo (both vectors) or, where at most 16 channels are valid, kOne
// (template arguments: called directly, not through a pointer each tile).
template <typename T, void (*kTwo)(const TileArgs<T>&), void (*kOne)(const TileArgs<T>&)>
inline void run_tiles(const TileArgs<T>& a) {
  if (a.cols > kLanes) {
    for_each_tile<kMR>(a, [](const TileArgs<T>& tile) { kTwo(tile); });
  } else {
    for_each_tile<kMR>(a, [](const TileArgs<T>& tile) { kOne(tile); });
  }
}

}  // namespace
}  // namespace cpu
}  // namespace myconv
