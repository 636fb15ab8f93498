#include "myconv/prepacked.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <vector>

namespace myconv {

bool PackedForm::operator==(const PackedForm& o) const {
  return kind == o.kind && isa == o.isa && element_dtype == o.element_dtype && pair == o.pair &&
         panel_channels == o.panel_channels && groups == o.groups && segments == o.segments &&
         segment_length == o.segment_length && payload_bytes == o.payload_bytes;
}

at::Tensor new_packed_filter(const PackedFilterHeader& header, const at::Device& device) {
  at::Tensor packed =
      at::empty({kPackedHeaderBytes + header.form.payload_bytes}, at::TensorOptions(at::kByte).device(device));
  if (device.is_meta()) return packed;
  std::memset(packed.mutable_data_ptr(), 0, kPackedHeaderBytes);
  std::memcpy(packed.mutable_data_ptr(), &header, sizeof(header));
  return packed;
}

PackedFilterHeader read_packed_header(const at::Tensor& packed) {
  PackedFilterHeader header;
  std::memcpy(&header, packed.const_data_ptr(), sizeof(header));
  TORCH_CHECK_VALUE(std::memcmp(header.magic, kPackedMagic, sizeof(kPackedMagic)) == 0,
                    "myconv.conv2d_prepacked: packed_filter is not a packed filter (its header lacks myconv's mark); "
                    "make it with myconv.prepack_filter");
  TORCH_CHECK_VALUE(header.format_version == kPackedFormatVersion, "myconv.conv2d_prepacked: packed_filter has "
                    "format version ", header.format_version, ", this library reads version ", kPackedFormatVersion,
                    "; pack the filter again with myconv.prepack_filter");
  TORCH_CHECK_VALUE(header.form.payload_bytes == packed.numel() - kPackedHeaderBytes,
                    "myconv.conv2d_prepacked: packed_filter's header gives a payload of ", header.form.payload_bytes,
                    " bytes, the tensor holds ", packed.numel() - kPackedHeaderBytes, " after its header");
  const auto element_bytes =
      static_cast<uintptr_t>(c10::elementSize(static_cast<at::ScalarType>(header.form.element_dtype)));
  TORCH_CHECK_VALUE(reinterpret_cast<uintptr_t>(payload_of(packed)) % element_bytes == 0,
                    "myconv.conv2d_prepacked: packed_filter's payload must be aligned to its ", element_bytes,
                    "-byte elements (a view at an odd offset?); pass the tensor prepack_filter returned, or a "
                    ".clone() of it");
  return header;
}

const void* payload_of(const at::Tensor& packed) {
  return static_cast<const char*>(packed.const_data_ptr()) + kPackedHeaderBytes;
}
void* mutable_payload_of(at::Tensor& packed) {
  return static_cast<char*>(packed.mutable_data_ptr()) + kPackedHeaderBytes;
}

void check_packed_header(const PackedFilterHeader& header, at::ScalarType input_dtype, at::IntArrayRef filter_shape,
                         const PackedForm& expected, std::string (*describe)(const PackedForm&)) {
  const auto filter_dtype = static_cast<at::ScalarType>(header.filter_dtype);
  TORCH_CHECK_TYPE(filter_dtype == input_dtype, "myconv.conv2d_prepacked: packed_filter holds a ", filter_dtype,
                   " filter, the input is ", input_dtype, "; the dtypes must match");
  TORCH_CHECK_VALUE(filter_shape.equals(at::IntArrayRef(header.filter_shape, 4)),
                    "myconv.conv2d_prepacked: filter_shape ", filter_shape, " differs from the shape packed_filter ",
                    "was packed from, ", at::IntArrayRef(header.filter_shape, 4));
  TORCH_CHECK_VALUE(header.form.groups == expected.groups, "myconv.conv2d_prepacked: packed_filter was packed for ",
                    header.form.groups, " group(s), this call has ", expected.groups,
                    " (input channels / filter in-channels); pass groups=", expected.groups, " to prepack_filter");
  TORCH_CHECK_VALUE(header.form == expected, "myconv.conv2d_prepacked: packed_filter was packed as ",
                    describe(header.form), ", but this call in this process reads ", describe(expected),
                    "; pack the filter again here with myconv.prepack_filter (with this call's groups and "
                    "dilations)");
}

Conv2dPlan filter_plan(c10::ArrayRef<int64_t> filter_shape, int64_t groups, at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(filter_shape.size() == 4, "myconv.prepack_filter: filter must be 4-D HWIO [KH, KW, C/groups, O], "
                    "got shape ", filter_shape);
  TORCH_CHECK_VALUE(groups >= 1, "myconv.prepack_filter: groups must be >= 1, got ", groups);
  int64_t in_channels = 0;
  TORCH_CHECK_VALUE(!__builtin_mul_overflow(filter_shape[2], groups, &in_channels),
                    "myconv.prepack_filter: groups ", groups, " times the filter's in-channels ", filter_shape[2],
                    " overflows int64");
  // A one-pixel SAME call: any filter fits, and the plan's filter fields are the call's.
  const std::vector<int64_t> input_shape{1, 1, 1, in_channels};
  const PaddingSpec same{PaddingSpec::Mode::kSame, {}};
  const std::array<int64_t, 2> unit{1, 1};
  return make_plan(check_conv2d_shapes<int64_t>(input_shape, filter_shape, unit, same, dilation), unit, same,
                   dilation);
}

template <typename Int>
Conv2dShape<Int> check_conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed,
                                        at::IntArrayRef filter_shape, const std::optional<at::Tensor>& bias,
                                        at::IntArrayRef stride, const PaddingSpec& padding,
                                        at::IntArrayRef dilation) {
  check_input_dtype(input);
  TORCH_CHECK_TYPE(packed.scalar_type() == at::kByte && packed.dim() == 1,
                   "myconv.conv2d_prepacked: packed_filter must be the 1-D uint8 tensor myconv.prepack_filter "
                   "returns, got ", packed.scalar_type(), " of shape ", packed.sym_sizes());
  TORCH_CHECK_VALUE(packed.device() == input.device(), "myconv.conv2d_prepacked: packed_filter must be on the "
                    "input's device ", input.device(), ", got ", packed.device());
  TORCH_CHECK_VALUE(packed.is_contiguous(), "myconv.conv2d_prepacked: packed_filter must be contiguous");
  TORCH_CHECK_VALUE(packed.sym_numel() > kPackedHeaderBytes, "myconv.conv2d_prepacked: packed_filter must be "
                    "longer than its ", kPackedHeaderBytes, "-byte header, got ", packed.sym_numel(), " bytes");
  TORCH_CHECK_VALUE(filter_shape.size() == 4, "myconv.conv2d_prepacked: filter_shape must be the HWIO shape "
                    "[KH, KW, C/groups, O] the filter was packed from, got ", filter_shape);
  int64_t elements = 1;
  for (const int64_t size : filter_shape) {
    TORCH_CHECK_VALUE(size >= 1 && !__builtin_mul_overflow(elements, size, &elements) &&
                          elements <= kMaxPackedFilterElements,
                      "myconv.conv2d_prepacked: filter_shape ", filter_shape, " is not the shape of a filter "
                      "(sizes >= 1, at most 2^50 elements)");
  }
  std::vector<Int> filter_sizes(filter_shape.begin(), filter_shape.end());
  const Conv2dShape<Int> shape = check_conv2d_shapes<Int>(detail::sizes_of<Int>(input), filter_sizes, stride,
                                                         padding, dilation);
  check_bias<Int>(input, bias, shape.out_channels, "myconv.conv2d_prepacked", "the filter's out-channels");
  return shape;
}

template Conv2dShape<int64_t> check_conv2d_prepacked<int64_t>(const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                                                              const std::optional<at::Tensor>&, at::IntArrayRef,
                                                              const PaddingSpec&, at::IntArrayRef);
template Conv2dShape<c10::SymInt> check_conv2d_prepacked<c10::SymInt>(const at::Tensor&, const at::Tensor&,
                                                                      at::IntArrayRef,
                                                                      const std::optional<at::Tensor>&,
                                                                      at::IntArrayRef, const PaddingSpec&,
                                                                      at::IntArrayRef);

}  // namespace myconv
