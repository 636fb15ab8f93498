// The activation header on its own (no ATen): Keras 3's definitions, float32 within a few ulp of
// the float64 C library over a dense grid, the edges (inf, NaN, overflow, the clamps).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "myconv/activation.h"

namespace {

using myconv::Activation;
using myconv::activate;

// ulps of float32 between `got` and the exact `ref` (rounded to float32 for the ulp's size).
double ulps(float got, double ref) {
  const float rounded = static_cast<float>(ref);
  const double ulp = std::nextafter(std::fabs(rounded), std::numeric_limits<float>::infinity()) - std::fabs(rounded);
  return std::fabs(got - ref) / ulp;
}

template <Activation kActivation>
double worst_ulps(double (*reference)(double), double lo, double hi) {
  double worst = 0;
  for (int i = 0; i <= 400000; ++i) {
    const float x = static_cast<float>(lo + (hi - lo) * i / 400000);
    const double ref = reference(x);
    if (std::fabs(ref) < 0x1p-126) continue;  // results are normal or flushed to zero
    worst = std::max(worst, ulps(activate<kActivation>(x, 0.0f), ref));
  }
  return worst;
}

TEST(Activation, ExpFamilyWithinAFewUlp) {
  EXPECT_LE(worst_ulps<Activation::kExponential>([](double x) { return std::exp(x); }, -87, 88.7), 1.0);
  EXPECT_LE(worst_ulps<Activation::kSigmoid>([](double x) { return 1 / (1 + std::exp(-x)); }, -80, 80), 2.5);
  EXPECT_LE(worst_ulps<Activation::kTanh>([](double x) { return std::tanh(x); }, -20, 20), 3.0);
  EXPECT_LE(worst_ulps<Activation::kSoftplus>([](double x) { return std::log1p(std::exp(x)); }, -80, 80), 3.5);
  EXPECT_LE(worst_ulps<Activation::kGelu>([](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); },
                                          0, 20),
            3.5);
  EXPECT_LE(worst_ulps<Activation::kMish>([](double x) { return x * std::tanh(std::log1p(std::exp(x))); }, -80, 80),
            4.5);
}

TEST(Activation, KerasDefaultsAndParameters) {
  EXPECT_FLOAT_EQ((activate<Activation::kLeakyRelu>(-2.0f, 0.2f)), -0.4f);
  EXPECT_FLOAT_EQ((activate<Activation::kHardSigmoid>(1.5f, 0.0f)), 0.75f);  // relu6(x + 3) / 6
  EXPECT_FLOAT_EQ((activate<Activation::kHardSigmoid>(-4.0f, 0.0f)), 0.0f);
  EXPECT_FLOAT_EQ((activate<Activation::kRelu6>(7.0f, 0.0f)), 6.0f);
  EXPECT_DOUBLE_EQ((activate<Activation::kElu>(-1.0, 0.5)), 0.5 * std::expm1(-1.0));
  EXPECT_DOUBLE_EQ((activate<Activation::kSelu>(-1.0, 0.0)), 1.0507009873554805 * 1.6732632423543772 * std::expm1(-1.0));
  EXPECT_FLOAT_EQ((activate<Activation::kSoftsign>(-3.0f, 0.0f)), -0.75f);
}

TEST(Activation, EdgesOfTheFloatRange) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ((activate<Activation::kExponential>(89.0f, 0.0f)), inf);
  EXPECT_EQ((activate<Activation::kExponential>(-inf, 0.0f)), 0.0f);
  EXPECT_EQ((activate<Activation::kSigmoid>(-inf, 0.0f)), 0.0f);
  EXPECT_EQ((activate<Activation::kSigmoid>(inf, 0.0f)), 1.0f);
  EXPECT_EQ((activate<Activation::kTanh>(inf, 0.0f)), 1.0f);
  EXPECT_EQ((activate<Activation::kSoftplus>(100.0f, 0.0f)), 100.0f);
  EXPECT_EQ((activate<Activation::kMish>(100.0f, 0.0f)), 100.0f);
  EXPECT_EQ((activate<Activation::kGelu>(10.0f, 0.0f)), 10.0f);
  EXPECT_TRUE(std::isnan(activate<Activation::kExponential>(std::nanf(""), 0.0f)));
  EXPECT_TRUE(std::isnan(activate<Activation::kTanh>(std::nanf(""), 0.0f)));
}

}  // namespace
