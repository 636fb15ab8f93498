// Per-element index math of the kernels, shared by the CPU and CUDA backends (host and device)
// and unit-tested on the CPU: flat index -> (n, y, x), tap -> (kh, kw), NHWC offsets, the
// depthwise channel-multiplier mapping. Divisions by sizes fixed for a call go through
// FastDivmod, a multiply and two shifts instead of a 64-bit hardware division.
#pragma once

#include <cstdint>

#include "myconv/conv2d_plan.h"
#include "myconv/geometry.h"

namespace myconv {

// Division of a non-negative int64 by a fixed divisor >= 1 (Granlund & Montgomery, "Division by
// invariant integers using multiplication", fig. 4.1): q = (t + ((n - t) >> s1)) >> s2 with
// t = mulhi(magic, n). Exact for every 64-bit n.
class FastDivmod {
 public:
  FastDivmod() = default;

  // Host only: the magic number needs a 128-bit division.
  explicit FastDivmod(int64_t divisor) : divisor_(static_cast<uint64_t>(divisor)) {
    uint32_t log2_ceil = 0;
    while ((uint64_t{1} << log2_ceil) < divisor_) ++log2_ceil;
    const unsigned __int128 numerator =
        static_cast<unsigned __int128>((uint64_t{1} << log2_ceil) - divisor_) << 64;
    magic_ = static_cast<uint64_t>(numerator / divisor_) + 1;
    shift1_ = log2_ceil < 1 ? log2_ceil : 1;
    shift2_ = log2_ceil < 1 ? 0 : log2_ceil - 1;
  }

  MYCONV_HOST_DEVICE int64_t divisor() const { return static_cast<int64_t>(divisor_); }

  MYCONV_HOST_DEVICE int64_t div(int64_t n) const {
    const uint64_t u = static_cast<uint64_t>(n);
    const uint64_t t = mulhi(magic_, u);
    return static_cast<int64_t>((t + ((u - t) >> shift1_)) >> shift2_);
  }

  // quotient and remainder of n / divisor
  MYCONV_HOST_DEVICE void divmod(int64_t n, int64_t* quotient, int64_t* remainder) const {
    *quotient = div(n);
    *remainder = n - *quotient * static_cast<int64_t>(divisor_);
  }

 private:
  MYCONV_HOST_DEVICE static uint64_t mulhi(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#else
    return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
  }

  uint64_t divisor_ = 1;
  uint64_t magic_ = 1;
  uint32_t shift1_ = 0;
  uint32_t shift2_ = 0;
};

// One pixel (n, y, x) of an NHWC tensor.
struct Pixel {
  int64_t n, y, x;
};

// Steps `q` to the next pixel of an NHWC tensor `width` x `height` (along the row, then the next
// row, then the next image); true when that starts a new row.
MYCONV_HOST_DEVICE inline bool next_pixel(Pixel& q, int64_t width, int64_t height) {
  if (++q.x < width) return false;
  q.x = 0;
  if (++q.y == height) q.y = 0, ++q.n;
  return true;
}

// The index math of one validated call; passed by value to CUDA kernels.
struct Conv2dIndexer {
  Conv2dPlan p;
  FastDivmod out_w, out_h, in_w, in_h, kernel_w, taps, in_channels, group_in_channels,
      out_channels, multiplier;

  explicit Conv2dIndexer(const Conv2dPlan& plan)
      : p(plan), out_w(plan.out_w), out_h(plan.out_h), in_w(plan.in_w), in_h(plan.in_h),
        kernel_w(plan.kernel_w), taps(plan.kernel_h * plan.kernel_w), in_channels(plan.in_channels),
        group_in_channels(plan.group_in_channels), out_channels(plan.out_channels),
        multiplier(plan.group_out_channels) {}

  // Flat index over N * OH * OW -> (n, oh, ow).
  MYCONV_HOST_DEVICE Pixel output_pixel(int64_t flat) const { return split(flat, out_w, out_h); }
  // Flat index over N * H * W -> (n, ih, iw).
  MYCONV_HOST_DEVICE Pixel input_pixel(int64_t flat) const { return split(flat, in_w, in_h); }

  // Tap index over KH * KW -> (kh, kw).
  MYCONV_HOST_DEVICE void tap(int64_t t, int64_t* kh, int64_t* kw) const { kernel_w.divmod(t, kh, kw); }

  // Element offset of input[n, ih, iw, c] (contiguous NHWC).
  MYCONV_HOST_DEVICE int64_t input_offset(int64_t n, int64_t ih, int64_t iw, int64_t c) const {
    return ((n * p.in_h + ih) * p.in_w + iw) * p.in_channels + c;
  }
  // Element offset of output[n, oh, ow, o] (contiguous NHWC).
  MYCONV_HOST_DEVICE int64_t output_offset(int64_t n, int64_t oh, int64_t ow, int64_t o) const {
    return ((n * p.out_h + oh) * p.out_w + ow) * p.out_channels + o;
  }

  // The input channel a depthwise output channel o = c * multiplier + j reads: c.
  MYCONV_HOST_DEVICE int64_t depthwise_input_channel(int64_t o) const { return multiplier.div(o); }

 private:
  MYCONV_HOST_DEVICE static Pixel split(int64_t flat, const FastDivmod& width, const FastDivmod& height) {
    Pixel pixel{};
    int64_t row = 0;
    width.divmod(flat, &row, &pixel.x);
    height.divmod(row, &pixel.n, &pixel.y);
    return pixel;
  }
};

// Calls f(ih, iw, kh, kw) for every tap (kh, kw) of output pixel (oh, ow) that lands inside the
// input (taps in the padding are skipped): the window of the forward convolution. (The CPU
// depthwise kernels keep their own loops: through the callback they ran 2x slower.)
template <typename F>
MYCONV_HOST_DEVICE void for_each_tap_inside(const Conv2dPlan& p, int64_t oh, int64_t ow, F&& f) {
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = geometry::input_index(oh, p.stride_h, p.pad_h.before, kh, p.dilation_h);
    if (ih < 0 || ih >= p.in_h) continue;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = geometry::input_index(ow, p.stride_w, p.pad_w.before, kw, p.dilation_w);
      if (iw < 0 || iw >= p.in_w) continue;
      f(ih, iw, kh, kw);
    }
  }
}

// Calls f(oh, ow, kh, kw) for every output pixel (oh, ow) whose tap (kh, kw) reads input pixel
// (ih, iw): the adjoint window, through which input gradients gather.
template <typename F>
MYCONV_HOST_DEVICE void for_each_window_reading(const Conv2dPlan& p, int64_t ih, int64_t iw, F&& f) {
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t oh = geometry::output_index(ih, p.stride_h, p.pad_h.before, kh, p.dilation_h);
    if (oh < 0 || oh >= p.out_h) continue;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t ow = geometry::output_index(iw, p.stride_w, p.pad_w.before, kw, p.dilation_w);
      if (ow < 0 || ow >= p.out_w) continue;
      f(oh, ow, kh, kw);
    }
  }
}

}  // namespace myconv
