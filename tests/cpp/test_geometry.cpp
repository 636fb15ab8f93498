// The geometry header on its own: TF SAME split, VALID/explicit output size, overflow guards.
#include <gtest/gtest.h>

#include <limits>

#include "myconv/geometry.h"

namespace g = myconv::geometry;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(Geometry, EffectiveKernel) {
  EXPECT_EQ(g::effective_kernel(1, 5), 1);
  EXPECT_EQ(g::effective_kernel(3, 1), 3);
  EXPECT_EQ(g::effective_kernel(3, 2), 5);
  EXPECT_EQ(g::effective_kernel(7, 3), 19);
}

TEST(Geometry, SameOutputSizeIsCeil) {
  EXPECT_EQ(g::same_output_size(0, 2), 0);
  EXPECT_EQ(g::same_output_size(5, 1), 5);
  EXPECT_EQ(g::same_output_size(5, 2), 3);
  EXPECT_EQ(g::same_output_size(6, 2), 3);
  EXPECT_EQ(g::same_output_size(4, 3), 2);
  EXPECT_EQ(g::same_output_size(kMax, 1), kMax);
  EXPECT_EQ(g::same_output_size(kMax, 2), kMax / 2 + 1);
  EXPECT_EQ(g::same_output_size(kMax, kMax), 1);
}

TEST(Geometry, SamePaddingPutsTheOddPixelAfter) {
  // TF: in 4, k 2, s 3 -> out 2, total (2-1)*3 + 2 - 4 = 1 -> (0, 1).
  EXPECT_EQ(g::same_padding(4, 2, 3).before, 0);
  EXPECT_EQ(g::same_padding(4, 2, 3).after, 1);
  // in 224, k 7, s 2 -> out 112, total 111*2 + 7 - 224 = 5 -> (2, 3).
  EXPECT_EQ(g::same_padding(224, 7, 2).before, 2);
  EXPECT_EQ(g::same_padding(224, 7, 2).after, 3);
  // in 5, k 3, s 1 -> (1, 1); in 5, k 3, s 2 -> out 3, total 2 -> (1, 1).
  EXPECT_EQ(g::same_padding(5, 3, 1).before, 1);
  EXPECT_EQ(g::same_padding(5, 3, 2).after, 1);
  // in 6, k 3, s 2 -> out 3, total 1 -> (0, 1).
  EXPECT_EQ(g::same_padding(6, 3, 2).before, 0);
  EXPECT_EQ(g::same_padding(6, 3, 2).after, 1);
  // Kernel no larger than the stride: no padding at all.
  EXPECT_EQ(g::same_padding(6, 1, 2).before + g::same_padding(6, 1, 2).after, 0);
  // Dilated: in 5, eff 5 (k 3, d 2), s 1 -> total 4 -> (2, 2).
  EXPECT_EQ(g::same_padding(5, g::effective_kernel(3, 2), 1).before, 2);
}

TEST(Geometry, SamePaddingNearInt64Max) {
  const g::Padding p = g::same_padding(kMax, 3, 1);
  EXPECT_EQ(p.before, 1);
  EXPECT_EQ(p.after, 1);
  const g::Padding q = g::same_padding(kMax - 1, 3, 2);  // even size, stride 2: total 1
  EXPECT_EQ(q.before, 0);
  EXPECT_EQ(q.after, 1);
  const g::Padding huge = g::same_padding(2, kMax, 1);  // eff near max, tiny input
  EXPECT_EQ(huge.before + huge.after, kMax - 1);
}

TEST(Geometry, OutputSizeValidAndExplicit) {
  EXPECT_EQ(g::output_size(5, {0, 0}, 3, 1), 3);
  EXPECT_EQ(g::output_size(5, {0, 0}, 3, 2), 2);
  EXPECT_EQ(g::output_size(4, {0, 0}, 2, 3), 1);
  EXPECT_EQ(g::output_size(4, {1, 2}, 3, 2), 3);
  EXPECT_EQ(g::output_size(3, {0, 0}, 3, 1), 1);  // exactly one window
  EXPECT_EQ(g::output_size(kMax, {0, 0}, int64_t{1}, 1), kMax);
  EXPECT_EQ(g::output_size(kMax - 2, {1, 1}, int64_t{3}, 1), kMax - 2);
  // SAME through the explicit formula gives ceil(in / s).
  for (int64_t in = 1; in < 40; ++in)
    for (int64_t k = 1; k < 8; ++k)
      for (int64_t s = 1; s < 4; ++s)
        EXPECT_EQ(g::output_size(in, g::same_padding(in, k, s), k, s), g::same_output_size(in, s))
            << in << " " << k << " " << s;
}

TEST(Geometry, InputIndexOfATap) {
  // SAME, in 6, k 3, s 2: pads (0, 1); output 2 reads inputs 4, 5 and the bottom padding 6.
  const g::Padding pad = g::same_padding(6, 3, 2);
  EXPECT_EQ(g::input_index(2, 2, pad.before, 0, 1), 4);
  EXPECT_EQ(g::input_index(2, 2, pad.before, 2, 1), 6);
  // in 5, k 3, s 1: pads (1, 1); output 0, tap 0 reads the top padding -1.
  EXPECT_EQ(g::input_index(0, 1, g::same_padding(5, 3, 1).before, 0, 1), -1);
  // Dilation 3, stride 2, explicit before-padding 2: out 4, tap 2 -> 4*2 - 2 + 6.
  EXPECT_EQ(g::input_index(4, 2, 2, 2, 3), 12);
}

