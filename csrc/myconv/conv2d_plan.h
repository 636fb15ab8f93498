// Argument checks and the geometry of one conv2d call, shared by every backend (CPU, CUDA,
// Meta) so that all of them accept, reject and size exactly the same calls, for the forward op
// and its gradient op alike.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "myconv/activation_ops.h"
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

// The sizes of a validated call in NHWC / HWIO terms. Int is int64_t for the kernels and
// c10::SymInt for the Meta kernel, where sizes may be symbolic (torch.compile, torch.export).
template <typename Int>
struct Conv2dShape {
  Int batch, in_h, in_w, in_channels;
  Int kernel_h, kernel_w, group_in_channels, out_channels;
  Int groups, out_h, out_w;

  std::vector<Int> output_sizes() const { return {batch, out_h, out_w, out_channels}; }
};

// Validates shapes, stride, padding and dilation and computes the output size. Conditions on
// symbolic sizes become runtime assertions of the traced program instead of specialisations.
template <typename Int>
Conv2dShape<Int> check_conv2d_shapes(c10::ArrayRef<Int> input_sizes,
                                     c10::ArrayRef<Int> filter_sizes, at::IntArrayRef stride,
                                     const PaddingSpec& padding, at::IntArrayRef dilation);

// check_conv2d_shapes plus the tensor checks: dtype, device and bias shape.
template <typename Int>
Conv2dShape<Int> check_conv2d(const at::Tensor& input, const at::Tensor& filter,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              const PaddingSpec& padding, at::IntArrayRef dilation);

// conv2d_transpose's checks: input [N, H, W, C_in], filter [KH, KW, C_out, C_in] (TF's layout,
// the HWIO filter of the conv2d it transposes), the output's spatial size given (TF's
// output_shape: that conv2d must map it back to H x W) or from Keras's rule (with output_padding),
// the bias [C_out]. Returns the shape of that conv2d, whose input is the transposed op's output.
template <typename Int>
Conv2dShape<Int> check_conv2d_transpose(const at::Tensor& input, const at::Tensor& filter,
                                        at::OptionalIntArrayRef output_size, at::OptionalIntArrayRef output_padding,
                                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                        const PaddingSpec& padding, at::IntArrayRef dilation);

// The input's dtype is one the kernels compute in (float32, float64, float16, bfloat16).
void check_input_dtype(const at::Tensor& input);
// An optional bias is [channels] of the input's dtype and device; errors start with `op` and say
// what the channels are.
template <typename Int>
void check_bias(const at::Tensor& input, const std::optional<at::Tensor>& bias, const Int& channels, const char* op,
                const char* channels_are);

// The bias gradient of every op here: grad_output summed over N, OH, OW (in float32 for half
// types), as `dtype`.
inline at::Tensor bias_gradient(const at::Tensor& grad_output, at::ScalarType dtype) {
  return at::sum(grad_output, {0, 1, 2}, false, at::toOpMathType(dtype)).to(dtype);
}

// The optional residual of a fused op: the output's shape (any strides), the input's dtype and
// device; errors name `op`.
template <typename Int>
void check_residual(const at::Tensor& input, const std::optional<at::Tensor>& residual, const Conv2dShape<Int>& shape,
                    const char* op = "myconv.conv2d_fused");

// grad_output of conv2d_backward must be the forward output's shape, dtype and device.
template <typename Int>
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input,
                       const Conv2dShape<Int>& shape);

// Everything a kernel needs to know about a validated call with concrete sizes: the shape plus
// stride, dilation and the padding split.
struct Conv2dPlan : Conv2dShape<int64_t> {
  int64_t group_out_channels;
  int64_t stride_h, stride_w, dilation_h, dilation_w;
  geometry::Padding pad_h, pad_w;

  // N * OH * OW: the rows of every GEMM and the pixels kernels tile.
  MYCONV_HOST_DEVICE int64_t output_pixels() const { return batch * out_h * out_w; }
  // KH * KW * Cg: the length of one window, i.e. of an im2row row and of a GEMM's reduction.
  MYCONV_HOST_DEVICE int64_t window_size() const { return kernel_h * kernel_w * group_in_channels; }

