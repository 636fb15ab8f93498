// The Ampere implicit-GEMM filter gradient: filter (KRSC) = wgrad(output's gradient, activation), reduced
// over N x P x Q by one thread block per output tile (no split-K): bitwise repeatable.
#include "cutlass/conv/kernel/default_conv2d_wgrad.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

struct Wgrad {
  template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
  using Op = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dWgrad<
      typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
      cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
      typename T::Instruction, GradientEpilogue<typename F::Element>,
      cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, T::kStages, typename F::Math,
      cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel>;

  template <ImplicitGemmKernel kKernel>
  static typename Op<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
    const Tensors<typename Family<kKernel>::Element> t(p, x);
    return {problem_size(p), t.output, t.activation, t.filter, t.filter, {1.0f, 0.0f}};
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool wgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::DirectionKernels<sm80::Wgrad>::can_implement(kernel, p);
}
const char* wgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::DirectionKernels<sm80::Wgrad>::run(kernel, p, x, stream);
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
