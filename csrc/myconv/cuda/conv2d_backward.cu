// CUDA kernel of myconv::conv2d_backward, mirroring the CPU design:
//  - general case, per bounded tile of output pixels, the groups batched in each cuBLAS call
//    (column-major views of the row-major NHWC/HWIO matrices):
//      grad_filter[K, Og] += rows^T x grad_output      (rows = im2row of the tile)
//      grad_rows[P, K]     = grad_output x filter^T, then a gather kernel adds them onto grad_input;
//    1x1 stride-1 unpadded convolutions use the input and grad_input themselves as the rows;
//  - depthwise: grad_input one thread per input element; grad_filter one block per (tap, 32
//    channels) reducing over all pixels through shared memory.
// Every element is summed by one thread in a fixed order: the kernels are deterministic (cuBLAS
// is too, given CUBLAS_WORKSPACE_CONFIG). Half types accumulate in float32.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "myconv/cuda/conv2d_backward.h"
#include "myconv/cuda/engine_launch.cuh"
#include "myconv/cuda/im2row_gemm.cuh"

namespace myconv {
namespace cuda {
namespace {

// grad_input[n, ih, iw, g * Cg + c] += sum of rows[g, p - first_pixel, (kh, kw, c)] over the
// output pixels p of the tile whose tap (kh, kw) reads (ih, iw), for every group g and the input
// rows [first_in_row, first_in_row + in_rows) (flat n * H + ih): the adjoint of im2row, as a
// gather, so each element is summed by one thread.
template <typename acc_t>
__global__ void row2im_add_kernel(const acc_t* __restrict__ rows, Conv2dIndexer ix,
                                  int64_t first_pixel, int64_t num_pixels, int64_t first_in_row,
                                  int64_t in_rows, acc_t* __restrict__ grad_input) {
  const Conv2dPlan& p = ix.p;
  const int64_t cg = p.group_in_channels;
  const int64_t row_len = p.window_size();
  const int64_t last_pixel = first_pixel + num_pixels - 1;
  const int64_t total = in_rows * p.in_w * p.in_channels;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    int64_t pixel = 0, channel = 0, g = 0, c = 0;
    ix.in_channels.divmod(idx, &pixel, &channel);
    ix.group_in_channels.divmod(channel, &g, &c);
    const Pixel in = ix.input_pixel(first_in_row * p.in_w + pixel);
    const acc_t* group_rows = rows + g * num_pixels * row_len;
    acc_t sum = 0;
    for_each_window_reading(p, in.y, in.x, [&](int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
      const int64_t out_pixel = (in.n * p.out_h + oh) * p.out_w + ow;
      if (out_pixel < first_pixel || out_pixel > last_pixel) return;
      sum += group_rows[(out_pixel - first_pixel) * row_len + (kh * p.kernel_w + kw) * cg + c];
    });
    grad_input[ix.input_offset(in.n, in.y, in.x, channel)] += sum;
  }
}

template <typename scalar_t>
void conv2d_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& filter, const Conv2dPlan& p, Conv2dGrads& grads) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widen = !std::is_same_v<scalar_t, acc_t>;
  const auto acc_options = input.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const int64_t pixels = p.output_pixels();
  const int64_t cg = p.group_in_channels;
  const int64_t og = p.group_out_channels;
  const int64_t row_len = p.window_size();
  check_gemm_dims(p);
  const bool direct = p.is_unpadded_pointwise();
  const bool want_input = grads.input.defined();
  const bool want_filter = grads.filter.defined();
  const int64_t tile = direct ? std::min(pixels, kMaxGemmDim)
                              : std::clamp<int64_t>(kWorkspaceBytes / (p.groups * row_len *
                                                                       int64_t{sizeof(scalar_t) + sizeof(acc_t)}),
                                                    1, std::min(pixels, kMaxGemmDim));
  const at::Tensor rows_workspace =
      want_filter && !direct ? at::empty({p.groups, tile, row_len}, input.options()) : at::Tensor();
  const at::Tensor grad_rows_workspace =
      want_input && !direct ? at::empty({p.groups, tile, row_len}, acc_options) : at::Tensor();
  // Accumulators: the outputs themselves, or float32 copies for half types.
  at::Tensor grad_filter_acc;
  if (want_filter) grad_filter_acc = widen ? at::zeros(filter.sizes(), acc_options) : grads.filter.zero_();
  at::Tensor grad_input_acc;
  if (want_input && !direct) grad_input_acc = widen ? at::zeros(input.sizes(), acc_options) : grads.input.zero_();

  const Conv2dIndexer ix(p);
  const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* w = filter.const_data_ptr<scalar_t>();
  const auto stream = at::cuda::getCurrentCUDAStream();

