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

// Every entry at most geometry::kMaxGeometryValue (2^60), the bound that keeps index math exact.
void check_at_most_max(at::IntArrayRef values, const char* name) {
  for (const int64_t v : values) {
    TORCH_CHECK_VALUE(v <= geometry::kMaxGeometryValue, "myconv.conv2d: ", name, " entries must be <= 2^60 (",
                      geometry::kMaxGeometryValue, "), got ", values,
                      "; myconv refuses larger ones so that no index computation can overflow");
  }
}

// stride/dilation: exactly two entries (height, width), each >= 1.
void check_pair(at::IntArrayRef values, const char* name) {
  TORCH_CHECK_VALUE(values.size() == 2, "myconv.conv2d: ", name,
                    " must have 2 entries (height, width), got ", values.size(), ": ", values);
  TORCH_CHECK_VALUE(values[0] >= 1 && values[1] >= 1, "myconv.conv2d: ", name,
                    " entries must be >= 1, got ", values);
  check_at_most_max(values, name);
}

// A condition on sizes: a plain bool for concrete sizes; for symbolic ones (SymBool) it holds
// when the traced program's inputs satisfy it, checked at run time instead of specialised.
bool holds(bool condition, const char*, int64_t) { return condition; }
bool holds(const c10::SymBool& condition, const char* file, int64_t line) {
  return condition.expect_true(file, line);
}
#define MYCONV_CHECK_SIZES(condition, ...) \
  TORCH_CHECK_VALUE(holds((condition), __FILE__, __LINE__), __VA_ARGS__)

// Overflow checks only mean something for concrete sizes: a symbolic size is a real tensor's.
bool fits_effective_kernel(int64_t k, int64_t d, int64_t* eff) {
  return geometry::checked_effective_kernel(k, d, eff);
}
bool fits_effective_kernel(const c10::SymInt& k, int64_t d, c10::SymInt* eff) {
  if (const auto concrete = k.maybe_as_int()) {
    int64_t value = 0;
    if (!geometry::checked_effective_kernel(*concrete, d, &value)) return false;
    *eff = value;
    return true;
  }
  *eff = geometry::effective_kernel(k, d);
  return true;
}
bool fits_padded_size(int64_t in, geometry::Padding pad, int64_t* padded) {
  return geometry::checked_padded_size(in, pad, padded);
}
bool fits_padded_size(const c10::SymInt& in, geometry::Padding pad, c10::SymInt* padded) {
  if (const auto concrete = in.maybe_as_int()) {
    int64_t value = 0;
    if (!geometry::checked_padded_size(*concrete, pad, &value)) return false;
    *padded = value;
    return true;
  }
  *padded = in + pad.before + pad.after;
  return true;
}

geometry::Padding explicit_pad(const PaddingSpec& padding, int axis_index) {
  if (padding.mode != PaddingSpec::Mode::kExplicit) return {0, 0};
  return {padding.explicit_pads[2 * axis_index], padding.explicit_pads[2 * axis_index + 1]};
}

// Output size of one spatial axis, with overflow and fit checks.
template <typename Int>
Int output_size_of_axis(const char* axis, const Int& in, const Int& k, int64_t s, int64_t d,
                        const PaddingSpec& padding, int axis_index) {
  Int eff = 0;
  TORCH_CHECK_VALUE(fits_effective_kernel(k, d, &eff), "myconv.conv2d: filter ", axis, " ", k,
                    " with dilation ", d, " overflows int64");
  MYCONV_CHECK_SIZES(c10::sym_le(eff, Int(geometry::kMaxGeometryValue)), "myconv.conv2d: the dilated filter ",
                     axis, " (", k, " taps, dilation ", d, ": ", eff, ") must be <= 2^60 (",
                     geometry::kMaxGeometryValue, ")");
  if (padding.mode == PaddingSpec::Mode::kSame) return geometry::same_output_size(in, s);
  const geometry::Padding pad = explicit_pad(padding, axis_index);
  Int padded = 0;
  TORCH_CHECK_VALUE(fits_padded_size(in, pad, &padded), "myconv.conv2d: input ", axis, " ", in,
                    " plus padding (", pad.before, ", ", pad.after, ") overflows int64");
  MYCONV_CHECK_SIZES(c10::sym_ge(padded, eff), "myconv.conv2d: padded input ", axis, " (", in,
                     " + ", pad.before, " + ", pad.after, " = ", padded,
                     ") is smaller than the dilated filter ", axis, " (", k, " taps, dilation ",
                     d, ": ", eff, "); use padding=\"SAME\" or a smaller filter/dilation");
  return geometry::output_size(in, pad, eff, s);
}

