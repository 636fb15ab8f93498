// The Ampere implicit-GEMM input gradient: activation = dgrad(output's gradient, filter), any
// stride by CUTLASS's strided-dgrad kernels (which refuse dilation above 1: can_implement says so).
#include "cutlass/conv/kernel/default_conv2d_dgrad.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

struct Dgrad {
  template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
  using Op = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dDgrad<
      typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
      cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
      typename T::Instruction, GradientEpilogue<typename F::Element>,
      cutlass::conv::threadblock::StridedDgradIdentityThreadblockSwizzle<1>, T::kStages, typename F::Math,
      cutlass::conv::IteratorAlgorithm::kOptimized, cutlass::conv::StrideSupport::kStrided>::Kernel>;

  template <ImplicitGemmKernel kKernel>
  static typename Op<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
    const Tensors<typename Family<kKernel>::Element> t(p, x);
    return {problem_size(p), t.output, t.filter, t.activation, t.activation, {1.0f, 0.0f}};
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool dgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::DirectionKernels<sm80::Dgrad>::can_implement(kernel, p);
}
const char* dgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::DirectionKernels<sm80::Dgrad>::run(kernel, p, x, stream);
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
