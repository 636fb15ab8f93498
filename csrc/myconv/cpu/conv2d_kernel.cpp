// CPU backend of myconv::conv2d (the gradients are in conv2d_backward.cpp).
//  - float32, float16, bfloat16: the microkernels (microkernel/): an indirect-GEMM register tile
//    for dense and grouped convolutions, a direct kernel for depthwise with one output channel
//    per input channel (half types widened to float32 there, so every sum accumulates in float32);
//  - float64 dense and grouped: im2row of a bounded tile of output pixels (in NHWC each filter tap
//    is a contiguous run of C/groups input channels) times the HWIO filter viewed as
//    [KH*KW*C/groups, O] through ATen's GEMM in fixed row blocks (gemm_in_row_blocks), onto the
//    bias copied into the output (1x1, stride 1, unpadded: the input itself is the GEMM operand);
//  - depthwise with channel multipliers > 1, float64 depthwise and MYCONV_CPU_ISA=scalar
//    depthwise: a direct loop vectorised over output channels, accumulating in float32 (float64).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "myconv/conv2d_plan.h"
#include "myconv/cpu/conv2d_backward.h"
#include "myconv/cpu/conv2d_kernel.h"
#include "myconv/cpu/epilogue.h"
#include "myconv/indexing.h"
#include "myconv/cpu/im2row.h"
#include "myconv/cpu/microkernel/microkernel.h"
#include "myconv/cpu/microkernel/packing.h"
#include "myconv/prepacked.h"
#include "myconv/cpu/simd_clones.h"

namespace myconv {
namespace cpu {
namespace {

// float64 dense and grouped convolutions (the microkernels are float32): im2row tiles times the
// filter through ATen's GEMM.
void conv2d_gemm_double(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                        const Conv2dPlan& p, at::Tensor& output) {
  const int64_t pixels = p.output_pixels();
  const int64_t row_len = p.window_size();
  const int64_t cg = p.group_in_channels;
  const int64_t og = p.group_out_channels;
  const bool direct = p.is_unpadded_pointwise();

  const at::Tensor weights = filter.contiguous().view({row_len, p.out_channels});
  const at::Tensor out2d = output.view({pixels, p.out_channels});
  const at::Tensor in2d = input.view({p.batch * p.in_h * p.in_w, p.in_channels});

  const int64_t tile =
      direct ? pixels : std::clamp<int64_t>(kWorkspaceBytes / (row_len * int64_t{sizeof(double)}), 1, pixels);
  const at::Tensor rows_workspace = direct ? at::Tensor() : at::empty({tile, row_len}, input.options());

  for (int64_t first = 0; first < pixels; first += tile) {
    const int64_t count = std::min(tile, pixels - first);
    const at::Tensor result = out2d.narrow(0, first, count);
    for (int64_t g = 0; g < p.groups; ++g) {
      at::Tensor rows;
      if (direct) {
        rows = in2d.narrow(0, first, count).narrow(1, g * cg, cg);
      } else {
        im2row(input.const_data_ptr<double>(), p, g, first, count, rows_workspace.mutable_data_ptr<double>());
        rows = rows_workspace.narrow(0, 0, count);
      }
      at::Tensor result_g = result.narrow(1, g * og, og);
      const at::Tensor weights_g = weights.narrow(1, g * og, og);
      if (bias) result_g.copy_(bias->narrow(0, g * og, og).expand({count, og}));
      gemm_in_row_blocks(result_g, rows, weights_g, bias ? 1 : 0);
    }
  }
}

// Output channels [o0, o0 + kLen) of one output pixel of a depthwise conv, accumulated in
// registers across all taps. Output channel o reads input channel o / multiplier.
template <int64_t kLen, bool kUnitMultiplier, typename scalar_t, typename acc_t, typename out_t>
inline void depthwise_channels(const scalar_t* __restrict__ image, const acc_t* __restrict__ w,
                               const acc_t* __restrict__ b, out_t* __restrict__ y,
                               const Conv2dIndexer& ix, int64_t oh, int64_t ow, int64_t o0) {
  const Conv2dPlan& p = ix.p;
  acc_t acc[kLen];
  for (int64_t j = 0; j < kLen; ++j) acc[j] = b[o0 + j];
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = geometry::input_index(oh, p.stride_h, p.pad_h.before, kh, p.dilation_h);
    if (ih < 0 || ih >= p.in_h) continue;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = geometry::input_index(ow, p.stride_w, p.pad_w.before, kw, p.dilation_w);
      if (iw < 0 || iw >= p.in_w) continue;
      const scalar_t* x = image + (ih * p.in_w + iw) * p.in_channels;
      const acc_t* f = w + (kh * p.kernel_w + kw) * p.out_channels + o0;
      for (int64_t j = 0; j < kLen; ++j) {
        const int64_t c = kUnitMultiplier ? o0 + j : ix.depthwise_input_channel(o0 + j);
        acc[j] += static_cast<acc_t>(x[c]) * f[j];
      }
    }
  }
  for (int64_t j = 0; j < kLen; ++j) y[o0 + j] = static_cast<out_t>(acc[j]);
}

// One output row (n, oh): channels in register-sized blocks, then the remainder one by one.
template <bool kUnitMultiplier, typename scalar_t, typename acc_t, typename out_t>
MYCONV_SIMD_CLONES void depthwise_row(const scalar_t* image, const acc_t* w, const acc_t* b,
                                      out_t* out_row, const Conv2dIndexer& ix, int64_t oh) {
  const Conv2dPlan& p = ix.p;
  constexpr int64_t kBlock = 16;
  const int64_t blocked = p.out_channels - p.out_channels % kBlock;
  for (int64_t ow = 0; ow < p.out_w; ++ow) {
    out_t* y = out_row + ow * p.out_channels;
    for (int64_t o0 = 0; o0 < blocked; o0 += kBlock) {
      depthwise_channels<kBlock, kUnitMultiplier>(image, w, b, y, ix, oh, ow, o0);
    }
    for (int64_t o = blocked; o < p.out_channels; ++o) {
      depthwise_channels<1, kUnitMultiplier>(image, w, b, y, ix, oh, ow, o);
    }
  }
}

// out[n, oh, ow, c*m + j] = sum over taps of in[n, ih, iw, c] * filter[kh, kw, 0, c*m + j], in
// out_t: the input's type, or the float32 sums of a half type.
template <typename scalar_t, typename acc_t, typename out_t>
void conv2d_depthwise(const at::Tensor& input, const at::Tensor& filter,
                      const std::optional<at::Tensor>& bias, const Conv2dPlan& p,
                      at::Tensor& output) {
  const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
  const at::Tensor weights = filter.contiguous().to(acc_dtype);
  const at::Tensor bias_acc = bias ? bias->to(acc_dtype).contiguous() : at::zeros({p.out_channels}, filter.options().dtype(acc_dtype));
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const acc_t* w = weights.const_data_ptr<acc_t>();
  const acc_t* b = bias_acc.const_data_ptr<acc_t>();
  out_t* out = output.mutable_data_ptr<out_t>();
  const bool unit_multiplier = p.group_out_channels == 1;
  const Conv2dIndexer ix(p);

  at::parallel_for(0, p.batch * p.out_h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t n = 0, oh = 0;
      ix.out_h.divmod(row, &n, &oh);
      const scalar_t* image = in + ix.input_offset(n, 0, 0, 0);
      out_t* out_row = out + ix.output_offset(n, oh, 0, 0);
      if (unit_multiplier) {
        depthwise_row<true>(image, w, b, out_row, ix, oh);
      } else {
        depthwise_row<false>(image, w, b, out_row, ix, oh);
      }
    }
  });
}

