// The ATen side of activation.h: names, argument checks, and the activations as differentiable
// ATen expressions (what autograd and the backends without a fused epilogue run).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "myconv/activation.h"

namespace myconv {

// Keras 3's names, aliases included (swish = silu, hard_swish = hard_silu).
const std::vector<std::string>& activation_names();

// The epilogue of `activation` (a Keras name) with `alpha`: leaky_relu's negative_slope (default
// 0.2) or elu's alpha (default 1.0); the others take none. Errors name the argument and the
// accepted values, after `op`.
Epilogue parse_epilogue(c10::string_view activation, std::optional<double> alpha,
                        const char* op = "myconv.conv2d_fused");

// activation(z) with ATen ops, differentiable twice: the same functions as activation.h (the
// tests hold both to Keras's outputs).
at::Tensor activate_tensor(const at::Tensor& z, const Epilogue& epilogue);

}  // namespace myconv
