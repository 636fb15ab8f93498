// Half-type conversions for the microkernels' widen-and-narrow path, 8 values a step: float16 <->
// float32 with the F16C instructions, and float32 -> bfloat16 rounded to nearest even (c10's
// portable conversions measured ~4x slower on the outputs of 1x1 convolutions). Compiled with
// -mavx2 -mf16c (this file only) and called only where the CPU has the AVX2 path, which requires
// F16C too.
#include <immintrin.h>

#include "myconv/cpu/microkernel/bfloat16_avx2.h"
#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// c10::BFloat16's rounding, one value: a NaN becomes the quiet NaN 0x7FC0.
inline uint16_t bfloat16_bits(float value) {
  if (value != value) return 0x7FC0;
  uint32_t bits;
  __builtin_memcpy(&bits, &value, sizeof bits);
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

}  // namespace

void half_to_float_f16c(const uint16_t* src, float* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < count; ++i) dst[i] = _cvtsh_ss(src[i]);
}

void float_to_half_f16c(const float* src, uint16_t* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRound));
  }
  for (; i < count; ++i) dst[i] = _cvtss_sh(src[i], kRound);
}

void float_to_bfloat16_avx2(const float* src, uint16_t* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), bfloat16_bits_avx2(_mm256_loadu_ps(src + i)));
  }
  for (; i < count; ++i) dst[i] = bfloat16_bits(src[i]);
}

}  // namespace cpu
}  // namespace myconv
