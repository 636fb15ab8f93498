// The interface of the CUTLASS implicit-GEMM kernels (implicit_gemm_sm80_*.cu): plain C++, no torch
// and no CUTLASS types, so the engine choice (engine.h) and its GoogleTest build without either.
#pragma once

#include <cstdint>

#include "myconv/activation.h"

namespace myconv {
namespace cuda {

// One convolution in CUTLASS's terms: activation NHWC, filter KRSC (K output channels, R x S taps,
// C / groups input channels), output NPQK. The padding is TF's top/left pad; the bottom/right pad
// is implied by P and Q (reads past the input's edge are zeros by the kernels' bounds checks).
// All sizes fit in int, CUTLASS's index type (implicit_gemm_problem() says when they do not).
struct ImplicitGemmProblem {
  int n, h, w, c;
  int k, r, s;
  int p, q;
  int pad_h, pad_w;
  int stride_h, stride_w;
  int dilation_h, dilation_w;
  int groups;
};

// The compiled kernel families: Ampere tensor-core implicit GEMMs (they run on Ampere, Ada and
// Hopper), float32 accumulation. kSm80Float32 keeps float32 accuracy with three TF32 products per
// multiply (3xTF32).
enum class ImplicitGemmKernel { kSm80Half, kSm80BFloat16, kSm80TF32, kSm80Float32 };

// fprop: output = conv(activation, filter) (+ bias); dgrad: the activation's gradient from the
// output's; wgrad: the filter's gradient from the output's and the activation.
enum class ConvDirection { kFprop, kDgrad, kWgrad };

const char* kernel_name(ImplicitGemmKernel kernel);
const char* direction_name(ConvDirection direction);

// The tensors of one convolution (activation NHWC, filter KRSC, output NPQK). The direction says
// which one is written: fprop the output, dgrad the activation (from the output's gradient in
// `output`), wgrad the filter. The forward's epilogue: output = epilogue.activation(conv + bias
// ([K]) + residual (NPQK)), bias and residual optional (nullptr), computed in float32 and rounded once.
struct ImplicitGemmOperands {
  void* activation;
  void* filter;
  void* output;
  const void* bias = nullptr;
  const void* residual = nullptr;
  Epilogue epilogue = {};
};

// Whether the CUTLASS kernel accepts the problem (alignment, groups, tensor sizes, dilation of a
// strided dgrad), as CUTLASS's own can_implement says. Host code: runs without a GPU.
bool implicit_gemm_can_implement(ImplicitGemmKernel kernel, ConvDirection direction,
                                 const ImplicitGemmProblem& problem);

// Runs the kernel on `stream` (a cudaStream_t), overwriting the written tensor. Returns nullptr
// on success, otherwise CUTLASS's description of the failure.
const char* implicit_gemm_run(ImplicitGemmKernel kernel, ConvDirection direction, const ImplicitGemmProblem& problem,
                              const ImplicitGemmOperands& operands, void* stream);

namespace detail {
// One translation unit per direction (implicit_gemm_sm80_<direction>.cu), so they compile in parallel.
bool fprop_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem);
bool dgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem);
bool wgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem);
const char* fprop(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem, const ImplicitGemmOperands& operands,
                  void* stream);
const char* dgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem, const ImplicitGemmOperands& operands,
                  void* stream);
const char* wgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem, const ImplicitGemmOperands& operands,
                  void* stream);
}  // namespace detail

// Whether this build has the CUTLASS kernels (MYCONV_WITH_CUTLASS).
bool implicit_gemm_compiled();

}  // namespace cuda
}  // namespace myconv
