// The compute kernels of the CPU microkernel family, one file per instruction set compiled with
// its own flags (tile_avx2.cpp with -mavx2 -mfma; depthwise_avx2.cpp with -mavx2 -mfma -mf16c;
// convert_avx2.cpp with -mavx2 -mf16c; tile_avx512.cpp, depthwise_avx512.cpp with -mavx512f;
// tile_avx512_bf16.cpp with -mavx512f -mavx512bw -mavx512vl -mavx512bf16; on AArch64,
// tile_neon.cpp and depthwise_neon.cpp with the base architecture's flags).
// This header and those files use plain sizes and pointers and include no ATen header: an inline
// ATen function compiled with AVX2 flags could be the copy the linker keeps for every caller,
// even on CPUs without AVX2.
#pragma once

#include <cstdint>

namespace myconv {
namespace cpu {

// Prefetches the cache line at `at` into L2. Inline asm because GCC deletes a loop whose only
// statements are _mm_prefetch / __builtin_prefetch calls, which silently dropped every one.
// (static: each file keeps its own copy, so none compiled with AVX2 flags serves the others.)
static inline void prefetch_to_l2(const void* at) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(at)));
#elif defined(__aarch64__) && defined(__GNUC__)
  asm volatile("prfm pldl2keep, %0" : : "Q"(*static_cast<const char*>(at)));
#else
  (void)at;
#endif
}

// Prefetches the cache line at `at` into L1 (the packing's transposed filter runs; L2 was slower
// there). Inline asm for the same reason as prefetch_to_l2.
static inline void prefetch_to_l1(const void* at) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(at)));
#elif defined(__aarch64__) && defined(__GNUC__)
  asm volatile("prfm pldl1keep, %0" : : "Q"(*static_cast<const char*>(at)));
#else
  (void)at;
#endif
}

// Fetches the cache line at `at` for writing (prefetchw; a no-op on x86 CPUs without it). A tile
// kernel does this for its output lines before its reduction: otherwise each store of a large
// output (res2 1x1 64->256 at N = 8: 26 MB) waits for its line to be read for ownership then.
static inline void prefetch_for_write(const void* at) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(at)));
#elif defined(__aarch64__) && defined(__GNUC__)
  asm volatile("prfm pstl1keep, %0" : : "Q"(*static_cast<const char*>(at)));
#else
  (void)at;
#endif
}

// Prefetches the cache lines of [begin, end) into L2 in address order.
static inline void prefetch_range_to_l2(const void* begin, const void* end) {
  const auto first_line = reinterpret_cast<uintptr_t>(begin) & ~static_cast<uintptr_t>(63);
  for (const char* at = reinterpret_cast<const char*>(first_line); at < static_cast<const char*>(end); at += 64) {
    prefetch_to_l2(at);
  }
}

// A tile kernel's register tile: MR output pixels x NR output channels. The driver lays out the
// pixel pointers and packs the filter panels for the kernel in use.
struct TileShape {
  int pixels;    // MR
  int channels;  // NR
  // Consecutive reduction values of a segment that a packed filter row interleaves per channel:
  // 1, or 2 for the bfloat16 kernel's pairs (a segment's odd last value pairs with a zero).
  int group = 1;
};
constexpr TileShape kScalarTile{6, 16};
constexpr TileShape kAvx2Tile{6, 16};     // 12 of the 16 ymm registers accumulate
constexpr TileShape kAvx512Tile{6, 32};   // 12 zmm accumulators: see tile_avx512.cpp
constexpr TileShape kAvx512Bf16Tile{6, 32, 2};  // see tile_avx512_bf16.cpp
constexpr TileShape kNeonTile{8, 8};      // 16 of the 32 q registers accumulate: see tile_neon.cpp

// float16 and bfloat16 elements as their bits: distinct types, so that a kernel's loads and
// stores pick their conversion by type (this header includes no ATen header).
struct Float16Bits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};

// A run of `tiles` consecutive tiles over one filter panel: what one kernel call computes (a
// call a tile cost ~5% of a 1x1 layer with a short reduction, pw 1x1 24->144). T: the input,
// filter and output elements (float, or bfloat16 for the bfloat16 kernel, which sums in float32).
template <typename T>
struct TileArgs {
  // pixels[(t * segments + s) * MR + i]: segment s of tile t's pixel i, `depth` input values
  // contiguous in the input that meet `depth` consecutive reduction rows of the packed filter
  // (pixels past `rows` and segments in the padding point at zeros).
  const T* const* pixels;
  int64_t segments;
  int64_t depth;
  // filter panel [segments][depth rounded up to G / G][NR][G] for the kernel's G = TileShape::group,
  // zero past `cols` and past `depth`
  const T* packed;
  const float* bias;    // NR values, zero past `cols`
  T* out;               // output of tile 0's pixel 0, channel 0
  int64_t out_stride;   // elements between consecutive pixels' outputs
  int64_t tiles;
  int64_t rows;         // valid pixels of the run, <= tiles * MR
  int cols;             // valid channels, <= NR
  // Input the next block reads, prefetched a slice a tile: tile t takes bytes
  // [prefetch + t * prefetch_slice, prefetch_end) cut to one slice (none when prefetch_slice is 0).
  const char* prefetch;
  const char* prefetch_end;
  int64_t prefetch_slice;
  // bfloat16 kernel: where not null, its float32 sums go here (out_stride apart) instead of
  // rounded into `out` (the driver's epilogue then runs on them); float kernels ignore it.
  float* sums = nullptr;
  // The residual the driver's epilogue adds to these outputs once the block's panels are done:
  // tile 0's pixel 0 at this panel's channels, `residual_stride` bytes between pixels,
  // `residual_bytes` a pixel's `cols` channels; each tile prefetches its rows' into L2 (null: no
  // residual). Otherwise the epilogue waited on memory for it: res2 1x1 64->256 at N = 8 with
  // bias, ReLU and residual ~4.4 -> ~3.0 ms side by side (~2.4 without the residual).
  const char* residual = nullptr;
  int64_t residual_stride = 0;
  int64_t residual_bytes = 0;
};

