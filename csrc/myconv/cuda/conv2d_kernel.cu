// CUDA backend of myconv::conv2d (gradients in conv2d_backward.cu), mirroring the CPU design:
//  - general case: an NHWC im2row kernel fills a bounded tile of output pixels into a workspace
//    from the caching allocator, then cuBLAS multiplies it by the HWIO filter viewed as
//    [KH*KW*C/groups, O] (the groups in one strided-batched GEMM, output written in place with
//    ldc = O);
//  - 1x1, stride 1, unpadded: the input itself is the GEMM operand;
//  - depthwise: a direct kernel, one thread per output element, coalesced over channels.
// GEMMs always compute in float32 (float64 for double): fp16/bf16 use tensor cores with fp32
// accumulation, float32 uses TF32 only when torch's matmul precision allows it (gemm_policy.h).
// On request (MYCONV_CUDA_ENGINE=implicit_gemm, engine.h) CUTLASS implicit GEMMs replace im2row
// + cuBLAS where they can (implicit_gemm_sm80_*.cu).
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "myconv/conv2d_plan.h"
#include "myconv/prepacked.h"
#include "myconv/cuda/conv2d_backward.h"
#include "myconv/cuda/engine_launch.cuh"
#include "myconv/cuda/im2row_gemm.cuh"

