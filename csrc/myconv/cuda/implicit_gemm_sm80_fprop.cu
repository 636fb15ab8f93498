// The Ampere implicit-GEMM forward: output = conv(activation, filter) + bias, the bias added in the
// epilogue as a broadcast source.
#include "cutlass/conv/kernel/default_conv2d_fprop.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
using Fprop = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dFprop<
    typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
    cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
    typename T::Instruction, Epilogue<typename F::Element>, cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>,
    T::kStages, typename F::Math, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel>;

template <ImplicitGemmKernel kKernel>
typename Fprop<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
  using Element = typename Family<kKernel>::Element;
  const Tensors<Element> t(p, x);
  // The bias is the epilogue's source, broadcast over N, P and Q by zero strides (beta = 1);
  // without one the source is never read (beta = 0).
  const cutlass::TensorRef<Element, Layout> source =
      x.bias ? cutlass::TensorRef<Element, Layout>(static_cast<Element*>(const_cast<void*>(x.bias)), Layout::Stride(0))
             : t.output;
  return {problem_size(p), t.activation, t.filter, source, t.output, {1.0f, x.bias ? 1.0f : 0.0f}};
}

struct CanImplement {
  const ImplicitGemmProblem& p;
  template <ImplicitGemmKernel kKernel>
  bool operator()() const {
    // Pointers do not enter can_implement: only the problem and the layouts' alignment rules.
    return can_implement<Fprop<kKernel>>(arguments<kKernel>(p, {nullptr, nullptr, nullptr, nullptr}));
  }
};

struct Run {
  const ImplicitGemmProblem& p;
  const ImplicitGemmOperands& x;
  void* stream;
  template <ImplicitGemmKernel kKernel>
  const char* operator()() const {
    return run<Fprop<kKernel>>(arguments<kKernel>(p, x), stream);
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool fprop_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::dispatch(kernel, sm80::CanImplement{p});
}
const char* fprop(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::dispatch(kernel, sm80::Run{p, x, stream});
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
