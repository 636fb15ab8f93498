// The CUDA engine choice and the implicit GEMMs' problem mapping, checked without a GPU: every
// rule of choose_cuda_engine (with a stand-in for CUTLASS), TF's padding in CUTLASS's terms, and,
// where the build has the CUTLASS kernels, their own can_implement on representative shapes.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <string>

#include "myconv/conv2d_plan.h"
#include "myconv/cuda/engine.h"

namespace {

using namespace myconv;
using namespace myconv::cuda;

Conv2dPlan plan_of(std::array<int64_t, 4> input, std::array<int64_t, 4> filter, int64_t stride = 1,
                   const char* padding = "SAME", int64_t dilation = 1) {
  const PaddingSpec spec = parse_padding_mode(padding);
  const std::array<int64_t, 2> strides{stride, stride}, dilations{dilation, dilation};
  return make_plan(check_conv2d_shapes<int64_t>(input, filter, strides, spec, dilations), strides, spec, dilations);
}

bool accept_all(ImplicitGemmKernel, ConvDirection, const ImplicitGemmProblem&) { return true; }
bool refuse_all(ImplicitGemmKernel, ConvDirection, const ImplicitGemmProblem&) { return false; }
// Accepts the filter gradient only: the choice asks about the direction it is given.
bool wgrad_only(ImplicitGemmKernel, ConvDirection direction, const ImplicitGemmProblem&) {
  return direction == ConvDirection::kWgrad;
}
constexpr ConvDirection kFprop = ConvDirection::kFprop;

TEST(CudaEngine, ParsesTheRequest) {
  EXPECT_EQ(parse_engine_request(nullptr), EngineRequest::kAuto);
  EXPECT_EQ(parse_engine_request(""), EngineRequest::kAuto);
  EXPECT_EQ(parse_engine_request("auto"), EngineRequest::kAuto);
  EXPECT_EQ(parse_engine_request("im2row"), EngineRequest::kIm2row);
  EXPECT_EQ(parse_engine_request("implicit_gemm"), EngineRequest::kImplicitGemm);
  try {
    parse_engine_request("cudnn");
    FAIL() << "expected a ValueError";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("MYCONV_CUDA_ENGINE must be auto, im2row or implicit_gemm"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("\"cudnn\""), std::string::npos);
  }
}

TEST(CudaEngine, ProblemCarriesTheTopLeftPadAndTfOutputSize) {
  // SAME, 3x3 stride 2 on 8 x 7: TF pads 0 on top (total 1) and 1 on the left (total 2), outputs 4 x 4.
  const ImplicitGemmProblem p = *implicit_gemm_problem(plan_of({2, 8, 7, 16}, {3, 3, 16, 32}, 2));
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.h, 8);
  EXPECT_EQ(p.w, 7);
  EXPECT_EQ(p.c, 16);
  EXPECT_EQ(p.k, 32);
  EXPECT_EQ(p.r, 3);
  EXPECT_EQ(p.s, 3);
  EXPECT_EQ(p.p, 4);
  EXPECT_EQ(p.q, 4);
  EXPECT_EQ(p.pad_h, 0);
  EXPECT_EQ(p.pad_w, 1);
  EXPECT_EQ(p.stride_h, 2);
  EXPECT_EQ(p.dilation_w, 1);
  EXPECT_EQ(p.groups, 1);
  // Explicit pads: the top/left ones; the bottom/right ones only change P and Q.
  const PaddingSpec pads = parse_explicit_padding(std::array<int64_t, 4>{3, 0, 1, 5});
  const std::array<int64_t, 2> ones{1, 1};
  const std::array<int64_t, 4> input{1, 5, 5, 8}, filter{2, 2, 8, 8};
  const ImplicitGemmProblem e =
      *implicit_gemm_problem(make_plan(check_conv2d_shapes<int64_t>(input, filter, ones, pads, ones), ones, pads, ones));
  EXPECT_EQ(e.pad_h, 3);
  EXPECT_EQ(e.pad_w, 1);
  EXPECT_EQ(e.p, 7);
  EXPECT_EQ(e.q, 10);
  // Grouped: C stays the whole input's channels, the filter's third dimension is C / groups.
  const ImplicitGemmProblem g = *implicit_gemm_problem(plan_of({1, 6, 6, 32}, {3, 3, 8, 64}));
  EXPECT_EQ(g.c, 32);
  EXPECT_EQ(g.groups, 4);
}