void check_same_dtype_and_device(const at::Tensor& input, const at::Tensor& other, const char* op,
                                  const char* name) {
  TORCH_CHECK_TYPE(other.scalar_type() == input.scalar_type(), op, ": ", name,
                   " dtype must match input dtype ", input.scalar_type(), ", got ",
                   other.scalar_type());
  TORCH_CHECK_VALUE(other.device() == input.device(), op, ": ", name,
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
  check_at_most_max(padding, "explicit padding");
  return {PaddingSpec::Mode::kExplicit, {padding[0], padding[1], padding[2], padding[3]}};
}

template <typename Int>
Conv2dShape<Int> check_conv2d_shapes(c10::ArrayRef<Int> input_sizes,
                                     c10::ArrayRef<Int> filter_sizes, at::IntArrayRef stride,
                                     const PaddingSpec& padding, at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(input_sizes.size() == 4,
                    "myconv.conv2d: input must be 4-D NHWC [N, H, W, C], got shape ",
                    input_sizes);
  TORCH_CHECK_VALUE(filter_sizes.size() == 4,
                    "myconv.conv2d: filter must be 4-D HWIO [KH, KW, C/groups, O], got shape ",
                    filter_sizes);
  for (const Int& size : filter_sizes) {
    MYCONV_CHECK_SIZES(c10::sym_ge(size, Int(1)),
                       "myconv.conv2d: filter must be non-empty, got shape ", filter_sizes);
  }
  check_pair(stride, "stride");
  check_pair(dilation, "dilation");

  Conv2dShape<Int> shape{input_sizes[0],  input_sizes[1],  input_sizes[2],  input_sizes[3],
                         filter_sizes[0], filter_sizes[1], filter_sizes[2], filter_sizes[3],
                         Int(0),          Int(0),          Int(0)};
  MYCONV_CHECK_SIZES(c10::sym_ge(shape.in_channels, Int(1)),
                     "myconv.conv2d: input must have at least 1 channel, got shape ", input_sizes);
  MYCONV_CHECK_SIZES(c10::sym_eq(shape.in_channels % shape.group_in_channels, Int(0)),
                     "myconv.conv2d: the NHWC input [N, H, W, C] has C = ", shape.in_channels,
                     " channels, which the HWIO filter [KH, KW, C/groups, O]'s in-channels (",
                     shape.group_in_channels, ") must divide; input shape ", input_sizes, ", filter shape ",
                     filter_sizes, " (an NCHW input or an OIHW filter by mistake?)");
  shape.groups = shape.in_channels / shape.group_in_channels;
  MYCONV_CHECK_SIZES(c10::sym_eq(shape.out_channels % shape.groups, Int(0)),
                     "myconv.conv2d: filter out-channels (", shape.out_channels,
                     ") must be divisible by groups (", shape.groups, " = input channels ",
                     shape.in_channels, " / filter in-channels ", shape.group_in_channels, ")");
  shape.out_h = output_size_of_axis<Int>("height", shape.in_h, shape.kernel_h, stride[0],
                                         dilation[0], padding, 0);
  shape.out_w = output_size_of_axis<Int>("width", shape.in_w, shape.kernel_w, stride[1],
                                         dilation[1], padding, 1);
  return shape;
}

void check_input_dtype(const at::Tensor& input) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                       dtype == at::kBFloat16,
                   "myconv.conv2d: input dtype must be float32, float64, float16 or bfloat16, got ",
                   dtype);
}

template <typename Int>
Conv2dShape<Int> check_conv2d(const at::Tensor& input, const at::Tensor& filter,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              const PaddingSpec& padding, at::IntArrayRef dilation) {
  check_input_dtype(input);
  check_same_dtype_and_device(input, filter, "myconv.conv2d", "filter");
  const Conv2dShape<Int> shape = check_conv2d_shapes<Int>(
      detail::sizes_of<Int>(input), detail::sizes_of<Int>(filter), stride, padding, dilation);
  check_bias<Int>(input, bias, shape.out_channels, "myconv.conv2d", "the filter's out-channels");
  return shape;
}

