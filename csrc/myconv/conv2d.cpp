// The op's schema (the one TORCH_LIBRARY block of the myconv namespace) and the C++ API,
// which calls through the dispatcher so that device dispatch and autograd apply.
#include "myconv/conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "myconv/conv2d_plan.h"

#ifndef MYCONV_VERSION
#error "MYCONV_VERSION must be defined by the build"
#endif

#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#else
#include <torch/version.h>
#endif

// The torch this library was built against, and whether it uses CUDA, as a string that
// `import myconv` finds in the file before loading it: under another torch it raises an
// ImportError naming both instead of failing on an undefined symbol.
#ifdef MYCONV_WITH_CUDA
#define MYCONV_BUILD_CUDA "1"
#else
#define MYCONV_BUILD_CUDA "0"
#endif
extern "C" __attribute__((used, visibility("default"))) const char myconv_build_info[] =
    "myconv-build-info:torch=" TORCH_VERSION ";cuda=" MYCONV_BUILD_CUDA;

namespace myconv {

// pt2_compliant: opcheck (every default test, the dynamic-shape AOT one included) passes on
// all four ops, so torch.compile and torch.export may trace through them.
TORCH_LIBRARY(myconv, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def(
      "conv2d(Tensor input, Tensor filter, int[2] stride=1, str padding=\"SAME\", "
      "int[2] dilation=1, Tensor? bias=None) -> Tensor",
      tags);
  m.def(
      "conv2d.explicit(Tensor input, Tensor filter, int[2] stride, int[4] padding, "
      "int[2] dilation=1, Tensor? bias=None) -> Tensor",
      tags);
  // Fused inference (activation.h): activation(conv2d + bias + residual), the activation a Keras
  // 3 name, alpha its parameter (leaky_relu, elu), residual of the output's shape.
  m.def(
      "conv2d_fused(Tensor input, Tensor filter, int[2] stride=1, str padding=\"SAME\", int[2] dilation=1, "
      "Tensor? bias=None, Tensor? residual=None, str activation=\"linear\", float? alpha=None) -> Tensor",
      tags);
  m.def(
      "conv2d_fused.explicit(Tensor input, Tensor filter, int[2] stride, int[4] padding, int[2] dilation=1, "
      "Tensor? bias=None, Tensor? residual=None, str activation=\"linear\", float? alpha=None) -> Tensor",
      tags);
  // Keras 3's activation names conv2d_fused takes, and the activation alone (for the transposed
  // layer, whose op has no epilogue), the same definition as the fused one's.
  m.def("activations() -> str[]", [] { return activation_names(); });
  m.def("activation(Tensor input, str activation, float? alpha=None) -> Tensor", tags);
  // Shaped like aten::convolution_backward: (grad_input, grad_filter, grad_bias).
  m.def(
      "conv2d_backward(Tensor grad_output, Tensor input, Tensor filter, int[2] stride, "
      "str padding, int[2] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
      tags);
  m.def(
      "conv2d_backward.explicit(Tensor grad_output, Tensor input, Tensor filter, int[2] stride, "
      "int[4] padding, int[2] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
      tags);
  // TF's conv2d_transpose (the input gradient of a conv2d, run forwards): input [N, H, W, C_in],
  // filter [KH, KW, C_out, C_in]; output_size is TF's output_shape (spatial), or when absent
  // Keras's Conv2DTranspose rule with output_padding. The backends run their conv2d_backward
  // input-gradient kernel; its gradients are conv2d and conv2d_backward (autograd/).
  m.def(
      "conv2d_transpose(Tensor input, Tensor filter, int[]? output_size=None, int[]? output_padding=None, "
      "int[2] stride=1, str padding=\"SAME\", int[2] dilation=1, Tensor? bias=None) -> Tensor",
      tags);
  m.def(
      "conv2d_transpose.explicit(Tensor input, Tensor filter, int[]? output_size, int[]? output_padding, "
      "int[2] stride, int[4] padding, int[2] dilation=1, Tensor? bias=None) -> Tensor",
      tags);
  // Explicit prepacking for inference (prepacked.h): the packed filter is an ordinary uint8
  // tensor the caller keeps; filter_shape is the HWIO shape it was packed from (checked against
  // its header), so that shapes are known without reading it.
  m.def("prepack_filter(Tensor filter, int groups=1, int[2] dilation=1) -> Tensor", tags);
  m.def(
      "conv2d_prepacked(Tensor input, Tensor packed_filter, int[4] filter_shape, int[2] stride=1, "
      "str padding=\"SAME\", int[2] dilation=1, Tensor? bias=None, Tensor? residual=None, "
      "str activation=\"linear\", float? alpha=None) -> Tensor",
      tags);
  m.def(
      "conv2d_prepacked.explicit(Tensor input, Tensor packed_filter, int[4] filter_shape, int[2] stride, "
      "int[4] padding, int[2] dilation=1, Tensor? bias=None, Tensor? residual=None, "
      "str activation=\"linear\", float? alpha=None) -> Tensor",
      tags);
  // TF's SAME split of one axis, [before, after], for code outside the kernels that needs the
  // exact padding (the ONNX translation), so the rule stays in geometry.h alone.
  m.def("same_padding(int input_size, int kernel_size, int stride=1, int dilation=1) -> int[]",
        &same_padding);
}

namespace {

// A typed dispatcher handle of one overload of a myconv op, looked up once.
template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

}  // namespace

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                  c10::string_view padding, at::IntArrayRef dilation,
                  const std::optional<at::Tensor>& bias) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, c10::string_view,
                          at::IntArrayRef, const std::optional<at::Tensor>&)>("myconv::conv2d", "");
  return op.call(input, filter, stride, padding, dilation, bias);
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                  std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                  const std::optional<at::Tensor>& bias) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                          at::IntArrayRef, const std::optional<at::Tensor>&)>("myconv::conv2d",
                                                                              "explicit");
  return op.call(input, filter, stride, padding, dilation, bias);
}

