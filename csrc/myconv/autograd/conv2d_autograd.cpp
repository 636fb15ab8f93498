// Autograd registration of myconv::conv2d (the one place gradients will live).
// The forward runs the backend kernels below autograd, so inputs that require grad (an
// nn.Module's parameters) work in forward passes. There is no backward yet: asking for one
// raises a clear error instead of silently producing no gradient.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace myconv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename Padding>
class Conv2dFunction : public torch::autograd::Function<Conv2dFunction<Padding>> {
 public:
  static at::Tensor forward(AutogradContext*, const at::Tensor& input, const at::Tensor& filter,
                            at::IntArrayRef stride, Padding padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias) {
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("myconv::conv2d", std::is_same_v<Padding, c10::string_view> ? "" : "explicit")
            .template typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, Padding,
                                       at::IntArrayRef, const std::optional<at::Tensor>&)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(input, filter, stride, padding, dilation, bias);
  }

  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "myconv.conv2d: backward is not implemented yet; run the forward under "
                "torch.no_grad() or torch.inference_mode(), or detach input, filter and bias");
    return {};
  }
};

at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& filter,
                           at::IntArrayRef stride, c10::string_view padding,
                           at::IntArrayRef dilation, const std::optional<at::Tensor>& bias) {
  return Conv2dFunction<c10::string_view>::apply(input, filter, stride, padding, dilation, bias);
}

at::Tensor conv2d_explicit_autograd(const at::Tensor& input, const at::Tensor& filter,
                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation,
                                    const std::optional<at::Tensor>& bias) {
  return Conv2dFunction<at::IntArrayRef>::apply(input, filter, stride, padding, dilation, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d.explicit", &conv2d_explicit_autograd);
}

}  // namespace myconv
