// The AVX-512 depthwise kernel: depthwise_row.h with 16-channel zmm vectors. The strip kernels
// are bound by instructions, not FMAs (3x3, C = 192: ~60 cycles where the FMAs need 36 for each
// strip and vector of 8 channels), so twice the channels an instruction is the gain, also on CPUs
// whose 512-bit FMAs take two 256-bit halves. Compiled with -mavx512f (this file only) and called
// only where the CPU has it.
#include "myconv/cpu/microkernel/bfloat16_avx512.h"  // (first: it includes <immintrin.h>, see there)
#include "myconv/cpu/microkernel/depthwise_row.h"

namespace myconv {
namespace cpu {
namespace {

struct Avx512 {
  using Reg = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kLanes = 16;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg load(const float* at) { return _mm512_loadu_ps(at); }
  static Reg load(const float* at, Mask mask) { return _mm512_maskz_loadu_ps(mask, at); }
  static void store(float* at, Reg value) { _mm512_storeu_ps(at, value); }
  static void store(float* at, Mask mask, Reg value) { _mm512_mask_storeu_ps(at, mask, value); }
  // Half types: 16 elements widened (bfloat16: its bits are a float32's top half) or rounded to
  // nearest even (bfloat16: bfloat16_avx512.h).
  static Reg load(const Float16Bits* at) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
  }
  static Reg load(const BFloat16Bits* at) {
    const __m512i bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
  }
  static void store(Float16Bits* at, Reg value) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(at),
                        _mm512_cvtps_ph(value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void store(BFloat16Bits* at, Reg value) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(at), bfloat16_bits_avx512(value));
  }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  // The first `lanes` lanes.
  static Mask tail_mask(int64_t lanes) { return static_cast<Mask>((1u << lanes) - 1); }
};

}  // namespace

void depthwise_row_avx512(const DepthwiseRowArgs<float>& a) { depthwise_row<Avx512>(a); }
void depthwise_row_avx512(const DepthwiseRowArgs<Float16Bits>& a) { depthwise_row<Avx512>(a); }
void depthwise_row_avx512(const DepthwiseRowArgs<BFloat16Bits>& a) { depthwise_row<Avx512>(a); }
void depthwise_row_avx512(const DepthwiseRowArgs<Float16Bits, float>& a) { depthwise_row<Avx512>(a); }
void depthwise_row_avx512(const DepthwiseRowArgs<BFloat16Bits, float>& a) { depthwise_row<Avx512>(a); }

}  // namespace cpu
}  // namespace myconv