template <typename Int>
void check_bias(const at::Tensor& input, const std::optional<at::Tensor>& bias, const Int& channels,
                const char* op, const char* channels_are) {
  if (bias.has_value()) {
    check_same_dtype_and_device(input, *bias, op, "bias");
    const auto bias_sizes = detail::sizes_of<Int>(*bias);
    const auto bias_error = [&] {
      return c10::str(op, ": bias must have shape [", channels, "] (", channels_are, "), got ", bias_sizes);
    };
    TORCH_CHECK_VALUE(bias_sizes.size() == 1, bias_error());
    MYCONV_CHECK_SIZES(c10::sym_eq(bias_sizes[0], channels), bias_error());
  }
}

namespace {

std::optional<int64_t> concrete_if_known(int64_t size) { return size; }
std::optional<int64_t> concrete_if_known(const c10::SymInt& size) { return size.maybe_as_int(); }

// One axis of check_conv2d_transpose: the output size, given or by Keras's rule.
template <typename Int>
Int transposed_size_of_axis(const char* axis, const Int& in, int64_t k, int64_t s, int64_t d,
                            const PaddingSpec& padding, int axis_index, at::OptionalIntArrayRef output_size,
                            at::OptionalIntArrayRef output_padding) {
  if (output_size.has_value()) return Int((*output_size)[axis_index]);
  int64_t eff = 0;
  TORCH_CHECK_VALUE(geometry::checked_effective_kernel(k, d, &eff), "myconv.conv2d_transpose: filter ", axis, " ",
                    k, " with dilation ", d, " overflows int64");
  const bool has_output_padding = output_padding.has_value();
  const int64_t extra = has_output_padding ? (*output_padding)[axis_index] : 0;
  const bool same = padding.mode == PaddingSpec::Mode::kSame;
  const geometry::Padding pad = explicit_pad(padding, axis_index);
  const std::optional<int64_t> concrete = concrete_if_known(in);
  if (!concrete) return geometry::transposed_output_size(in, eff, s, same, pad, has_output_padding, extra);
  // Exactly (128 bits), then checked: a stride up to 2^60 times a size overflows int64, and
  // padding larger than the window makes the rule negative.
  const __int128 size = geometry::transposed_output_size<__int128>(*concrete, eff, s, same, pad, has_output_padding,
                                                                   extra);
  TORCH_CHECK_VALUE(size >= 0 && size <= geometry::kMaxGeometryValue, "myconv.conv2d_transpose: Keras's output-size "
                    "rule gives an output ", axis, " of ", static_cast<double>(size), " for an input ", axis, " of ",
                    *concrete, " (stride ", s, ", dilated filter ", eff, ", padding ", pad.before, "+", pad.after,
                    "): no output size fits; pass output_size or change the padding");
  return Int(static_cast<int64_t>(size));
}

// The output sizes that would give `in` along one axis, for the error when they do not.
std::string transposed_range_text(int64_t in, int64_t k, int64_t s, int64_t d, const PaddingSpec& padding,
                                  int axis_index) {
  int64_t eff = 0;
  // (No hint where the range's ends would pass 2^61: sizes no tensor has.)
  if (!geometry::checked_effective_kernel(k, d, &eff) || (in > 0 && s > (int64_t{1} << 61) / in)) return "";
  const geometry::IndexRange range = geometry::transposed_output_range(
      in, eff, s, padding.mode == PaddingSpec::Mode::kSame, explicit_pad(padding, axis_index));
  if (range.end <= range.begin) return "; no size does";
  return range.end - range.begin == 1 ? c10::str("; ", range.begin, " would")
                                      : c10::str("; ", range.begin, " to ", range.end - 1, " would");
}
std::string transposed_range_text(const c10::SymInt& in, int64_t k, int64_t s, int64_t d, const PaddingSpec& padding,
                                  int axis_index) {
  const auto concrete = in.maybe_as_int();
  return concrete ? transposed_range_text(*concrete, k, s, d, padding, axis_index) : "";
}

int64_t concrete_size(const c10::SymInt& size) { return size.guard_int(__FILE__, __LINE__); }
int64_t concrete_size(int64_t size) { return size; }

}  // namespace

