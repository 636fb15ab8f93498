// The depthwise kernel, one channel vector (V::kLanes channels) at a time. For the common filters
// (width 3 or 5 with stride 1 or 2, width 7 with stride 1, no width dilation; width 3 with stride
// 1 and width dilation 2 or 4) a row goes in strips of 8 output pixels: the filter row stays in
// registers and each input vector is loaded once and feeds every output of the strip that reads
// it (3 FMAs a load for 3x3 stride 1); strips at the row's ends read zeros for columns in the
// padding. Other filters go 4 pixels at once where their windows lie inside the input width
// (each filter vector feeding 4 FMAs) and one pixel at a time, over its inside taps, elsewhere.
// Each block of pixels also prefetches, in address order, its columns of the input rows that the
// next output row is the first to read: once the input outgrows the caches (N = 8 MobileNet
// layers), the strips' channel-vector walk over a row fresh from memory is no pattern the
// hardware prefetchers follow, and the kernel waited on memory (a 3x3 C = 144 N = 8 layer: ~2 ->
// ~1.45 ms).
// Written once for a vector type V (load, masked load, store, masked store, zero, fmadd, tail
// mask; loads and stores of whole vectors of float16 and bfloat16 elements too, converting) and
// for the input element type T and the output element type O (T, or float for sums the caller
// rounds itself); included only by the kernel files, one per
// instruction set, compiled with their own flags: depthwise_avx2.cpp (8 channels a vector),
// depthwise_avx512.cpp (16), depthwise_neon.cpp (4). Everything here is in an unnamed namespace so that each of those
// files keeps its own copy, compiled for its instruction set: an inline function shared between
// them could be the copy the linker keeps for both, with the other's instructions in it.
#pragma once

#include <type_traits>

#include "myconv/cpu/microkernel/kernels.h"
#include "myconv/geometry.h"

