// Keras 3's activations, as the fused convolution (conv2d_fused) applies them to
// conv + bias + residual: the one scalar definition every kernel epilogue calls (the CPU
// microkernels' and the CUDA implicit GEMM's), host and device, no ATen. Each follows keras/src/activations
// and keras/src/ops/nn.py (defaults included: leaky_relu's slope 0.2, hard_sigmoid = relu6(x + 3)
// / 6, gelu with erf, not tanh); the tests hold them to Keras's own outputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "myconv/geometry.h"  // MYCONV_HOST_DEVICE

namespace myconv {

enum class Activation : int32_t {
  kLinear, kRelu, kRelu6, kLeakyRelu, kElu, kSelu, kGelu, kSilu, kSigmoid, kHardSigmoid, kHardSilu,
  kTanh, kSoftplus, kSoftsign, kMish, kExponential,
};

// What runs after the accumulation: out = activation(sum + bias + residual), with `alpha` the
// activation's parameter (leaky_relu's negative_slope, elu's alpha; unused by the others).
struct Epilogue {
  Activation activation = Activation::kLinear;
  double alpha = 0.0;  // (float64 computes with it exactly)
  bool is_identity() const { return activation == Activation::kLinear; }
};

namespace activation_math {
// float64: the C library. float32: branch-free approximations that compilers vectorise (the CPU
// epilogue's loops run them 4 to 16 lanes wide), within a few ulp of float64 (measured by
// test_fused.py's activation grid, which states the bound).
MYCONV_HOST_DEVICE inline double exp_(double x) { return ::exp(x); }
MYCONV_HOST_DEVICE inline double expm1_(double x) { return ::expm1(x); }
MYCONV_HOST_DEVICE inline double erf_(double x) { return ::erf(x); }
MYCONV_HOST_DEVICE inline double tanh_(double x) { return ::tanh(x); }
MYCONV_HOST_DEVICE inline double abs_(double x) { return ::fabs(x); }
// log(1 + u) for u in [0, 1] (softplus's log1p(exp(-|x|))).
MYCONV_HOST_DEVICE inline double log1p_unit(double u) { return ::log1p(u); }

MYCONV_HOST_DEVICE inline uint32_t bits_of(float x) {
  uint32_t i;
  memcpy(&i, &x, sizeof i);
  return i;
}
MYCONV_HOST_DEVICE inline float float_of(uint32_t i) {
  float x;
  memcpy(&x, &i, sizeof x);
  return x;
}
MYCONV_HOST_DEVICE inline float abs_(float x) { return float_of(bits_of(x) & 0x7FFFFFFFu); }

// exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2 (ln 2 in two parts, Cody-Waite),
// exp(r) by Cephes's degree-7 polynomial; 2^n built in the exponent bits as 2^h 2^(n-h), h = n / 2,
// so that n from -126 to 128 fits. Inf above 88.72, 0 below -87.34 (no denormal results), NaN
// stays NaN.
MYCONV_HOST_DEVICE inline float exp_(float x) {
  const float clamped = x < -87.3365448f ? -87.3365448f : (x > 88.7228394f ? 88.7228394f : x);
  const float shifted = clamped * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds to an integer
  const float n = shifted - 12582912.0f;
  const int32_t n_int = static_cast<int32_t>(bits_of(shifted) - bits_of(12582912.0f));
  const int32_t half = n_int / 2;
  const float r = clamped - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scaled = p * float_of(static_cast<uint32_t>(half + 127) << 23) *
                       float_of(static_cast<uint32_t>(n_int - half + 127) << 23);
  return x > 88.7228394f ? float_of(0x7F800000u) : (x < -87.3365448f ? 0.0f : scaled);
}

// exp(x) - 1 without cancellation near 0: Taylor's degree-8 polynomial for |x| < 0.35.
MYCONV_HOST_DEVICE inline float expm1_(float x) {
  float p = 1.0f / 40320;
  p = p * x + 1.0f / 5040;
  p = p * x + 1.0f / 720;
  p = p * x + 1.0f / 120;
  p = p * x + 1.0f / 24;
  p = p * x + 1.0f / 6;
  p = p * x + 0.5f;
  p = p * x * x + x;
  return abs_(x) < 0.35f ? p : exp_(x) - 1.0f;
}

// log(1 + u) for u in [0, 1]: 2 atanh(s), s = u / (2 + u) <= 1/3, its odd series to s^15.
MYCONV_HOST_DEVICE inline float log1p_unit(float u) {
  const float s = u / (2.0f + u), s2 = s * s;
  float p = 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  return 2.0f * s * (p * s2 + 1.0f);
}

// tanh(x) = expm1(2x) / (expm1(2x) + 2), x clamped to +-9 (tanh(9) rounds to 1).
MYCONV_HOST_DEVICE inline float tanh_(float x) {
  const float e = expm1_(2.0f * (x < -9.0f ? -9.0f : (x > 9.0f ? 9.0f : x)));
  return e / (e + 2.0f);
}

// erf(x): x P(x^2) / Q(x^2) on x clamped to +-4 (erf(4) rounds to 1), the rational
// approximation of Eigen's and XNNPACK's float erf.
MYCONV_HOST_DEVICE inline float erf_(float x) {
  const float c = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x), x2 = c * c;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  const float erf = c * p / q;  // within 1e-7 of +-1 its error can pass them: clamped (gelu's sign)
  return erf < -1.0f ? -1.0f : (erf > 1.0f ? 1.0f : erf);
}

template <typename T>
MYCONV_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}
// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, no cancellation.
template <typename T>
MYCONV_HOST_DEVICE T softplus(T x) {
  return (x > T(0) ? x : T(0)) + log1p_unit(exp_(-abs_(x)));
}
template <typename T>
MYCONV_HOST_DEVICE T relu6(T x) {
  return x < T(0) ? T(0) : (x > T(6) ? T(6) : x);
}
template <typename T>
MYCONV_HOST_DEVICE T elu(T x, T alpha) {
  return x > T(0) ? x : alpha * expm1_(x);
}
// x tanh(softplus(x)) = x n / (n + 2) with n = e^x (e^x + 2) (no log); x itself above 20.
template <typename T>
MYCONV_HOST_DEVICE T mish(T x) {
  const T e = exp_(x < T(20) ? x : T(20)), n = e * (e + T(2));
  return x < T(20) ? x * n / (n + T(2)) : x;
}
}  // namespace activation_math

