// The AVX2 + FMA depthwise kernel: depthwise_row.h with 8-channel ymm vectors. Compiled with
// -mavx2 -mfma (this file only) and called only where the CPU has both.
#include <immintrin.h>

#include "myconv/cpu/microkernel/depthwise_row.h"

namespace myconv {
namespace cpu {
namespace {

struct Avx2 {
  using Reg = __m256;
  using Mask = __m256i;  // a lane takes part where its sign bit is set
  static constexpr int64_t kLanes = 8;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const float* at) { return _mm256_loadu_ps(at); }
  static Reg load(const float* at, Mask mask) { return _mm256_maskload_ps(at, mask); }
  static void store(float* at, Reg value) { _mm256_storeu_ps(at, value); }
  static void store(float* at, Mask mask, Reg value) { _mm256_maskstore_ps(at, mask, value); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  // The first `lanes` lanes.
  static Mask tail_mask(int64_t lanes) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

}  // namespace

void depthwise_row_avx2(const DepthwiseRowArgs& a) { depthwise_row<Avx2>(a); }

}  // namespace cpu
}  // namespace myconv
