// Loads a TorchScript model whose forward calls torch.ops.myconv.conv2d (saved from Python by
// make_model.py), runs it on the saved input and compares with the output Python saved.
// Including <myconv/conv2d.h> links libmyconv, which registers the op before the model loads.
#include <myconv/conv2d.h>
#include <torch/script.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " model.pt data.pt" << std::endl;
    return 2;
  }
  torch::jit::Module model = torch::jit::load(argv[1]);
  torch::jit::Module data = torch::jit::load(argv[2]);
  const auto input = data.attr("input").toTensor();
  const auto expected = data.attr("expected").toTensor();
  torch::NoGradGuard no_grad;
  const auto out = model.forward({input}).toTensor();
  const double error = ((out - expected).norm() / expected.norm()).item<double>();
  std::cout << "TorchScript model: output " << out.sizes() << ", relative error vs Python "
            << error << std::endl;
  return error <= 1e-6 && out.sizes() == expected.sizes() ? 0 : 1;
}
