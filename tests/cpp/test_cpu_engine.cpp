// The CPU gradients' engine choices, checked alone: the filter gradient's (filter_grad_runs_on_tiles)
// and its variable (MYCONV_CPU_WGRAD): which calls the tile kernels take, and what forcing the GEMM
// changes; which input gradients run as rows (input_grad_runs_as_rows).
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "myconv/conv2d_plan.h"
#include "myconv/cpu/conv2d_backward.h"

namespace {

using namespace myconv;
using namespace myconv::cpu;

Conv2dPlan plan_of(std::array<int64_t, 4> input, std::array<int64_t, 4> filter, int64_t stride = 1) {
  const PaddingSpec spec = parse_padding_mode("SAME");
  const std::array<int64_t, 2> strides{stride, stride}, dilations{1, 1};
  return make_plan(check_conv2d_shapes<int64_t>(input, filter, strides, spec, dilations), strides, spec, dilations);
}

TEST(CpuFilterGradEngine, ParsesTheVariable) {
  EXPECT_EQ(parse_filter_grad_engine(nullptr), FilterGradEngine::kAuto);
  EXPECT_EQ(parse_filter_grad_engine(""), FilterGradEngine::kAuto);
  EXPECT_EQ(parse_filter_grad_engine("auto"), FilterGradEngine::kAuto);
  EXPECT_EQ(parse_filter_grad_engine("gemm"), FilterGradEngine::kGemm);
  try {
    parse_filter_grad_engine("tiles");
    FAIL() << "expected a ValueError";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("MYCONV_CPU_WGRAD must be auto or gemm (or unset), got \"tiles\""),
              std::string::npos);
  }
}

TEST(CpuFilterGradEngine, EveryDenseAndGroupedFilterGradientRunsOnTheTiles) {
  const auto auto_ = FilterGradEngine::kAuto;
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    EXPECT_TRUE(filter_grad_runs_on_tiles(plan_of({8, 56, 56, 64}, {3, 3, 64, 64}), dtype, auto_));
    EXPECT_TRUE(filter_grad_runs_on_tiles(plan_of({8, 224, 224, 3}, {7, 7, 3, 64}, 2), dtype, auto_));  // stem
    EXPECT_TRUE(filter_grad_runs_on_tiles(plan_of({8, 56, 56, 24}, {1, 1, 24, 144}), dtype, auto_));
    EXPECT_TRUE(filter_grad_runs_on_tiles(plan_of({1, 9, 9, 32}, {3, 3, 16, 64}), dtype, auto_));  // 2 groups
    EXPECT_TRUE(filter_grad_runs_on_tiles(plan_of({1, 9, 9, 6}, {3, 3, 2, 6}), dtype, auto_));     // 3 groups
  }
}

TEST(CpuFilterGradEngine, Float64DepthwiseAndForcedGemmDoNot) {
  const Conv2dPlan dense = plan_of({1, 9, 9, 64}, {3, 3, 64, 64});
  EXPECT_FALSE(filter_grad_runs_on_tiles(dense, at::kDouble, FilterGradEngine::kAuto));
  EXPECT_FALSE(filter_grad_runs_on_tiles(dense, at::kFloat, FilterGradEngine::kGemm));
  EXPECT_FALSE(filter_grad_runs_on_tiles(dense, at::kBFloat16, FilterGradEngine::kGemm));
  for (const auto request : {FilterGradEngine::kAuto, FilterGradEngine::kGemm}) {
    EXPECT_FALSE(filter_grad_runs_on_tiles(plan_of({1, 9, 9, 64}, {3, 3, 1, 64}), at::kFloat, request));
    EXPECT_FALSE(filter_grad_runs_on_tiles(plan_of({1, 9, 9, 8}, {3, 3, 1, 24}), at::kFloat, request));  // multiplier 3
  }
}

TEST(CpuInputGradEngine, OneGroupOfFewInputChannelsRunsAsRows) {
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    EXPECT_TRUE(input_grad_runs_as_rows(plan_of({8, 224, 224, 3}, {7, 7, 3, 64}, 2), dtype));  // stem
    EXPECT_TRUE(input_grad_runs_as_rows(plan_of({1, 9, 9, 3}, {3, 3, 3, 32}), dtype));         // stride 1 too
    EXPECT_TRUE(input_grad_runs_as_rows(plan_of({1, 9, 9, 8}, {3, 3, 8, 32}, 2), dtype));
    EXPECT_FALSE(input_grad_runs_as_rows(plan_of({1, 9, 9, 9}, {3, 3, 9, 32}, 2), dtype));
    EXPECT_FALSE(input_grad_runs_as_rows(plan_of({8, 56, 56, 64}, {3, 3, 64, 64}), dtype));
    EXPECT_FALSE(input_grad_runs_as_rows(plan_of({1, 9, 9, 8}, {3, 3, 4, 8}, 2), dtype));  // 2 groups
    EXPECT_FALSE(input_grad_runs_as_rows(plan_of({1, 9, 9, 8}, {3, 3, 1, 8}), dtype));     // depthwise
    EXPECT_TRUE(input_grad_runs_as_rows(plan_of({1, 9, 9, 8}, {1, 1, 8, 64}, 2), dtype));  // strided 1x1
    EXPECT_FALSE(input_grad_runs_as_rows(plan_of({1, 9, 9, 8}, {1, 1, 8, 64}), dtype));    // in place as phases
  }
  EXPECT_FALSE(input_grad_runs_as_rows(plan_of({8, 224, 224, 3}, {7, 7, 3, 64}, 2), at::kDouble));
}

}  // namespace