// Keras 3's `kActivation(x)`, its parameter `alpha` where it has one.
template <Activation kActivation, typename T>
MYCONV_HOST_DEVICE T activate(T x, T alpha) {
  using namespace activation_math;  // NOLINT(build/namespaces)
  if constexpr (kActivation == Activation::kLinear) {
    return x;
  } else if constexpr (kActivation == Activation::kRelu) {
    return x < T(0) ? T(0) : x;  // (NaN stays NaN, as in Keras)
  } else if constexpr (kActivation == Activation::kRelu6) {
    return relu6(x);
  } else if constexpr (kActivation == Activation::kLeakyRelu) {
    return x >= T(0) ? x : alpha * x;
  } else if constexpr (kActivation == Activation::kElu) {
    return elu(x, alpha);
  } else if constexpr (kActivation == Activation::kSelu) {  // TF's and Keras's constants
    return T(1.0507009873554804934193349852946) * elu(x, T(1.6732632423543772848170429916717));
  } else if constexpr (kActivation == Activation::kGelu) {
    return T(0.5) * x * (T(1) + erf_(x * T(0.70710678118654752440)));
  } else if constexpr (kActivation == Activation::kSilu) {
    return x * sigmoid(x);
  } else if constexpr (kActivation == Activation::kSigmoid) {
    return sigmoid(x);
  } else if constexpr (kActivation == Activation::kHardSigmoid) {
    return relu6(x + T(3)) / T(6);
  } else if constexpr (kActivation == Activation::kHardSilu) {
    return x * (relu6(x + T(3)) / T(6));
  } else if constexpr (kActivation == Activation::kTanh) {
    return tanh_(x);
  } else if constexpr (kActivation == Activation::kSoftplus) {
    return softplus(x);
  } else if constexpr (kActivation == Activation::kSoftsign) {
    return x / (abs_(x) + T(1));
  } else if constexpr (kActivation == Activation::kMish) {
    return mish(x);
  } else {
    static_assert(kActivation == Activation::kExponential);
    return exp_(x);
  }
}

// Calls f(std::integral_constant<Activation, a>{}) for the run-time activation a, so that loops
// over outputs instantiate one activation each (and vectorise where it allows); on the GPU, the
// implicit GEMM's epilogue switches per element with it.
template <typename F>
MYCONV_HOST_DEVICE decltype(auto) with_activation(Activation a, F&& f) {
#define MYCONV_ACTIVATION_CASE(K) \
  case Activation::K:             \
    return f(std::integral_constant<Activation, Activation::K>{});
  switch (a) {
    MYCONV_ACTIVATION_CASE(kRelu)
    MYCONV_ACTIVATION_CASE(kRelu6)
    MYCONV_ACTIVATION_CASE(kLeakyRelu)
    MYCONV_ACTIVATION_CASE(kElu)
    MYCONV_ACTIVATION_CASE(kSelu)
    MYCONV_ACTIVATION_CASE(kGelu)
    MYCONV_ACTIVATION_CASE(kSilu)
    MYCONV_ACTIVATION_CASE(kSigmoid)
    MYCONV_ACTIVATION_CASE(kHardSigmoid)
    MYCONV_ACTIVATION_CASE(kHardSilu)
    MYCONV_ACTIVATION_CASE(kTanh)
    MYCONV_ACTIVATION_CASE(kSoftplus)
    MYCONV_ACTIVATION_CASE(kSoftsign)
    MYCONV_ACTIVATION_CASE(kMish)
    MYCONV_ACTIVATION_CASE(kExponential)
    case Activation::kLinear:
      break;
  }
#undef MYCONV_ACTIVATION_CASE
  return f(std::integral_constant<Activation, Activation::kLinear>{});
}

}  // namespace myconv
