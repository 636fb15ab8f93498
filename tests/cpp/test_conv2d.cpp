// The op from C++: parity with torch::conv2d under TF padding, errors, registrations.
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <myconv/conv2d.h>

namespace {

namespace F = torch::nn::functional;

// TF-padded reference: NCHW torch::conv2d in float64 on explicitly padded input.
at::Tensor reference(const at::Tensor& input, const at::Tensor& filter, std::array<int64_t, 2> stride,
                     std::array<int64_t, 4> pad, std::array<int64_t, 2> dilation,
                     const std::optional<at::Tensor>& bias) {
  const int64_t groups = input.size(3) / filter.size(2);
  auto x = F::pad(input.to(at::kDouble).permute({0, 3, 1, 2}),
                  F::PadFuncOptions({pad[2], pad[3], pad[0], pad[1]}));
  auto w = filter.to(at::kDouble).permute({3, 2, 0, 1});
  std::optional<at::Tensor> b;
  if (bias) b = bias->to(at::kDouble);
  return torch::conv2d(x, w, b, at::IntArrayRef{stride[0], stride[1]}, at::IntArrayRef{0, 0},
                       at::IntArrayRef{dilation[0], dilation[1]}, groups)
      .permute({0, 2, 3, 1});
}

double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
}

TEST(Conv2d, MatchesTorchConv2dWithTfSamePadding) {
  torch::manual_seed(0);
  struct Case { int64_t h, w, c, kh, kw, o, s, d; };
  for (const Case& k : {Case{7, 9, 4, 3, 3, 5, 1, 1}, Case{8, 8, 3, 2, 2, 4, 2, 1},
                        Case{10, 7, 6, 3, 1, 6, 3, 2}, Case{5, 5, 8, 5, 5, 2, 2, 2}}) {
    auto x = torch::randn({2, k.h, k.w, k.c});
    auto f = torch::randn({k.kh, k.kw, k.c, k.o});
    auto b = torch::randn({k.o});
    auto shape = myconv::output_shape(x.sizes(), f.sizes(), {k.s, k.s}, "SAME", {k.d, k.d});
    // SAME split straight from TF's definition.
    std::array<int64_t, 4> pad{};
    for (int axis = 0; axis < 2; ++axis) {
      const int64_t in = x.size(1 + axis), eff = (f.size(axis) - 1) * k.d + 1;
      const int64_t out = (in + k.s - 1) / k.s;
      const int64_t total = std::max<int64_t>((out - 1) * k.s + eff - in, 0);
      pad[2 * axis] = total / 2;
      pad[2 * axis + 1] = total - total / 2;
    }
    auto out = myconv::conv2d(x, f, {k.s, k.s}, "same", {k.d, k.d}, b);
    auto ref = reference(x, f, {k.s, k.s}, pad, {k.d, k.d}, b);
    EXPECT_EQ(out.sizes(), ref.sizes());
    EXPECT_EQ(out.sizes(), at::IntArrayRef(shape));
    EXPECT_LE(relative_error(out, ref), 1e-5);
  }
}

// The definition tap by tap, in float64, with no padded copy: explicit pads, strides and dilations
// up to 2^60 (only small outputs).
at::Tensor direct_reference(const at::Tensor& x, const at::Tensor& f, std::array<int64_t, 2> s,
                            std::array<int64_t, 4> pad, std::array<int64_t, 2> d) {
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  const int64_t kh = f.size(0), kw = f.size(1), cg = f.size(2), o = f.size(3), groups = c / cg, og = o / groups;
  const int64_t oh = (h + pad[0] + pad[1] - (kh - 1) * d[0] - 1) / s[0] + 1;
  const int64_t ow = (w + pad[2] + pad[3] - (kw - 1) * d[1] - 1) / s[1] + 1;
  auto out = torch::zeros({n, oh, ow, o}, torch::kDouble);
  const auto xd = x.to(at::kDouble), fd = f.to(at::kDouble);
  for (int64_t y = 0; y < oh; ++y) {
    for (int64_t z = 0; z < ow; ++z) {
      for (int64_t i = 0; i < kh; ++i) {
        const int64_t iy = y * s[0] - pad[0] + i * d[0];
        if (iy < 0 || iy >= h) continue;
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t ix = z * s[1] - pad[2] + j * d[1];
          if (ix < 0 || ix >= w) continue;
          for (int64_t g = 0; g < groups; ++g) {
            out.select(1, y).select(1, z).narrow(1, g * og, og) +=
                xd.select(1, iy).select(1, ix).narrow(1, g * cg, cg).matmul(fd[i][j].narrow(1, g * og, og));
          }
        }
      }
    }
  }
  return out;
}