namespace myconv {
namespace cpu {
namespace {  // NOLINT(build/namespaces): one copy per instruction set's file, see above

constexpr int kBlockPixels = 4;
constexpr int kStripPixels = 8;

// (Not std::clamp: a standard-library template instantiated in a kernel file could be the copy
// the linker keeps for every other file, with that file's instructions in it.)
inline int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Input columns [col_begin, col_end), every channel, of the rows the next output row reads and
// this one does not (one row for stride 1; rows read by earlier output rows are in cache already).
template <typename T, typename O>
inline void prefetch_next_rows(const DepthwiseRowArgs<T, O>& a, int64_t col_begin, int64_t col_end) {
  col_begin = clamp(col_begin, 0, a.in_w);
  col_end = clamp(col_end, 0, a.in_w);
  const int64_t last_row = a.first_row + geometry::effective_kernel(a.kernel_h, a.dilation_h) - 1;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh) {
    const int64_t row = a.first_row + a.stride_h + kh * a.dilation_h;
    if (row <= last_row || row < 0 || row >= a.in_h) continue;
    const T* row_start = a.image + row * a.in_w * a.channels;
    prefetch_range_to_l2(row_start + col_begin * a.channels, row_start + col_end * a.channels);
  }
}

// The columns a block of output pixels [ow, ow + pixels) adds to the row's reading: its first
// `pixels * stride` columns, and the window's remaining ones for the row's last block.
template <typename T, typename O>
inline void prefetch_block(const DepthwiseRowArgs<T, O>& a, int64_t ow, int64_t pixels) {
  const int64_t first_col = geometry::input_index(ow, a.stride_w, a.pad_left, 0, a.dilation_w);
  const bool last = ow + pixels >= a.out_w;
  const int64_t width = last ? (pixels - 1) * a.stride_w + geometry::effective_kernel(a.kernel_w, a.dilation_w)
                             : pixels * a.stride_w;
  prefetch_next_rows(a, first_col, first_col + width);
}

// A vector of channels from `at`: all V::kLanes, or (kTail) the first `lanes`, the lanes of
// `mask`, with zeros after them. Half types take their tail through a zeroed local vector.
template <typename V, bool kTail, typename T>
inline typename V::Reg load(const T* at, typename V::Mask mask, int64_t lanes) {
  if constexpr (!kTail) {
    return V::load(at);
  } else if constexpr (std::is_same_v<T, float>) {
    return V::load(at, mask);
  } else {
    T part[V::kLanes] = {};
    for (int64_t l = 0; l < lanes; ++l) part[l] = at[l];
    return V::load(part);
  }
}

// Stores all V::kLanes channels of `value` at `at`, or (kTail) the first `lanes`.
template <typename V, bool kTail, typename T>
inline void store(T* at, typename V::Mask mask, int64_t lanes, typename V::Reg value) {
  if constexpr (!kTail) {
    V::store(at, value);
  } else if constexpr (std::is_same_v<T, float>) {
    V::store(at, mask, value);
  } else {
    T part[V::kLanes];
    V::store(part, value);
    for (int64_t l = 0; l < lanes; ++l) at[l] = part[l];
  }
}

// Channel vectors [c_begin, c_end) (V::kLanes channels each, the lanes of `mask` when kTail) of
// the strip of output pixels [ow, ow + 8): filter width, stride and width dilation known at
// compile time, so that the loops over columns and taps unroll completely and each input
// column's FMAs are resolved while compiling. kEdge: some columns lie in the padding (read as
// zeros) and only the first `count` pixels exist.
template <typename V, typename T, typename O, int kKernelW, int kStride, int kDilation, bool kTail, bool kEdge>
void strip_x_lanes(const DepthwiseRowArgs<T, O>& a, geometry::IndexRange rows, int64_t ow, int count, int64_t c_begin,
                   int64_t c_end, typename V::Mask mask) {
  constexpr int kColumns = (kStripPixels - 1) * kStride + (kKernelW - 1) * kDilation + 1;  // input columns it reads
  // The arguments in locals: the vector stores may alias anything, which would make the compiler
  // reload every field of `a` after each one.
  const int64_t channels = a.channels, in_w = a.in_w;
  const float* const bias_values = a.bias;
  const int64_t first_col = geometry::input_index(ow, int64_t{kStride}, a.pad_left, 0, 1);
  const int64_t row_step = a.dilation_h * in_w * channels;
  // Pointers only to inside columns: at the edges first_col may lie far in the padding (a large
  // explicit padding), where first_col * channels alone could overflow.
  const T* image_rows = a.image + (a.first_row + rows.begin * a.dilation_h) * in_w * channels;  // column 0
  const float* filter_rows = a.filter + rows.begin * kKernelW * channels;
  O* const out = a.out + ow * channels;
  for (int64_t c = c_begin; c < c_end; c += V::kLanes) {
    const int64_t lanes = channels - c;  // (the tail's lanes)
    typename V::Reg acc[kStripPixels];
    const typename V::Reg bias = bias_values ? load<V, kTail>(bias_values + c, mask, lanes) : V::zero();
#pragma GCC unroll 8
    for (int i = 0; i < kStripPixels; ++i) acc[i] = bias;
    const T* x_row = image_rows + c;
    const float* w_row = filter_rows + c;
    for (int64_t kh = rows.begin; kh < rows.end; ++kh, x_row += row_step) {
      typename V::Reg w[kKernelW];
#pragma GCC unroll 8
      for (int kw = 0; kw < kKernelW; ++kw, w_row += channels) w[kw] = load<V, kTail>(w_row, mask, lanes);
      // column first_col + col, stepped a column at a time inside (no per-column offset)
      const T* x = kEdge ? x_row : x_row + first_col * channels;
#pragma GCC unroll 64
      for (int col = 0; col < kColumns; ++col, x += channels) {
        const int64_t iw = first_col + col;
        typename V::Reg value = !kEdge                      ? load<V, kTail>(x, mask, lanes)
                                : iw >= 0 && iw < in_w ? load<V, kTail>(x_row + iw * channels, mask, lanes)
                                                       : V::zero();
        // In a register from here on: GCC otherwise folds the load into each FMA that uses the
        // column (x86's memory operands), loading it up to kKernelW times, and the strips become
        // bound by loads. (AArch64's FMAs take no memory operand; its vector constraint is "w".)
#if defined(__x86_64__)
        asm("" : "+v"(value));
#elif defined(__aarch64__)
        asm("" : "+w"(value));
#endif
#pragma GCC unroll 8
        for (int kw = 0; kw < kKernelW; ++kw) {
          // output pixel i reads this column through tap kw when col == i * stride + kw * dilation
          const int offset = col - kw * kDilation, i = offset / kStride;
          if (offset >= 0 && offset % kStride == 0 && i < kStripPixels) acc[i] = V::fmadd(value, w[kw], acc[i]);
        }
      }
    }
    O* o = out + c;
#pragma GCC unroll 8
    for (int i = 0; i < kStripPixels; ++i, o += channels) {
      if (!kEdge || i < count) store<V, kTail>(o, mask, lanes, acc[i]);
    }
  }
}

// Every channel of one strip.
template <typename V, typename T, typename O, int kKernelW, int kStride, int kDilation, bool kEdge>
void strip(const DepthwiseRowArgs<T, O>& a, geometry::IndexRange rows, int64_t ow, int count,
           typename V::Mask tail_mask) {
  prefetch_block(a, ow, kStripPixels);
  const int64_t full = a.channels - a.channels % V::kLanes;
  strip_x_lanes<V, T, O, kKernelW, kStride, kDilation, false, kEdge>(a, rows, ow, count, 0, full, tail_mask);
  if (full < a.channels) {
    strip_x_lanes<V, T, O, kKernelW, kStride, kDilation, true, kEdge>(a, rows, ow, count, full, a.channels, tail_mask);
  }
}

template <typename V, typename T, typename O>
using StripKernel = void (*)(const DepthwiseRowArgs<T, O>&, geometry::IndexRange, int64_t, int, typename V::Mask);

template <typename V, typename T, typename O>
struct StripKernels {
  StripKernel<V, T, O> inside, edge;
};

// The strip kernels of one filter width, stride and width dilation, inside and at the edges.
template <typename V, typename T, typename O, int kKernelW, int kStride, int kDilation>
constexpr StripKernels<V, T, O> kStrips{&strip<V, T, O, kKernelW, kStride, kDilation, false>,
                                     &strip<V, T, O, kKernelW, kStride, kDilation, true>};

// The strip kernels compiled for this filter width, stride and width dilation, or nullptrs:
// MobileNet's and ConvNeXt's filters, and the dilated 3x3 of DeepLab's atrous MobileNet stages.
template <typename V, typename T, typename O>
StripKernels<V, T, O> strip_kernels(const DepthwiseRowArgs<T, O>& a) {
  const int64_t k = a.kernel_w, s = a.stride_w, d = a.dilation_w;
  if (k == 3 && s == 1 && d == 1) return kStrips<V, T, O, 3, 1, 1>;
  if (k == 3 && s == 2 && d == 1) return kStrips<V, T, O, 3, 2, 1>;
  if (k == 5 && s == 1 && d == 1) return kStrips<V, T, O, 5, 1, 1>;
  if (k == 5 && s == 2 && d == 1) return kStrips<V, T, O, 5, 2, 1>;
  if (k == 7 && s == 1 && d == 1) return kStrips<V, T, O, 7, 1, 1>;
  if (k == 3 && s == 1 && d == 2) return kStrips<V, T, O, 3, 1, 2>;
  if (k == 3 && s == 1 && d == 4) return kStrips<V, T, O, 3, 1, 4>;
  return {nullptr, nullptr};
}

// Channels [c, c + 8) of output pixels [ow, ow + kPixels), whose windows share the inside taps
// `rows` x `cols`: any filter width, stride and dilation.
template <typename V, typename T, typename O, int kPixels, bool kTail>
inline void pixels_x_lanes(const DepthwiseRowArgs<T, O>& a, geometry::IndexRange rows, geometry::IndexRange cols,
                           int64_t ow, int64_t c, typename V::Mask mask) {
  const int64_t lanes = a.channels - c;  // (the tail's lanes)
  typename V::Reg acc[kPixels];
  const typename V::Reg bias = a.bias ? load<V, kTail>(a.bias + c, mask, lanes) : V::zero();
#pragma GCC unroll 4
  for (int i = 0; i < kPixels; ++i) acc[i] = bias;
  const int64_t pixel_step = a.stride_w * a.channels;
  const int64_t first_col = geometry::input_index(ow, a.stride_w, a.pad_left, 0, a.dilation_w);
  for (int64_t kh = rows.begin; kh < rows.end; ++kh) {
    const T* x_row = a.image + (a.first_row + kh * a.dilation_h) * a.in_w * a.channels + c;
    const float* w_row = a.filter + kh * a.kernel_w * a.channels + c;
    for (int64_t kw = cols.begin; kw < cols.end; ++kw) {
      const typename V::Reg w = load<V, kTail>(w_row + kw * a.channels, mask, lanes);
      const T* x = x_row + (first_col + kw * a.dilation_w) * a.channels;  // an inside column
#pragma GCC unroll 4
      for (int i = 0; i < kPixels; ++i) {
        acc[i] = V::fmadd(load<V, kTail>(x + i * pixel_step, mask, lanes), w, acc[i]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kPixels; ++i) store<V, kTail>(a.out + (ow + i) * a.channels + c, mask, lanes, acc[i]);
}

// Every channel of output pixels [ow, ow + kPixels).
template <typename V, typename T, typename O, int kPixels>
void pixels(const DepthwiseRowArgs<T, O>& a, geometry::IndexRange rows, geometry::IndexRange cols, int64_t ow,
            typename V::Mask tail_mask) {
  prefetch_block(a, ow, kPixels);
  const int64_t full = a.channels - a.channels % V::kLanes;
  for (int64_t c = 0; c < full; c += V::kLanes) {
    pixels_x_lanes<V, T, O, kPixels, false>(a, rows, cols, ow, c, tail_mask);
  }
  if (full < a.channels) pixels_x_lanes<V, T, O, kPixels, true>(a, rows, cols, ow, full, tail_mask);
}

// One output row (DepthwiseRowArgs) with the vector type V.
template <typename V, typename T, typename O>
void depthwise_row(const DepthwiseRowArgs<T, O>& a) {
  const geometry::IndexRange rows = geometry::taps_inside(a.first_row, a.dilation_h, a.kernel_h, a.in_h);
  const int64_t tail = a.channels % V::kLanes;
  const typename V::Mask tail_mask = V::tail_mask(tail);
  const geometry::IndexRange inner =
      geometry::outputs_inside(a.in_w, (a.kernel_w - 1) * a.dilation_w + 1, a.stride_w, a.pad_left, a.out_w);
  const int64_t inner_begin = inner.begin, inner_end = inner.end;

  if (const StripKernels<V, T, O> strips = strip_kernels<V>(a); strips.inside != nullptr) {
    for (int64_t ow = 0; ow < a.out_w; ow += kStripPixels) {
      const bool inside = ow >= inner_begin && ow + kStripPixels <= inner_end;
      const int count = static_cast<int>(clamp(a.out_w - ow, 0, kStripPixels));
      (inside ? strips.inside : strips.edge)(a, rows, ow, count, tail_mask);
    }
    return;
  }
  const auto cols_of = [&](int64_t ow) {
    return geometry::taps_inside(geometry::input_index(ow, a.stride_w, a.pad_left, 0, a.dilation_w),
                                 a.dilation_w, a.kernel_w, a.in_w);
  };
  const geometry::IndexRange all_cols{0, a.kernel_w};
  int64_t ow = 0;
  for (; ow < inner_begin; ++ow) pixels<V, T, O, 1>(a, rows, cols_of(ow), ow, tail_mask);
  for (; ow + kBlockPixels <= inner_end; ow += kBlockPixels) {
    pixels<V, T, O, kBlockPixels>(a, rows, all_cols, ow, tail_mask);
  }
  for (; ow < inner_end; ++ow) pixels<V, T, O, 1>(a, rows, all_cols, ow, tail_mask);
  for (; ow < a.out_w; ++ow) pixels<V, T, O, 1>(a, rows, cols_of(ow), ow, tail_mask);
}

}  // namespace
}  // namespace cpu
}  // namespace myconv