  // One input channel per group: backends use a direct kernel instead of width-1 GEMMs.
  bool is_depthwise() const { return group_in_channels == 1 && groups > 1; }
  // 1x1, stride 1, no padding: the NHWC input already is the GEMM operand. (Sizes compared too:
  // make_plan gives a one-output axis stride 1 whatever its input size.)
  bool is_unpadded_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && in_h == out_h && in_w == out_w &&
           pad_h.before == 0 &&
           pad_h.after == 0 && pad_w.before == 0 && pad_w.after == 0;
  }
};

// Adds stride, dilation and the padding split to a checked shape.
Conv2dPlan make_plan(const Conv2dShape<int64_t>& shape, at::IntArrayRef stride,
                     const PaddingSpec& padding, at::IntArrayRef dilation);

// Gradients of one call; a tensor is undefined where output_mask did not ask for it.
struct Conv2dGrads {
  at::Tensor input, filter, bias;
};

// A backend: fills `output` (contiguous NHWC, non-empty) for a validated call, and every element
// of the defined input and filter gradients (contiguous, grad_output non-empty) for
// conv2d_backward; the bias gradient is one shared reduction.
using Conv2dKernel = void (*)(const at::Tensor& input, const at::Tensor& filter,
                              const std::optional<at::Tensor>& bias, const Conv2dPlan& plan,
                              at::Tensor& output);
// A backend's fused forward: output = activation(conv + bias + residual) (conv2d_fused).
using Conv2dFusedKernel = void (*)(const at::Tensor& input, const at::Tensor& filter,
                                   const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                                   const Epilogue& epilogue, const Conv2dPlan& plan, at::Tensor& output);
using Conv2dBackwardKernel = void (*)(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& filter, const Conv2dPlan& plan,
                                      Conv2dGrads& grads);

namespace detail {
inline at::Tensor empty_of(c10::ArrayRef<int64_t> sizes, const at::TensorOptions& options) {
  return at::empty(sizes, options);
}
inline at::Tensor empty_of(c10::ArrayRef<c10::SymInt> sizes, const at::TensorOptions& options) {
  return at::empty_symint(sizes, options);
}
// An empty input (H or W of 0) can still have outputs, when explicit padding alone holds a
// window: every one reads only padding, so it is the bias (or zero). Fills them and returns true
// then; the kernels never see such a call (their index math assumes a non-empty input).
inline bool fill_reading_only_padding(const at::Tensor& input, const std::optional<at::Tensor>& bias,
                                      at::Tensor& output) {
  if (input.numel() > 0) return false;
  if (bias) {
    output.copy_(bias->expand_as(output));
  } else {
    output.zero_();
  }
  return true;
}

// output = activation(output + residual) as ATen operations, for the paths without a fused epilogue;
// half types in float32, rounded once at the end.
inline void apply_epilogue_unfused(const Epilogue& epilogue, const std::optional<at::Tensor>& residual,
                                   at::Tensor& output) {
  if (!residual && epilogue.is_identity()) return;
  at::Tensor z = at::isReducedFloatingType(output.scalar_type()) ? output.to(at::kFloat) : output;
  if (residual) z.add_(*residual);
  if (!epilogue.is_identity()) z = activate_tensor(z, epilogue);
  if (!z.is_same(output)) output.copy_(z);
}

template <typename Int>
c10::ArrayRef<Int> sizes_of(const at::Tensor& tensor) {
  if constexpr (std::is_same_v<Int, c10::SymInt>) {
    return tensor.sym_sizes();
  } else {
    return tensor.sizes();
  }
}
}  // namespace detail

// The schema overloads (forward and backward, SAME/VALID and explicit) on top of one backend:
// validate, allocate, run. Int = c10::SymInt with null kernels gives the Meta (shape) backend.
// fused_kernel null: the forward kernel, then the epilogue as ATen operations (unfused).
template <typename Int, Conv2dKernel forward_kernel, Conv2dBackwardKernel backward_kernel,
          Conv2dFusedKernel fused_kernel = nullptr>
