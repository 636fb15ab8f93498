// The CPU kernels' packed filters. Every call packs the filter it is given (prepacked.h says why
// nothing is kept across calls); prepack_filter stores the same payload after a header. One
// function decides the form of a call's filter, for both.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "myconv/conv2d_plan.h"
#include "myconv/prepacked.h"

namespace myconv {
namespace cpu {

// What a CPU kernel reads in place of the HWIO filter (PackedForm::kind).
enum class FilterForm : int32_t {
  kAsIs = 1,       // the filter itself (float64 GEMM, generic depthwise loops)
  kPanels = 2,     // tile-kernel panels (driver.cpp: NR channels x segments x values)
  kDepthwise = 3,  // [KH, KW, C] in float32 for the depthwise kernels
};

// The form this process's kernels read the filter of a call with plan `p` and dtype `dtype` in,
// with its size: the instruction set (panel width), the element type (float32, or bfloat16 pairs
// for the bfloat16 kernel) and the reduction's segments.
PackedForm cpu_filter_form(const Conv2dPlan& p, at::ScalarType dtype);

// Writes the payload of `form` for `filter` (HWIO, any strides, dtype of the call) at `dst`
// (form.payload_bytes bytes, 64-byte aligned for speed): one pass over the filter, panels read
// through its strides (no contiguous copy first), every payload byte written once.
void pack_filter(const at::Tensor& filter, const Conv2dPlan& p, const PackedForm& form, void* dst);

// The form in words, for errors: "avx512 panels of 32 float32 channels, 1 group, ...".
std::string describe_cpu_form(const PackedForm& form);

}  // namespace cpu
}  // namespace myconv
