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

// Whether an input gradient runs as rows: grad_output x filter^T on the tile kernels, then
// row2im (dgrad_by_rows), for one group of at most 8 input channels in float32 or a half type,
// but not an unpadded stride-1 pointwise one (its rows are as narrow as the phases' outputs, and
// the phases write it in place: 1x1 8->64 at 56 0.26-0.32 ms as phases, 0.38-0.42 as rows). The
// phases' convolutions (the other engine) have the input's channels as their outputs, and so would
// fill at most 8 of a tile's 16 or 32 lanes. Input gradient alone, N = 8, float32, AVX-512,
// interleaved, against the phases: stem 7x7/2 3->64 9.3 against 33.1 ms, 3x3/2 3->32 at 224 3.1
// against 8.2, 3x3 3->64 at 224 13.4 against 25.5, 2x2/2 4->32 at 112 0.43 against 1.1, 3x3/2
// 8->32 at 112 0.76 against 1.28, 3x3 4->32 at 112 even (3.7-3.9, 3.9-4.4); with 16 channels about
// even (1.26, 1.33), with 32 slower (0.83, 0.78). MYCONV_CPU_DGRAD=phases overrides it.
bool input_grad_runs_as_rows(const Conv2dPlan& p, at::ScalarType dtype);

// Fills grads.input and grads.filter, where defined, for a validated call with a non-empty
// grad_output (grads.bias is the shared reduction of the entry point).
void conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& filter, const Conv2dPlan& plan, Conv2dGrads& grads);

}  // namespace cpu
}  // namespace myconv