TEST(Geometry, TapsInsideAreExactlyTheInBoundsTaps) {
  for (int64_t d = 1; d <= 3; ++d)
    for (int64_t kernel = 1; kernel <= 5; ++kernel)
      for (int64_t in = 1; in <= 6; ++in)
        for (int64_t first = -12; first <= 8; ++first) {
          const g::IndexRange taps = g::taps_inside(first, d, kernel, in);
          ASSERT_LE(taps.begin, taps.end);
          for (int64_t tap = 0; tap < kernel; ++tap) {
            const int64_t at = first + tap * d;
            EXPECT_EQ(tap >= taps.begin && tap < taps.end, at >= 0 && at < in) << d << kernel << in << first << tap;
          }
        }
}

TEST(Geometry, OutputsInsideHaveEveryTapInside) {
  for (int64_t s = 1; s <= 3; ++s)
    for (int64_t eff = 1; eff <= 7; ++eff)
      for (int64_t in = 1; in <= 9; ++in)
        for (int64_t pad = 0; pad <= 4; ++pad)
          for (int64_t out = 0; out <= 12; ++out) {
            const g::IndexRange inside = g::outputs_inside(in, eff, s, pad, out);
            ASSERT_LE(inside.begin, inside.end);
            ASSERT_LE(inside.end, out);
            for (int64_t o = 0; o < out; ++o) {
              const int64_t first = g::input_index(o, s, pad, 0, 1);
              const bool whole = first >= 0 && first + eff - 1 < in;
              EXPECT_EQ(o >= inside.begin && o < inside.end, whole) << s << eff << in << pad << out << o;
            }
          }
}

TEST(Geometry, OutputIndexInvertsInputIndex) {
  // Every (output, tap) pair maps to an input coordinate and back; coordinates between strides
  // are read by no output through that tap.
  for (int64_t s = 1; s <= 3; ++s)
    for (int64_t d = 1; d <= 3; ++d)
      for (int64_t pad = 0; pad <= 2; ++pad)
        for (int64_t tap = 0; tap < 4; ++tap)
          for (int64_t in = -3; in < 20; ++in) {
            const int64_t out = g::output_index(in, s, pad, tap, d);
            if (out >= 0) {
              EXPECT_EQ(g::input_index(out, s, pad, tap, d), in) << s << d << pad << tap << in;
            } else {
              for (int64_t o = 0; o < 20; ++o) EXPECT_NE(g::input_index(o, s, pad, tap, d), in);
            }
          }
  // SAME, in 6, k 3, s 2, pads (0, 1): input 4 is read by output 2 through tap 0 and by output 1
  // through tap 2; tap 1 reads only odd inputs.
  EXPECT_EQ(g::output_index(4, 2, 0, 0, 1), 2);
  EXPECT_EQ(g::output_index(4, 2, 0, 2, 1), 1);
  EXPECT_EQ(g::output_index(4, 2, 0, 1, 1), -1);
}

TEST(Geometry, CheckedHelpersCatchOverflow) {
  int64_t value = 0;
  EXPECT_TRUE(g::checked_effective_kernel(3, 4, &value));
  EXPECT_EQ(value, 9);
  EXPECT_FALSE(g::checked_effective_kernel(kMax, 2, &value));
  EXPECT_FALSE(g::checked_effective_kernel(2, kMax, &value));
  EXPECT_TRUE(g::checked_effective_kernel(2, kMax - 1, &value));
  EXPECT_EQ(value, kMax);
  EXPECT_TRUE(g::checked_padded_size(10, {1, 2}, &value));
  EXPECT_EQ(value, 13);
  EXPECT_FALSE(g::checked_padded_size(kMax, {0, 1}, &value));
  EXPECT_FALSE(g::checked_padded_size(1, {kMax, 0}, &value));
}

TEST(Geometry, CeilDivNeverFormsAnOverflowingSum) {
  EXPECT_EQ(g::ceil_div(0, 3), 0);
  EXPECT_EQ(g::ceil_div(7, 3), 3);
  EXPECT_EQ(g::ceil_div(-7, 3), -2);
  EXPECT_EQ(g::ceil_div(kMax, kMax), 1);
  EXPECT_EQ(g::ceil_div(kMax - 1, kMax), 1);
  EXPECT_EQ(g::ceil_div(2, kMax), 1);  // (2 + kMax - 1) / kMax would overflow
  EXPECT_EQ(g::ceil_div(-kMax, 2), -(kMax / 2));
}

TEST(Geometry, RangesAtTheGeometryBound) {
  constexpr int64_t big = g::kMaxGeometryValue;
  // A tap far in the padding, dilation at the bound: only the tap at `big` lands inside.
  const g::IndexRange taps = g::taps_inside(-big + 1, big, 3, 4);
  EXPECT_EQ(taps.begin, 1);
  EXPECT_EQ(taps.end, 2);
  // A huge stride with a padding of 2: output 0 starts in the padding, no output is inside.
  const g::IndexRange outs = g::outputs_inside(4, 3, big, 2, 1);
  EXPECT_EQ(outs.begin, 1);
  EXPECT_EQ(outs.end, 1);
  // The largest stride that int64 holds: the first output's tap 0 is inside from output 1 on.
  EXPECT_EQ(g::outputs_inside(10, 1, kMax, 5, 3).begin, 1);
}
