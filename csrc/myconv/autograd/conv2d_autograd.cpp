// Autograd of myconv::conv2d and of its gradient op myconv::conv2d_backward (double backward).
// Each Function runs its op below autograd and computes gradients only from dispatcher calls of
// the two ops (through the public C++ API), never from backend functions, so fake tensors,
// torch.compile's AOT autograd and every device see the same graph.
//
// conv2d is linear in input and in filter (plus the bias term), so with y = conv(x, w) + b:
//   dx = conv2d_backward(dy, x, w)[0]      dw = conv2d_backward(dy, x, w)[1]      db = sum(dy)
// and, for the gradients of those given upstream ggx, ggw, ggb (double backward):
//   d(dy) = conv(ggx, w) + conv(x, ggw) + ggb      d(x) = conv2d_backward(dy, x, ggw)[0]
//   d(w)  = conv2d_backward(dy, ggx, w)[1]
#include <ATen/TensorOperators.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "myconv/activation_ops.h"
#include "myconv/conv2d.h"
#include "myconv/conv2d_plan.h"

namespace myconv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Padding is c10::string_view ("SAME"/"VALID") or std::array<int64_t, 4> (explicit); both are
// kept in the context as an IValue and handed back in the type the C++ API takes.
void save_geometry(AutogradContext* ctx, at::IntArrayRef stride, c10::string_view padding,
                   at::IntArrayRef dilation) {
  ctx->saved_data["stride"] = stride.vec();
  ctx->saved_data["padding"] = std::string(padding.data(), padding.size());
  ctx->saved_data["dilation"] = dilation.vec();
}
void save_geometry(AutogradContext* ctx, at::IntArrayRef stride, std::array<int64_t, 4> padding,
                   at::IntArrayRef dilation) {
  ctx->saved_data["stride"] = stride.vec();
  ctx->saved_data["padding"] = std::vector<int64_t>(padding.begin(), padding.end());
  ctx->saved_data["dilation"] = dilation.vec();
}

// Calls f(stride, padding, dilation) with the geometry saved by save_geometry.
template <typename F>
auto with_geometry(AutogradContext* ctx, F&& f) {
  const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
  const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
  const c10::IValue& padding = ctx->saved_data["padding"];
  if (padding.isString()) {
    return f(at::IntArrayRef(stride), c10::string_view(padding.toStringRef()),
             at::IntArrayRef(dilation));
  }
  const std::vector<int64_t> pads = padding.toIntVector();
  return f(at::IntArrayRef(stride), std::array<int64_t, 4>{pads[0], pads[1], pads[2], pads[3]},
           at::IntArrayRef(dilation));
}

template <typename Padding>
class Conv2dFunction : public torch::autograd::Function<Conv2dFunction<Padding>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& filter, at::IntArrayRef stride, Padding padding,
                            at::IntArrayRef dilation, const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({input, filter});
    save_geometry(ctx, stride, padding, dilation);
    ctx->saved_data["has_bias"] = bias.has_value();
    at::AutoDispatchBelowADInplaceOrView guard;
    return conv2d(input, filter, stride, padding, dilation, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // needs_input_grad counts tensor arguments only: input 0, filter 1, bias 2.
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
    auto [grad_input, grad_filter, grad_bias] = with_geometry(ctx, [&](auto... geometry) {
      return conv2d_backward(grads[0], saved[0], saved[1], geometry..., mask);
    });
    return {grad_input, grad_filter, at::Tensor(), at::Tensor(), at::Tensor(), grad_bias};
  }
};

// A C++ autograd Function cannot return undefined tensors, so this one returns only the gradients
// output_mask asked for, in order, and expand_grads puts them back in their places.
std::array<at::Tensor, 3> expand_grads(const variable_list& compact, std::array<bool, 3> mask) {
  std::array<at::Tensor, 3> full;
  size_t next = 0;
  for (size_t i = 0; i < 3; ++i) {
    if (mask[i]) full[i] = compact[next++];
  }
  return full;
}

std::array<bool, 3> saved_mask(AutogradContext* ctx) {
  const std::vector<bool> mask = ctx->saved_data["output_mask"].toBoolList().vec();
  return {mask[0], mask[1], mask[2]};
}