namespace {

// Calls tile(one) for each tile of the run `a`: `one` is the tile's own args (tiles = 1) after
// the tile's prefetch slice is requested. (Unnamed namespace: each kernel file keeps its own
// copy, compiled with its own flags.)
template <int kMR, typename T, typename Tile>
inline void for_each_tile(const TileArgs<T>& a, Tile&& tile) {
  TileArgs<T> one = a;
  one.tiles = 1;
  for (int64_t t = 0; t < a.tiles; ++t) {
    if (a.prefetch_slice > 0) {
      const char* const begin = a.prefetch + t * a.prefetch_slice;
      const char* const end = begin + a.prefetch_slice;
      prefetch_range_to_l2(begin, end < a.prefetch_end ? end : a.prefetch_end);
    }
    one.rows = a.rows - t * kMR < kMR ? a.rows - t * kMR : kMR;
    if (a.residual != nullptr) {
      const char* const rows = a.residual + t * kMR * a.residual_stride;
      for (int64_t i = 0; i < one.rows; ++i) {
        prefetch_range_to_l2(rows + i * a.residual_stride, rows + i * a.residual_stride + a.residual_bytes);
      }
    }
    tile(one);
    one.pixels += a.segments * kMR;
    one.out += kMR * a.out_stride;
    if (one.sums != nullptr) one.sums += kMR * a.out_stride;
  }
}

}  // namespace

void tile_scalar(const TileArgs<float>& args);
void tile_avx2(const TileArgs<float>& args);    // needs AVX2 + FMA
void tile_avx512(const TileArgs<float>& args);  // needs AVX-512F
// needs AVX-512F, BW, VL and BF16: vdpbf16ps, two bfloat16 products a float32 lane and step
void tile_avx512_bf16(const TileArgs<BFloat16Bits>& args);
void tile_neon(const TileArgs<float>& args);  // AArch64 (NEON is part of the base architecture)

// FLOPs done by `rounds` rounds of 12 independent FMA chains of the instruction set's widest
// vector: the loop the benchmark times to measure the machine's FMA peak for the ISA in use.
double fma_chains_scalar(int64_t rounds, float* sink);
double fma_chains_avx2(int64_t rounds, float* sink);
double fma_chains_avx512(int64_t rounds, float* sink);
double fma_chains_neon(int64_t rounds, float* sink);

// One output row (n, oh) of a depthwise convolution with one output channel per input channel:
// out[ow, c] = bias[c] + sum over taps inside the input of image[ih, iw, c] * filter[kh, kw, c],
// for input elements T (float, or a half type widened as it is loaded), the sum in float32, and
// output elements O: T (half types rounded once, to nearest even, as they are stored) or float32
// (a half type's sums, for a fused epilogue that rounds once after it).
template <typename T, typename O = T>
struct DepthwiseRowArgs {
  const T* image;       // input[n]: [in_h, in_w, channels]
  const float* filter;  // [kernel_h, kernel_w, channels]
  const float* bias;    // channels values, or nullptr
  O* out;               // output[n, oh]: [out_w, channels]
  int64_t channels, in_h, in_w, out_w, kernel_h, kernel_w;
  int64_t stride_h, stride_w, dilation_h, dilation_w, pad_left;
  int64_t first_row;  // the input row under tap kh = 0 (in the padding when negative)
};

// float16 (as its bits) <-> float32, float32 -> bfloat16 (as its bits), rounding to nearest even
// (convert_avx2.cpp; need AVX2 and F16C).
void half_to_float_f16c(const uint16_t* src, float* dst, int64_t count);
void float_to_half_f16c(const float* src, uint16_t* dst, int64_t count);
void float_to_bfloat16_avx2(const float* src, uint16_t* dst, int64_t count);

// needs AVX2, FMA and F16C
void depthwise_row_avx2(const DepthwiseRowArgs<float>& args);
void depthwise_row_avx2(const DepthwiseRowArgs<Float16Bits>& args);
void depthwise_row_avx2(const DepthwiseRowArgs<BFloat16Bits>& args);
void depthwise_row_avx2(const DepthwiseRowArgs<Float16Bits, float>& args);
void depthwise_row_avx2(const DepthwiseRowArgs<BFloat16Bits, float>& args);
// needs AVX-512F
void depthwise_row_avx512(const DepthwiseRowArgs<float>& args);
void depthwise_row_avx512(const DepthwiseRowArgs<Float16Bits>& args);
void depthwise_row_avx512(const DepthwiseRowArgs<BFloat16Bits>& args);
void depthwise_row_avx512(const DepthwiseRowArgs<Float16Bits, float>& args);
void depthwise_row_avx512(const DepthwiseRowArgs<BFloat16Bits, float>& args);
// AArch64
void depthwise_row_neon(const DepthwiseRowArgs<float>& args);
void depthwise_row_neon(const DepthwiseRowArgs<Float16Bits>& args);
void depthwise_row_neon(const DepthwiseRowArgs<BFloat16Bits>& args);
void depthwise_row_neon(const DepthwiseRowArgs<Float16Bits, float>& args);
void depthwise_row_neon(const DepthwiseRowArgs<BFloat16Bits, float>& args);

}  // namespace cpu
}  // namespace myconv
