// CUDA backend of myconv::conv2d, mirroring the CPU design:
//  - general case: an NHWC im2row kernel fills a bounded tile of output pixels into a workspace
//    from the caching allocator, then cuBLAS multiplies it by the HWIO filter viewed as
//    [KH*KW*C/groups, O] (one GEMM per group, output written in place with ldc = O);
//  - 1x1, stride 1, unpadded: the input itself is the GEMM operand;
//  - depthwise: a direct kernel, one thread per output element, coalesced over channels.
// GEMMs always compute in float32 (float64 for double): fp16/bf16 use tensor cores with fp32
// accumulation, float32 uses TF32 only when torch.backends.cuda.matmul.allow_tf32 is set.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cublas_v2.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "myconv/conv2d_plan.h"

namespace myconv {
namespace {

constexpr int64_t kWorkspaceBytes = int64_t{64} << 20;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest
constexpr int64_t kMaxGemmDim = std::numeric_limits<int>::max();

int64_t blocks_for(int64_t elements) {
  return std::clamp<int64_t>((elements + kThreads - 1) / kThreads, 1, kMaxBlocks);
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

template <typename scalar_t, typename acc_t>
__global__ void depthwise_kernel(const scalar_t* __restrict__ input,
                                 const scalar_t* __restrict__ filter,
                                 const scalar_t* __restrict__ bias, Conv2dPlan p,
                                 scalar_t* __restrict__ output) {
  const int64_t total = p.batch * p.out_h * p.out_w * p.out_channels;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t o = idx % p.out_channels;
    const int64_t pixel = idx / p.out_channels;
    const int64_t ow = pixel % p.out_w;
    const int64_t oh = (pixel / p.out_w) % p.out_h;
    const int64_t n = pixel / (p.out_w * p.out_h);
    const int64_t c = o / p.group_out_channels;
    acc_t acc = bias ? static_cast<acc_t>(bias[o]) : acc_t(0);
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = geometry::input_index(oh, p.stride_h, p.pad_h.before, kh, p.dilation_h);
      if (ih < 0 || ih >= p.in_h) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = geometry::input_index(ow, p.stride_w, p.pad_w.before, kw, p.dilation_w);
        if (iw < 0 || iw >= p.in_w) continue;
        acc += static_cast<acc_t>(input[((n * p.in_h + ih) * p.in_w + iw) * p.in_channels + c]) *
               static_cast<acc_t>(filter[(kh * p.kernel_w + kw) * p.out_channels + o]);
      }
    }
    output[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
struct CublasType;
template <>
struct CublasType<float> { static constexpr cudaDataType_t value = CUDA_R_32F; };
template <>
struct CublasType<double> { static constexpr cudaDataType_t value = CUDA_R_64F; };
template <>
struct CublasType<c10::Half> { static constexpr cudaDataType_t value = CUDA_R_16F; };
template <>
struct CublasType<c10::BFloat16> { static constexpr cudaDataType_t value = CUDA_R_16BF; };

// Row-major out[count, og] (row stride ldo) = rows[count, k] (row stride ldr) x
// weights[k, og] (row stride ldw) + beta * out. cuBLAS is column-major, so this is
// out^T = weights^T x rows^T with no transposes.
template <typename scalar_t>
void gemm(const scalar_t* rows, int64_t ldr, const scalar_t* weights, int64_t ldw, scalar_t* out,
          int64_t ldo, int64_t count, int64_t k, int64_t og, bool accumulate) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool is_double = std::is_same_v<scalar_t, double>;
  cublasComputeType_t compute = is_double ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  if (std::is_same_v<scalar_t, float> && at::globalContext().allowTF32CuBLAS()) {
    compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  const acc_t alpha = 1;
  const acc_t beta = accumulate ? 1 : 0;
  constexpr cudaDataType_t type = CublasType<scalar_t>::value;
  TORCH_CUDABLAS_CHECK(cublasGemmEx(
      at::cuda::getCurrentCUDABlasHandle(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(og),
      static_cast<int>(count), static_cast<int>(k), &alpha, weights, type, static_cast<int>(ldw),
      rows, type, static_cast<int>(ldr), &beta, out, type, static_cast<int>(ldo), compute,
      CUBLAS_GEMM_DEFAULT));
}

template <typename scalar_t>
void conv2d_gemm(const at::Tensor& input, const at::Tensor& filter,
                 const std::optional<at::Tensor>& bias, const Conv2dPlan& p, at::Tensor& output) {
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  const int64_t cg = p.group_in_channels;
  const int64_t og = p.group_out_channels;
  const int64_t row_len = p.kernel_h * p.kernel_w * cg;
  TORCH_CHECK_VALUE(row_len <= kMaxGemmDim && p.out_channels <= kMaxGemmDim &&
                        p.in_channels <= kMaxGemmDim,
                    "myconv.conv2d (CUDA): filter too large for a 32-bit cuBLAS GEMM: "
                    "KH*KW*C/groups = ", row_len, ", O = ", p.out_channels);
  const bool direct = p.is_unpadded_pointwise();
  const int64_t tile =
      direct ? std::min(pixels, kMaxGemmDim)
             : std::clamp<int64_t>(kWorkspaceBytes / (row_len * int64_t{sizeof(scalar_t)}), 1,
                                   std::min(pixels, kMaxGemmDim));
  const at::Tensor workspace = direct ? at::Tensor() : at::empty({tile, row_len}, input.options());
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* weights = filter.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor out2d = output.view({pixels, p.out_channels});

  for (int64_t first = 0; first < pixels; first += tile) {
    const int64_t count = std::min(tile, pixels - first);
    if (bias) out2d.narrow(0, first, count).copy_(bias->expand({count, p.out_channels}));
    for (int64_t g = 0; g < p.groups; ++g) {
      const scalar_t* rows = nullptr;
      int64_t ldr = row_len;
      if (direct) {
        rows = in + first * p.in_channels + g * cg;
        ldr = p.in_channels;
      } else {
        scalar_t* ws = workspace.mutable_data_ptr<scalar_t>();
        im2row_kernel<scalar_t><<<blocks_for(count * row_len), kThreads, 0, stream>>>(
            in, p, g, first, count, ws);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        rows = ws;
      }
      gemm<scalar_t>(rows, ldr, weights + g * og, p.out_channels,
                     out + first * p.out_channels + g * og, p.out_channels, count, row_len, og,
                     bias.has_value());
    }
  }
}

void conv2d_cuda(const at::Tensor& input, const at::Tensor& filter,
                 const std::optional<at::Tensor>& bias, const Conv2dPlan& plan,
                 at::Tensor& output) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor x = input.contiguous();
  const at::Tensor w = filter.contiguous();
  const std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(bias->contiguous()) : std::nullopt;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "myconv_conv2d_cuda", [&] {
    if (plan.is_depthwise()) {
      depthwise_kernel<scalar_t, at::opmath_type<scalar_t>>
          <<<blocks_for(output.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
              b ? b->const_data_ptr<scalar_t>() : nullptr, plan, output.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      conv2d_gemm<scalar_t>(x, w, b, plan, output);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, CUDA, m) { register_conv2d_kernels<conv2d_cuda>(m); }

}  // namespace myconv
