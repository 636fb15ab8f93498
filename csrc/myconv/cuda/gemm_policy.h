// How the CUDA backend's cuBLAS GEMMs honour torch's precision settings, decided the way ATen's
// own GEMMs decide. Plain C++ with no CUDA types, built into every libmyconv so that GoogleTest
// checks the decisions on machines without a GPU.
#pragma once

#include <c10/core/ScalarType.h>

namespace myconv {
namespace cuda {

struct GemmPolicy {
  // float32 GEMMs may use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32).
  bool tf32;
  // fp16/bf16 GEMMs must not reduce in half precision
  // (CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION on the handle for the call).
  bool disallow_reduced_precision_reduction;
};

// TF32: torch.backends.cuda.matmul.fp32_precision / torch.backends.fp32_precision (the new API,
// which the legacy allow_tf32 flag and set_float32_matmul_precision also set), off inside an
// at::NoTF32Guard. Reduced-precision reductions: allow_fp16/bf16_reduced_precision_reduction.
// Never calls the legacy getter allowTF32CuBLAS(), which throws once the new API was used.
GemmPolicy gemm_policy(c10::ScalarType dtype);

}  // namespace cuda
}  // namespace myconv