at::Tensor conv2d_fused(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                        c10::string_view padding, at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& residual, c10::string_view activation,
                        std::optional<double> alpha) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, c10::string_view, at::IntArrayRef,
                          const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, c10::string_view,
                          std::optional<double>)>("myconv::conv2d_fused", "");
  return op.call(input, filter, stride, padding, dilation, bias, residual, activation, alpha);
}

at::Tensor conv2d_fused(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                        std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                        const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                        c10::string_view activation, std::optional<double> alpha) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                          const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, c10::string_view,
                          std::optional<double>)>("myconv::conv2d_fused", "explicit");
  return op.call(input, filter, stride, padding, dilation, bias, residual, activation, alpha);
}

Grads conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& filter, at::IntArrayRef stride, c10::string_view padding,
                      at::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  static const auto op =
      typed_op<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                     c10::string_view, at::IntArrayRef, std::array<bool, 3>)>(
          "myconv::conv2d_backward", "");
  return op.call(grad_output, input, filter, stride, padding, dilation, output_mask);
}

Grads conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& filter, at::IntArrayRef stride,
                      std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                      std::array<bool, 3> output_mask) {
  static const auto op =
      typed_op<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                     at::IntArrayRef, at::IntArrayRef, std::array<bool, 3>)>(
          "myconv::conv2d_backward", "explicit");
  return op.call(grad_output, input, filter, stride, padding, dilation, output_mask);
}

at::Tensor conv2d_transpose(const at::Tensor& input, const at::Tensor& filter, at::OptionalIntArrayRef output_size,
                            at::OptionalIntArrayRef output_padding, at::IntArrayRef stride, c10::string_view padding,
                            at::IntArrayRef dilation, const std::optional<at::Tensor>& bias) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef,
                          at::IntArrayRef, c10::string_view, at::IntArrayRef, const std::optional<at::Tensor>&)>(
          "myconv::conv2d_transpose", "");
  return op.call(input, filter, output_size, output_padding, stride, padding, dilation, bias);
}

at::Tensor conv2d_transpose(const at::Tensor& input, const at::Tensor& filter, at::OptionalIntArrayRef output_size,
                            at::OptionalIntArrayRef output_padding, at::IntArrayRef stride,
                            std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef,
                          at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, const std::optional<at::Tensor>&)>(
          "myconv::conv2d_transpose", "explicit");
  return op.call(input, filter, output_size, output_padding, stride, padding, dilation, bias);
}

at::Tensor prepack_filter(const at::Tensor& filter, int64_t groups, at::IntArrayRef dilation) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, int64_t, at::IntArrayRef)>("myconv::prepack_filter", "");
  return op.call(filter, groups, dilation);
}

at::Tensor conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed_filter, at::IntArrayRef filter_shape,
                            at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                            c10::string_view activation, std::optional<double> alpha) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef, c10::string_view,
                          at::IntArrayRef, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                          c10::string_view, std::optional<double>)>("myconv::conv2d_prepacked", "");
  return op.call(input, packed_filter, filter_shape, stride, padding, dilation, bias, residual, activation, alpha);
}

at::Tensor conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed_filter, at::IntArrayRef filter_shape,
                            at::IntArrayRef stride, std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                            c10::string_view activation, std::optional<double> alpha) {
  static const auto op =
      typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                          at::IntArrayRef, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                          c10::string_view, std::optional<double>)>("myconv::conv2d_prepacked", "explicit");
  return op.call(input, packed_filter, filter_shape, stride, padding, dilation, bias, residual, activation, alpha);
}

std::vector<int64_t> same_padding(int64_t input_size, int64_t kernel_size, int64_t stride,
                                  int64_t dilation) {
  TORCH_CHECK_VALUE(input_size >= 0, "myconv.same_padding: input_size must be >= 0, got ", input_size);
  TORCH_CHECK_VALUE(kernel_size >= 1, "myconv.same_padding: kernel_size must be >= 1, got ", kernel_size);
  TORCH_CHECK_VALUE(stride >= 1 && dilation >= 1, "myconv.same_padding: stride and dilation must "
                    "be >= 1, got ", stride, " and ", dilation);
  int64_t eff = 0;
  TORCH_CHECK_VALUE(geometry::checked_effective_kernel(kernel_size, dilation, &eff),
                    "myconv.same_padding: kernel_size ", kernel_size, " with dilation ", dilation,
                    " overflows int64");
  const geometry::Padding pad = geometry::same_padding(input_size, eff, stride);
  return {pad.before, pad.after};
}

std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, c10::string_view padding,
                                  at::IntArrayRef dilation) {
  return check_conv2d_shapes<int64_t>(
             input_shape, filter_shape, stride,
             parse_padding_mode(std::string_view(padding.data(), padding.size())), dilation)
      .output_sizes();
}

std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, std::array<int64_t, 4> padding,
                                  at::IntArrayRef dilation) {
  return check_conv2d_shapes<int64_t>(input_shape, filter_shape, stride,
                                     parse_explicit_padding(padding), dilation)
      .output_sizes();
}

std::string version() { return MYCONV_VERSION; }

bool cuda_compiled() {
#ifdef MYCONV_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace myconv
