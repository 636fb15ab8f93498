// The AVX2 + FMA depthwise kernel: depthwise_row.h with 8-channel ymm vectors. Compiled with
// -mavx2 -mfma -mf16c (this file only) and called only where the CPU has all three.
#include <immintrin.h>

#include "myconv/cpu/microkernel/bfloat16_avx2.h"
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
  // Half types: 8 elements widened (bfloat16: its bits are a float32's top half) or rounded to
  // nearest even (bfloat16: bfloat16_avx2.h).
  static Reg load(const Float16Bits* at) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)));
  }
  static Reg load(const BFloat16Bits* at) {
    const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16));
  }
  static void store(Float16Bits* at, Reg value) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(at),
                     _mm256_cvtps_ph(value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void store(BFloat16Bits* at, Reg value) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(at), bfloat16_bits_avx2(value));
  }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  // The first `lanes` lanes.
  static Mask tail_mask(int64_t lanes) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

}  // namespace

void depthwise_row_avx2(const DepthwiseRowArgs<float>& a) { depthwise_row<Avx2>(a); }
void depthwise_row_avx2(const DepthwiseRowArgs<Float16Bits>& a) { depthwise_row<Avx2>(a); }
void depthwise_row_avx2(const DepthwiseRowArgs<BFloat16Bits>& a) { depthwise_row<Avx2>(a); }
void depthwise_row_avx2(const DepthwiseRowArgs<Float16Bits, float>& a) { depthwise_row<Avx2>(a); }
void depthwise_row_avx2(const DepthwiseRowArgs<BFloat16Bits, float>& a) { depthwise_row<Avx2>(a); }

}  // namespace cpu
}  // namespace myconv
