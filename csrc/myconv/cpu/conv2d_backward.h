// CPU kernel of myconv::conv2d_backward, registered beside the forward in conv2d_kernel.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include "myconv/conv2d_plan.h"

namespace myconv {
namespace cpu {

// Which engine computes a filter gradient that is not depthwise (depthwise ones run their own
// loops): MYCONV_CPU_WGRAD, read once.
enum class FilterGradEngine {
  kAuto,  // unset, "" or "auto": filter_grad_runs_on_tiles's rule
  kGemm,  // "gemm": im2row + ATen's GEMM everywhere (so that tests and benchmarks reach it)
};
// The engine MYCONV_CPU_WGRAD asks for (nullptr: unset); anything else is a ValueError naming it.
FilterGradEngine parse_filter_grad_engine(const char* value);

// Whether a filter gradient runs on the tile kernels (filter_grad_microkernel): by default every
// float32 and half-type one that is not depthwise (float64 runs the GEMM). Filter gradient alone,
// N = 8, interleaved against im2row + ATen's GEMM (MKL, whose AVX2 code AMD CPUs get): from the
// stem (12.8 against 14.5 ms) and pw 1x1 24->144 (1.58, 1.58) to res4 3x3 (5.0 against 10.9).
bool filter_grad_runs_on_tiles(const Conv2dPlan& p, at::ScalarType dtype, FilterGradEngine request);

// Fills grads.input and grads.filter, where defined, for a validated call with a non-empty
// grad_output (grads.bias is the shared reduction of the entry point).
void conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& filter, const Conv2dPlan& plan, Conv2dGrads& grads);

}  // namespace cpu
}  // namespace myconv
