// The plain C++ tile kernel: the reference every other instruction set must match, and the path
// on CPUs without AVX2.
#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {
namespace {

constexpr int kMR = kScalarTile.pixels;
constexpr int kNR = kScalarTile.channels;

// One tile (a.tiles = 1).
void tile(const TileArgs<float>& a) {
  float acc[kMR][kNR];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) acc[i][j] = a.bias[j];
  const float* b = a.packed;
  for (int64_t s = 0; s < a.segments; ++s) {
    const float* const* x = a.pixels + s * kMR;
    for (int64_t c = 0; c < a.depth; ++c, b += kNR) {
      for (int i = 0; i < kMR; ++i) {
        const float v = x[i][c];
        for (int j = 0; j < kNR; ++j) acc[i][j] += v * b[j];
      }
    }
  }
  for (int i = 0; i < a.rows; ++i)
    for (int j = 0; j < a.cols; ++j) a.out[i * a.out_stride + j] = acc[i][j];
}

}  // namespace

void tile_scalar(const TileArgs<float>& a) { for_each_tile<kMR>(a, tile); }

double fma_chains_scalar(int64_t rounds, float* sink) {
  float acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = static_cast<float>(i);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * 0.999f + 0.001f;
  }
  float total = 0;
  for (int i = 0; i < 12; ++i) total += acc[i];
  *sink = total;
  return 12.0 * 2 * static_cast<double>(rounds);
}

}  // namespace cpu
}  // namespace myconv
