// Calls myconv::conv2d directly and checks it against torch::conv2d with TF's SAME padding.
#include <myconv/conv2d.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  const auto input = torch::randn({2, 15, 16, 8});  // NHWC
  const auto filter = torch::randn({3, 3, 8, 4});   // HWIO
  const auto bias = torch::randn({4});
  const auto out = myconv::conv2d(input, filter, {2, 2}, "SAME", {1, 1}, bias);

  // SAME, stride 2: H 15 -> 8 pads (1, 1); W 16 -> 8 pads (0, 1), the extra column on the right.
  namespace F = torch::nn::functional;
  const auto padded = F::pad(input.permute({0, 3, 1, 2}), F::PadFuncOptions({0, 1, 1, 1}));
  const auto expected =
      torch::conv2d(padded, filter.permute({3, 2, 0, 1}), bias, 2).permute({0, 2, 3, 1});
  const double error = ((out - expected).norm() / expected.norm()).item<double>();
  std::cout << "myconv " << myconv::version() << ": output " << out.sizes()
            << ", relative error vs torch::conv2d " << error << std::endl;
  return error <= 1e-5 && out.sizes() == expected.sizes() ? 0 : 1;
}