// Geometry at the 2^60 bound that validation accepts: the definition's result (run under ASan and
// UBSan by `make test-sanitizers`: no read outside the input, no overflowing index math).
TEST(Conv2d, ExtremeStridesDilationsAndPaddings) {
  torch::manual_seed(4);
  constexpr int64_t big = int64_t{1} << 60;
  struct Case { int64_t c, kh, kw, cg, o; std::array<int64_t, 2> s, d; std::array<int64_t, 4> pad; };
  for (const Case& k : {Case{16, 1, 3, 1, 16, {1, big}, {1, 1}, {0, 0, 2, 0}},           // depthwise, one output
                        Case{16, 1, 3, 16, 8, {1, big}, {1, 1}, {0, 0, 2, 0}},           // dense
                        Case{4, 1, 2, 4, 5, {1, 1}, {1, big / 2}, {0, 0, big / 2, 0}},   // tap far in the padding
                        Case{8, 2, 2, 1, 8, {big / 4, 1}, {1, 1}, {big / 4, 0, 1, 1}},   // depthwise, huge stride
                        Case{6, 3, 2, 3, 4, {big / 8, big}, {big / 8, 1}, {big / 4, big / 4, 0, 0}}}) {
    for (const int64_t width : {1, 4, 9}) {
      const auto x = torch::randn({1, 3, width, k.c});
      const auto f = torch::randn({k.kh, k.kw, k.cg, k.o});
      at::Tensor out;
      try {
        out = myconv::conv2d(x, f, {k.s[0], k.s[1]}, k.pad, {k.d[0], k.d[1]});
      } catch (const c10::ValueError&) {
        continue;  // a window that does not fit: refused, as conv2d refuses it
      }
      const auto ref = direct_reference(x, f, k.s, k.pad, k.d);
      ASSERT_EQ(out.sizes(), ref.sizes());
      EXPECT_TRUE(at::allclose(out.to(at::kDouble), ref, 1e-5, 1e-5)) << "width " << width;
    }
  }
}

TEST(Conv2d, ExplicitPaddingAndGroups) {
  torch::manual_seed(1);
  auto x = torch::randn({1, 6, 5, 6});
  auto f = torch::randn({3, 2, 2, 9});  // groups = 3
  auto out = myconv::conv2d(x, f, {2, 1}, std::array<int64_t, 4>{1, 0, 2, 1}, {1, 2});
  auto ref = reference(x, f, {2, 1}, {1, 0, 2, 1}, {1, 2}, std::nullopt);
  EXPECT_LE(relative_error(out, ref), 1e-5);
}

TEST(Conv2d, GradientsFromCppMatchTorchConv2d) {
  torch::manual_seed(3);
  struct Case { int64_t c, cg, o, s, d; std::array<int64_t, 4> pad; };
  // dense, grouped, depthwise with multiplier 2; strides, dilation, asymmetric padding
  for (const Case& k : {Case{4, 4, 5, 2, 1, {0, 1, 1, 1}}, Case{6, 3, 4, 1, 2, {2, 2, 1, 2}},
                        Case{3, 1, 6, 2, 1, {1, 1, 0, 1}}}) {
    auto x = torch::randn({2, 9, 8, k.c}, torch::requires_grad());
    auto f = torch::randn({3, 3, k.cg, k.o}, torch::requires_grad());
    auto b = torch::randn({k.o}, torch::requires_grad());
    auto out = myconv::conv2d(x, f, {k.s, k.s}, k.pad, {k.d, k.d}, b);
    auto grad_output = torch::randn_like(out);
    auto grads = torch::autograd::grad({out}, {x, f, b}, {grad_output});

    auto x64 = x.detach().to(at::kDouble).requires_grad_();
    auto f64 = f.detach().to(at::kDouble).requires_grad_();
    auto b64 = b.detach().to(at::kDouble).requires_grad_();
    auto ref = reference(x64, f64, {k.s, k.s}, k.pad, {k.d, k.d}, b64);
    auto expected = torch::autograd::grad({ref}, {x64, f64, b64}, {grad_output.to(at::kDouble)});
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(grads[i].sizes(), expected[i].sizes());
      EXPECT_LE(relative_error(grads[i], expected[i]), 1e-5) << "gradient " << i;
    }
    // The gradient op is public too, with a mask that skips the filter gradient.
    auto [grad_input, grad_filter, grad_bias] =
        myconv::conv2d_backward(grad_output, x, f, {k.s, k.s}, k.pad, {k.d, k.d}, {true, false, true});
    EXPECT_FALSE(grad_filter.defined());
    EXPECT_TRUE(torch::allclose(grad_input, grads[0]));
    EXPECT_TRUE(torch::allclose(grad_bias, grads[2]));
  }
}