  // The groups are the batch of every GEMM: per group g, gy_g is [count, og] (ld O, og apart),
  // filter_g [K, og] (ld O, og apart), rows_g [count, K].
  for (int64_t first = 0; first < pixels; first += tile) {
    const int64_t count = std::min(tile, pixels - first);
    const Operand<const scalar_t> gy_g{gy + first * p.out_channels, p.out_channels, og};
    const Operand<const scalar_t> filter_g{w, p.out_channels, og};
    if (want_filter) {
      Operand<const scalar_t> rows{in + first * p.in_channels, p.in_channels, cg};  // 1x1: the input
      if (!direct) {
        scalar_t* ws = rows_workspace.mutable_data_ptr<scalar_t>();
        im2row_kernel<scalar_t><<<blocks_for(p.groups * count * row_len), kThreads, 0, stream>>>(
            in, ix, first, FastDivmod(count), ws);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        rows = {ws, row_len, count * row_len};
      }
      // grad_filter_g[K, og] += rows_g^T x gy_g: column-major (og x K) = gy_g^T x rows_g.
      gemm<scalar_t, acc_t>(CUBLAS_OP_N, CUBLAS_OP_T, og, row_len, count, gy_g, rows,
                            {grad_filter_acc.mutable_data_ptr<acc_t>(), p.out_channels, og},
                            p.groups, true);
    }
    if (!want_input) continue;
    // grad_rows_g[count, K] = gy_g x filter_g^T: column-major (K x count) = filter_g x gy_g^T.
    if (direct) {  // the rows are grad_input itself
      gemm<scalar_t, scalar_t>(CUBLAS_OP_T, CUBLAS_OP_N, cg, count, og, filter_g, gy_g,
                               {grads.input.mutable_data_ptr<scalar_t>() + first * p.in_channels,
                                p.in_channels, cg},
                               p.groups, false);
      continue;
    }
    acc_t* grad_rows = grad_rows_workspace.mutable_data_ptr<acc_t>();
    gemm<scalar_t, acc_t>(CUBLAS_OP_T, CUBLAS_OP_N, row_len, count, og, filter_g, gy_g,
                          {grad_rows, row_len, count * row_len}, p.groups, false);
    // Input rows the tile's output rows read, clamped to the images they lie in.
    const int64_t first_image = first / (p.out_h * p.out_w);
    const int64_t last_image = (first + count - 1) / (p.out_h * p.out_w);
    const int64_t in_rows = (last_image - first_image + 1) * p.in_h;
    row2im_add_kernel<acc_t><<<blocks_for(in_rows * p.in_w * p.in_channels), kThreads, 0, stream>>>(
        grad_rows, ix, first, count, first_image * p.in_h, in_rows,
        grad_input_acc.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (widen && want_filter) grads.filter.copy_(grad_filter_acc);
  if (widen && want_input && !direct) grads.input.copy_(grad_input_acc);
}

// grad_input[n, ih, iw, c] = sum over j < m and the taps that read (ih, iw) of
// grad_output[n, oh, ow, c * m + j] * filter[kh, kw, 0, c * m + j].
template <typename scalar_t, typename acc_t>
__global__ void depthwise_grad_input_kernel(const scalar_t* __restrict__ grad_output,
                                            const scalar_t* __restrict__ filter, Conv2dIndexer ix,
                                            scalar_t* __restrict__ grad_input) {
  const Conv2dPlan& p = ix.p;
  const int64_t total = p.batch * p.in_h * p.in_w * p.in_channels;
  const int64_t m = p.group_out_channels;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    int64_t pixel = 0, c = 0;
    ix.in_channels.divmod(idx, &pixel, &c);
    const Pixel in = ix.input_pixel(pixel);
    acc_t sum = 0;
    for_each_window_reading(p, in.y, in.x, [&](int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
      const scalar_t* gy = grad_output + ix.output_offset(in.n, oh, ow, c * m);
      const scalar_t* f = filter + (kh * p.kernel_w + kw) * p.out_channels + c * m;
      for (int64_t j = 0; j < m; ++j) sum += static_cast<acc_t>(gy[j]) * static_cast<acc_t>(f[j]);
    });
    grad_input[idx] = static_cast<scalar_t>(sum);
  }
}

constexpr int kChannelsPerBlock = 32;
constexpr int kPixelLanes = 32;

// grad_filter[tap, o] = sum over output pixels of input[n, ih, iw, o / m] * grad_output[.., o]:
// block (taps, 32 channels); threadIdx.x picks the channel (coalesced), threadIdx.y strides over
// pixels; the 32 partial sums of each channel are added in a fixed order through shared memory.
// 1024 threads a block leave at most 64 registers a thread: without the bound ptxas used up to 72
// and the launch failed on an H200 ("too many resources requested for launch").
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kChannelsPerBlock * kPixelLanes)
    depthwise_grad_filter_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ grad_output,
                                 Conv2dIndexer ix, scalar_t* __restrict__ grad_filter) {
  __shared__ acc_t partial[kPixelLanes][kChannelsPerBlock];
  const Conv2dPlan& p = ix.p;
  const int64_t o = int64_t{blockIdx.x} * kChannelsPerBlock + threadIdx.x;
  const int64_t pixels = p.output_pixels();
  for (int64_t tap = blockIdx.y; tap < p.kernel_h * p.kernel_w; tap += gridDim.y) {
    int64_t kh = 0, kw = 0;
    ix.tap(tap, &kh, &kw);
    acc_t sum = 0;
    if (o < p.out_channels) {
      const int64_t c = ix.depthwise_input_channel(o);
      for (int64_t pixel = threadIdx.y; pixel < pixels; pixel += kPixelLanes) {
        const Pixel out = ix.output_pixel(pixel);
        const int64_t ih = geometry::input_index(out.y, p.stride_h, p.pad_h.before, kh, p.dilation_h);
        const int64_t iw = geometry::input_index(out.x, p.stride_w, p.pad_w.before, kw, p.dilation_w);
        if (ih < 0 || ih >= p.in_h || iw < 0 || iw >= p.in_w) continue;
        sum += static_cast<acc_t>(input[ix.input_offset(out.n, ih, iw, c)]) *
               static_cast<acc_t>(grad_output[pixel * p.out_channels + o]);
      }
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && o < p.out_channels) {
      acc_t total = 0;
      for (int lane = 0; lane < kPixelLanes; ++lane) total += partial[lane][threadIdx.x];
      grad_filter[tap * p.out_channels + o] = static_cast<scalar_t>(total);
    }
    __syncthreads();  // partial is reused by the next tap
  }
}

