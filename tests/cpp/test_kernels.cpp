// The CPU kernels themselves, on every instruction set this binary has and this CPU runs (x86-64:
// scalar, AVX2, AVX-512; AArch64: scalar, NEON), against a float64 reference: the tile kernel on
// random runs of tiles (partial tiles, partial panels, reductions of every length mod 4) and the
// depthwise row kernel in float32, float16 and bfloat16 on random geometries (every strip kernel
// and the general path, channel tails). Outputs start poisoned: an element left unwritten, or one
// written outside the output, fails. No torch: the same file builds for aarch64 and runs under
// qemu (scripts/check_aarch64.sh).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "myconv/cpu/microkernel/kernels.h"

namespace {

using namespace myconv::cpu;

struct TileIsa {
  std::string name;
  void (*run)(const TileArgs<float>&);
  TileShape shape;
};

std::vector<TileIsa> tile_isas() {
  std::vector<TileIsa> isas = {{"scalar", &tile_scalar, kScalarTile}};
#if defined(MYCONV_X86_KERNELS) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isas.push_back({"avx2", &tile_avx2, kAvx2Tile});
  if (__builtin_cpu_supports("avx512f")) isas.push_back({"avx512", &tile_avx512, kAvx512Tile});
#endif
#if defined(MYCONV_NEON_KERNELS) && defined(__aarch64__)
  isas.push_back({"neon", &tile_neon, kNeonTile});
#endif
  return isas;
}

double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / (norm > 0 ? norm : 1));
}

TEST(TileKernels, MatchFloat64OnRandomRuns) {
  std::mt19937 random(7);
  std::normal_distribution<float> normal;
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (const TileIsa& isa : tile_isas()) {
    SCOPED_TRACE(isa.name);
    const int mr = isa.shape.pixels, nr = isa.shape.channels;
    for (int trial = 0; trial < 300; ++trial) {
      const int64_t segments = 1 + random() % 3, depth = 1 + random() % 13, tiles = 1 + random() % 3;
      const int64_t rows = tiles * mr - static_cast<int64_t>(random() % mr);
      const int cols = trial % 3 == 0 ? nr : 1 + static_cast<int>(random() % nr);
      const int64_t out_stride = cols + random() % 4;
      // Each pixel's segment: depth values of its own (pixels past `rows` read zeros).
      std::vector<float> inputs(tiles * mr * segments * depth), zeros(depth, 0.0f);
      for (float& v : inputs) v = normal(random);
      std::vector<const float*> pixels(tiles * segments * mr);
      for (int64_t t = 0; t < tiles; ++t)
        for (int64_t s = 0; s < segments; ++s)
          for (int i = 0; i < mr; ++i) {
            const int64_t pixel = t * mr + i;
            pixels[(t * segments + s) * mr + i] =
                pixel < rows ? inputs.data() + (pixel * segments + s) * depth : zeros.data();
          }
      std::vector<float> packed(segments * depth * nr, 0.0f), bias(nr, 0.0f);
      for (int64_t r = 0; r < segments * depth; ++r)
        for (int j = 0; j < cols; ++j) packed[r * nr + j] = normal(random);
      for (int j = 0; j < cols; ++j) bias[j] = normal(random);
      std::vector<float> out(tiles * mr * out_stride + 8, poison);
      TileArgs<float> args{pixels.data(), segments, depth, packed.data(), bias.data(), out.data(), out_stride,
                           tiles, rows, cols, nullptr, nullptr, 0};
      isa.run(args);
      std::vector<double> got, want;
      for (int64_t p = 0; p < tiles * mr; ++p) {
        for (int64_t j = 0; j < out_stride; ++j) {
          const float value = out[p * out_stride + j];
          if (p >= rows || j >= cols) {
            ASSERT_TRUE(std::isnan(value)) << "wrote outside the output: pixel " << p << " channel " << j;
            continue;
          }
          double sum = bias[j];
          for (int64_t s = 0; s < segments; ++s)
            for (int64_t c = 0; c < depth; ++c)
              sum += double{inputs[(p * segments + s) * depth + c]} * packed[(s * depth + c) * nr + j];
          ASSERT_FALSE(std::isnan(value)) << "left pixel " << p << " channel " << j << " unwritten";
          got.push_back(value);
          want.push_back(sum);
        }
      }
      for (size_t i = tiles * mr * out_stride; i < out.size(); ++i) ASSERT_TRUE(std::isnan(out[i]));
      ASSERT_LE(relative_error(got, want), 1e-6) << "segments " << segments << " depth " << depth;
    }
  }
}