template <typename Padding>
class Conv2dBackwardFunction : public torch::autograd::Function<Conv2dBackwardFunction<Padding>> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output,
                               const at::Tensor& input, const at::Tensor& filter,
                               at::IntArrayRef stride, Padding padding, at::IntArrayRef dilation,
                               std::array<bool, 3> output_mask) {
    // Gradients of unused outputs stay undefined instead of being materialised as zeros.
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad_output, input, filter});
    save_geometry(ctx, stride, padding, dilation);
    ctx->saved_data["output_mask"] = c10::List<bool>({output_mask[0], output_mask[1], output_mask[2]});
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [grad_input, grad_filter, grad_bias] =
        conv2d_backward(grad_output, input, filter, stride, padding, dilation, output_mask);
    variable_list compact;
    for (const at::Tensor& grad : {grad_input, grad_filter, grad_bias}) {
      if (grad.defined()) compact.push_back(grad);
    }
    return compact;
  }

  static variable_list backward(AutogradContext* ctx, variable_list compact_grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_output = saved[0];
    const at::Tensor& input = saved[1];
    const at::Tensor& filter = saved[2];
    const auto grads = expand_grads(compact_grads, saved_mask(ctx));
    const at::Tensor& ggi = grads[0];  // upstream gradients of grad_input, grad_filter, grad_bias
    const at::Tensor& ggw = grads[1];
    const at::Tensor& ggb = grads[2];
    return with_geometry(ctx, [&](auto stride, auto padding, auto dilation) {
      at::Tensor d_grad_output, d_input, d_filter;
      if (ctx->needs_input_grad(0)) {
        if (ggw.defined()) {
          d_grad_output = conv2d(input, ggw, stride, padding, dilation,
                                 ggb.defined() ? std::optional<at::Tensor>(ggb) : std::nullopt);
        } else if (ggb.defined()) {
          d_grad_output = ggb.expand(grad_output.sizes());
        }
        if (ggi.defined()) {
          const at::Tensor term = conv2d(ggi, filter, stride, padding, dilation);
          d_grad_output = d_grad_output.defined() ? d_grad_output + term : term;
        }
      }
      if (ctx->needs_input_grad(1) && ggw.defined()) {
        d_input = std::get<0>(conv2d_backward(grad_output, input, ggw, stride, padding, dilation,
                                              {true, false, false}));
      }
      if (ctx->needs_input_grad(2) && ggi.defined()) {
        d_filter = std::get<1>(conv2d_backward(grad_output, ggi, filter, stride, padding,
                                               dilation, {false, true, false}));
      }
      return variable_list{d_grad_output, d_input,     d_filter,   at::Tensor(),
                           at::Tensor(),  at::Tensor(), at::Tensor()};
    });
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
  return Conv2dFunction<std::array<int64_t, 4>>::apply(
      input, filter, stride, parse_explicit_padding(padding).explicit_pads, dilation, bias);
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Grads as_tuple(const variable_list& compact, std::array<bool, 3> mask) {
  const auto full = expand_grads(compact, mask);
  return {full[0], full[1], full[2]};
}

Grads conv2d_backward_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& filter, at::IntArrayRef stride,
                               c10::string_view padding, at::IntArrayRef dilation,
                               std::array<bool, 3> output_mask) {
  return as_tuple(Conv2dBackwardFunction<c10::string_view>::apply(
                      grad_output, input, filter, stride, padding, dilation, output_mask),
                  output_mask);
}

Grads conv2d_backward_explicit_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& filter, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation,
                                        std::array<bool, 3> output_mask) {
  return as_tuple(Conv2dBackwardFunction<std::array<int64_t, 4>>::apply(
                      grad_output, input, filter, stride,
                      parse_explicit_padding(padding).explicit_pads, dilation, output_mask),
                  output_mask);
}

// conv2d_transpose y = T(x, w) + b is the adjoint of conv2d in its input: <T(x, w), g> = <x, conv(g, w)>.
// So dx = conv2d(dy, w), dw = conv2d_backward(x, dy, w)[1] (the filter gradient of conv(dy, w) for
// grad_output x) and db = sum(dy); both built from the ops, so double backward works too.
template <typename Padding>
class Conv2dTransposeFunction : public torch::autograd::Function<Conv2dTransposeFunction<Padding>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& filter,
                            at::OptionalIntArrayRef output_size, at::OptionalIntArrayRef output_padding,
                            at::IntArrayRef stride, Padding padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({input, filter});
    save_geometry(ctx, stride, padding, dilation);
    ctx->saved_data["has_bias"] = bias.has_value();
    at::AutoDispatchBelowADInplaceOrView guard;
    return conv2d_transpose(input, filter, output_size, output_padding, stride, padding, dilation, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& filter = saved[1];
    const at::Tensor& grad_output = grads[0];
    at::Tensor grad_input, grad_filter, grad_bias;
    if (ctx->needs_input_grad(0)) {
      grad_input = with_geometry(ctx, [&](auto... geometry) { return conv2d(grad_output, filter, geometry...); });
    }
    if (ctx->needs_input_grad(1)) {
      grad_filter = std::get<1>(with_geometry(ctx, [&](auto... geometry) {
        return conv2d_backward(input, grad_output, filter, geometry..., {false, true, false});
      }));
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) {
      grad_bias = bias_gradient(grad_output, grad_output.scalar_type());
    }
    return {grad_input, grad_filter, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), grad_bias};
  }
};

