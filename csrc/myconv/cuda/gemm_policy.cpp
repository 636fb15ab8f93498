#include "myconv/cuda/gemm_policy.h"

#include <ATen/Context.h>

namespace myconv {
namespace cuda {

GemmPolicy gemm_policy(c10::ScalarType dtype) {
  at::Context& context = at::globalContext();
  GemmPolicy policy{false, false};
  if (dtype == at::kFloat) {
    policy.tf32 = !at::NoTF32Guard::should_disable_tf32() &&
                  context.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
                      at::Float32Precision::TF32;
  } else if (dtype == at::kHalf || dtype == at::kBFloat16) {
    const at::CuBLASReductionOption option = dtype == at::kHalf
                                                 ? context.allowFP16ReductionCuBLAS()
                                                 : context.allowBF16ReductionCuBLAS();
    policy.disallow_reduced_precision_reduction =
        option != at::CuBLASReductionOption::AllowReducedPrecisionWithSplitK;
  }
  return policy;
}

}  // namespace cuda
}  // namespace myconv
