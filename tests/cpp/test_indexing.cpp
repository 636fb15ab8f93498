// The kernels' per-element index math on the CPU: a mistake here would otherwise surface only on
// a GPU. FastDivmod against / and %, and Conv2dIndexer against plain NHWC arithmetic.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <limits>
#include <random>
#include <vector>

#include "myconv/indexing.h"

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(FastDivmod, MatchesHardwareDivision) {
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= 300; ++d) divisors.push_back(d);
  for (int k = 9; k < 63; ++k) {
    for (int64_t delta : {-1, 0, 1}) divisors.push_back((int64_t{1} << k) + delta);
  }
  for (int64_t d : {int64_t{1000003}, int64_t{56 * 56}, int64_t{224 * 224 * 3}, kMax, kMax - 1}) divisors.push_back(d);
  std::mt19937_64 random(0);
  for (const int64_t d : divisors) {
    const myconv::FastDivmod fast(d);
    EXPECT_EQ(fast.divisor(), d);
    // Neighbours of multiples of d, without overflowing int64 for the largest divisors.
    std::vector<int64_t> numerators = {0, 1, d - 1, d, kMax, kMax - 1, kMax / d * d};
    if (d < kMax) numerators.push_back(d + 1);
    if (d <= kMax / 2) numerators.push_back(2 * d - 1);
    for (int i = 0; i < 2000; ++i) numerators.push_back(static_cast<int64_t>(random() >> 1));
    for (int i = 0; i < 500; ++i) numerators.push_back(static_cast<int64_t>(random() % 100000));
    for (const int64_t n : numerators) {
      int64_t q = 0, r = 0;
      fast.divmod(n, &q, &r);
      ASSERT_EQ(q, n / d) << n << " / " << d;
      ASSERT_EQ(r, n % d) << n << " % " << d;
    }
  }
}

myconv::Conv2dPlan plan_of(std::vector<int64_t> input, std::vector<int64_t> filter, int64_t stride,
                           int64_t dilation) {
  const myconv::PaddingSpec same = myconv::parse_padding_mode("SAME");
  const std::vector<int64_t> s{stride, stride}, d{dilation, dilation};
  return myconv::make_plan(myconv::check_conv2d_shapes<int64_t>(input, filter, s, same, d), s, same, d);
}

TEST(Conv2dIndexer, PixelsTapsOffsetsAndChannels) {
  for (const auto& plan : {plan_of({3, 7, 5, 6}, {3, 2, 2, 9}, 2, 1), plan_of({2, 13, 11, 4}, {5, 3, 1, 12}, 1, 2),
                           plan_of({1, 1, 1, 1}, {1, 1, 1, 1}, 1, 1)}) {
    const myconv::Conv2dIndexer index(plan);
    int64_t flat = 0;
    for (int64_t n = 0; n < plan.batch; ++n)
      for (int64_t y = 0; y < plan.out_h; ++y)
        for (int64_t x = 0; x < plan.out_w; ++x, ++flat) {
          const myconv::Pixel pixel = index.output_pixel(flat);
          ASSERT_EQ(pixel.n, n);
          ASSERT_EQ(pixel.y, y);
          ASSERT_EQ(pixel.x, x);
          ASSERT_EQ(index.output_offset(n, y, x, 1), flat * plan.out_channels + 1);
        }
    flat = 0;
    for (int64_t n = 0; n < plan.batch; ++n)
      for (int64_t y = 0; y < plan.in_h; ++y)
        for (int64_t x = 0; x < plan.in_w; ++x, ++flat) {
          const myconv::Pixel pixel = index.input_pixel(flat);
          ASSERT_EQ(pixel.n, n);
          ASSERT_EQ(pixel.y, y);
          ASSERT_EQ(pixel.x, x);
          ASSERT_EQ(index.input_offset(n, y, x, plan.in_channels - 1), (flat + 1) * plan.in_channels - 1);
        }
    for (int64_t t = 0; t < plan.kernel_h * plan.kernel_w; ++t) {
      int64_t kh = -1, kw = -1;
      index.tap(t, &kh, &kw);
      EXPECT_EQ(kh * plan.kernel_w + kw, t);
      EXPECT_LT(kw, plan.kernel_w);
    }
    for (int64_t o = 0; o < plan.out_channels; ++o) {
      EXPECT_EQ(index.depthwise_input_channel(o), o / plan.group_out_channels);
    }
  }
}

}  // namespace

namespace {

// The forward window and its adjoint enumerate the same (output pixel, tap, input pixel) triples:
// the CUDA kernels gather input gradients through one and read inputs through the other.
TEST(Windows, ForwardAndAdjointAgree) {
  for (const auto& plan : {plan_of({1, 9, 8, 1}, {3, 3, 1, 1}, 2, 1), plan_of({1, 11, 7, 1}, {2, 5, 1, 1}, 3, 2),
                           plan_of({1, 4, 4, 1}, {5, 5, 1, 1}, 1, 1)}) {
    std::vector<std::array<int64_t, 6>> forward, adjoint;
    for (int64_t oh = 0; oh < plan.out_h; ++oh)
      for (int64_t ow = 0; ow < plan.out_w; ++ow)
        myconv::for_each_tap_inside(plan, oh, ow, [&](int64_t ih, int64_t iw, int64_t kh, int64_t kw) {
          ASSERT_TRUE(ih >= 0 && ih < plan.in_h && iw >= 0 && iw < plan.in_w);
          forward.push_back({oh, ow, kh, kw, ih, iw});
        });
    for (int64_t ih = 0; ih < plan.in_h; ++ih)
      for (int64_t iw = 0; iw < plan.in_w; ++iw)
        myconv::for_each_window_reading(plan, ih, iw, [&](int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
          ASSERT_TRUE(oh >= 0 && oh < plan.out_h && ow >= 0 && ow < plan.out_w);
          adjoint.push_back({oh, ow, kh, kw, ih, iw});
        });
    std::sort(forward.begin(), forward.end());
    std::sort(adjoint.begin(), adjoint.end());
    EXPECT_EQ(forward, adjoint);
    EXPECT_FALSE(forward.empty());
  }
}

}  // namespace
