// The interface of the CUTLASS implicit-GEMM kernels (implicit_gemm_sm80.cu): plain C++, no torch
// and no CUTLASS types, so the engine choice (engine.h) and its GoogleTest build without either.
#pragma once

#include <cstdint>

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

// The compiled kernels: Ampere tensor-core implicit GEMMs (they run on Ampere, Ada and Hopper).
// kSm80Float32 keeps float32 accuracy with three TF32 products per multiply (3xTF32).
enum class ImplicitGemmKernel { kSm80Half, kSm80BFloat16, kSm80TF32, kSm80Float32 };

const char* kernel_name(ImplicitGemmKernel kernel);

// Whether the CUTLASS kernel accepts the problem (alignment, groups, tensor sizes), as CUTLASS's
// own can_implement says. Host code: runs without a GPU.
bool implicit_gemm_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem);

struct ImplicitGemmOperands {
  const void* input;   // NHWC
  const void* filter;  // KRSC
  const void* bias;    // [K] or nullptr
  void* output;        // NPQK
};

// Runs output = conv(input, filter) (+ bias) on `stream` (a cudaStream_t). Returns nullptr on
// success, otherwise CUTLASS's description of the failure.
const char* implicit_gemm_fprop(ImplicitGemmKernel kernel, const ImplicitGemmProblem& problem,
                                const ImplicitGemmOperands& operands, void* stream);

// Whether this build has the CUTLASS kernels (MYCONV_WITH_CUTLASS).
bool implicit_gemm_compiled();

}  // namespace cuda
}  // namespace myconv