TEST(TileKernels, FmaPeakLoopCountsItsFlops) {
  float sink = 0;
  EXPECT_EQ(fma_chains_scalar(10, &sink), 12.0 * 2 * 10);
#if defined(MYCONV_NEON_KERNELS) && defined(__aarch64__)
  EXPECT_EQ(fma_chains_neon(10, &sink), 12.0 * 4 * 2 * 10);
  EXPECT_NEAR(sink, 66 + 12 * 10 * 0.999 * 0.001, 1e-4);  // chains from 0..11, 10 steps of a * b each
#endif
}

// float16 and bfloat16 bits of values this test uses: multiples of 1/16 below 64 in magnitude,
// exact in both (so converting them needs no rounding).
uint16_t float16_bits(float v) {
  if (v == 0) return 0;
  uint32_t f;
  std::memcpy(&f, &v, 4);
  const uint32_t sign = (f >> 16) & 0x8000u, exponent = ((f >> 23) & 0xFF) - 127 + 15, mantissa = (f >> 13) & 0x3FF;
  return static_cast<uint16_t>(sign | exponent << 10 | mantissa);
}
float float16_value(uint16_t h) {
  const int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -24)
                                        : std::ldexp(1.0f + mantissa / 1024.0f, exponent - 15);
  return exponent == 31 ? std::numeric_limits<float>::quiet_NaN() : ((h & 0x8000) ? -magnitude : magnitude);
}
uint16_t bfloat16_bits(float v) {
  uint32_t f;
  std::memcpy(&f, &v, 4);
  return static_cast<uint16_t>(f >> 16);
}
float bfloat16_value(uint16_t b) {
  const uint32_t f = uint32_t{b} << 16;
  float v;
  std::memcpy(&v, &f, 4);
  return v;
}

template <typename T>
struct Element;
template <>
struct Element<float> {
  static float of(float v) { return v; }
  static float value(float v) { return v; }
  static float poison() { return std::numeric_limits<float>::quiet_NaN(); }
  static bool is_poison(float v) { return std::isnan(v); }
  static constexpr double kTolerance = 1e-6;
};
template <>
struct Element<Float16Bits> {
  static Float16Bits of(float v) { return {float16_bits(v)}; }
  static float value(Float16Bits v) { return float16_value(v.bits); }
  static Float16Bits poison() { return {0x7E00}; }
  static bool is_poison(Float16Bits v) { return v.bits == 0x7E00; }
  static constexpr double kTolerance = 1e-3;  // one rounding to 11 bits
};
template <>
struct Element<BFloat16Bits> {
  static BFloat16Bits of(float v) { return {bfloat16_bits(v)}; }
  static float value(BFloat16Bits v) { return bfloat16_value(v.bits); }
  static BFloat16Bits poison() { return {0x7FC1}; }
  static bool is_poison(BFloat16Bits v) { return v.bits == 0x7FC1; }
  static constexpr double kTolerance = 8e-3;  // one rounding to 8 bits
};

template <typename T>
std::vector<std::pair<std::string, void (*)(const DepthwiseRowArgs<T>&)>> depthwise_isas() {
  std::vector<std::pair<std::string, void (*)(const DepthwiseRowArgs<T>&)>> isas;
#if defined(MYCONV_X86_KERNELS) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    isas.emplace_back("avx2", static_cast<void (*)(const DepthwiseRowArgs<T>&)>(&depthwise_row_avx2));
  }
  if (__builtin_cpu_supports("avx512f")) {
    isas.emplace_back("avx512", static_cast<void (*)(const DepthwiseRowArgs<T>&)>(&depthwise_row_avx512));
  }