// The epilogue over a whole output, for the kernels without one of their own: output pixels over
// threads.
void apply_epilogue_to_output(const Epilogue& epilogue, const at::Tensor& residual, at::Tensor& output) {
  if (epilogue.is_identity() && !residual.defined()) return;
  const int64_t channels = output.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "myconv_cpu_epilogue", [&] {
    scalar_t* const values = output.mutable_data_ptr<scalar_t>();
    const scalar_t* const res = residual.defined() ? residual.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, output.numel() / channels, kCopyGrainElements / channels + 1, [&](int64_t begin, int64_t end) {
      apply_epilogue(epilogue, values + begin * channels, channels, res == nullptr ? nullptr : res + begin * channels,
                     channels, end - begin, channels);
    });
  });
}

// The call with its filter in `form`: `packed` holds the payload (packing.h), `filter` the HWIO
// filter itself for FilterForm::kAsIs. `residual`: NHWC contiguous, or undefined.
void conv2d_cpu_in_form(const at::Tensor& input, const PackedForm& form, const void* packed, const at::Tensor& filter,
                        const std::optional<at::Tensor>& bias, const at::Tensor& residual, const Epilogue& epilogue,
                        const Conv2dPlan& plan, at::Tensor& output) {
  const at::Tensor x = input.contiguous();
  if (static_cast<FilterForm>(form.kind) != FilterForm::kPanels && !output.is_contiguous()) {
    // (Only the tile kernels' driver writes a view in place.)
    at::Tensor dense = at::empty(output.sizes(), output.options());
    conv2d_cpu_in_form(x, form, packed, filter, bias, residual, epilogue, plan, dense);
    output.copy_(dense);
    return;
  }
  switch (static_cast<FilterForm>(form.kind)) {
    case FilterForm::kPanels:
      conv2d_microkernel(x, packed, bias, plan, epilogue, residual, output);
      return;
    case FilterForm::kDepthwise:
      conv2d_depthwise_microkernel(x, static_cast<const float*>(packed), bias, plan, epilogue, residual, output);
      return;
    case FilterForm::kAsIs:
      break;
  }
  const bool fused = !epilogue.is_identity() || residual.defined();
  if (!plan.is_depthwise()) {
    conv2d_gemm_double(x, filter, bias, plan, output);
  } else if (fused && at::isReducedFloatingType(x.scalar_type())) {
    // The epilogue on the float32 sums, rounded once after it (as the microkernels do), at the
    // cost of a float32 output and residual on this path.
    at::Tensor sums = at::empty(output.sizes(), output.options().dtype(at::kFloat));
    AT_DISPATCH_REDUCED_FLOATING_TYPES(x.scalar_type(), "myconv_conv2d_cpu", [&] {
      conv2d_depthwise<scalar_t, float, float>(x, filter, bias, plan, sums);
    });
    apply_epilogue_to_output(epilogue, residual.defined() ? residual.to(at::kFloat) : residual, sums);
    output.copy_(sums);
    return;
  } else {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "myconv_conv2d_cpu", [&] {
      conv2d_depthwise<scalar_t, at::opmath_type<scalar_t>, scalar_t>(x, filter, bias, plan, output);
    });
  }
  apply_epilogue_to_output(epilogue, residual, output);
}

}  // namespace

