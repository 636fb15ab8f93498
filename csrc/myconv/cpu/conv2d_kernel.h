// The CPU forward kernel, which the input gradient also runs (conv2d_backward.cpp).
#pragma once

#include "myconv/activation.h"
#include "myconv/conv2d_plan.h"

namespace myconv {
namespace cpu {

// Fills `output` (NHWC, non-empty; a view with contiguous channels is written in place by the
// tile kernels, through a contiguous buffer by the others) for a validated call: the
// microkernels, or im2row + GEMM for float64 and the generic depthwise loops (conv2d_kernel.cpp
// says which runs when).
void conv2d_cpu(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                const Conv2dPlan& plan, at::Tensor& output);
// conv2d_cpu with the epilogue output = activation(output + residual) applied as it is stored
// (the microkernels) or in a pass over the output (the other kernels).
void conv2d_cpu_fused(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& residual, const Epilogue& epilogue, const Conv2dPlan& plan,
                      at::Tensor& output);

}  // namespace cpu
}  // namespace myconv