at::Tensor conv2d_transpose_autograd(const at::Tensor& input, const at::Tensor& filter,
                                     at::OptionalIntArrayRef output_size, at::OptionalIntArrayRef output_padding,
                                     at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
                                     const std::optional<at::Tensor>& bias) {
  return Conv2dTransposeFunction<c10::string_view>::apply(input, filter, output_size, output_padding, stride,
                                                          padding, dilation, bias);
}

at::Tensor conv2d_transpose_explicit_autograd(const at::Tensor& input, const at::Tensor& filter,
                                              at::OptionalIntArrayRef output_size,
                                              at::OptionalIntArrayRef output_padding, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                              const std::optional<at::Tensor>& bias) {
  return Conv2dTransposeFunction<std::array<int64_t, 4>>::apply(
      input, filter, output_size, output_padding, stride, parse_explicit_padding(padding).explicit_pads, dilation,
      bias);
}

// Whether a derivative in `t` is asked for: reverse mode (requires_grad) or forward mode (a dual
// tensor: the differentiable forms then refuse it as conv2d does, instead of dropping its tangent).
bool needs_derivative(const std::optional<at::Tensor>& t) {
  return t && ((at::GradMode::is_enabled() && t->requires_grad()) || t->_fw_grad(/*level=*/0).defined());
}

// conv2d_fused: the fused kernel when nothing needs a derivative; otherwise the same function as
// differentiable operations, activation(conv2d(...) + residual) (activation_ops.h), whose
// gradients (and theirs) autograd derives. Arguments are checked first either way.
template <typename Padding>
at::Tensor conv2d_fused_autograd(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef stride,
                                 Padding padding, at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& residual, c10::string_view activation,
                                 std::optional<double> alpha) {
  const bool differentiable = needs_derivative(input) || needs_derivative(filter) || needs_derivative(bias) ||
                              needs_derivative(residual);
  // Padding as the C++ API takes it, and as the checks take it.
  const auto [pads, spec] = [&] {
    if constexpr (std::is_same_v<Padding, at::IntArrayRef>) {
      const PaddingSpec parsed = parse_explicit_padding(padding);
      return std::make_pair(parsed.explicit_pads, parsed);
    } else {
      return std::make_pair(padding, parse_padding_mode(std::string_view(padding.data(), padding.size())));
    }
  }();
  if (!differentiable) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return conv2d_fused(input, filter, stride, pads, dilation, bias, residual, activation, alpha);
  }
  const Epilogue epilogue = parse_epilogue(activation, alpha);
  // The residual's checks before any arithmetic (an add would broadcast a wrong shape).
  check_residual<c10::SymInt>(input, residual,
                              check_conv2d<c10::SymInt>(input, filter, bias, stride, spec, dilation));
  at::Tensor z = conv2d(input, filter, stride, pads, dilation, bias);
  if (residual) z = z + *residual;
  return activate_tensor(z, epilogue);
}

