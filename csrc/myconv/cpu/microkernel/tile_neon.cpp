// The NEON tile kernel (Armv8.0 AArch64, present on every aarch64 CPU): 8 pixels x 8 channels in
// 16 q-register accumulators. The reduction goes 4 values at a time: the 8 filter vectors of those
// 4 rows stay in registers, and each pixel's 4 input values come in one load and feed 8 FMAs by
// lane (vfmaq_laneq_f32): 64 FMAs for 16 loads, 4 a load; 16 + 8 + 4 of the 32 vector registers.
// Pixels go 4 at a time so that 8 independent accumulator chains cover the FMA latency.
#include <arm_neon.h>

#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {
namespace {

constexpr int kMR = kNeonTile.pixels;
constexpr int kNR = kNeonTile.channels;
static_assert(kMR == 8 && kNR == 8, "the kernel below is written out for 8 x 8");

// Four reduction rows (filter vectors b{row}{half}) for the four pixels whose accumulators are
// A0..A3 (pairs of halves) and whose inputs are at X0..X3 + c: 4 loads, 32 FMAs by lane.
#define MYCONV_NEON_FOUR_PIXELS(X0, X1, X2, X3, A0, A1, A2, A3)                                  \
  do {                                                                                           \
    const float32x4_t v0 = vld1q_f32((X0) + c), v1 = vld1q_f32((X1) + c), v2 = vld1q_f32((X2) + c), \
                      v3 = vld1q_f32((X3) + c);                                                  \
    MYCONV_NEON_LANE(0, v0, v1, v2, v3, A0, A1, A2, A3);                                         \
    MYCONV_NEON_LANE(1, v0, v1, v2, v3, A0, A1, A2, A3);                                         \
    MYCONV_NEON_LANE(2, v0, v1, v2, v3, A0, A1, A2, A3);                                         \
    MYCONV_NEON_LANE(3, v0, v1, v2, v3, A0, A1, A2, A3);                                         \
  } while (0)
#define MYCONV_NEON_LANE(L, v0, v1, v2, v3, A0, A1, A2, A3) \
  A0##0 = vfmaq_laneq_f32(A0##0, b##L##0, v0, L);           \
  A0##1 = vfmaq_laneq_f32(A0##1, b##L##1, v0, L);           \
  A1##0 = vfmaq_laneq_f32(A1##0, b##L##0, v1, L);           \
  A1##1 = vfmaq_laneq_f32(A1##1, b##L##1, v1, L);           \
  A2##0 = vfmaq_laneq_f32(A2##0, b##L##0, v2, L);           \
  A2##1 = vfmaq_laneq_f32(A2##1, b##L##1, v2, L);           \
  A3##0 = vfmaq_laneq_f32(A3##0, b##L##0, v3, L);           \
  A3##1 = vfmaq_laneq_f32(A3##1, b##L##1, v3, L)

// One tile (a.tiles = 1). The accumulators are named locals (an array of them went to the stack).
void tile(const TileArgs<float>& a) {
  const float32x4_t bias0 = vld1q_f32(a.bias), bias1 = vld1q_f32(a.bias + 4);
  float32x4_t c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
  float32x4_t c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1, c60 = bias0, c61 = bias1, c70 = bias0, c71 = bias1;
  const float* b = a.packed;
  for (int64_t s = 0; s < a.segments; ++s) {
    const float* const* x = a.pixels + s * kMR;
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4], *x5 = x[5], *x6 = x[6], *x7 = x[7];
    int64_t c = 0;
    for (; c + 4 <= a.depth; c += 4, b += 4 * kNR) {
      const float32x4_t b00 = vld1q_f32(b), b01 = vld1q_f32(b + 4), b10 = vld1q_f32(b + 8), b11 = vld1q_f32(b + 12);
      const float32x4_t b20 = vld1q_f32(b + 16), b21 = vld1q_f32(b + 20), b30 = vld1q_f32(b + 24),
                        b31 = vld1q_f32(b + 28);
      MYCONV_NEON_FOUR_PIXELS(x0, x1, x2, x3, c0, c1, c2, c3);
      MYCONV_NEON_FOUR_PIXELS(x4, x5, x6, x7, c4, c5, c6, c7);
    }
    for (; c < a.depth; ++c, b += kNR) {  // the segment's last depth % 4 rows
      const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
      float32x4_t v = vld1q_dup_f32(x0 + c);
      c00 = vfmaq_f32(c00, v, b0), c01 = vfmaq_f32(c01, v, b1), v = vld1q_dup_f32(x1 + c);
      c10 = vfmaq_f32(c10, v, b0), c11 = vfmaq_f32(c11, v, b1), v = vld1q_dup_f32(x2 + c);
      c20 = vfmaq_f32(c20, v, b0), c21 = vfmaq_f32(c21, v, b1), v = vld1q_dup_f32(x3 + c);
      c30 = vfmaq_f32(c30, v, b0), c31 = vfmaq_f32(c31, v, b1), v = vld1q_dup_f32(x4 + c);
      c40 = vfmaq_f32(c40, v, b0), c41 = vfmaq_f32(c41, v, b1), v = vld1q_dup_f32(x5 + c);
      c50 = vfmaq_f32(c50, v, b0), c51 = vfmaq_f32(c51, v, b1), v = vld1q_dup_f32(x6 + c);
      c60 = vfmaq_f32(c60, v, b0), c61 = vfmaq_f32(c61, v, b1), v = vld1q_dup_f32(x7 + c);
      c70 = vfmaq_f32(c70, v, b0), c71 = vfmaq_f32(c71, v, b1);
    }
  }
#undef MYCONV_NEON_FOUR_PIXELS
#undef MYCONV_NEON_LANE
  const float32x4_t acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                                   {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  float* const out = a.out;
  const int64_t out_stride = a.out_stride;
  const int64_t rows = a.rows;
  const int cols = a.cols;
  if (cols == kNR) {
    for (int i = 0; i < rows; ++i) {
      vst1q_f32(out + i * out_stride, acc[i][0]);
      vst1q_f32(out + i * out_stride + 4, acc[i][1]);
    }
    return;
  }
  float tail[kNR];  // a partial panel: the valid channels only
  for (int i = 0; i < rows; ++i) {
    vst1q_f32(tail, acc[i][0]);
    vst1q_f32(tail + 4, acc[i][1]);
    for (int j = 0; j < cols; ++j) out[i * out_stride + j] = tail[j];
  }
}

}  // namespace

