// The one source of truth for conv2d geometry along one spatial axis:
// effective (dilated) kernel extent, TensorFlow SAME padding split and output size.
// Used by the argument checks shared by every backend, by the Meta (shape) kernel and,
// being __host__ __device__, by CUDA kernels. Depends on nothing but the C++ standard library.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MYCONV_HOST_DEVICE __host__ __device__
#else
#define MYCONV_HOST_DEVICE
#endif

namespace myconv {
namespace geometry {

// Zero padding added before (top/left) and after (bottom/right) the input along one axis.
struct Padding {
  int64_t before;
  int64_t after;
};

// The largest stride, dilation, padding entry and dilated filter extent a call may use (2^60).
// A non-empty tensor's sizes are below 2^62 (2-byte elements, 2^63 bytes), so a size plus a few
// of these values stays below 2^63: the sums the index math forms (a padded size, a window's
// last tap, a strip's columns) cannot overflow. Larger values give outputs no real tensor can
// have, or only outputs that read padding, and are refused (conv2d_plan.cpp).
constexpr int64_t kMaxGeometryValue = int64_t{1} << 60;

// ceil(a / b) for b >= 1 and any a, without forming a + b - 1 (which overflows near 2^63).
MYCONV_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) {
  const int64_t q = a / b;  // truncates toward zero: rounds up already when a < 0
  return q + (a % b > 0 ? 1 : 0);
}

// The size formulas are templates over the integer type: int64_t in the kernels, c10::SymInt in
// the Meta kernel (symbolic sizes under torch.compile / torch.export). On symbolic sizes they use
// only + - * /, never a comparison, so a symbolic size never gets specialised; comparisons (does
// the window fit?) belong to the caller, which checks them as symbolic conditions.

// Extent of a kernel of size k with dilation d: (k - 1) * d + 1. Assumes it fits (see checked_*).
template <typename Int>
MYCONV_HOST_DEVICE constexpr Int effective_kernel(const Int& k, int64_t d) {
  return (k - 1) * d + 1;
}

// SAME output size ceil(in / s) for in >= 0, s >= 1. Concrete sizes use a form that cannot
// overflow near INT64_MAX; symbolic ones (in + s - 1) / s, the form sympy's range analysis reads
// (torch.export turns "output >= k" into "in >= k * s - s + 1" instead of parity conditions).
template <typename Int>
MYCONV_HOST_DEVICE constexpr Int same_output_size(const Int& in, int64_t s) {
  if constexpr (std::is_integral_v<Int>) {
    return in / s + (in % s != 0 ? 1 : 0);
  } else {
    return (in + (s - 1)) / s;
  }
}

// TensorFlow's SAME split: total = max((out - 1) * s + eff - in, 0), the odd pixel goes after.
// (out - 1) * s < in always holds, so "eff - covered" is the overflow-free form of the total.
// Concrete sizes only: the shape code never needs the split, only the kernels do.
MYCONV_HOST_DEVICE constexpr Padding same_padding(int64_t in, int64_t eff, int64_t s) {
  const int64_t covered = in - (same_output_size(in, s) - 1) * s;
  const int64_t total = eff > covered ? eff - covered : 0;
  return Padding{total / 2, total - total / 2};
}

// Output size for explicit padding: floor((in + before + after - eff) / s) + 1.
// Requires in + before + after >= eff (the caller checks that a window fits) and that the sum
// fits in int64 (see checked_padded_size).
template <typename Int>
MYCONV_HOST_DEVICE constexpr Int output_size(const Int& in, Padding pad, const Int& eff, int64_t s) {
  return (in + pad.before + pad.after - eff) / s + 1;
}

// Input coordinate under tap `tap` of the window of output coordinate `out`; outside [0, in)
// means the tap falls into the zero padding. Every backend's index math goes through this.
MYCONV_HOST_DEVICE constexpr int64_t input_index(int64_t out, int64_t s, int64_t pad_before,
                                                 int64_t tap, int64_t d) {
  return out * s - pad_before + tap * d;
}

// A range [begin, end) of taps or of output coordinates (empty when begin == end).
struct IndexRange {
  int64_t begin, end;
};

// The taps of a window whose tap 0 reads input coordinate `first` (input_index of tap 0) that
// land inside [0, in): with a fixed dilation the inside taps are one contiguous range.
MYCONV_HOST_DEVICE constexpr IndexRange taps_inside(int64_t first, int64_t d, int64_t kernel, int64_t in) {
  // the first tap at or past 0 and the first at or past `in`, clamped to [0, kernel]
  const int64_t below = ceil_div(-first, d);
  const int64_t begin = below < 0 ? 0 : (below > kernel ? kernel : below);
  const int64_t above = ceil_div(in - first, d);
  return {begin, above < begin ? begin : (above > kernel ? kernel : above)};
}

// The outputs among [0, out) whose whole window (dilated extent `eff`) lies inside [0, in): the
// interior, where no tap falls into the padding.
MYCONV_HOST_DEVICE constexpr IndexRange outputs_inside(int64_t in, int64_t eff, int64_t s, int64_t pad_before,
                                                      int64_t out) {
  const int64_t first = ceil_div(pad_before, s);  // tap 0 inside from here on
  const int64_t begin = first > out ? out : first;
  const int64_t last_start = in - eff + pad_before;  // the largest out * s whose last tap is inside
  const int64_t end = last_start < 0 ? begin : last_start / s + 1;
  return {begin, end < begin ? begin : (end > out ? out : end)};
}

// The inverse of input_index: the output coordinate whose tap `tap` reads input coordinate `in`,
// or -1 when that tap of no output lands there (between strides). The caller checks the result
// against the output size. Gradients with respect to the input gather through this.
MYCONV_HOST_DEVICE constexpr int64_t output_index(int64_t in, int64_t s, int64_t pad_before,
                                                  int64_t tap, int64_t d) {
  const int64_t shifted = in + pad_before - tap * d;
  return shifted >= 0 && shifted % s == 0 ? shifted / s : -1;
}

// The transposed convolution (conv2d_transpose) runs a conv2d backwards: its output has the size
// of a conv2d input whose output is the transposed op's input. Two rules pick that size.

// Keras's Conv2DTranspose rule along one axis (keras.src.backend.common.backend_utils.
// compute_conv_transpose_output_length) for a transposed input of size `in`: without
// output_padding, SAME gives in * s and VALID in * s + max(eff - s, 0); with it, the exact
// (in - 1) * s + eff - 2 * pad + output_padding, pad = eff / 2 for SAME and 0 for VALID. Explicit
// padding (not Keras's) takes the exact form, 2 * pad = before + after (all zeros: VALID's rule).
template <typename Int>
constexpr Int transposed_output_size(const Int& in, int64_t eff, int64_t s, bool same, Padding pad,
                                     bool has_output_padding, int64_t output_padding) {
  if (same && !has_output_padding) return in * s;
  if (!same && pad.before == 0 && pad.after == 0 && !has_output_padding) {
    return in * s + (eff > s ? eff - s : 0);
  }
  const int64_t removed = same ? 2 * (eff / 2) : pad.before + pad.after;
  return (in - 1) * s + (eff - removed + output_padding);
}

// TF's output_shape rule: the conv2d input sizes along one axis whose output size is `out`, the
// sizes a transposed convolution of input size `out` may produce: [begin, end) (for errors).
// SAME: ceil(in / s) = out; explicit/VALID: floor((in + before + after - eff) / s) + 1 = out.
inline IndexRange transposed_output_range(int64_t out, int64_t eff, int64_t s, bool same, Padding pad) {
  if (same) return out == 0 ? IndexRange{0, 1} : IndexRange{(out - 1) * s + 1, out * s + 1};
  const int64_t first = (out - 1) * s + eff - pad.before - pad.after;
  return {first < 0 ? 0 : first, first + s < 0 ? 0 : first + s};
}

// Overflow-checked effective_kernel for validating user input; false when it does not fit.
inline bool checked_effective_kernel(int64_t k, int64_t d, int64_t* eff) {
  int64_t span = 0;
  if (__builtin_mul_overflow(k - 1, d, &span)) return false;
  return !__builtin_add_overflow(span, int64_t{1}, eff);
}

// Overflow-checked in + before + after; false when it does not fit.
inline bool checked_padded_size(int64_t in, Padding pad, int64_t* padded) {
  int64_t partial = 0;
  if (__builtin_add_overflow(in, pad.before, &partial)) return false;
  return !__builtin_add_overflow(partial, pad.after, padded);
}

}  // namespace geometry
}  // namespace myconv
