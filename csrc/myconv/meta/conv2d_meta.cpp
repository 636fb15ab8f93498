// Meta kernels: output and gradient shapes and dtypes without data, for torch.compile,
// torch.export and fake tensors, and for myconv.output_shape in Python. Sizes are read as
// SymInts (sym_sizes), so symbolic batch, height and width stay symbolic; the checks and the
// geometry are the ones every backend uses.
#include <torch/library.h>

#include "myconv/conv2d_plan.h"
#include "myconv/cpu/microkernel/packing.h"
#include "myconv/prepacked.h"

namespace myconv {

namespace {

// The size of the packed filter the CPU would make (CUDA refuses to prepack): the header and the
// payload of the CPU's form for this filter. The filter's shape must be static.
at::Tensor prepack_filter_meta(const at::Tensor& filter, int64_t groups, at::IntArrayRef dilation) {
  check_input_dtype(filter);
  PackedFilterHeader header{};
  header.form = cpu::cpu_filter_form(filter_plan(filter.sizes(), groups, dilation), filter.scalar_type());
  return new_packed_filter(header, filter.device());
}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, Meta, m) {
  Conv2dEntryPoints<c10::SymInt, nullptr, nullptr>::register_all(m);
  PrepackedEntryPoints<c10::SymInt, prepack_filter_meta, nullptr, nullptr>::register_all(m);
}

}  // namespace myconv