struct Conv2dEntryPoints {
  static constexpr bool kConcrete = std::is_same_v<Int, int64_t>;

  static at::Tensor forward(const at::Tensor& input, const at::Tensor& filter,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            const PaddingSpec& padding, at::IntArrayRef dilation) {
    const auto shape = check_conv2d<Int>(input, filter, bias, stride, padding, dilation);
    at::Tensor output = detail::empty_of(shape.output_sizes(), input.options());
    if constexpr (kConcrete) {
      if (output.numel() > 0 && !detail::fill_reading_only_padding(input, bias, output)) {
        forward_kernel(input, filter, bias, make_plan(shape, stride, padding, dilation), output);
      }
    }
    return output;
  }

  // conv2d_fused: activation(conv + bias + residual). Arguments are checked before anything runs.
  static at::Tensor fused(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& residual, c10::string_view activation,
                          std::optional<double> alpha, at::IntArrayRef stride, const PaddingSpec& padding,
                          at::IntArrayRef dilation) {
    const Epilogue epilogue = parse_epilogue(activation, alpha);
    const auto shape = check_conv2d<Int>(input, filter, bias, stride, padding, dilation);
    check_residual<Int>(input, residual, shape);
    at::Tensor output = detail::empty_of(shape.output_sizes(), input.options());
    if constexpr (kConcrete) {
      if (output.numel() == 0) return output;
      const Conv2dPlan plan = make_plan(shape, stride, padding, dilation);
      if constexpr (fused_kernel != nullptr) {
        if (input.numel() > 0) {
          fused_kernel(input, filter, bias, residual, epilogue, plan, output);
          return output;
        }
      }
      if (!detail::fill_reading_only_padding(input, bias, output)) forward_kernel(input, filter, bias, plan, output);
      detail::apply_epilogue_unfused(epilogue, residual, output);
    }
    return output;
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& filter,
      at::IntArrayRef stride, const PaddingSpec& padding, at::IntArrayRef dilation,
      std::array<bool, 3> output_mask) {
    const auto shape = check_conv2d<Int>(input, filter, std::nullopt, stride, padding, dilation);
    check_grad_output<Int>(grad_output, input, shape);
    Conv2dGrads grads;
    if (output_mask[0]) grads.input = detail::empty_of(detail::sizes_of<Int>(input), input.options());
    if (output_mask[1]) grads.filter = detail::empty_of(detail::sizes_of<Int>(filter), filter.options());
    if (output_mask[2]) grads.bias = detail::empty_of(c10::ArrayRef<Int>(shape.out_channels), filter.options());
    if constexpr (kConcrete) {
      if (grad_output.numel() > 0 && input.numel() > 0) {
        backward_kernel(grad_output, input, filter, make_plan(shape, stride, padding, dilation), grads);
      } else {  // no output pixel, or no input pixel (outputs that read only padding)
        for (at::Tensor* grad : {&grads.input, &grads.filter}) {
          if (grad->defined()) grad->zero_();
        }
      }
      // The same reduction on every device.
      if (grads.bias.defined()) grads.bias.copy_(bias_gradient(grad_output, input.scalar_type()));
    }
    return {grads.input, grads.filter, grads.bias};
  }

  // conv2d_transpose: the input gradient of the conv2d whose input has this op's output shape,
  // with this op's input as that conv2d's grad_output (backward_kernel computes only it), plus bias.
  static at::Tensor transpose(const at::Tensor& input, const at::Tensor& filter,
                              at::OptionalIntArrayRef output_size, at::OptionalIntArrayRef output_padding,
                              at::IntArrayRef stride, const PaddingSpec& padding, at::IntArrayRef dilation,
                              const std::optional<at::Tensor>& bias) {
    const auto shape =
        check_conv2d_transpose<Int>(input, filter, output_size, output_padding, bias, stride, padding, dilation);
    at::Tensor output = detail::empty_of(std::vector<Int>{shape.batch, shape.in_h, shape.in_w, shape.in_channels},
                                         input.options());
    if constexpr (kConcrete) {
      if (output.numel() > 0) {
        Conv2dGrads grads;
        grads.input = output;
        // The conv2d's input: only its sizes are read when only grad_input is computed.
        const at::Tensor conv_input = at::zeros({}, input.options()).expand(output.sizes());
        backward_kernel(input, conv_input, filter, make_plan(shape, stride, padding, dilation), grads);
        if (bias) output.add_(*bias);
      }
    }
    return output;
  }

