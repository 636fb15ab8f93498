// float16 <-> float32 conversion with the F16C instructions, 8 values a step, for the
// microkernels' half-type path (c10::Half's portable conversion measured ~4x slower on outputs of
// 1x1 convolutions). Compiled with -mavx2 -mf16c (this file only) and called only where the CPU
// has the AVX2 path, which requires F16C too.
#include <immintrin.h>

#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {

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
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < count; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace cpu
}  // namespace myconv
