// Explicit prepacking, the one way a packed form of a filter outlives a call. The library never
// keeps anything derived from a user's tensor across calls on its own: a tensor's contents can
// change without any sign it could check (.data, numpy and DLPack views, fused optimizers), so
// every call packs the filter it is given. Where keeping the packed form is the user's decision
// (inference), myconv::prepack_filter returns it as an ordinary uint8 tensor and
// myconv::conv2d_prepacked convolves with it: the user owns it, and torch.export and AOTInductor
// carry it like any buffer or constant.
//
// The tensor starts with a PackedFilterHeader: what was packed (the filter's HWIO shape and
// dtype) and how (the backend's form, instruction set, panel width), so that a packed filter used
// with another call or in another process is an error naming the difference, never garbage. A
// backend fills the header's `form` fields and the payload after it; every backend's check of the
// container, the shapes and the bias is here.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "myconv/conv2d_plan.h"

namespace myconv {

// How a backend lays out a packed filter: compared field by field with what a call needs.
struct PackedForm {
  int32_t kind = 0;             // backend-defined (CPU: cpu::FilterForm)
  int32_t isa = 0;              // the instruction set whose kernels read it (CPU: cpu::Isa)
  int32_t element_dtype = 0;    // c10::ScalarType of the packed values
  int32_t pair = 1;             // consecutive reduction values interleaved per channel
  int64_t panel_channels = 0;   // output channels a panel holds (the kernel's register tile width)
  int64_t groups = 0;
  int64_t segments = 0;         // per pixel's reduction (taps, or filter rows of KW x C values)
  int64_t segment_length = 0;
  int64_t payload_bytes = 0;