template <typename Int>
Conv2dShape<Int> check_conv2d_transpose(const at::Tensor& input, const at::Tensor& filter,
                                        at::OptionalIntArrayRef output_size, at::OptionalIntArrayRef output_padding,
                                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                        const PaddingSpec& padding, at::IntArrayRef dilation) {
  check_input_dtype(input);
  check_same_dtype_and_device(input, filter, "myconv.conv2d_transpose", "filter");
  const auto in = detail::sizes_of<Int>(input);
  const auto fs = detail::sizes_of<Int>(filter);
  TORCH_CHECK_VALUE(in.size() == 4, "myconv.conv2d_transpose: input must be 4-D NHWC [N, H, W, C_in], got shape ",
                    in);
  TORCH_CHECK_VALUE(fs.size() == 4, "myconv.conv2d_transpose: filter must be 4-D [KH, KW, C_out, C_in] (TF's "
                    "conv2d_transpose layout), got shape ", fs);
  MYCONV_CHECK_SIZES(c10::sym_eq(fs[3], in[3]), "myconv.conv2d_transpose: filter [KH, KW, C_out, C_in] must have "
                     "C_in = the input's channels (", in[3], "), got filter shape ", fs,
                     " (a Keras Conv2DTranspose kernel is [KH, KW, filters, C_in] as it is)");
  check_pair(stride, "stride");
  check_pair(dilation, "dilation");
  if (output_size.has_value()) {
    TORCH_CHECK_VALUE(output_size->size() == 2, "myconv.conv2d_transpose: output_size must have 2 entries "
                      "(height, width), got ", *output_size);
    TORCH_CHECK_VALUE((*output_size)[0] >= 0 && (*output_size)[1] >= 0,
                      "myconv.conv2d_transpose: output_size entries must be >= 0, got ", *output_size);
    TORCH_CHECK_VALUE(!output_padding.has_value(), "myconv.conv2d_transpose: pass output_size (TF's output_shape) "
                      "or output_padding (Keras's), not both");
  }
  if (output_padding.has_value()) {
    TORCH_CHECK_VALUE(output_padding->size() == 2, "myconv.conv2d_transpose: output_padding must have 2 entries "
                      "(height, width), got ", *output_padding);
    for (int axis = 0; axis < 2; ++axis) {
      TORCH_CHECK_VALUE((*output_padding)[axis] >= 0 && (*output_padding)[axis] < stride[axis],
                        "myconv.conv2d_transpose: output_padding entries must be >= 0 and smaller than the "
                        "stride ", stride, ", got ", *output_padding);
    }
  }
  const int64_t kh = concrete_size(fs[0]), kw = concrete_size(fs[1]);
  const Int out_h = transposed_size_of_axis<Int>("height", in[1], kh, stride[0], dilation[0], padding, 0,
                                                 output_size, output_padding);
  const Int out_w = transposed_size_of_axis<Int>("width", in[2], kw, stride[1], dilation[1], padding, 1,
                                                 output_size, output_padding);
  const std::vector<Int> conv_input{in[0], out_h, out_w, fs[2]};
  const Conv2dShape<Int> shape = check_conv2d_shapes<Int>(conv_input, fs, stride, padding, dilation);
  MYCONV_CHECK_SIZES(c10::sym_eq(shape.out_h, in[1]), "myconv.conv2d_transpose: an output height of ", out_h,
                     " is not one the input's height ", in[1], " transposes to (conv2d maps it to ", shape.out_h, ")",
                     transposed_range_text(in[1], kh, stride[0], dilation[0], padding, 0));
  MYCONV_CHECK_SIZES(c10::sym_eq(shape.out_w, in[2]), "myconv.conv2d_transpose: an output width of ", out_w,
                     " is not one the input's width ", in[2], " transposes to (conv2d maps it to ", shape.out_w, ")",
                     transposed_range_text(in[2], kw, stride[1], dilation[1], padding, 1));
  check_bias<Int>(input, bias, fs[2], "myconv.conv2d_transpose", "C_out, filter.size(2)");
  return shape;
}

