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
#include "myconv/indexing.h"

namespace myconv {
namespace cuda {

constexpr int64_t kWorkspaceBytes = int64_t{64} << 20;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest
constexpr int64_t kMaxGemmDim = std::numeric_limits<int>::max();

inline int64_t blocks_for(int64_t elements) {
  return std::clamp<int64_t>((elements + kThreads - 1) / kThreads, 1, kMaxBlocks);
}

// cuBLAS takes 32-bit sizes and batch counts: the filter, the channel count and the groups must
// fit.
inline void check_gemm_dims(const Conv2dPlan& p) {
  const int64_t row_len = p.window_size();
  TORCH_CHECK_VALUE(row_len <= kMaxGemmDim && p.out_channels <= kMaxGemmDim &&
                        p.in_channels <= kMaxGemmDim && p.groups <= kMaxGemmDim,
                    "myconv.conv2d (CUDA): filter too large for a 32-bit cuBLAS GEMM: "
                    "KH*KW*C/groups = ", row_len, ", O = ", p.out_channels);
}

// rows[g, i, (kh, kw, c)] = input[n, ih, iw, g * Cg + c] for every group g and output pixel
// first_pixel + i (i < count), zero where the tap falls into the padding: one [count, K] matrix
// per group, count * K apart, for a strided-batched GEMM over the groups.
template <typename scalar_t>
__global__ void im2row_kernel(const scalar_t* __restrict__ input, Conv2dIndexer ix,
                              int64_t first_pixel, FastDivmod count, scalar_t* __restrict__ rows) {
  const Conv2dPlan& p = ix.p;
  const int64_t cg = p.group_in_channels;
  const int64_t total = p.groups * count.divisor() * p.window_size();
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    int64_t group_pixel_tap = 0, c = 0, group_pixel = 0, tap = 0, g = 0, i = 0, kh = 0, kw = 0;
    ix.group_in_channels.divmod(idx, &group_pixel_tap, &c);
    ix.taps.divmod(group_pixel_tap, &group_pixel, &tap);
    count.divmod(group_pixel, &g, &i);
    ix.tap(tap, &kh, &kw);
    const Pixel out = ix.output_pixel(first_pixel + i);
    const int64_t ih = geometry::input_index(out.y, p.stride_h, p.pad_h.before, kh, p.dilation_h);
    const int64_t iw = geometry::input_index(out.x, p.stride_w, p.pad_w.before, kw, p.dilation_w);
    const bool inside = ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
    rows[idx] = inside ? input[ix.input_offset(out.n, ih, iw, g * cg + c)] : scalar_t(0);
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

// One column-major operand of a strided-batched GEMM: matrix b of the batch starts at
// data + b * stride, with leading dimension ld.
template <typename T>
struct Operand {
  T* data;
  int64_t ld;
  int64_t stride;
};

// For each b < batch: column-major c_b[m, n] = op_a(a_b)[m, k] x op_b(b_b)[k, n] (+ c_b when
// accumulate), scalar_t operands, out_t result (scalar_t, or float32 for half types), accumulated
// in float32 (float64 for double); batch = the groups of a grouped convolution. torch's precision
// settings apply as in ATen's GEMMs (gemm_policy.h): TF32 for float32 only when allowed, and no
// half-precision reductions for fp16/bf16 when disallowed. Row-major NHWC/HWIO matrices are their
// transposes, so callers swap operands instead of transposing data.
template <typename scalar_t, typename out_t>
void gemm(cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t k,
          Operand<const scalar_t> a, Operand<const scalar_t> b, Operand<out_t> c, int64_t batch,
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
  const cublasStatus_t status = cublasGemmStridedBatchedEx(
      handle, op_a, op_b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha,
      a.data, CublasType<scalar_t>::value, static_cast<int>(a.ld), a.stride, b.data,
      CublasType<scalar_t>::value, static_cast<int>(b.ld), b.stride, &beta, c.data,
      CublasType<out_t>::value, static_cast<int>(c.ld), c.stride, static_cast<int>(batch), compute,
      CUBLAS_GEMM_DEFAULT);
  if (policy.disallow_reduced_precision_reduction) {
    TORCH_CUDABLAS_CHECK(cublasSetMathMode(handle, previous_math));
  }
  TORCH_CUDABLAS_CHECK(status);
}

}  // namespace cuda
}  // namespace myconv