// conv2d_prepacked differentiates in its bias and residual (a sum over pixels, and the identity),
// through its activation too, but not in its input, whose gradient needs the filter the packed
// bytes stand for: asking for that is an error naming the fix. The forward runs the fused kernel
// whatever requires grad (a frozen layer's bias usually does); through an activation the backward
// recomputes the pre-activation (the same call, linear) and differentiates the activation
// (activation_ops.h) at it, with a graph where double backward asks for one.
template <typename Padding>
class Conv2dPrepackedFunction : public torch::autograd::Function<Conv2dPrepackedFunction<Padding>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& packed_filter,
                            at::IntArrayRef filter_shape, Padding padding, at::IntArrayRef stride,
                            at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& residual, c10::string_view activation,
                            std::optional<double> alpha) {
    ctx->saved_data["bias_dtype"] = bias ? bias->scalar_type() : input.scalar_type();
    ctx->saved_data["activation"] = std::string(activation.data(), activation.size());
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["has_bias"] = bias.has_value();
    ctx->saved_data["has_residual"] = residual.has_value();
    if (activation != "linear") {  // what the backward recomputes the pre-activation from
      ctx->save_for_backward({input, packed_filter, bias.value_or(at::Tensor()), residual.value_or(at::Tensor())});
      ctx->saved_data["filter_shape"] = filter_shape.vec();
      save_geometry(ctx, stride, padding, dilation);
    }
    at::AutoDispatchBelowADInplaceOrView guard;
    return conv2d_prepacked(input, packed_filter, filter_shape, stride, padding, dilation, bias, residual, activation,
                            alpha);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!ctx->needs_input_grad(0),
                "myconv.conv2d_prepacked has no input gradient (its filter is packed, for inference): compute "
                "gradients with myconv.conv2d and the filter itself (myconv.Conv2d.unfreeze())");
    // needs_input_grad counts the tensors given: input 0, packed 1, then bias and residual if given.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const bool wants_bias = has_bias && ctx->needs_input_grad(2);
    const bool wants_residual = ctx->saved_data["has_residual"].toBool() && ctx->needs_input_grad(has_bias ? 3 : 2);
    at::Tensor grad_z = grads[0];  // the gradient in the pre-activation conv + bias + residual
    if (ctx->saved_data["activation"].toStringRef() != "linear" && (wants_bias || wants_residual)) {
      grad_z = through_activation(ctx, grads[0]);
    }
    at::Tensor grad_bias;
    if (wants_bias) grad_bias = bias_gradient(grad_z, ctx->saved_data["bias_dtype"].toScalarType());
    const at::Tensor grad_residual = wants_residual ? grad_z : at::Tensor();
    return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            grad_bias,    grad_residual, at::Tensor(), at::Tensor()};
  }

 private:
  // grad * activation'(z) at the recomputed pre-activation z.
  static at::Tensor through_activation(AutogradContext* ctx, const at::Tensor& grad) {
    const auto saved = ctx->get_saved_variables();  // input, packed, bias, residual (undefined: absent)
    const auto optional = [](const at::Tensor& t) { return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt; };
    const std::vector<int64_t> filter_shape = ctx->saved_data["filter_shape"].toIntVector();
    const Epilogue epilogue = parse_epilogue(ctx->saved_data["activation"].toStringRef(),
                                             ctx->saved_data["alpha"].toOptional<double>(), "myconv.conv2d_prepacked");
    // Double backward (grad mode on here): z through the dispatcher, differentiable in bias and
    // residual, and the activation's derivative differentiable in turn.
    const bool create_graph = at::GradMode::is_enabled();
    at::Tensor z = with_geometry(ctx, [&](auto stride, auto padding, auto dilation) {
      return conv2d_prepacked(saved[0], saved[1], filter_shape, stride, padding, dilation, optional(saved[2]),
                              optional(saved[3]));
    });
    if (!z.requires_grad()) z = z.detach().requires_grad_();
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      y = activate_tensor(z, epilogue);
    }
    return torch::autograd::grad({y}, {z}, {grad}, /*retain_graph=*/create_graph, /*create_graph=*/create_graph)[0];
  }
};

template <typename Padding>
at::Tensor conv2d_prepacked_autograd(const at::Tensor& input, const at::Tensor& packed_filter,
                                     at::IntArrayRef filter_shape, at::IntArrayRef stride, Padding padding,
                                     at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                                     const std::optional<at::Tensor>& residual, c10::string_view activation,
                                     std::optional<double> alpha) {
  if constexpr (std::is_same_v<Padding, at::IntArrayRef>) {
    return Conv2dPrepackedFunction<std::array<int64_t, 4>>::apply(
        input, packed_filter, filter_shape, parse_explicit_padding(padding).explicit_pads, stride, dilation, bias,
        residual, activation, alpha);
  } else {
    return Conv2dPrepackedFunction<Padding>::apply(input, packed_filter, filter_shape, padding, stride, dilation,
                                                   bias, residual, activation, alpha);
  }
}

// Packing is not differentiable: the packed tensor is bytes, whatever the filter requires.
at::Tensor prepack_filter_autograd(const at::Tensor& filter, int64_t groups, at::IntArrayRef dilation) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return prepack_filter(filter, groups, dilation);
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d.explicit", &conv2d_explicit_autograd);
  m.impl("conv2d_fused", &conv2d_fused_autograd<c10::string_view>);
  m.impl("conv2d_fused.explicit", &conv2d_fused_autograd<at::IntArrayRef>);
  m.impl("conv2d_backward", &conv2d_backward_autograd);
  m.impl("conv2d_backward.explicit", &conv2d_backward_explicit_autograd);
  m.impl("conv2d_transpose", &conv2d_transpose_autograd);
  m.impl("conv2d_transpose.explicit", &conv2d_transpose_explicit_autograd);
  m.impl("prepack_filter", &prepack_filter_autograd);
  m.impl("conv2d_prepacked", &conv2d_prepacked_autograd<c10::string_view>);
  m.impl("conv2d_prepacked.explicit", &conv2d_prepacked_autograd<at::IntArrayRef>);
}

}  // namespace myconv
