// The AVX-512 tile kernel: 6 pixels x 32 channels in 12 zmm accumulators; per reduction step two
// filter loads, six broadcasts and twelve FMAs, each FMA twice the AVX2 kernel's width (the tile,
// its store and its one-vector form: tile_avx512.h). On Zen 4, whose 512-bit FMAs take two
// 256-bit halves, this kernel runs at the AVX2 kernel's speed (both about 98% of the FMA peak
// alone, with the data in cache); 8 x 32 and 12 x 32 tiles measured slower there. CPUs with
// full-width 512-bit FMA units double the peak. Compiled with -mavx512f (this file only) and
// called only where the CPU has it.
#include <immintrin.h>

#include "myconv/cpu/microkernel/tile_avx512.h"

namespace myconv {
namespace cpu {
namespace {

// One tile (a.tiles = 1) with kVectors of the panel's two 16-channel vectors (1: only the first
// holds valid channels). The loops unroll completely (8 >= kMR, kVectors), so the accumulators
// live in registers.
template <int kVectors>
void tile(const TileArgs<float>& a) {
  __m512 acc[kMR][kVectors];
  __m512 bias[kVectors];
#pragma GCC unroll 8
  for (int v = 0; v < kVectors; ++v) bias[v] = _mm512_loadu_ps(a.bias + v * kLanes);
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) acc[i][v] = bias[v];
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) {
      if (i < a.rows) prefetch_for_write(a.out + i * a.out_stride + v * kLanes);
    }
  }
  const float* b = a.packed;
  for (int64_t s = 0; s < a.segments; ++s) {
    const float* const* x = a.pixels + s * kMR;
    for (int64_t c = 0; c < a.depth; ++c, b += kNR) {
      __m512 w[kVectors];
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) w[v] = _mm512_loadu_ps(b + v * kLanes);
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const __m512 value = _mm512_set1_ps(x[i][c]);
#pragma GCC unroll 8
        for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm512_fmadd_ps(value, w[v], acc[i][v]);
      }
    }
  }
  store_tile(a, acc, [](float* at, __mmask16 valid, __m512 sums) { _mm512_mask_storeu_ps(at, valid, sums); });
}

}  // namespace

void tile_avx512(const TileArgs<float>& a) { run_tiles<float, &tile<2>, &tile<1>>(a); }

double fma_chains_avx512(int64_t rounds, float* sink) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 total = acc[0];
  for (int i = 1; i < 12; ++i) total = _mm512_add_ps(total, acc[i]);
  *sink = _mm512_cvtss_f32(total);  // keeps the chains alive
  return 12.0 * 16 * 2 * static_cast<double>(rounds);
}

}  // namespace cpu
}  // namespace myconv
