// Runs an AOTInductor package (model.pt2, made by make_package.py from a torch.export program
// that calls torch.ops.myconv.conv2d) at two batch sizes and compares with Python's outputs.
// AOTInductor calls custom ops through its proxy executor, which looks the op's schema up in the
// dispatcher when the loader is built: libmyconv must be loaded by then. Including
// <myconv/conv2d.h> links it (its link anchor survives --as-needed), so its static registrations
// run before main().
#include <myconv/conv2d.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " model.pt2 data.pt" << std::endl;
    return 2;
  }
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  torch::jit::Module data = torch::jit::load(argv[2]);
  torch::NoGradGuard no_grad;
  bool ok = true;
  for (const char* name : {"small", "large"}) {
    const auto input = data.attr(name).toTensor();
    const auto expected = data.attr(std::string(name) + "_expected").toTensor();
    const auto out = loader.run({input})[0];
    const double error = ((out - expected).norm() / expected.norm()).item<double>();
    std::cout << "AOTInductor package, batch " << input.size(0) << ": output " << out.sizes()
              << ", relative error vs Python " << error << std::endl;
    ok = ok && out.sizes() == expected.sizes() && error <= 1e-5;
  }
  return ok ? 0 : 1;
}