  static PaddingSpec padding_of(c10::string_view padding) {
    return parse_padding_mode(std::string_view(padding.data(), padding.size()));
  }

  static at::Tensor same_or_valid(const at::Tensor& input, const at::Tensor& filter,
                                  at::IntArrayRef stride, c10::string_view padding,
                                  at::IntArrayRef dilation, const std::optional<at::Tensor>& bias) {
    return forward(input, filter, bias, stride, padding_of(padding), dilation);
  }
  static at::Tensor explicit_padding(const at::Tensor& input, const at::Tensor& filter,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation,
                                     const std::optional<at::Tensor>& bias) {
    return forward(input, filter, bias, stride, parse_explicit_padding(padding), dilation);
  }
  static at::Tensor fused_same_or_valid(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                                        c10::string_view padding, at::IntArrayRef dilation,
                                        const std::optional<at::Tensor>& bias,
                                        const std::optional<at::Tensor>& residual, c10::string_view activation,
                                        std::optional<double> alpha) {
    return fused(input, filter, bias, residual, activation, alpha, stride, padding_of(padding), dilation);
  }
  static at::Tensor fused_explicit_padding(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& residual, c10::string_view activation,
                                           std::optional<double> alpha) {
    return fused(input, filter, bias, residual, activation, alpha, stride, parse_explicit_padding(padding), dilation);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_same_or_valid(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& filter,
      at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
      std::array<bool, 3> output_mask) {
    return backward(grad_output, input, filter, stride, padding_of(padding), dilation, output_mask);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_explicit_padding(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& filter,
      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
      std::array<bool, 3> output_mask) {
    return backward(grad_output, input, filter, stride, parse_explicit_padding(padding), dilation,
                    output_mask);
  }

  static at::Tensor transpose_same_or_valid(const at::Tensor& input, const at::Tensor& filter,
                                            at::OptionalIntArrayRef output_size,
                                            at::OptionalIntArrayRef output_padding, at::IntArrayRef stride,
                                            c10::string_view padding, at::IntArrayRef dilation,
                                            const std::optional<at::Tensor>& bias) {
    return transpose(input, filter, output_size, output_padding, stride, padding_of(padding), dilation, bias);
  }
  static at::Tensor transpose_explicit_padding(const at::Tensor& input, const at::Tensor& filter,
                                               at::OptionalIntArrayRef output_size,
                                               at::OptionalIntArrayRef output_padding, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation,
                                               const std::optional<at::Tensor>& bias) {
    return transpose(input, filter, output_size, output_padding, stride, parse_explicit_padding(padding), dilation,
                     bias);
  }

  // Registers every overload of myconv::conv2d, conv2d_backward and conv2d_transpose for one
  // dispatch key.
  static void register_all(torch::Library& m) {
    m.impl("conv2d", &same_or_valid);
    m.impl("conv2d.explicit", &explicit_padding);
    m.impl("conv2d_fused", &fused_same_or_valid);
    m.impl("conv2d_fused.explicit", &fused_explicit_padding);
    m.impl("conv2d_backward", &backward_same_or_valid);
    m.impl("conv2d_backward.explicit", &backward_explicit_padding);
    m.impl("conv2d_transpose", &transpose_same_or_valid);
    m.impl("conv2d_transpose.explicit", &transpose_explicit_padding);
  }
};

// The CPU and CUDA backends: concrete sizes, real kernels.
template <Conv2dKernel forward_kernel, Conv2dBackwardKernel backward_kernel, Conv2dFusedKernel fused_kernel = nullptr>
void register_conv2d_kernels(torch::Library& m) {
  Conv2dEntryPoints<int64_t, forward_kernel, backward_kernel, fused_kernel>::register_all(m);
}

}  // namespace myconv
