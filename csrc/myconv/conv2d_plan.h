// Argument checks and the geometry of one conv2d call, shared by every backend (CPU, CUDA,
// Meta) so that all of them accept, reject and size exactly the same calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "myconv/geometry.h"

namespace myconv {

// How the caller asked for padding: TF's SAME or VALID, or explicit {top, bottom, left, right}.
struct PaddingSpec {
  enum class Mode { kSame, kValid, kExplicit };
  Mode mode;
  std::array<int64_t, 4> explicit_pads;  // read only when mode == kExplicit
};

// Parses "SAME"/"VALID" (any case); anything else is a ValueError naming the value.
PaddingSpec parse_padding_mode(std::string_view padding);
// Checks length 4 and non-negative entries of explicit {top, bottom, left, right} padding.
PaddingSpec parse_explicit_padding(at::IntArrayRef padding);

// Everything a kernel needs to know about a validated call, in NHWC / HWIO terms.
struct Conv2dPlan {
  int64_t batch, in_h, in_w, in_channels;
  int64_t kernel_h, kernel_w, out_channels;
  int64_t groups, group_in_channels, group_out_channels;
  int64_t stride_h, stride_w, dilation_h, dilation_w;
  geometry::Padding pad_h, pad_w;
  int64_t out_h, out_w;

  std::vector<int64_t> output_sizes() const { return {batch, out_h, out_w, out_channels}; }
  // One input channel per group: backends use a direct kernel instead of width-1 GEMMs.
  bool is_depthwise() const { return group_in_channels == 1 && groups > 1; }
  // 1x1, stride 1, no padding: the NHWC input already is the GEMM operand.
  bool is_unpadded_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h.before == 0 &&
           pad_h.after == 0 && pad_w.before == 0 && pad_w.after == 0;
  }
};

// Validates shapes, stride, padding and dilation and computes the output geometry.
Conv2dPlan plan_conv2d(at::IntArrayRef input_sizes, at::IntArrayRef filter_sizes,
                       at::IntArrayRef stride, const PaddingSpec& padding,
                       at::IntArrayRef dilation);

// plan_conv2d plus the tensor checks: dtype, device and bias shape.
Conv2dPlan plan_conv2d(const at::Tensor& input, const at::Tensor& filter,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       const PaddingSpec& padding, at::IntArrayRef dilation);

// A backend kernel: fills `output` (contiguous NHWC, non-empty) for a validated call.
using Conv2dKernel = void (*)(const at::Tensor& input, const at::Tensor& filter,
                              const std::optional<at::Tensor>& bias, const Conv2dPlan& plan,
                              at::Tensor& output);

// The two schema overloads on top of one backend kernel: validate, allocate, run.
template <Conv2dKernel kernel>
struct Conv2dEntryPoints {
  static at::Tensor run(const at::Tensor& input, const at::Tensor& filter,
                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                        const PaddingSpec& padding, at::IntArrayRef dilation) {
    const Conv2dPlan plan = plan_conv2d(input, filter, bias, stride, padding, dilation);
    at::Tensor output = at::empty(plan.output_sizes(), input.options());
    if (output.numel() > 0) kernel(input, filter, bias, plan, output);
    return output;
  }
  static at::Tensor same_or_valid(const at::Tensor& input, const at::Tensor& filter,
                                  at::IntArrayRef stride, c10::string_view padding,
                                  at::IntArrayRef dilation, const std::optional<at::Tensor>& bias) {
    return run(input, filter, bias, stride,
               parse_padding_mode(std::string_view(padding.data(), padding.size())), dilation);
  }
  static at::Tensor explicit_padding(const at::Tensor& input, const at::Tensor& filter,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation,
                                     const std::optional<at::Tensor>& bias) {
    return run(input, filter, bias, stride, parse_explicit_padding(padding), dilation);
  }
};

// Registers both overloads of myconv::conv2d for one dispatch key.
template <Conv2dKernel kernel>
void register_conv2d_kernels(torch::Library& m) {
  m.impl("conv2d", &Conv2dEntryPoints<kernel>::same_or_valid);
  m.impl("conv2d.explicit", &Conv2dEntryPoints<kernel>::explicit_padding);
}

}  // namespace myconv
