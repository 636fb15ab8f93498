// The Ampere implicit-GEMM convolutions (CUTLASS 2.x, tensor cores, cp.async multistage): the
// forward pass in fp16, bf16, TF32 and 3xTF32 (float32 accuracy), float32 accumulation, the bias
// added in the epilogue as a broadcast source. Compiled for every architecture of the build (the
// sm_80 kernels run on Ada and Hopper too). Kept free of torch headers: the interface is
// implicit_gemm.h, the engine choice engine.h.
#include <cuda_runtime.h>

// CUTLASS's headers need this order (the device adapter uses the problem size's helpers).
#include "cutlass/cutlass.h"
#include "cutlass/conv/conv2d_problem_size.h"
#include "cutlass/conv/kernel/default_conv2d_fprop.h"
#include "cutlass/conv/device/implicit_gemm_convolution.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "myconv/cuda/implicit_gemm.h"

namespace myconv {
namespace cuda {
namespace {

using cutlass::gemm::GemmShape;
using Layout = cutlass::layout::TensorNHWC;

// One instantiation: Element in and out, float32 accumulation and epilogue, 16-byte accesses,
// the optimized iterators (which need C and K to be multiples of the access width: can_implement
// says so, and the engine keeps im2row for those shapes).
template <typename Element, typename Threadblock, typename Warp, typename Instruction, int kStages, typename MathOp>
using Fprop = cutlass::conv::device::ImplicitGemmConvolution<typename cutlass::conv::kernel::DefaultConv2dFprop<
    Element, Layout, Element, Layout, Element, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    Threadblock, Warp, Instruction,
    cutlass::epilogue::thread::LinearCombination<Element, 128 / cutlass::sizeof_bits<Element>::value, float, float>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, kStages, MathOp,
    cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel>;

// Tiles of CUTLASS's own Ampere examples (16_ampere_tensorop_conv2dfprop, 28_ampere_3xtf32_fast_accurate).
template <typename Element>
using HalfFprop = Fprop<Element, GemmShape<128, 128, 64>, GemmShape<64, 64, 64>, GemmShape<16, 8, 16>, 3,
                        cutlass::arch::OpMultiplyAdd>;
template <typename MathOp>
using FloatFprop = Fprop<float, GemmShape<128, 64, 16>, GemmShape<64, 32, 16>, GemmShape<16, 8, 8>, 3, MathOp>;

using Sm80Half = HalfFprop<cutlass::half_t>;
using Sm80BFloat16 = HalfFprop<cutlass::bfloat16_t>;
using Sm80TF32 = FloatFprop<cutlass::arch::OpMultiplyAdd>;
using Sm80Float32 = FloatFprop<cutlass::arch::OpMultiplyAddFastF32>;

cutlass::conv::Conv2dProblemSize problem_size(const ImplicitGemmProblem& p) {
  return {p.n, p.h, p.w, p.c, p.k, p.r, p.s, p.p, p.q, p.pad_h, p.pad_w, p.stride_h, p.stride_w,
          p.dilation_h, p.dilation_w, cutlass::conv::Mode::kCrossCorrelation, /*split_k_slices=*/1, p.groups};
}

template <typename Op>
typename Op::Arguments arguments(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x) {
  using Element = typename Op::ElementA;
  const cutlass::conv::Conv2dProblemSize size = problem_size(p);
  auto* output = static_cast<Element*>(x.output);
  const Layout output_layout = Layout::packed({p.n, p.p, p.q, p.k});
  // The bias is the epilogue's source, broadcast over N, P and Q by zero strides (beta = 1);
  // without one the source is never read (beta = 0).
  const cutlass::TensorRef<Element, Layout> source =
      x.bias ? cutlass::TensorRef<Element, Layout>(static_cast<Element*>(const_cast<void*>(x.bias)), Layout::Stride(0))
             : cutlass::TensorRef<Element, Layout>(output, output_layout);
  return typename Op::Arguments(
      size, {static_cast<Element*>(const_cast<void*>(x.input)), Layout::packed({p.n, p.h, p.w, p.c})},
      {static_cast<Element*>(const_cast<void*>(x.filter)), Layout::packed({p.k, p.r, p.s, p.c / p.groups})}, source,
      {output, output_layout}, {1.0f, x.bias ? 1.0f : 0.0f});
}

template <typename Op>
bool can_implement(const ImplicitGemmProblem& p) {
  // Pointers do not enter can_implement: only the problem and the layouts' alignment rules.
  return Op::can_implement(arguments<Op>(p, ImplicitGemmOperands{nullptr, nullptr, nullptr, nullptr})) ==
         cutlass::Status::kSuccess;
}

template <typename Op>
const char* run(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x, cudaStream_t stream) {
  const typename Op::Arguments args = arguments<Op>(p, x);
  cutlass::Status status = Op::can_implement(args);
  if (status == cutlass::Status::kSuccess) {
    Op op;
    status = op.initialize(args, /*workspace=*/nullptr, stream);
    if (status == cutlass::Status::kSuccess) status = op.run(stream);
  }
  return status == cutlass::Status::kSuccess ? nullptr : cutlassGetStatusString(status);
}

}  // namespace

bool implicit_gemm_can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
  switch (kernel) {
    case ImplicitGemmKernel::kSm80Half: return can_implement<Sm80Half>(p);
    case ImplicitGemmKernel::kSm80BFloat16: return can_implement<Sm80BFloat16>(p);
    case ImplicitGemmKernel::kSm80TF32: return can_implement<Sm80TF32>(p);
    case ImplicitGemmKernel::kSm80Float32: return can_implement<Sm80Float32>(p);
  }
  return false;
}

const char* implicit_gemm_fprop(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p,
                                const ImplicitGemmOperands& x, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (kernel) {
    case ImplicitGemmKernel::kSm80Half: return run<Sm80Half>(p, x, s);
    case ImplicitGemmKernel::kSm80BFloat16: return run<Sm80BFloat16>(p, x, s);
    case ImplicitGemmKernel::kSm80TF32: return run<Sm80TF32>(p, x, s);
    case ImplicitGemmKernel::kSm80Float32: return run<Sm80Float32>(p, x, s);
  }
  return "unknown implicit-GEMM kernel";
}

}  // namespace cuda
}  // namespace myconv