TEST(CudaEngine, SizesPastIntHaveNoProblem) {
  Conv2dPlan plan = plan_of({1, 4, 4, 8}, {1, 1, 8, 8});
  plan.batch = int64_t{std::numeric_limits<int>::max()} + 1;
  EXPECT_FALSE(implicit_gemm_problem(plan).has_value());
  // Small tensors, but a dilated window whose padding reaches 40000 rows above a 256 x 256 x 1
  // input: CUTLASS's int offset of such a tap wraps (found by emulating its iterators).
  EXPECT_FALSE(implicit_gemm_problem(plan_of({1, 4, 256, 256}, {3, 1, 256, 8}, 1, "SAME", 40000)).has_value());
  EXPECT_TRUE(implicit_gemm_problem(plan_of({1, 4, 256, 256}, {3, 1, 256, 8}, 1, "SAME", 300)).has_value());
  // An empty input (W = 0, SAME, 1-wide filter: nothing padded) has no problem, and no division by zero.
  EXPECT_FALSE(implicit_gemm_problem(plan_of({1, 5, 0, 8}, {1, 1, 8, 8})).has_value());
}

TEST(CudaEngine, KernelFamilyFollowsDtypePrecisionAndArchitecture) {
  EXPECT_EQ(implicit_gemm_kernel_for(c10::kHalf, false, 80), ImplicitGemmKernel::kSm80Half);
  EXPECT_EQ(implicit_gemm_kernel_for(c10::kBFloat16, true, 90), ImplicitGemmKernel::kSm80BFloat16);
  EXPECT_EQ(implicit_gemm_kernel_for(c10::kFloat, true, 86), ImplicitGemmKernel::kSm80TF32);
  EXPECT_EQ(implicit_gemm_kernel_for(c10::kFloat, false, 90), ImplicitGemmKernel::kSm80Float32);
  EXPECT_FALSE(implicit_gemm_kernel_for(c10::kDouble, false, 90).has_value());
  EXPECT_FALSE(implicit_gemm_kernel_for(c10::kHalf, false, 75).has_value());
}

TEST(CudaEngine, Im2rowStaysTheDefault) {
  const Conv2dPlan dense = plan_of({8, 14, 14, 64}, {3, 3, 64, 64});
  for (const EngineRequest request : {EngineRequest::kAuto, EngineRequest::kIm2row}) {
    const EngineChoice choice = choose_cuda_engine(dense, kFprop, c10::kHalf, false, 90, true, request, &accept_all);
    EXPECT_EQ(choice.engine, CudaEngine::kIm2row);
    EXPECT_FALSE(choice.kernel.has_value());
  }
}

