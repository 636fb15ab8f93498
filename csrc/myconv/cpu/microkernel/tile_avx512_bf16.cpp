// The bfloat16 tile kernel: 6 pixels x 32 channels in 12 zmm float32 accumulators, on vdpbf16ps,
// which adds two bfloat16 products to each float32 lane: per step a pair of reduction values,
// two filter loads, six broadcasts of a pixel's pair and twelve vdpbf16ps. On Zen 4 it issues one
// a cycle like a 512-bit FMA and so does twice its FLOPs. Its sum is float32 throughout: each
// product of two bfloat16 values is exact in float32, and the instruction adds the pair's second
// product, then its first, each rounded to nearest even, as a float32 FMA would (measured on 3.2M
// random lanes); unlike the float32 kernels it flushes denormal inputs and results to zero.
// The output is rounded once to bfloat16, as c10 rounds. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512bf16 (this file only) and called only where the CPU has them.
#include <immintrin.h>

#include "myconv/cpu/microkernel/tile_avx512.h"

namespace myconv {
namespace cpu {
namespace {

// The pair of bfloat16 values at `at` as one 32-bit lane, in every lane (the first value in the
// low half, where vdpbf16ps takes a pair's first element).
inline __m512bh broadcast_pair(const BFloat16Bits* at) {
  int32_t pair;
  __builtin_memcpy(&pair, at, sizeof pair);
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
}

// One tile (a.tiles = 1) with kVectors of the panel's two 16-channel vectors (1: only the first
// holds valid channels). The loops unroll completely, so the accumulators live in registers.
template <int kVectors>
void tile(const TileArgs<BFloat16Bits>& a) {
  __m512 acc[kMR][kVectors];
#pragma GCC unroll 8
  for (int v = 0; v < kVectors; ++v) {
    const __m512 bias = _mm512_loadu_ps(a.bias + v * kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) acc[i][v] = bias;
  }
  if (a.sums == nullptr) {  // (float32 sums go to the driver's block buffer, in cache)
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      if (i < a.rows) prefetch_for_write(a.out + i * a.out_stride);  // 32 bfloat16: a line if aligned
    }
  }
  // Panel rows of pairs: [pair][kNR channels][2 values], 2 * kNR bfloat16 (kVectors zmm) a pair.
  const BFloat16Bits* b = a.packed;
  const int64_t pairs = a.depth / 2;
  for (int64_t s = 0; s < a.segments; ++s) {
    const BFloat16Bits* row[kMR];
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) row[i] = a.pixels[s * kMR + i];
    for (int64_t q = 0; q < pairs; ++q, b += 2 * kNR) {
      __m512bh w[kVectors];
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) w[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + v * 2 * kLanes));
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const __m512bh value = broadcast_pair(row[i] + 2 * q);
#pragma GCC unroll 8
        for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], value, w[v]);
      }
    }
    if (a.depth % 2 != 0) {  // the segment's last value, paired with a zero (its filter pair too)
      __m512bh w[kVectors];
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) w[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + v * 2 * kLanes));
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const __m512bh value = reinterpret_cast<__m512bh>(_mm512_set1_epi32(row[i][a.depth - 1].bits));
#pragma GCC unroll 8
        for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], value, w[v]);
      }
      b += 2 * kNR;
    }
  }
  // vcvtneps2bf16 rounds to nearest even as c10 does, in one instruction; it keeps a NaN's payload
  // where c10 makes 0x7FC0 (set here), and reads denormals as zero, but these sums are never
  // denormal (vdpbf16ps flushes its results, and every tile runs at least one).
  if (a.sums != nullptr) {
    TileArgs<float> sums{};
    sums.out = a.sums, sums.out_stride = a.out_stride, sums.rows = a.rows, sums.cols = a.cols;
    store_tile(sums, acc, [](float* at, __mmask16 valid, __m512 values) { _mm512_mask_storeu_ps(at, valid, values); });
    return;
  }
  store_tile(a, acc, [](BFloat16Bits* at, __mmask16 valid, __m512 sums) {
    const __m256i rounded = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(sums));
    const __mmask16 nan = _mm512_cmp_ps_mask(sums, sums, _CMP_UNORD_Q);
    _mm256_mask_storeu_epi16(at, valid, _mm256_mask_mov_epi16(rounded, nan, _mm256_set1_epi16(0x7FC0)));
  });
}

}  // namespace

void tile_avx512_bf16(const TileArgs<BFloat16Bits>& a) { run_tiles<BFloat16Bits, &tile<2>, &tile<1>>(a); }

}  // namespace cpu
}  // namespace myconv