void tile_neon(const TileArgs<float>& a) { for_each_tile<kMR>(a, tile); }

double fma_chains_neon(int64_t rounds, float* sink) {
  // Named chains: an array of them went to the stack.
  const float32x4_t a = vdupq_n_f32(0.999f), b = vdupq_n_f32(0.001f);
  float32x4_t r0 = vdupq_n_f32(0), r1 = vdupq_n_f32(1), r2 = vdupq_n_f32(2), r3 = vdupq_n_f32(3);
  float32x4_t r4 = vdupq_n_f32(4), r5 = vdupq_n_f32(5), r6 = vdupq_n_f32(6), r7 = vdupq_n_f32(7);
  float32x4_t r8 = vdupq_n_f32(8), r9 = vdupq_n_f32(9), r10 = vdupq_n_f32(10), r11 = vdupq_n_f32(11);
  for (int64_t r = 0; r < rounds; ++r) {
    r0 = vfmaq_f32(r0, a, b), r1 = vfmaq_f32(r1, a, b), r2 = vfmaq_f32(r2, a, b), r3 = vfmaq_f32(r3, a, b);
    r4 = vfmaq_f32(r4, a, b), r5 = vfmaq_f32(r5, a, b), r6 = vfmaq_f32(r6, a, b), r7 = vfmaq_f32(r7, a, b);
    r8 = vfmaq_f32(r8, a, b), r9 = vfmaq_f32(r9, a, b), r10 = vfmaq_f32(r10, a, b), r11 = vfmaq_f32(r11, a, b);
  }
  const float32x4_t total = vaddq_f32(vaddq_f32(vaddq_f32(r0, r1), vaddq_f32(r2, r3)),
                                      vaddq_f32(vaddq_f32(vaddq_f32(r4, r5), vaddq_f32(r6, r7)),
                                                vaddq_f32(vaddq_f32(r8, r9), vaddq_f32(r10, r11))));
  *sink = vgetq_lane_f32(total, 0);  // keeps the chains alive
  return 12.0 * 4 * 2 * static_cast<double>(rounds);
}

}  // namespace cpu
}  // namespace myconv