  bool operator==(const PackedForm& other) const;
};

// The first kPackedHeaderBytes of a packed filter tensor (so that the payload of a tensor from
// prepack_filter starts 64-byte aligned, as the kernels read fastest; a view must at least keep
// the payload's elements aligned).
struct PackedFilterHeader {
  char magic[8];                    // kPackedMagic
  int32_t format_version;           // kPackedFormatVersion
  int32_t filter_dtype;             // c10::ScalarType of the filter (and so of the input)
  int64_t filter_shape[4];          // HWIO
  PackedForm form;
};
constexpr int64_t kPackedHeaderBytes = 128;
// The most elements a packed filter's filter_shape may describe (2^50: more memory than any
// machine has), so that every size derived from it, padded panels included, fits in int64.
constexpr int64_t kMaxPackedFilterElements = int64_t{1} << 50;
static_assert(sizeof(PackedFilterHeader) <= kPackedHeaderBytes);
constexpr char kPackedMagic[8] = {'m', 'y', 'c', 'o', 'n', 'v', 'P', 'F'};
constexpr int32_t kPackedFormatVersion = 1;

// A new packed filter tensor (uint8, on `device`): the header written, the payload left to the
// backend (payload_of).
at::Tensor new_packed_filter(const PackedFilterHeader& header, const at::Device& device);
// The header of a packed filter tensor (a CPU tensor: the container checks ran already).
PackedFilterHeader read_packed_header(const at::Tensor& packed);
// The payload's first byte.
const void* payload_of(const at::Tensor& packed);
void* mutable_payload_of(at::Tensor& packed);

// Checks that a header was made for this call: the filter's shape and dtype (the input's), and
// the form `expected` that this process would pack the call's filter in. The error names the
// field that differs, both values, and how to fix it (pack again here).
// `describe` puts a backend's form in words.
void check_packed_header(const PackedFilterHeader& header, at::ScalarType input_dtype,
                         at::IntArrayRef filter_shape, const PackedForm& expected,
                         std::string (*describe)(const PackedForm&));

// The plan of a call of `filter_shape` with `groups` and `dilation`, for the fields that decide a
// filter's packing (kernel, channels, groups, width dilation): the one plan prepack_filter and
// the call itself agree on. Validates like conv2d does.
Conv2dPlan filter_plan(c10::ArrayRef<int64_t> filter_shape, int64_t groups, at::IntArrayRef dilation);

// conv2d_prepacked's checks: the container (1-D contiguous uint8 on the input's device, longer
// than the header), filter_shape, the geometry and the bias, as conv2d checks them.
template <typename Int>
Conv2dShape<Int> check_conv2d_prepacked(const at::Tensor& input, const at::Tensor& packed,
                                        at::IntArrayRef filter_shape, const std::optional<at::Tensor>& bias,
                                        at::IntArrayRef stride, const PaddingSpec& padding,
                                        at::IntArrayRef dilation);

// A backend's prepack (filter, groups, dilation) -> packed tensor; its check that a packed tensor
// was made for a call (before anything is allocated: an error, never a wrong or partial result);
// and its convolution with one.
using PrepackKernel = at::Tensor (*)(const at::Tensor& filter, int64_t groups, at::IntArrayRef dilation);
using PackedCheckKernel = void (*)(const at::Tensor& input, const at::Tensor& packed, const Conv2dPlan& plan);
using Conv2dPrepackedKernel = void (*)(const at::Tensor& input, const at::Tensor& packed,
                                       const std::optional<at::Tensor>& bias,
                                       const std::optional<at::Tensor>& residual, const Epilogue& epilogue,
                                       const Conv2dPlan& plan, at::Tensor& output);

// prepack_filter and both overloads of conv2d_prepacked on one backend; Int = c10::SymInt and null
// check and conv kernels give the Meta backend (its prepack kernel only sizes the tensor).
template <typename Int, PrepackKernel prepack, PackedCheckKernel check_kernel, Conv2dPrepackedKernel conv_kernel>
struct PrepackedEntryPoints {
  static at::Tensor forward(const at::Tensor& input, const at::Tensor& packed, at::IntArrayRef filter_shape,
                            at::IntArrayRef stride, const PaddingSpec& padding, at::IntArrayRef dilation,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                            c10::string_view activation, std::optional<double> alpha) {
    const Epilogue epilogue = parse_epilogue(activation, alpha, "myconv.conv2d_prepacked");
    const auto shape = check_conv2d_prepacked<Int>(input, packed, filter_shape, bias, stride, padding, dilation);
    check_residual<Int>(input, residual, shape, "myconv.conv2d_prepacked");
    if constexpr (std::is_same_v<Int, int64_t>) {
      const Conv2dPlan plan = make_plan(shape, stride, padding, dilation);
      check_kernel(input, packed, plan);
      at::Tensor output = detail::empty_of(shape.output_sizes(), input.options());
      if (output.numel() == 0) return output;
      if (input.numel() > 0) {
        conv_kernel(input, packed, bias, residual, epilogue, plan, output);
      } else {  // every window in the padding (the kernels never see an empty input)
        detail::fill_reading_only_padding(input, bias, output);
        detail::apply_epilogue_unfused(epilogue, residual, output);
      }
      return output;
    } else {
      return detail::empty_of(shape.output_sizes(), input.options());
    }
  }
  static at::Tensor same_or_valid(const at::Tensor& input, const at::Tensor& packed, at::IntArrayRef filter_shape,
                                  at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                                  c10::string_view activation, std::optional<double> alpha) {
    return forward(input, packed, filter_shape, stride,
                   parse_padding_mode(std::string_view(padding.data(), padding.size())), dilation, bias, residual,
                   activation, alpha);
  }
  static at::Tensor explicit_padding(const at::Tensor& input, const at::Tensor& packed,
                                     at::IntArrayRef filter_shape, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, const std::optional<at::Tensor>& bias,
                                     const std::optional<at::Tensor>& residual, c10::string_view activation,
                                     std::optional<double> alpha) {
    return forward(input, packed, filter_shape, stride, parse_explicit_padding(padding), dilation, bias, residual,
                   activation, alpha);
  }
  static void register_all(torch::Library& m) {
    m.impl("prepack_filter", prepack);
    m.impl("conv2d_prepacked", &same_or_valid);
    m.impl("conv2d_prepacked.explicit", &explicit_padding);
  }
};

}  // namespace myconv
