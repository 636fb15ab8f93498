// The Ampere implicit-GEMM input gradient: activation = dgrad(output's gradient, filter), any
// stride by CUTLASS's strided-dgrad kernels (which refuse dilation above 1: can_implement says so).
#include "cutlass/conv/kernel/default_conv2d_dgrad.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
using Dgrad = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dDgrad<
    typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
    cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
    typename T::Instruction, GradientEpilogue<typename F::Element>,
    cutlass::conv::threadblock::StridedDgradIdentityThreadblockSwizzle<1>, T::kStages, typename F::Math,
    cutlass::conv::IteratorAlgorithm::kOptimized, cutlass::conv::StrideSupport::kStrided>::Kernel>;

template <ImplicitGemmKernel kKernel>
typename Dgrad<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
  const Tensors<typename Family<kKernel>::Element> t(p, x);
  return {problem_size(p), t.output, t.filter, t.activation, t.activation, {1.0f, 0.0f}};
}

struct CanImplement {
  const ImplicitGemmProblem& p;
  template <ImplicitGemmKernel kKernel>
  bool operator()() const {
    return can_implement<Dgrad<kKernel>>(arguments<kKernel>(p, {nullptr, nullptr, nullptr}));
  }
};

struct Run {
  const ImplicitGemmProblem& p;
  const ImplicitGemmOperands& x;
  void* stream;
  template <ImplicitGemmKernel kKernel>
  const char* operator()() const {
    return run<Dgrad<kKernel>>(arguments<kKernel>(p, x), stream);
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool dgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::dispatch(kernel, sm80::CanImplement{p});
}
const char* dgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::dispatch(kernel, sm80::Run{p, x, stream});
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
