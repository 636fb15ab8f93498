// The Ampere implicit-GEMM forward with the fused epilogue of conv2d_fused:
// output = activation(conv(activation, filter) + bias + residual), in float32 on the accumulators
// before the one rounding to the output's type: CUTLASS's broadcast epilogue (the bias a
// per-channel vector, the residual its source tensor), the activation myconv's own (activation.h).
#include "cutlass/conv/kernel/default_conv2d_fprop_with_broadcast.h"
#include "cutlass/epilogue/thread/linear_combination_bias_elementwise.h"
#include "myconv/cuda/implicit_gemm_sm80.cuh"

namespace myconv {
namespace cuda {
namespace sm80 {
namespace {

// Keras's activation chosen at run time: one kernel per family serves all of them (a uniform
// branch per element, in the epilogue only).
struct KerasActivation {
  static const bool kIsHeavy = true;  // CUTLASS unrolls the epilogue less
  struct Arguments {
    Activation activation;
    float alpha;
  };
  CUTLASS_HOST_DEVICE float operator()(float x, const Arguments& args) const {
    return with_activation(args.activation, [&](auto kind) { return activate<decltype(kind)::value>(x, args.alpha); });
  }
};

template <typename Element>
using FusedEpilogue = cutlass::epilogue::thread::LinearCombinationBiasElementwise<
    Element, float, float, Element, Element, 128 / cutlass::sizeof_bits<Element>::value, KerasActivation,
    cutlass::plus<float>, /*StoreT=*/false, Element>;

struct Fprop {
  template <ImplicitGemmKernel kKernel, typename F = Family<kKernel>, typename T = typename F::Tiles>
  using Op = cutlass::conv::device::ImplicitGemmConvolution<
      typename cutlass::conv::kernel::DefaultConv2dFpropWithBroadcast<
          typename F::Element, Layout, typename F::Element, Layout, typename F::Element, Layout, float,
          cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, typename T::Threadblock, typename T::Warp,
          typename T::Instruction, FusedEpilogue<typename F::Element>,
          cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, T::kStages, typename F::Math,
          cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel>;

  template <ImplicitGemmKernel kKernel>
  static typename Op<kKernel>::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
    using Element = typename Family<kKernel>::Element;
    const Tensors<Element> t(p, x);
    // The residual is the epilogue's source (beta = 1); without one it is never read (beta = 0). The
    // bias is the broadcast vector, one value per output channel for every row (ldr = 0); null
    // reads as zeros.
    const cutlass::TensorRef<Element, Layout> source =
        x.residual ? tensor<Element>(const_cast<void*>(x.residual), p.n, p.p, p.q, p.k) : t.output;
    const typename FusedEpilogue<Element>::Params epilogue(
        1.0f, x.residual ? 1.0f : 0.0f,
        KerasActivation::Arguments{x.epilogue.activation, static_cast<float>(x.epilogue.alpha)});
    return {problem_size(p), t.activation, t.filter, source, t.output, epilogue, cutlass::conv::SplitKMode::kSerial,
            const_cast<void*>(x.bias), /*ptr_Tensor=*/nullptr, /*ldr=*/0, /*ldt=*/0};
  }
};

}  // namespace
}  // namespace sm80

namespace detail {
bool fprop_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  return sm80::DirectionKernels<sm80::Fprop>::can_implement(kernel, p);
}
const char* fprop(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, void* stream) {
  return sm80::DirectionKernels<sm80::Fprop>::run(kernel, p, x, stream);
}
}  // namespace detail

}  // namespace cuda
}  // namespace myconv
