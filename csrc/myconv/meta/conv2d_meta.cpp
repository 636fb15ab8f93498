// Meta kernel: output shape and dtype without data, for torch.compile / fake tensors and for
// myconv.output_shape in Python. The shape comes from the same plan every backend uses.
#include <torch/library.h>

#include "myconv/conv2d_plan.h"

namespace myconv {
namespace {

void conv2d_meta(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                 const Conv2dPlan&, at::Tensor&) {}

}  // namespace

TORCH_LIBRARY_IMPL(myconv, Meta, m) { register_conv2d_kernels<conv2d_meta>(m); }

}  // namespace myconv