TEST(CudaEngine, ImplicitGemmOnRequestWhereItCanImplement) {
  const Conv2dPlan dense = plan_of({8, 14, 14, 64}, {3, 3, 64, 64});
  const EngineRequest on = EngineRequest::kImplicitGemm;
  const EngineChoice half = choose_cuda_engine(dense, kFprop, c10::kHalf, false, 90, true, on, &accept_all);
  EXPECT_EQ(half.engine, CudaEngine::kImplicitGemm);
  EXPECT_EQ(half.kernel, ImplicitGemmKernel::kSm80Half);
  EXPECT_EQ(choose_cuda_engine(dense, kFprop, c10::kFloat, true, 80, true, on, &accept_all).kernel, ImplicitGemmKernel::kSm80TF32);
  // Everything else keeps im2row, each for its reason.
  const auto engine = [&](const Conv2dPlan& plan, c10::ScalarType dtype, int arch, bool aligned, CanImplement can) {
    return choose_cuda_engine(plan, kFprop, dtype, false, arch, aligned, on, can).engine;
  };
  EXPECT_EQ(engine(dense, c10::kHalf, 90, true, &refuse_all), CudaEngine::kIm2row);
  EXPECT_EQ(engine(dense, c10::kDouble, 90, true, &accept_all), CudaEngine::kIm2row);
  EXPECT_EQ(engine(dense, c10::kHalf, 75, true, &accept_all), CudaEngine::kIm2row);
  EXPECT_EQ(engine(dense, c10::kHalf, 90, false, &accept_all), CudaEngine::kIm2row);
  EXPECT_EQ(engine(plan_of({8, 14, 14, 64}, {3, 3, 1, 64}), c10::kHalf, 90, true, &accept_all), CudaEngine::kIm2row);
  // Asking for kernels the build does not have is an error, not a quiet im2row.
  EXPECT_THROW(choose_cuda_engine(dense, kFprop, c10::kHalf, false, 90, true, on, nullptr), c10::Error);
  // Each direction is asked for itself.
  for (const ConvDirection d : {ConvDirection::kFprop, ConvDirection::kDgrad, ConvDirection::kWgrad}) {
    EXPECT_EQ(choose_cuda_engine(dense, d, c10::kHalf, false, 90, true, on, &wgrad_only).engine,
              d == ConvDirection::kWgrad ? CudaEngine::kImplicitGemm : CudaEngine::kIm2row)
        << direction_name(d);
  }
}

// CUTLASS's own answers for the compiled kernels: 16-byte accesses need C and K in multiples of
// 8 (half types) or 4 (float32); grouped layers are not among the compiled kernels.
TEST(CudaEngine, CutlassCanImplement) {
  // Through the pointer the entry points use: null in builds without the CUTLASS kernels.
  const CanImplement can_implement = compiled_can_implement();
  ASSERT_EQ(can_implement != nullptr, implicit_gemm_compiled());
  if (!can_implement) GTEST_SKIP() << "this build has no CUTLASS kernels";
  for (const ConvDirection d : {ConvDirection::kFprop, ConvDirection::kDgrad, ConvDirection::kWgrad}) {
    const auto can = [d, can_implement](ImplicitGemmKernel kernel, const Conv2dPlan& plan) {
      return can_implement(kernel, d, *implicit_gemm_problem(plan));
    };
    for (const ImplicitGemmKernel k : {ImplicitGemmKernel::kSm80Half, ImplicitGemmKernel::kSm80BFloat16,
                                       ImplicitGemmKernel::kSm80TF32, ImplicitGemmKernel::kSm80Float32}) {
      SCOPED_TRACE(std::string(kernel_name(k)) + " " + direction_name(d));
      EXPECT_TRUE(can(k, plan_of({32, 56, 56, 64}, {3, 3, 64, 64})));
      EXPECT_TRUE(can(k, plan_of({32, 56, 56, 256}, {1, 1, 256, 512}, 2)));
      EXPECT_TRUE(can(k, plan_of({3, 17, 13, 16}, {5, 3, 16, 24}, 3, "VALID")));
      // Dilation: the forward and the filter gradient take it, CUTLASS's strided dgrad does not.
      EXPECT_EQ(can(k, plan_of({3, 17, 13, 16}, {5, 3, 16, 24}, 1, "SAME", 2)), d != ConvDirection::kDgrad);
      EXPECT_FALSE(can(k, plan_of({32, 224, 224, 3}, {7, 7, 3, 64}, 2)));
      EXPECT_FALSE(can(k, plan_of({8, 14, 14, 64}, {3, 3, 32, 64})));
    }
    EXPECT_FALSE(can(ImplicitGemmKernel::kSm80Half, plan_of({4, 9, 9, 12}, {3, 3, 12, 24})));
    EXPECT_TRUE(can(ImplicitGemmKernel::kSm80Float32, plan_of({4, 9, 9, 12}, {3, 3, 12, 20})));
  }
}

}  // namespace
