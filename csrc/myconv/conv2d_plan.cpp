#include "myconv/conv2d_plan.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <string>

namespace myconv {
namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

// stride/dilation: exactly two entries (height, width), each >= 1.
void check_pair(at::IntArrayRef values, const char* name) {
  TORCH_CHECK_VALUE(values.size() == 2, "myconv.conv2d: ", name,
                    " must have 2 entries (height, width), got ", values.size(), ": ", values);
  TORCH_CHECK_VALUE(values[0] >= 1 && values[1] >= 1, "myconv.conv2d: ", name,
                    " entries must be >= 1, got ", values);
}

struct AxisPlan {
  geometry::Padding pad;
  int64_t out;
};

// One spatial axis: dilated extent, padding and output size, with overflow and fit checks.
AxisPlan plan_axis(const char* axis, int64_t in, int64_t k, int64_t s, int64_t d,
                   const PaddingSpec& padding, int axis_index) {
  int64_t eff = 0;
  TORCH_CHECK_VALUE(geometry::checked_effective_kernel(k, d, &eff), "myconv.conv2d: filter ",
                    axis, " ", k, " with dilation ", d, " overflows int64");
  if (padding.mode == PaddingSpec::Mode::kSame) {
    return {geometry::same_padding(in, eff, s), geometry::same_output_size(in, s)};
  }
  geometry::Padding pad{0, 0};
  if (padding.mode == PaddingSpec::Mode::kExplicit) {
    pad = {padding.explicit_pads[2 * axis_index], padding.explicit_pads[2 * axis_index + 1]};
  }
  int64_t padded = 0;
  TORCH_CHECK_VALUE(geometry::checked_padded_size(in, pad, &padded), "myconv.conv2d: input ",
                    axis, " ", in, " plus padding (", pad.before, ", ", pad.after,
                    ") overflows int64");
  TORCH_CHECK_VALUE(padded >= eff, "myconv.conv2d: padded input ", axis, " (", in, " + ",
                    pad.before, " + ", pad.after, " = ", padded,
                    ") is smaller than the dilated filter ", axis, " (", k, " taps, dilation ",
                    d, ": ", eff, "); use padding=\"SAME\" or a smaller filter/dilation");
  return {pad, geometry::output_size(in, pad, eff, s)};
}

void check_same_dtype_and_device(const at::Tensor& input, const at::Tensor& other,
                                  const char* name) {
  TORCH_CHECK_TYPE(other.scalar_type() == input.scalar_type(), "myconv.conv2d: ", name,
                   " dtype must match input dtype ", input.scalar_type(), ", got ",
                   other.scalar_type());
  TORCH_CHECK_VALUE(other.device() == input.device(), "myconv.conv2d: ", name,
                    " must be on the input's device ", input.device(), ", got ",
                    other.device());
}

}  // namespace

PaddingSpec parse_padding_mode(std::string_view padding) {
  const std::string mode = upper(padding);
  if (mode == "SAME") return {PaddingSpec::Mode::kSame, {}};
  TORCH_CHECK_VALUE(mode == "VALID", "myconv.conv2d: padding must be \"SAME\" or \"VALID\" (any case), got \"",
                    padding, "\"",
                    mode == "EXPLICIT"
                        ? "; pass explicit padding as 4 integers [top, bottom, left, right]"
                        : "");
  return {PaddingSpec::Mode::kValid, {}};
}

PaddingSpec parse_explicit_padding(at::IntArrayRef padding) {
  TORCH_CHECK_VALUE(padding.size() == 4,
                    "myconv.conv2d: explicit padding must have 4 entries [top, bottom, left, "
                    "right], got ",
                    padding.size(), ": ", padding);
  for (const int64_t p : padding) {
    TORCH_CHECK_VALUE(p >= 0, "myconv.conv2d: explicit padding entries must be >= 0, got ",
                      padding);
  }
  return {PaddingSpec::Mode::kExplicit, {padding[0], padding[1], padding[2], padding[3]}};
}

Conv2dPlan plan_conv2d(at::IntArrayRef input_sizes, at::IntArrayRef filter_sizes,
                       at::IntArrayRef stride, const PaddingSpec& padding,
                       at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(input_sizes.size() == 4,
                    "myconv.conv2d: input must be 4-D NHWC [N, H, W, C], got shape ",
                    input_sizes);
  TORCH_CHECK_VALUE(filter_sizes.size() == 4,
                    "myconv.conv2d: filter must be 4-D HWIO [KH, KW, C/groups, O], got shape ",
                    filter_sizes);
  for (const int64_t size : filter_sizes) {
    TORCH_CHECK_VALUE(size >= 1, "myconv.conv2d: filter must be non-empty, got shape ",
                      filter_sizes);
  }
  check_pair(stride, "stride");
  check_pair(dilation, "dilation");

  Conv2dPlan plan{};
  plan.batch = input_sizes[0];
  plan.in_h = input_sizes[1];
  plan.in_w = input_sizes[2];
  plan.in_channels = input_sizes[3];
  plan.kernel_h = filter_sizes[0];
  plan.kernel_w = filter_sizes[1];
  plan.group_in_channels = filter_sizes[2];
  plan.out_channels = filter_sizes[3];
  TORCH_CHECK_VALUE(plan.in_channels >= 1, "myconv.conv2d: input must have at least 1 channel, got shape ",
                    input_sizes);
  TORCH_CHECK_VALUE(plan.in_channels % plan.group_in_channels == 0,
                    "myconv.conv2d: input channels (", plan.in_channels,
                    ") must be divisible by the filter's in-channels (filter.size(2) = ",
                    plan.group_in_channels, ")");
  plan.groups = plan.in_channels / plan.group_in_channels;
  TORCH_CHECK_VALUE(plan.out_channels % plan.groups == 0, "myconv.conv2d: filter out-channels (",
                    plan.out_channels, ") must be divisible by groups (", plan.groups,
                    " = input channels ", plan.in_channels, " / filter in-channels ",
                    plan.group_in_channels, ")");
  plan.group_out_channels = plan.out_channels / plan.groups;
  plan.stride_h = stride[0];
  plan.stride_w = stride[1];
  plan.dilation_h = dilation[0];
  plan.dilation_w = dilation[1];

  const AxisPlan rows =
      plan_axis("height", plan.in_h, plan.kernel_h, plan.stride_h, plan.dilation_h, padding, 0);
  const AxisPlan cols =
      plan_axis("width", plan.in_w, plan.kernel_w, plan.stride_w, plan.dilation_w, padding, 1);
  plan.pad_h = rows.pad;
  plan.out_h = rows.out;
  plan.pad_w = cols.pad;
  plan.out_w = cols.out;
  return plan;
}

Conv2dPlan plan_conv2d(const at::Tensor& input, const at::Tensor& filter,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       const PaddingSpec& padding, at::IntArrayRef dilation) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                       dtype == at::kBFloat16,
                   "myconv.conv2d: input dtype must be float32, float64, float16 or bfloat16, got ",
                   dtype);
  check_same_dtype_and_device(input, filter, "filter");
  Conv2dPlan plan = plan_conv2d(input.sizes(), filter.sizes(), stride, padding, dilation);
  if (bias.has_value()) {
    check_same_dtype_and_device(input, *bias, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == plan.out_channels,
                      "myconv.conv2d: bias must have shape [", plan.out_channels,
                      "] (the filter's out-channels), got ", bias->sizes());
  }
  return plan;
}

}  // namespace myconv
