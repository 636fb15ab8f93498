// Which CUDA kernel runs a convolution: the one place that decides, as a pure function of the
// call (plan, dtype, precision settings, the device's architecture, the MYCONV_CUDA_ENGINE
// request and what CUTLASS accepts), so GoogleTest checks every rule without a GPU.
#pragma once

#include <c10/core/ScalarType.h>

#include <optional>

#include "myconv/conv2d_plan.h"
#include "myconv/cuda/implicit_gemm.h"

namespace myconv {
namespace cuda {

// MYCONV_CUDA_ENGINE: unset or "auto" (the default engine), "im2row" or "implicit_gemm".
enum class EngineRequest { kAuto, kIm2row, kImplicitGemm };
// Parses the variable's value (nullptr = unset); anything else is a ValueError naming it.
EngineRequest parse_engine_request(const char* value);
// The request of this process's environment, read on every call (tests and benchmarks switch it).
EngineRequest engine_request_from_env();

// im2row: the im2row + cuBLAS kernels (and the direct depthwise kernel), proven on an H200.
// implicit_gemm: a CUTLASS kernel, not yet run on a GPU, so only on request.
enum class CudaEngine { kIm2row, kImplicitGemm };

struct EngineChoice {
  CudaEngine engine;
  std::optional<ImplicitGemmKernel> kernel;  // set for kImplicitGemm
  const char* reason;                        // why this engine, for cuda_engine() and error messages
};

// The problem of a plan in CUTLASS's terms, or nullopt when a size, or an offset CUTLASS's
// iterators compute in int (a tap's (h * W + w) * C over the padded window's reach), does not fit.
std::optional<ImplicitGemmProblem> implicit_gemm_problem(const Conv2dPlan& plan);

// The kernel family for a dtype on a device of compute capability `arch` (e.g. 90), with TF32
// allowed or not (gemm_policy); nullopt when none exists (float64, architectures before Ampere).
std::optional<ImplicitGemmKernel> implicit_gemm_kernel_for(c10::ScalarType dtype, bool tf32, int arch);

// CUTLASS's can_implement (implicit_gemm_can_implement), injected so tests can stand in for it;
// nullptr when the build has no CUTLASS kernels (then a request for them is an error).
using CanImplement = bool (*)(ImplicitGemmKernel, ConvDirection, const ImplicitGemmProblem&);
CanImplement compiled_can_implement();

// The engine of one direction of a convolution (forward, input or filter gradient). The default stays im2row until the implicit GEMMs are proven
// on a GPU; on request they run every call they can implement, and the rest keep im2row: float64,
// pre-Ampere devices, depthwise (its own direct kernel), operands whose data is not 16-byte
// aligned (the kernels' vector accesses) and shapes CUTLASS refuses (channels that break that
// alignment, grouped layers, dilated strided input gradients, sizes past int).
EngineChoice choose_cuda_engine(const Conv2dPlan& plan, ConvDirection direction, c10::ScalarType dtype, bool tf32,
                                int arch, bool operands_aligned, EngineRequest request, CanImplement can_implement);

}  // namespace cuda
}  // namespace myconv