// Filter gradients over several blocks of 512 output pixels, with grad_output's channels and with
// the input's values as the tile kernels' rows (the sanitizer build runs this too).
TEST(Conv2d, FilterGradientsOverSeveralPixelBlocks) {
  torch::manual_seed(4);
  for (const int64_t k : {3, 1}) {  // 72 window values against 40 channels, then 8
    const std::array<int64_t, 4> pad{k / 2, k / 2, k / 2, k / 2};
    auto x = torch::randn({2, 30, 31, 8});
    auto f = torch::randn({k, k, 8, 40});
    auto grad_output = torch::randn({2, 30, 31, 40});
    auto grad_filter =
        std::get<1>(myconv::conv2d_backward(grad_output, x, f, {1, 1}, pad, {1, 1}, {false, true, false}));
    auto f64 = f.to(at::kDouble).requires_grad_();
    auto ref = reference(x, f64, {1, 1}, pad, {1, 1}, std::nullopt);
    auto expected = torch::autograd::grad({ref}, {f64}, {grad_output.to(at::kDouble)})[0];
    EXPECT_LE(relative_error(grad_filter, expected), 1e-5) << "kernel " << k;
  }
}

TEST(Conv2d, TensorFlowGoldenValues) {
  auto x = torch::arange(1, 17, torch::kFloat).reshape({1, 4, 4, 1});
  auto f = torch::arange(1, 5, torch::kFloat).reshape({2, 2, 1, 1});
  auto out = myconv::conv2d(x, f, {3, 3}, "SAME");
  EXPECT_TRUE(torch::equal(out.flatten(), torch::tensor({44.f, 28.f, 41.f, 16.f})));
}

TEST(Conv2d, BadInputThrowsNamingTheArgument) {
  auto x = torch::randn({1, 4, 4, 3});
  auto f = torch::randn({3, 3, 3, 2});
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { myconv::conv2d(x, f, {1, 1}, "FULL"); }).find("padding"), std::string::npos);
  EXPECT_NE(message([&] { myconv::conv2d(x, f, {0, 1}); }).find("stride"), std::string::npos);
  EXPECT_NE(message([&] { myconv::conv2d(x[0], f); }).find("input must be 4-D"), std::string::npos);
  EXPECT_NE(message([&] { myconv::conv2d(x, f.to(at::kDouble)); }).find("filter dtype"), std::string::npos);
  EXPECT_NE(message([&] { myconv::conv2d(x.narrow(1, 0, 2), f, {1, 1}, "VALID"); }).find("smaller than the dilated filter"),
            std::string::npos);
  EXPECT_NE(message([&] { myconv::conv2d(x, f, {1, 1}, "SAME", {1, 1}, torch::randn({3})); }).find("bias"),
            std::string::npos);
}

TEST(Conv2d, DispatcherHasTheBackendKernels) {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("myconv::conv2d", "");
  EXPECT_TRUE(op.hasKernelForDispatchKey(c10::DispatchKey::CPU));
  EXPECT_TRUE(op.hasKernelForDispatchKey(c10::DispatchKey::Meta));
#ifdef MYCONV_EXPECT_CUDA
  EXPECT_TRUE(myconv::cuda_compiled());
  EXPECT_TRUE(op.hasKernelForDispatchKey(c10::DispatchKey::CUDA));
#else
  EXPECT_FALSE(myconv::cuda_compiled());
#endif
}

TEST(Conv2d, RunsOnCudaWhenAvailable) {
  if (!torch::cuda::is_available() || !myconv::cuda_compiled()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(2);
  auto x = torch::randn({2, 9, 8, 4});
  auto f = torch::randn({3, 3, 4, 6});
  auto out = myconv::conv2d(x.cuda(), f.cuda(), {2, 2}, "SAME").cpu();
  EXPECT_LE(relative_error(out, myconv::conv2d(x, f, {2, 2}, "SAME").to(at::kDouble)), 1e-5);
}

}  // namespace
