// CPU kernel of myconv::conv2d_backward, registered beside the forward in conv2d_kernel.cpp.
#pragma once

#include "myconv/conv2d_plan.h"

namespace myconv {
namespace cpu {

// Fills grads.input and grads.filter, where defined, for a validated call with a non-empty
// grad_output (grads.bias is the shared reduction of the entry point).
void conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& filter, const Conv2dPlan& plan, Conv2dGrads& grads);

}  // namespace cpu
}  // namespace myconv
