// The AVX2 + FMA tile kernel: 6 pixels x 16 channels in 12 ymm accumulators; per reduction step
// two filter loads, six broadcasts and twelve FMAs. Compiled with -mavx2 -mfma (this file only)
// and called only where the CPU has both.
#include <immintrin.h>

#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {
namespace {

constexpr int kMR = kAvx2Tile.pixels;
constexpr int kNR = kAvx2Tile.channels;

// One tile (a.tiles = 1).
void tile(const TileArgs<float>& a) {
  const __m256 bias0 = _mm256_loadu_ps(a.bias), bias1 = _mm256_loadu_ps(a.bias + 8);
  __m256 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1;
  __m256 c30 = bias0, c31 = bias1, c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1;
  for (int i = 0; i < a.rows; ++i) prefetch_for_write(a.out + i * a.out_stride);  // 16 floats: a line if aligned
  const float* b = a.packed;
  for (int64_t s = 0; s < a.segments; ++s) {
    const float* const* x = a.pixels + s * kMR;
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4], *x5 = x[5];
    for (int64_t c = 0; c < a.depth; ++c, b += kNR) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      __m256 v = _mm256_broadcast_ss(x0 + c);
      c00 = _mm256_fmadd_ps(v, b0, c00);
      c01 = _mm256_fmadd_ps(v, b1, c01);
      v = _mm256_broadcast_ss(x1 + c);
      c10 = _mm256_fmadd_ps(v, b0, c10);
      c11 = _mm256_fmadd_ps(v, b1, c11);
      v = _mm256_broadcast_ss(x2 + c);
      c20 = _mm256_fmadd_ps(v, b0, c20);
      c21 = _mm256_fmadd_ps(v, b1, c21);
      v = _mm256_broadcast_ss(x3 + c);
      c30 = _mm256_fmadd_ps(v, b0, c30);
      c31 = _mm256_fmadd_ps(v, b1, c31);
      v = _mm256_broadcast_ss(x4 + c);
      c40 = _mm256_fmadd_ps(v, b0, c40);
      c41 = _mm256_fmadd_ps(v, b1, c41);
      v = _mm256_broadcast_ss(x5 + c);
      c50 = _mm256_fmadd_ps(v, b0, c50);
      c51 = _mm256_fmadd_ps(v, b1, c51);
    }
  }
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  // Locals: the vector stores may alias anything, so fields of `a` would be reloaded after each.
  float* const out = a.out;
  const int64_t out_stride = a.out_stride;
  const int64_t rows = a.rows;
  const int cols = a.cols;
  if (cols == kNR) {
    for (int i = 0; i < rows; ++i) {
      _mm256_storeu_ps(out + i * out_stride, acc[i][0]);
      _mm256_storeu_ps(out + i * out_stride + 8, acc[i][1]);
    }
    return;
  }
  alignas(32) float tail[kNR];  // a partial panel: the valid channels only
  for (int i = 0; i < rows; ++i) {
    _mm256_store_ps(tail, acc[i][0]);
    _mm256_store_ps(tail + 8, acc[i][1]);
    for (int j = 0; j < cols; ++j) out[i * out_stride + j] = tail[j];
  }
}

}  // namespace

void tile_avx2(const TileArgs<float>& a) { for_each_tile<kMR>(a, tile); }

double fma_chains_avx2(int64_t rounds, float* sink) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 total = acc[0];
  for (int i = 1; i < 12; ++i) total = _mm256_add_ps(total, acc[i]);
  *sink = _mm256_cvtss_f32(total);  // keeps the chains alive
  return 12.0 * 8 * 2 * static_cast<double>(rounds);
}

}  // namespace cpu
}  // namespace myconv