#endif
#if defined(MYCONV_NEON_KERNELS) && defined(__aarch64__)
  isas.emplace_back("neon", static_cast<void (*)(const DepthwiseRowArgs<T>&)>(&depthwise_row_neon));
#endif
  return isas;
}

template <typename T>
void check_depthwise_rows(const char* type) {
  std::mt19937 random(11);
  // (kernel_w, stride_w, dilation_w): each strip kernel, then general ones.
  const int64_t widths[][3] = {{3, 1, 1}, {3, 2, 1}, {5, 1, 1}, {5, 2, 1}, {7, 1, 1}, {3, 1, 2}, {3, 1, 4},
                               {1, 1, 1}, {2, 3, 1}, {4, 1, 3}, {6, 2, 2}, {3, 3, 1}};
  for (const auto& [name, run] : depthwise_isas<T>()) {
    SCOPED_TRACE(name + " " + type);
    for (int trial = 0; trial < 240; ++trial) {
      const int64_t* w = widths[trial % 12];
      const int64_t channels = 1 + random() % 37, kernel_h = 1 + random() % 4, kernel_w = w[0];
      const int64_t stride_h = 1 + random() % 2, dilation_h = 1 + random() % 2;
      const int64_t in_h = 1 + random() % 9, in_w = 1 + random() % 23, pad_left = random() % (kernel_w * w[2]);
      const int64_t span = (kernel_w - 1) * w[2] + 1;
      const int64_t out_w = std::max<int64_t>(1, (in_w + 2 * pad_left - span) / w[1] + 1);
      const int64_t first_row = static_cast<int64_t>(random() % (in_h + 2)) - 2;
      std::vector<T> image(in_h * in_w * channels);
      for (T& v : image) v = Element<T>::of(static_cast<float>(static_cast<int>(random() % 512) - 256) / 16);
      std::vector<float> filter(kernel_h * kernel_w * channels), bias(channels);
      for (float& v : filter) v = static_cast<float>(static_cast<int>(random() % 64) - 32) / 16;
      for (float& v : bias) v = static_cast<float>(static_cast<int>(random() % 64) - 32) / 16;
      const bool with_bias = trial % 4 != 1;
      std::vector<T> out(out_w * channels + 16, Element<T>::poison());
      run({image.data(), filter.data(), with_bias ? bias.data() : nullptr, out.data(), channels, in_h, in_w, out_w,
           kernel_h, kernel_w, stride_h, w[1], dilation_h, w[2], pad_left, first_row});
      std::vector<double> got, want;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        for (int64_t c = 0; c < channels; ++c) {
          double sum = with_bias ? bias[c] : 0.0;
          for (int64_t kh = 0; kh < kernel_h; ++kh) {
            const int64_t ih = first_row + kh * dilation_h;
            for (int64_t kw = 0; kw < kernel_w; ++kw) {
              const int64_t iw = ow * w[1] - pad_left + kw * w[2];
              if (ih < 0 || ih >= in_h || iw < 0 || iw >= in_w) continue;
              sum += double{Element<T>::value(image[(ih * in_w + iw) * channels + c])} *
                     filter[(kh * kernel_w + kw) * channels + c];
            }
          }
          const T value = out[ow * channels + c];
          ASSERT_FALSE(Element<T>::is_poison(value)) << "left pixel " << ow << " channel " << c << " unwritten";
          got.push_back(Element<T>::value(value));
          want.push_back(sum);
        }
      }
      for (size_t i = out_w * channels; i < out.size(); ++i) ASSERT_TRUE(Element<T>::is_poison(out[i]));
      ASSERT_LE(relative_error(got, want), Element<T>::kTolerance)
          << "kernel " << kernel_h << "x" << kernel_w << " stride " << w[1] << " dilation " << w[2] << " channels "
          << channels << " in " << in_h << "x" << in_w << " first_row " << first_row;
    }
  }
}

