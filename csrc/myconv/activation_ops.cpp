#include "myconv/activation_ops.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <utility>

namespace myconv {
namespace {

const std::vector<std::pair<std::string, Activation>>& activation_table() {
  static const std::vector<std::pair<std::string, Activation>> table{
      {"linear", Activation::kLinear},       {"relu", Activation::kRelu},
      {"relu6", Activation::kRelu6},         {"leaky_relu", Activation::kLeakyRelu},
      {"elu", Activation::kElu},             {"selu", Activation::kSelu},
      {"gelu", Activation::kGelu},           {"silu", Activation::kSilu},
      {"swish", Activation::kSilu},          {"sigmoid", Activation::kSigmoid},
      {"hard_sigmoid", Activation::kHardSigmoid}, {"hard_silu", Activation::kHardSilu},
      {"hard_swish", Activation::kHardSilu}, {"tanh", Activation::kTanh},
      {"softplus", Activation::kSoftplus},   {"softsign", Activation::kSoftsign},
      {"mish", Activation::kMish},           {"exponential", Activation::kExponential},
  };
  return table;
}

}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& entry : activation_table()) out.push_back(entry.first);
    return out;
  }();
  return names;
}

Epilogue parse_epilogue(c10::string_view activation, std::optional<double> alpha, const char* op) {
  Epilogue e;
  bool known = false;
  for (const auto& [name, kind] : activation_table()) {
    if (activation == name) e.activation = kind, known = true;
  }
  TORCH_CHECK_VALUE(known, op, ": activation must be one of ", c10::Join(", ", activation_names()),
                    ", got \"", std::string(activation.data(), activation.size()), "\"");
  if (e.activation == Activation::kLeakyRelu || e.activation == Activation::kElu) {
    const double value = alpha.value_or(e.activation == Activation::kLeakyRelu ? 0.2 : 1.0);
    TORCH_CHECK_VALUE(std::isfinite(value), op, ": alpha must be finite, got ", value);
    e.alpha = value;
  } else {
    TORCH_CHECK_VALUE(!alpha.has_value(), op, ": alpha is a parameter of leaky_relu and elu only, got ",
                      *alpha, " for activation \"", std::string(activation.data(), activation.size()), "\"");
  }
  return e;
}

at::Tensor activate_tensor(const at::Tensor& z, const Epilogue& e) {
  switch (e.activation) {
    case Activation::kLinear:
      return z;
    case Activation::kRelu:
      return at::relu(z);
    case Activation::kRelu6:
      return at::hardtanh(z, 0.0, 6.0);
    case Activation::kLeakyRelu:
      return at::leaky_relu(z, e.alpha);
    case Activation::kElu:
      return at::elu(z, e.alpha);
    case Activation::kSelu:
      return at::selu(z);  // TF's constants
    case Activation::kGelu:
      return at::gelu(z, "none");
    case Activation::kSilu:
      return at::silu(z);
    case Activation::kSigmoid:
      return at::sigmoid(z);
    case Activation::kHardSigmoid:
      return at::hardsigmoid(z);  // relu6(z + 3) / 6
    case Activation::kHardSilu:
      return at::hardswish(z);    // z * relu6(z + 3) / 6
    case Activation::kTanh:
      return at::tanh(z);
    case Activation::kSoftplus:
      return at::softplus(z);  // z itself above 20, where log1p(exp(-z)) < 3e-9
    case Activation::kSoftsign:
      return z / (z.abs() + 1);
    case Activation::kMish:
      return at::mish(z);
    case Activation::kExponential:
      return at::exp(z);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown activation");
}

namespace {

// A new tensor also for "linear" (the schema promises no alias of the input).
at::Tensor activation_op(const at::Tensor& input, c10::string_view activation, std::optional<double> alpha) {
  const Epilogue epilogue = parse_epilogue(activation, alpha, "myconv.activation");
  return epilogue.is_identity() ? input.clone() : activate_tensor(input, epilogue);
}

}  // namespace

// ATen operations only: every device, autograd and tracing through them.
TORCH_LIBRARY_IMPL(myconv, CompositeImplicitAutograd, m) { m.impl("activation", &activation_op); }

}  // namespace myconv