template <typename scalar_t>
void conv2d_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& filter, const Conv2dPlan& p, Conv2dGrads& grads) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (grads.input.defined()) {
    depthwise_grad_input_kernel<scalar_t, acc_t><<<blocks_for(grads.input.numel()), kThreads, 0, stream>>>(
        grad_output.const_data_ptr<scalar_t>(), filter.const_data_ptr<scalar_t>(), Conv2dIndexer(p),
        grads.input.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (grads.filter.defined()) {
    constexpr int64_t kMaxGridY = 65535;  // further taps: the kernel's grid-stride loop
    const dim3 blocks((p.out_channels + kChannelsPerBlock - 1) / kChannelsPerBlock,
                      std::min(p.kernel_h * p.kernel_w, kMaxGridY));
    const dim3 threads(kChannelsPerBlock, kPixelLanes);
    depthwise_grad_filter_kernel<scalar_t, acc_t><<<blocks, threads, 0, stream>>>(
        input.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(), Conv2dIndexer(p),
        grads.filter.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace

void conv2d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& filter, const Conv2dPlan& plan, Conv2dGrads& grads) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor gy = grad_output.contiguous();
  // The input gradient reads only the input's sizes (conv2d_transpose passes an expanded scalar).
  const at::Tensor x = grads.filter.defined() ? input.contiguous() : input;
  const at::Tensor w = filter.contiguous();
  // The gradients an implicit GEMM computes leave `rest` to the im2row kernels.
  Conv2dGrads rest = grads;
#ifdef MYCONV_WITH_CUTLASS
  const EngineChoice dgrad = grads.input.defined()
                                 ? engine_for(plan, ConvDirection::kDgrad, gy, {&gy, &grads.input})
                                 : EngineChoice{CudaEngine::kIm2row, std::nullopt, ""};
  const EngineChoice wgrad = grads.filter.defined()
                                 ? engine_for(plan, ConvDirection::kWgrad, gy, {&gy, &x})
                                 : EngineChoice{CudaEngine::kIm2row, std::nullopt, ""};
  if (dgrad.engine == CudaEngine::kImplicitGemm || wgrad.engine == CudaEngine::kImplicitGemm) {
    const at::Tensor krsc = krsc_filter(w);
    if (dgrad.engine == CudaEngine::kImplicitGemm) {
      run_implicit_gemm(dgrad, ConvDirection::kDgrad, plan,
                        {grads.input.mutable_data_ptr(), const_cast<void*>(krsc.const_data_ptr()),
                         const_cast<void*>(gy.const_data_ptr()), nullptr},
                        "myconv.conv2d_backward");
      rest.input = at::Tensor();
    }
    if (wgrad.engine == CudaEngine::kImplicitGemm) {
      // The kernel writes the KRSC gradient; HWIO is its transpose back.
      const at::Tensor grad_krsc = at::empty_like(krsc);
      run_implicit_gemm(wgrad, ConvDirection::kWgrad, plan,
                        {const_cast<void*>(x.const_data_ptr()), grad_krsc.mutable_data_ptr(),
                         const_cast<void*>(gy.const_data_ptr()), nullptr},
                        "myconv.conv2d_backward");
      grads.filter.copy_(grad_krsc.permute({1, 2, 3, 0}));
      rest.filter = at::Tensor();
    }
  }
#endif
  if (!rest.input.defined() && !rest.filter.defined()) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "myconv_conv2d_backward_cuda", [&] {
    if (plan.is_depthwise()) {
      conv2d_backward_depthwise<scalar_t>(gy, x, w, plan, rest);
    } else {
      conv2d_backward_gemm<scalar_t>(gy, x, w, plan, rest);
    }
  });
}

}  // namespace cuda
}  // namespace myconv
