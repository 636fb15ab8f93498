// Meta kernels: output and gradient shapes and dtypes without data, for torch.compile,
// torch.export and fake tensors, and for myconv.output_shape in Python. Sizes are read as
// SymInts (sym_sizes), so symbolic batch, height and width stay symbolic; the checks and the
// geometry are the ones every backend uses.
#include <torch/library.h>

#include "myconv/conv2d_plan.h"

namespace myconv {

TORCH_LIBRARY_IMPL(myconv, Meta, m) {
  Conv2dEntryPoints<c10::SymInt, nullptr, nullptr>::register_all(m);
}

}  // namespace myconv
