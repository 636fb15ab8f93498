// Public C++ API of myconv: TensorFlow-style conv2d on NHWC input and HWIO filters.
// Every call goes through the PyTorch dispatcher, so device dispatch (CPU, CUDA) applies.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace myconv {

// Convolves input [N, H, W, C] with filter [KH, KW, C/groups, O] using TF "SAME" or "VALID" padding.
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter,
                  at::IntArrayRef stride = {1, 1}, c10::string_view padding = "SAME",
                  at::IntArrayRef dilation = {1, 1},
                  const std::optional<at::Tensor>& bias = std::nullopt);

// Convolves with explicit zero padding {top, bottom, left, right}.
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                  std::array<int64_t, 4> padding, at::IntArrayRef dilation = {1, 1},
                  const std::optional<at::Tensor>& bias = std::nullopt);

// Fused inference: activation(conv2d(input, filter) + bias + residual) in one pass over the
// output. activation: a Keras 3 name (activation_names()); alpha: leaky_relu's negative_slope
// or elu's alpha (Keras's defaults 0.2 and 1.0 when absent); residual: the output's shape.
at::Tensor conv2d_fused(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                        c10::string_view padding, at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& residual, c10::string_view activation,
                        std::optional<double> alpha = std::nullopt);

// conv2d_fused with explicit zero padding {top, bottom, left, right}.
at::Tensor conv2d_fused(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                        std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                        const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                        c10::string_view activation, std::optional<double> alpha = std::nullopt);

// Gradients of conv2d with respect to input, filter and bias (bias: a [O] reduction), given the
// gradient of its output; an entry is undefined where output_mask is false.
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& filter,
    at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
    std::array<bool, 3> output_mask = {true, true, true});

// conv2d_backward for explicit padding {top, bottom, left, right}.
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& filter,
    at::IntArrayRef stride, std::array<int64_t, 4> padding, at::IntArrayRef dilation,
    std::array<bool, 3> output_mask = {true, true, true});

// TF's conv2d_transpose: input [N, H, W, C_in], filter [KH, KW, C_out, C_in] -> [N, OH, OW, C_out],
// the input gradient of the conv2d that maps OH x OW to H x W. output_size {OH, OW} is TF's
// output_shape; without it, Keras's Conv2DTranspose rule (with output_padding, if given).
at::Tensor conv2d_transpose(const at::Tensor& input, const at::Tensor& filter,
                            at::OptionalIntArrayRef output_size = std::nullopt,
                            at::OptionalIntArrayRef output_padding = std::nullopt, at::IntArrayRef stride = {1, 1},
                            c10::string_view padding = "SAME", at::IntArrayRef dilation = {1, 1},
                            const std::optional<at::Tensor>& bias = std::nullopt);

// conv2d_transpose with the conv2d's explicit padding {top, bottom, left, right}.
at::Tensor conv2d_transpose(const at::Tensor& input, const at::Tensor& filter, at::OptionalIntArrayRef output_size,
                            at::OptionalIntArrayRef output_padding, at::IntArrayRef stride,
                            std::array<int64_t, 4> padding, at::IntArrayRef dilation = {1, 1},
                            const std::optional<at::Tensor>& bias = std::nullopt);

// The filter packed for this process's kernels and a call with `groups` groups and `dilation`,
// as a uint8 tensor to keep for inference (the library keeps nothing across calls itself);
// it records what it was packed from and for, so that a mismatching use is an error.
at::Tensor prepack_filter(const at::Tensor& filter, int64_t groups = 1, at::IntArrayRef dilation = {1, 1});

// conv2d (conv2d_fused, with a residual or an activation) with a filter from prepack_filter;
// filter_shape is the HWIO shape it was packed from. No input or filter gradient: train with
// conv2d and the filter itself.
at::Tensor conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed_filter, at::IntArrayRef filter_shape,
                            at::IntArrayRef stride = {1, 1}, c10::string_view padding = "SAME",
                            at::IntArrayRef dilation = {1, 1}, const std::optional<at::Tensor>& bias = std::nullopt,
                            const std::optional<at::Tensor>& residual = std::nullopt,
                            c10::string_view activation = "linear", std::optional<double> alpha = std::nullopt);

// conv2d_prepacked with explicit padding {top, bottom, left, right}.
at::Tensor conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed_filter, at::IntArrayRef filter_shape,
                            at::IntArrayRef stride, std::array<int64_t, 4> padding, at::IntArrayRef dilation = {1, 1},
                            const std::optional<at::Tensor>& bias = std::nullopt,
                            const std::optional<at::Tensor>& residual = std::nullopt,
                            c10::string_view activation = "linear", std::optional<double> alpha = std::nullopt);

// Output shape [N, OH, OW, O] of conv2d for these shapes and "SAME"/"VALID" padding; throws on bad input.
std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride = {1, 1},
                                  c10::string_view padding = "SAME",
                                  at::IntArrayRef dilation = {1, 1});

// Output shape of conv2d with explicit padding {top, bottom, left, right}.
std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, std::array<int64_t, 4> padding,
                                  at::IntArrayRef dilation = {1, 1});

// TensorFlow's SAME padding {before, after} of one axis: the odd pixel goes after.
std::vector<int64_t> same_padding(int64_t input_size, int64_t kernel_size, int64_t stride = 1,
                                  int64_t dilation = 1);

// Library version, e.g. "0.1.0".
std::string version();

// Whether this library was built with its CUDA kernels.
bool cuda_compiled();

namespace detail {
// Referencing a library symbol from every program that includes this header keeps the linker
// from dropping libmyconv (and so its op registrations) under --as-needed, e.g. in a program
// that only loads a TorchScript model calling torch.ops.myconv.conv2d.
inline const bool link_anchor = cuda_compiled() || true;
}  // namespace detail

}  // namespace myconv