// c10's conversions, the references for the kernels' roundings: bfloat16 to nearest even with every
// NaN the quiet 0x7FC0 (c10::detail::round_to_nearest_even), float16 to nearest even with
// overflow to infinity and subnormals (c10::detail::fp16_ieee_from_fp32_value).
uint16_t c10_bfloat16(float value) {
  if (std::isnan(value)) return 0x7FC0;
  uint32_t u;
  std::memcpy(&u, &value, 4);
  return static_cast<uint16_t>((u + ((u >> 16) & 1) + 0x7FFF) >> 16);
}
uint16_t c10_float16(float value) {
  float base = (std::fabs(value) * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t w;
  std::memcpy(&w, &value, 4);
  const uint32_t shl1_w = w + w, sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  const uint32_t bias_bits = (bias >> 1) + 0x07800000u;
  float bias_value;
  std::memcpy(&bias_value, &bias_bits, 4);
  base = bias_value + base;
  uint32_t bits;
  std::memcpy(&bits, &base, 4);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

// The half types' stores, bit for bit: a 1x1 row over a zero image with a zero filter outputs its
// bias rounded once, so the bias carries the hard cases (ties both ways, values that round up to
// infinity, infinities, NaNs, subnormals, float16's overflow edge) and random ones.
TEST(DepthwiseRowKernels, HalfTypesRoundAsC10) {
  std::mt19937 random(3);
  const uint32_t hard[] = {0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
                           0x00000001, 0x80000001, 0x3F808000, 0x3F818000, 0x477FF000, 0x477FEFFF, 0x477FF001,
                           0x33000000, 0x33000001, 0x387FC000, 0x38800000, 0x7F7F8000, 0x7F7F7FFF, 0x80000000};
  constexpr int64_t kChannels = 4 * 64 + 3;  // whole vectors of every width, and a tail
  std::vector<float> bias(kChannels), filter(kChannels, 0.0f);
  for (int round = 0; round < 200; ++round) {
    for (int64_t c = 0; c < kChannels; ++c) {
      uint32_t u = static_cast<uint32_t>(random());
      if (round < 21) {
        u = hard[(c + round) % 21];
      } else if (round % 2 == 0) {  // ties and near-ties for bfloat16 and float16
        u = (u & 0xFFFF0000u) | (random() % 2 ? 0x8000u : 0x7FFFu + random() % 3);
        if (round % 4 == 0) u = (u & 0xFFFFE000u) | (random() % 2 ? 0x1000u : 0x0FFFu + random() % 3);
      }
      std::memcpy(&bias[c], &u, 4);
    }
    const auto check = [&](auto zero, auto reference, const char* type) {
      using T = decltype(zero);
      const std::vector<T> image(kChannels, zero);
      for (const auto& [name, run] : depthwise_isas<T>()) {
        std::vector<T> out(kChannels, Element<T>::poison());
        run({image.data(), filter.data(), bias.data(), out.data(), kChannels, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
        for (int64_t c = 0; c < kChannels; ++c) {
          const float expected_value = bias[c] + 0.0f;  // (the kernel's sum: -0 + 0 is +0)
          const uint16_t want = reference(expected_value), got = out[c].bits;
          const bool both_nan = std::isnan(expected_value) && std::isnan(Element<T>::value(out[c]));
          ASSERT_TRUE(got == want || (both_nan && std::string(type) == "float16"))
              << name << " " << type << ": bias bits 0x" << std::hex << reinterpret_cast<const uint32_t&>(bias[c])
              << " gave 0x" << got << ", c10 gives 0x" << want;
        }
      }
    };
    check(BFloat16Bits{0}, c10_bfloat16, "bfloat16");
    check(Float16Bits{0}, c10_float16, "float16");
  }
}

TEST(DepthwiseRowKernels, Float32) { check_depthwise_rows<float>("float32"); }
TEST(DepthwiseRowKernels, Float16) { check_depthwise_rows<Float16Bits>("float16"); }
TEST(DepthwiseRowKernels, BFloat16) { check_depthwise_rows<BFloat16Bits>("bfloat16"); }

}  // namespace
