// The op's schema (the one TORCH_LIBRARY block of the myconv namespace) and the C++ API,
// which calls through the dispatcher so that device dispatch and autograd apply.
#include "myconv/conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "myconv/conv2d_plan.h"

#ifndef MYCONV_VERSION
#error "MYCONV_VERSION must be defined by the build"
#endif

namespace myconv {

TORCH_LIBRARY(myconv, m) {
  m.def(
      "conv2d(Tensor input, Tensor filter, int[2] stride=1, str padding=\"SAME\", "
      "int[2] dilation=1, Tensor? bias=None) -> Tensor");
  m.def(
      "conv2d.explicit(Tensor input, Tensor filter, int[2] stride, int[4] padding, "
      "int[2] dilation=1, Tensor? bias=None) -> Tensor");
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                  c10::string_view padding, at::IntArrayRef dilation,
                  const std::optional<at::Tensor>& bias) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("myconv::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               at::IntArrayRef, c10::string_view,
                                               at::IntArrayRef, const std::optional<at::Tensor>&)>();
  return op.call(input, filter, stride, padding, dilation, bias);
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                  std::array<int64_t, 4> padding, at::IntArrayRef dilation,
                  const std::optional<at::Tensor>& bias) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("myconv::conv2d", "explicit")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               at::IntArrayRef, at::IntArrayRef,
                                               at::IntArrayRef, const std::optional<at::Tensor>&)>();
  return op.call(input, filter, stride, padding, dilation, bias);
}

std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, c10::string_view padding,
                                  at::IntArrayRef dilation) {
  return plan_conv2d(input_shape, filter_shape, stride,
                     parse_padding_mode(std::string_view(padding.data(), padding.size())),
                     dilation)
      .output_sizes();
}

std::vector<int64_t> output_shape(at::IntArrayRef input_shape, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, std::array<int64_t, 4> padding,
                                  at::IntArrayRef dilation) {
  return plan_conv2d(input_shape, filter_shape, stride, parse_explicit_padding(padding), dilation)
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