// Packs the filter for this call alone: nothing derived from it outlives the call (prepacked.h).
void conv2d_cpu_fused(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& residual, const Epilogue& epilogue, const Conv2dPlan& plan,
                      at::Tensor& output) {
  const at::Tensor residual_nhwc = residual ? residual->contiguous() : at::Tensor();
  const PackedForm form = cpu_filter_form(plan, input.scalar_type());
  if (static_cast<FilterForm>(form.kind) == FilterForm::kAsIs) {
    conv2d_cpu_in_form(input, form, nullptr, filter, bias, residual_nhwc, epilogue, plan, output);
    return;
  }
  at::Tensor packed = at::empty({form.payload_bytes}, at::kByte);
  pack_filter(filter, plan, form, packed.mutable_data_ptr());
  conv2d_cpu_in_form(input, form, packed.const_data_ptr(), filter, bias, residual_nhwc, epilogue, plan, output);
}

void conv2d_cpu(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                const Conv2dPlan& plan, at::Tensor& output) {
  conv2d_cpu_fused(input, filter, bias, std::nullopt, Epilogue{}, plan, output);
}

namespace {

at::Tensor prepack_filter_cpu(const at::Tensor& filter, int64_t groups, at::IntArrayRef dilation) {
  check_input_dtype(filter);
  const Conv2dPlan plan = filter_plan(filter.sizes(), groups, dilation);
  PackedFilterHeader header{};
  std::copy(std::begin(kPackedMagic), std::end(kPackedMagic), header.magic);
  header.format_version = kPackedFormatVersion;
  header.filter_dtype = static_cast<int32_t>(filter.scalar_type());
  std::copy(filter.sizes().begin(), filter.sizes().end(), header.filter_shape);
  header.form = cpu_filter_form(plan, filter.scalar_type());
  at::Tensor packed = new_packed_filter(header, filter.device());
  pack_filter(filter, plan, header.form, mutable_payload_of(packed));
  return packed;
}

void check_prepacked_cpu(const at::Tensor& input, const at::Tensor& packed, const Conv2dPlan& plan) {
  const std::array<int64_t, 4> shape{plan.kernel_h, plan.kernel_w, plan.group_in_channels, plan.out_channels};
  check_packed_header(read_packed_header(packed), input.scalar_type(), shape,
                      cpu_filter_form(plan, input.scalar_type()), &describe_cpu_form);
}

// (check_prepacked_cpu ran first.)
void conv2d_prepacked_cpu(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& residual, const Epilogue& epilogue, const Conv2dPlan& plan,
                          at::Tensor& output) {
  const PackedFilterHeader header = read_packed_header(packed);
  const std::array<int64_t, 4> shape{plan.kernel_h, plan.kernel_w, plan.group_in_channels, plan.out_channels};
  at::Tensor filter;  // the payload as the HWIO filter, for the kernels that read it as it is
  if (static_cast<FilterForm>(header.form.kind) == FilterForm::kAsIs) {
    filter = packed.narrow(0, kPackedHeaderBytes, header.form.payload_bytes).view(input.scalar_type()).view(shape);
  }
  conv2d_cpu_in_form(input, header.form, payload_of(packed), filter, bias,
                     residual ? residual->contiguous() : at::Tensor(), epilogue, plan, output);
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, CPU, m) {
  register_conv2d_kernels<conv2d_cpu, conv2d_backward_cpu, conv2d_cpu_fused>(m);
  PrepackedEntryPoints<int64_t, prepack_filter_cpu, check_prepacked_cpu, conv2d_prepacked_cpu>::register_all(m);
}

}  // namespace cpu
}  // namespace myconv
