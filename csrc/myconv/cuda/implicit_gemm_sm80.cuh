// What the Ampere implicit-GEMM translation units share (CUTLASS 2.x, tensor cores, cp.async
// multistage): the tile configurations, TF's geometry in CUTLASS's terms, and one way to check and
// launch a kernel. Each kernel keeps its element type in and out, accumulates in float32 and
// scales in float32 (a single rounding at the store). Free of torch headers: implicit_gemm.h is
// the interface.
#pragma once

#include <cuda_runtime.h>

// CUTLASS's headers need this order (the device adapter uses the problem size's helpers).
#include "cutlass/cutlass.h"
#include "cutlass/conv/conv2d_problem_size.h"
#include "cutlass/conv/device/implicit_gemm_convolution.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "myconv/cuda/implicit_gemm.h"

namespace myconv {
namespace cuda {
namespace sm80 {

using cutlass::gemm::GemmShape;
using Layout = cutlass::layout::TensorNHWC;

// 16-byte accesses everywhere: the optimized iterators need C and K in multiples of 8 (half
// types) or 4 (float32); can_implement says so and the engine keeps im2row for other shapes.
template <typename Element>
using GradientEpilogue =
    cutlass::epilogue::thread::LinearCombination<Element, 128 / cutlass::sizeof_bits<Element>::value, float, float>;

// The tiles of CUTLASS's own Ampere examples (16_ampere_tensorop_conv2dfprop for the half types,
// 28_ampere_3xtf32_fast_accurate_tensorop_fprop for float32).
struct HalfTiles {
  using Threadblock = GemmShape<128, 128, 64>;
  using Warp = GemmShape<64, 64, 64>;
  using Instruction = GemmShape<16, 8, 16>;
  static constexpr int kStages = 3;
};
struct FloatTiles {
  using Threadblock = GemmShape<128, 64, 16>;
  using Warp = GemmShape<64, 32, 16>;
  using Instruction = GemmShape<16, 8, 8>;
  static constexpr int kStages = 3;
};

// Element, tiles and math of each kernel family; OpMultiplyAdd on float is TF32, OpMultiplyAddFastF32 3xTF32.
template <ImplicitGemmKernel kKernel>
struct Family;
template <>
struct Family<ImplicitGemmKernel::kSm80Half> {
  using Element = cutlass::half_t;
  using Tiles = HalfTiles;
  using Math = cutlass::arch::OpMultiplyAdd;
};
template <>
struct Family<ImplicitGemmKernel::kSm80BFloat16> {
  using Element = cutlass::bfloat16_t;
  using Tiles = HalfTiles;
  using Math = cutlass::arch::OpMultiplyAdd;
};
template <>
struct Family<ImplicitGemmKernel::kSm80TF32> {
  using Element = float;
  using Tiles = FloatTiles;
  using Math = cutlass::arch::OpMultiplyAdd;
};
template <>
struct Family<ImplicitGemmKernel::kSm80Float32> {
  using Element = float;
  using Tiles = FloatTiles;
  using Math = cutlass::arch::OpMultiplyAddFastF32;
};

// TF's output size and top/left pad; the bottom/right pad is implied by P and Q (reads past the
// input's edge are zeros by the iterators' bounds checks).
inline cutlass::conv::Conv2dProblemSize problem_size(const ImplicitGemmProblem& p) {
  return {p.n, p.h, p.w, p.c, p.k, p.r, p.s, p.p, p.q, p.pad_h, p.pad_w, p.stride_h, p.stride_w,
          p.dilation_h, p.dilation_w, cutlass::conv::Mode::kCrossCorrelation, /*split_k_slices=*/1, p.groups};
}

template <typename Element>
cutlass::TensorRef<Element, Layout> tensor(void* data, int d0, int d1, int d2, int d3) {
  return {static_cast<Element*>(data), Layout::packed({d0, d1, d2, d3})};
}

// The three tensors of a problem as CUTLASS's A, B and C/D of a direction.
template <typename Element>
struct Tensors {
  cutlass::TensorRef<Element, Layout> activation, filter, output;
  Tensors(const ImplicitGemmProblem& p, const ImplicitGemmOperands& x)
      : activation(tensor<Element>(x.activation, p.n, p.h, p.w, p.c)),
        filter(tensor<Element>(x.filter, p.k, p.r, p.s, p.c / p.groups)),
        output(tensor<Element>(x.output, p.n, p.p, p.q, p.k)) {}
};

// No split-K and no workspace: each output element is reduced by one thread block in a fixed
// order, so the results are bitwise repeatable.
template <typename Op>
const char* launch(const typename Op::Arguments& args, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  // CUTLASS's run() reads and clears the last CUDA error: one left by an earlier launch is reported
  // as that, not as this kernel's failure.
  const cudaError_t pending = cudaGetLastError();
  if (pending != cudaSuccess) return cudaGetErrorString(pending);
  cutlass::Status status = Op::can_implement(args);
  if (status == cutlass::Status::kSuccess) {
    Op op;
    status = op.initialize(args, /*workspace=*/nullptr, s);
    if (status == cutlass::Status::kSuccess) status = op.run(s);
  }
  return status == cutlass::Status::kSuccess ? nullptr : cutlassGetStatusString(status);
}

// Calls f.template operator()<kKernel>() for the kernel family chosen at run time.
template <typename F>
auto dispatch(ImplicitGemmKernel kernel, F&& f) {
  switch (kernel) {
    case ImplicitGemmKernel::kSm80Half: return f.template operator()<ImplicitGemmKernel::kSm80Half>();
    case ImplicitGemmKernel::kSm80BFloat16: return f.template operator()<ImplicitGemmKernel::kSm80BFloat16>();
    case ImplicitGemmKernel::kSm80TF32: return f.template operator()<ImplicitGemmKernel::kSm80TF32>();
    case ImplicitGemmKernel::kSm80Float32: break;
  }
  return f.template operator()<ImplicitGemmKernel::kSm80Float32>();
}

// One direction's kernels, given D::Op<kernel> (the device adapter of each family) and
// D::arguments<kernel>(problem, operands): CUTLASS's can_implement and the launch, per family.
template <typename D>
struct DirectionKernels {
  static bool can_implement(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p) {
    return dispatch(kernel, CanImplement{p});
  }
  static const char* run(ImplicitGemmKernel kernel, const ImplicitGemmProblem& p, const ImplicitGemmOperands& x,
                         void* stream) {
    return dispatch(kernel, Run{p, x, stream});
  }

 private:
  struct CanImplement {
    const ImplicitGemmProblem& p;
    template <ImplicitGemmKernel kKernel>
    bool operator()() const {
      // Pointers do not enter can_implement: only the problem and the layouts' alignment rules.
      return D::template Op<kKernel>::can_implement(D::template arguments<kKernel>(p, {nullptr, nullptr, nullptr})) ==
             cutlass::Status::kSuccess;
    }
  };
  struct Run {
    const ImplicitGemmProblem& p;
    const ImplicitGemmOperands& x;
    void* stream;
    template <ImplicitGemmKernel kKernel>
    const char* operator()() const {
      return launch<typename D::template Op<kKernel>>(D::template arguments<kKernel>(p, x), stream);
    }
  };
};

}  // namespace sm80
}  // namespace cuda
}  // namespace myconv
