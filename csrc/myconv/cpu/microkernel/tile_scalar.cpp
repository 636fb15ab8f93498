// The plain C++ tile kernel: the reference every other instruction set must match, and the path
// on CPUs without AVX2.
#include "myconv/cpu/microkernel/microkernel.h"

namespace myconv {
namespace cpu {

void tile_scalar(const TileArgs& a) {
  float acc[kMR][kNR];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) acc[i][j] = a.bias[j];
  const float* b = a.packed;
  for (int64_t t = 0; t < a.taps; ++t) {
    const float* const* x = a.pixels + t * kMR;
    for (int64_t c = 0; c < a.channels; ++c, b += kNR) {
      for (int i = 0; i < kMR; ++i) {
        const float v = x[i][c];
        for (int j = 0; j < kNR; ++j) acc[i][j] += v * b[j];
      }
    }
  }
  for (int i = 0; i < a.rows; ++i)
    for (int j = 0; j < a.cols; ++j) a.out[i * a.out_stride + j] = acc[i][j];
}

}  // namespace cpu
}  // namespace myconv
