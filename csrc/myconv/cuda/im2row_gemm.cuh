// Pieces shared by the CUDA forward and gradient kernels: launch sizing, the NHWC im2row kernel
// and a cuBLAS GEMM that multiplies scalar_t operands into a scalar_t or float32 result.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <cublas_v2.h>

#include <algorithm>
#include <limits>

#include "myconv/conv2d_plan.h"
#include "myconv/cuda/gemm_policy.h"

namespace myconv {
namespace cuda {

constexpr int64_t kWorkspaceBytes = int64_t{64} << 20;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest
constexpr int64_t kMaxGemmDim = std::numeric_limits<int>::max();

inline int64_t blocks_for(int64_t elements) {
  return std::clamp<int64_t>((elements + kThreads - 1) / kThreads, 1, kMaxBlocks);
}

// cuBLAS takes 32-bit sizes: the filter and the channel count must fit one GEMM.
inline void check_gemm_dims(const Conv2dPlan& p) {
  const int64_t row_len = p.kernel_h * p.kernel_w * p.group_in_channels;
  TORCH_CHECK_VALUE(row_len <= kMaxGemmDim && p.out_channels <= kMaxGemmDim &&
                        p.in_channels <= kMaxGemmDim,
                    "myconv.conv2d (CUDA): filter too large for a 32-bit cuBLAS GEMM: "
                    "KH*KW*C/groups = ", row_len, ", O = ", p.out_channels);
}

// rows[i, (kh, kw, c)] = input[n, ih, iw, group * Cg + c] for output pixel first_pixel + i,
// zero where the tap falls into the padding.
template <typename scalar_t>
__global__ void im2row_kernel(const scalar_t* __restrict__ input, Conv2dPlan p, int64_t group,
                              int64_t first_pixel, int64_t num_pixels, scalar_t* __restrict__ rows) {
  const int64_t cg = p.group_in_channels;
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t total = num_pixels * taps * cg;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t c = idx % cg;
    const int64_t tap = (idx / cg) % taps;
    const int64_t pixel = first_pixel + idx / (cg * taps);
    const int64_t ow = pixel % p.out_w;
    const int64_t oh = (pixel / p.out_w) % p.out_h;
    const int64_t n = pixel / (p.out_w * p.out_h);
    const int64_t ih =
        geometry::input_index(oh, p.stride_h, p.pad_h.before, tap / p.kernel_w, p.dilation_h);
    const int64_t iw =
        geometry::input_index(ow, p.stride_w, p.pad_w.before, tap % p.kernel_w, p.dilation_w);
    const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
    rows[idx] = inside ? input[((n * p.in_h + ih) * p.in_w + iw) * p.in_channels + group * cg + c]
                       : scalar_t(0);
  }
}

template <typename T>
struct CublasType;
template <>
struct CublasType<float> { static constexpr cudaDataType_t value = CUDA_R_32F; };
template <>
struct CublasType<double> { static constexpr cudaDataType_t value = CUDA_R_64F; };
template <>
struct CublasType<c10::Half> { static constexpr cudaDataType_t value = CUDA_R_16F; };
template <>
struct CublasType<c10::BFloat16> { static constexpr cudaDataType_t value = CUDA_R_16BF; };

// Column-major c[m, n] = op_a(a)[m, k] x op_b(b)[k, n] (+ c when accumulate), scalar_t operands,
// out_t result (scalar_t, or float32 for half types), accumulated in float32 (float64 for double).
// torch's precision settings apply as in ATen's GEMMs (gemm_policy.h): TF32 for float32 only when
// allowed, and no half-precision reductions for fp16/bf16 when disallowed. Row-major NHWC/HWIO
// matrices are their transposes, so callers swap operands instead of transposing data.
template <typename scalar_t, typename out_t>
void gemm(cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t k,
          const scalar_t* a, int64_t lda, const scalar_t* b, int64_t ldb, out_t* c, int64_t ldc,
          bool accumulate) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmPolicy policy = gemm_policy(c10::CppTypeToScalarType<scalar_t>::value);
  cublasComputeType_t compute = std::is_same_v<scalar_t, double> ? CUBLAS_COMPUTE_64F
                                : policy.tf32                    ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                 : CUBLAS_COMPUTE_32F;
  const cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();
  // The handle is torch's (per thread and stream, with its own workspace, which keeps cuBLAS
  // deterministic): restore its math mode after the call.
  cublasMath_t previous_math = CUBLAS_DEFAULT_MATH;
  if (policy.disallow_reduced_precision_reduction) {
    TORCH_CUDABLAS_CHECK(cublasGetMathMode(handle, &previous_math));
    TORCH_CUDABLAS_CHECK(cublasSetMathMode(
        handle, static_cast<cublasMath_t>(previous_math | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  }
  const acc_t alpha = 1;
  const acc_t beta = accumulate ? 1 : 0;
  const cublasStatus_t status = cublasGemmEx(
      handle, op_a, op_b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha, a,
      CublasType<scalar_t>::value, static_cast<int>(lda), b, CublasType<scalar_t>::value,
      static_cast<int>(ldb), &beta, c, CublasType<out_t>::value, static_cast<int>(ldc), compute,
      CUBLAS_GEMM_DEFAULT);
  if (policy.disallow_reduced_precision_reduction) {
    TORCH_CUDABLAS_CHECK(cublasSetMathMode(handle, previous_math));
  }
  TORCH_CUDABLAS_CHECK(status);
}

}  // namespace cuda
}  // namespace myconv
