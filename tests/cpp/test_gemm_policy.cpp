// The CUDA backend's reading of torch's precision settings, checked without a GPU: every API a
// user may have used (legacy allow_tf32, fp32_precision, set_float32_matmul_precision,
// NoTF32Guard, reduced-precision reductions) gives the GEMM policy ATen's own GEMMs would use.
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include "myconv/cuda/gemm_policy.h"

namespace {

using myconv::cuda::gemm_policy;

class GemmPolicy : public ::testing::Test {
 protected:
  // Each test starts from and returns to torch's defaults.
  void SetUp() override { Reset(); }
  void TearDown() override { Reset(); }
  static void Reset() {
    at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL,
                                            at::Float32Precision::IEEE);
    at::globalContext().setAllowFP16ReductionCuBLAS(true);
    at::globalContext().setAllowBF16ReductionCuBLAS(true);
  }
};

TEST_F(GemmPolicy, Float32IsExactByDefault) {
  EXPECT_FALSE(gemm_policy(at::kFloat).tf32);
  EXPECT_FALSE(gemm_policy(at::kDouble).tf32);
}

TEST_F(GemmPolicy, LegacyAllowTf32) {
  at::globalContext().setAllowTF32CuBLAS(true);
  EXPECT_TRUE(gemm_policy(at::kFloat).tf32);
  EXPECT_FALSE(gemm_policy(at::kDouble).tf32);
  at::globalContext().setAllowTF32CuBLAS(false);
  EXPECT_FALSE(gemm_policy(at::kFloat).tf32);
}

TEST_F(GemmPolicy, NewFp32PrecisionApiDoesNotThrow) {
  at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL,
                                          at::Float32Precision::TF32);
  EXPECT_TRUE(gemm_policy(at::kFloat).tf32);
  at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL,
                                          at::Float32Precision::IEEE);
  EXPECT_FALSE(gemm_policy(at::kFloat).tf32);
}

TEST_F(GemmPolicy, Float32MatmulPrecision) {
  at::globalContext().setFloat32MatmulPrecision("high");
  EXPECT_TRUE(gemm_policy(at::kFloat).tf32);
  at::globalContext().setFloat32MatmulPrecision("highest");
  EXPECT_FALSE(gemm_policy(at::kFloat).tf32);
}

TEST_F(GemmPolicy, NoTf32GuardWins) {
  at::globalContext().setAllowTF32CuBLAS(true);
  {
    at::NoTF32Guard guard;
    EXPECT_FALSE(gemm_policy(at::kFloat).tf32);
  }
  EXPECT_TRUE(gemm_policy(at::kFloat).tf32);
}

TEST_F(GemmPolicy, ReducedPrecisionReductions) {
  EXPECT_FALSE(gemm_policy(at::kHalf).disallow_reduced_precision_reduction);
  EXPECT_FALSE(gemm_policy(at::kBFloat16).disallow_reduced_precision_reduction);
  at::globalContext().setAllowFP16ReductionCuBLAS(false);
  EXPECT_TRUE(gemm_policy(at::kHalf).disallow_reduced_precision_reduction);
  EXPECT_FALSE(gemm_policy(at::kBFloat16).disallow_reduced_precision_reduction);
  at::globalContext().setAllowBF16ReductionCuBLAS(false);
  EXPECT_TRUE(gemm_policy(at::kBFloat16).disallow_reduced_precision_reduction);
  EXPECT_FALSE(gemm_policy(at::kFloat).disallow_reduced_precision_reduction);
}

}  // namespace
