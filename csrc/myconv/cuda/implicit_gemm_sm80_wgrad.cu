// The Ampere implicit-GEMM filter gradient: filter (KRSC) = wgrad(output's gradient, activation), reduced
// over N x P x Q by one thread block per output tile (no split-K): bitwise repeatable.
#include "cutlass/conv/kernel/default_conv2d_wgrad.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
using Wgrad = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dWgrad<
    typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
    cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
    typename T::Instruction, GradientEpilogue<typename F::Element>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, T::kStages, typename F::Math,
    cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel>;

template <ImplicitGemmKernel kKernel>
typename Wgrad<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
  const Tensors<typename Family<kKernel>::Element> t(p, x);
  return {problem_size(p), t.output, t.activation, t.filter, t.filter, {1.0f, 0.0f}};
}

struct CanImplement {
  const ImplicitGemmProblem& p;
  template <ImplicitGemmKernel kKernel>
  bool operator()() const {
    return can_implement<Wgrad<kKernel>>(arguments<kKernel>(p, {nullptr, nullptr, nullptr}));
  }
};

struct Run {
  const ImplicitGemmProblem& p;
  const ImplicitGemmOperands& x;
  void* stream;
  template <ImplicitGemmKernel kKernel>
  const char* operator()() const {
    return run<Wgrad<kKernel>>(arguments<kKernel>(p, x), stream);
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool wgrad_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::dispatch(kernel, sm80::CanImplement{p});
}
const char* wgrad(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::dispatch(kernel, sm80::Run{p, x, stream});
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
