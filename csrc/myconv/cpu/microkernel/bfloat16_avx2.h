// float32 -> bfloat16 bits, 8 values at once, as c10::BFloat16 rounds: to nearest even, and a NaN
// becomes the quiet NaN 0x7FC0. For the files compiled with -mavx2 (convert_avx2.cpp,
// depthwise_avx2.cpp); static, so that each keeps its own copy.
#pragma once

#include <immintrin.h>

namespace myconv {
namespace cpu {

static inline __m128i bfloat16_bits_avx2(__m256 value) {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd)), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(value, value, _CMP_UNORD_Q));
  rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), nan);
  // 8 values of 32 bits (each < 2^16) to 16 bits: pack the two 128-bit halves, in order.
  return _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
}

}  // namespace cpu
}  // namespace myconv