namespace {

// `tensor` (named `name` in `op`'s errors) has the output's shape, the input's dtype and device.
template <typename Int>
void check_output_shaped(const at::Tensor& input, const at::Tensor& tensor, const Conv2dShape<Int>& shape,
                         const char* op, const char* name) {
  check_same_dtype_and_device(input, tensor, op, name);
  const auto expected = shape.output_sizes();
  const auto got = detail::sizes_of<Int>(tensor);
  const auto error = [&] {
    return c10::str(op, ": ", name, " must have the output's shape ", c10::ArrayRef<Int>(expected), ", got ", got);
  };
  TORCH_CHECK_VALUE(got.size() == 4, error());
  for (size_t i = 0; i < 4; ++i) MYCONV_CHECK_SIZES(c10::sym_eq(got[i], expected[i]), error());
}

}  // namespace

template <typename Int>
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input,
                       const Conv2dShape<Int>& shape) {
  check_output_shaped<Int>(input, grad_output, shape, "myconv.conv2d_backward", "grad_output");
}

template <typename Int>
void check_residual(const at::Tensor& input, const std::optional<at::Tensor>& residual, const Conv2dShape<Int>& shape,
                    const char* op) {
  if (residual) check_output_shaped<Int>(input, *residual, shape, op, "residual");
}

Conv2dPlan make_plan(const Conv2dShape<int64_t>& shape, at::IntArrayRef stride,
                     const PaddingSpec& padding, at::IntArrayRef dilation) {
  Conv2dPlan plan{};
  static_cast<Conv2dShape<int64_t>&>(plan) = shape;
  plan.group_out_channels = shape.out_channels / shape.groups;
  plan.stride_h = stride[0];
  plan.stride_w = stride[1];
  plan.dilation_h = dilation[0];
  plan.dilation_w = dilation[1];
  const auto pad = [&](int64_t in, int64_t k, int64_t s, int64_t d, int axis_index) {
    return padding.mode == PaddingSpec::Mode::kSame
               ? geometry::same_padding(in, geometry::effective_kernel(k, d), s)
               : explicit_pad(padding, axis_index);
  };
  plan.pad_h = pad(shape.in_h, shape.kernel_h, plan.stride_h, plan.dilation_h, 0);
  plan.pad_w = pad(shape.in_w, shape.kernel_w, plan.stride_w, plan.dilation_w, 1);
  // Equivalent values where one does not matter (after the SAME split, which reads the stride):
  // the stride of an axis with one output, the dilation of a one-tap axis. Kernels then see the
  // small values their fast paths are written for.
  if (shape.out_h == 1) plan.stride_h = 1;
  if (shape.out_w == 1) plan.stride_w = 1;
  if (shape.kernel_h == 1) plan.dilation_h = 1;
  if (shape.kernel_w == 1) plan.dilation_w = 1;
  return plan;
}

#define MYCONV_INSTANTIATE(Int)                                                                 \
  template Conv2dShape<Int> check_conv2d_shapes<Int>(c10::ArrayRef<Int>, c10::ArrayRef<Int>,    \
                                                     at::IntArrayRef, const PaddingSpec&,       \
                                                     at::IntArrayRef);                          \
  template Conv2dShape<Int> check_conv2d<Int>(const at::Tensor&, const at::Tensor&,             \
                                              const std::optional<at::Tensor>&, at::IntArrayRef, \
                                              const PaddingSpec&, at::IntArrayRef);             \
  template void check_grad_output<Int>(const at::Tensor&, const at::Tensor&,                    \
                                       const Conv2dShape<Int>&);                                 \
  template void check_residual<Int>(const at::Tensor&, const std::optional<at::Tensor>&,        \
                                    const Conv2dShape<Int>&, const char*);                       \
  template void check_bias<Int>(const at::Tensor&, const std::optional<at::Tensor>&, const Int&, \
                                const char*, const char*);                                       \
  template Conv2dShape<Int> check_conv2d_transpose<Int>(                                        \
      const at::Tensor&, const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef,    \
      const std::optional<at::Tensor>&, at::IntArrayRef, const PaddingSpec&, at::IntArrayRef);
MYCONV_INSTANTIATE(int64_t)
MYCONV_INSTANTIATE(c10::SymInt)
#undef MYCONV_INSTANTIATE

}  // namespace myconv
