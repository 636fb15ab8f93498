// float32 -> bfloat16 bits, 16 values at once, as c10::BFloat16 rounds: to nearest even, and a NaN
// becomes the quiet NaN 0x7FC0, with AVX-512F alone (vcvtneps2bf16 needs AVX512-BF16, keeps a
// NaN's payload and reads denormals as zero). For depthwise_avx512.cpp; static, so that each
// file including it keeps its own copy.
#pragma once

// GCC 12 warns inside its own AVX-512 header (its conversions pass an undefined vector as the
// unused masked-off source, GCC bug 105593): silenced for that header only, so it must be
// included here first.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

namespace myconv {
namespace cpu {

static inline __m256i bfloat16_bits_avx512(__m512 value) {
  const __m512i bits = _mm512_castps_si512(value);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q);
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, _mm512_set1_epi32(0x7FC0)));
}

}  // namespace cpu
}  // namespace myconv