namespace myconv {
namespace cuda {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void depthwise_kernel(const scalar_t* __restrict__ input,
                                 const scalar_t* __restrict__ filter,
                                 const scalar_t* __restrict__ bias, Conv2dIndexer ix,
                                 scalar_t* __restrict__ output) {
  const Conv2dPlan& p = ix.p;
  const int64_t total = p.output_pixels() * p.out_channels;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    int64_t pixel = 0, o = 0;
    ix.out_channels.divmod(idx, &pixel, &o);
    const Pixel out = ix.output_pixel(pixel);
    const int64_t c = ix.depthwise_input_channel(o);
    acc_t acc = bias ? static_cast<acc_t>(bias[o]) : acc_t(0);
    for_each_tap_inside(p, out.y, out.x, [&](int64_t ih, int64_t iw, int64_t kh, int64_t kw) {
      acc += static_cast<acc_t>(input[ix.input_offset(out.n, ih, iw, c)]) *
             static_cast<acc_t>(filter[(kh * p.kernel_w + kw) * p.out_channels + o]);
    });
    output[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
void conv2d_gemm(const at::Tensor& input, const at::Tensor& filter,
                 const std::optional<at::Tensor>& bias, const Conv2dPlan& p, at::Tensor& output) {
  const int64_t pixels = p.output_pixels();
  const int64_t cg = p.group_in_channels;
  const int64_t og = p.group_out_channels;
  const int64_t row_len = p.window_size();
  check_gemm_dims(p);
  const bool direct = p.is_unpadded_pointwise();
  const int64_t tile = direct ? std::min(pixels, kMaxGemmDim)
                              : std::clamp<int64_t>(kWorkspaceBytes / (p.groups * row_len * int64_t{sizeof(scalar_t)}),
                                                    1, std::min(pixels, kMaxGemmDim));
  const at::Tensor workspace = direct ? at::Tensor() : at::empty({p.groups, tile, row_len}, input.options());
  const Conv2dIndexer ix(p);
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* weights = filter.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor out2d = output.view({pixels, p.out_channels});

  for (int64_t first = 0; first < pixels; first += tile) {
    const int64_t count = std::min(tile, pixels - first);
    if (bias) out2d.narrow(0, first, count).copy_(bias->expand({count, p.out_channels}));
    // Per group g: rows_g [count, K] (the input itself for 1x1, channels g * Cg on)
    Operand<const scalar_t> rows{in + first * p.in_channels, p.in_channels, cg};
    if (!direct) {
      scalar_t* ws = workspace.mutable_data_ptr<scalar_t>();
      im2row_kernel<scalar_t><<<blocks_for(p.groups * count * row_len), kThreads, 0, stream>>>(
          in, ix, first, FastDivmod(count), ws);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      rows = {ws, row_len, count * row_len};
    }
    // out_g[count, og] = rows_g[count, K] x weights_g[K, og], i.e. column-major
    // out_g^T = weights_g^T x rows_g^T with no transposes; the groups are one batched call.
    gemm<scalar_t, scalar_t>(CUBLAS_OP_N, CUBLAS_OP_N, og, count, row_len,
                             {weights, p.out_channels, og}, rows,
                             {out + first * p.out_channels, p.out_channels, og}, p.groups,
                             bias.has_value());
  }
}

// output = activation(conv + bias + residual): fused into the implicit GEMM's epilogue when the
// engine runs one, otherwise the im2row kernels followed by the epilogue as ATen operations.
void conv2d_fused_cuda(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& residual, const Epilogue& epilogue, const Conv2dPlan& plan,
                       at::Tensor& output) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor x = input.contiguous();
  const at::Tensor w = filter.contiguous();
  const std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(bias->contiguous()) : std::nullopt;
  // The residual may have any strides: the implicit GEMM's epilogue reads a packed NHWC copy (a
  // fresh, aligned allocation) of one that is not packed, the ATen epilogue reads it as it is.
  const bool packed_residual = residual && residual->is_contiguous();
  [[maybe_unused]] const EngineChoice engine = engine_for(
      plan, ConvDirection::kFprop, x, {&x, b ? &*b : nullptr, packed_residual ? &*residual : nullptr, &output});
#ifdef MYCONV_WITH_CUTLASS
  if (engine.engine == CudaEngine::kImplicitGemm) {
    const std::optional<at::Tensor> r = residual ? std::optional<at::Tensor>(residual->contiguous()) : std::nullopt;
    const at::Tensor krsc = krsc_filter(w);
    run_implicit_gemm(engine, ConvDirection::kFprop, plan,
                      {const_cast<void*>(x.const_data_ptr()), const_cast<void*>(krsc.const_data_ptr()),
                       output.mutable_data_ptr(), b ? b->const_data_ptr() : nullptr,
                       r ? r->const_data_ptr() : nullptr, epilogue},
                      "myconv.conv2d");
    return;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "myconv_conv2d_cuda", [&] {
    if (plan.is_depthwise()) {
      depthwise_kernel<scalar_t, at::opmath_type<scalar_t>>
          <<<blocks_for(output.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
              b ? b->const_data_ptr<scalar_t>() : nullptr, Conv2dIndexer(plan),
              output.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      conv2d_gemm<scalar_t>(x, w, b, plan, output);
    }
  });
  myconv::detail::apply_epilogue_unfused(epilogue, residual, output);
}

void conv2d_cuda(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                 const Conv2dPlan& plan, at::Tensor& output) {
  conv2d_fused_cuda(input, filter, bias, std::nullopt, Epilogue{}, plan, output);
}

// The CUDA kernels read the HWIO filter as it is: there is no packed form to keep (yet).
constexpr const char* kNoPackedForm =
    "the CUDA kernels read the HWIO filter as it is, so there is nothing to prepack on CUDA: "
    "call conv2d with the filter (myconv.Conv2d.freeze() keeps the weight there)";
at::Tensor prepack_filter_cuda(const at::Tensor&, int64_t, at::IntArrayRef) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "myconv.prepack_filter: ", kNoPackedForm);
}
void check_prepacked_cuda(const at::Tensor&, const at::Tensor&, const Conv2dPlan&) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "myconv.conv2d_prepacked: ", kNoPackedForm);
}
void conv2d_prepacked_cuda(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, const Epilogue&, const Conv2dPlan&, at::Tensor&) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "myconv.conv2d_prepacked: ", kNoPackedForm);
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, CUDA, m) {
  register_conv2d_kernels<conv2d_cuda, conv2d_backward_cuda, conv2d_fused_cuda>(m);
  PrepackedEntryPoints<int64_t, prepack_filter_cuda, check_prepacked_cuda, conv2d_prepacked_cuda>::register_all(m);
}

}  // namespace cuda
}  // namespace myconv
