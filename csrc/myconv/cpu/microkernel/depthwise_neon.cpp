// The NEON depthwise kernel (AArch64): depthwise_row.h with 4-channel q-register vectors; float16
// widened and narrowed by the base architecture's fcvtl / fcvtn, bfloat16 by a shift and by
// rounding to nearest even as c10::BFloat16 does.
#include <arm_neon.h>

#include "myconv/cpu/microkernel/depthwise_row.h"

namespace myconv {
namespace cpu {
namespace {

struct Neon {
  using Reg = float32x4_t;
  // NEON has no masked loads or stores: a tail of `lanes` channels goes through a local vector,
  // so nothing past the tensor is touched.
  struct Mask {
    int64_t lanes;
  };
  static constexpr int64_t kLanes = 4;
  static Reg zero() { return vdupq_n_f32(0.0f); }
  static Reg load(const float* at) { return vld1q_f32(at); }
  static Reg load(const float* at, Mask mask) {
    float part[kLanes] = {};
    for (int64_t l = 0; l < mask.lanes; ++l) part[l] = at[l];
    return vld1q_f32(part);
  }
  static void store(float* at, Reg value) { vst1q_f32(at, value); }
  static void store(float* at, Mask mask, Reg value) {
    float part[kLanes];
    vst1q_f32(part, value);
    for (int64_t l = 0; l < mask.lanes; ++l) at[l] = part[l];
  }
  static Reg load(const Float16Bits* at) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(at))));
  }
  static Reg load(const BFloat16Bits* at) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(at)), 16));
  }
  // fcvtn rounds in FPCR's mode, to nearest even unless a program changed it (fesetround):
  // AArch64 has no narrowing conversion with a fixed mode, unlike F16C's immediate on x86.
  static void store(Float16Bits* at, Reg value) {
    vst1_u16(reinterpret_cast<uint16_t*>(at), vreinterpret_u16_f16(vcvt_f16_f32(value)));
  }
  static void store(BFloat16Bits* at, Reg value) {  // to nearest even; a NaN becomes the quiet NaN 0x7FC0
    const uint32x4_t bits = vreinterpretq_u32_f32(value);
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
    uint32x4_t rounded = vshrq_n_u32(vaddq_u32(bits, vaddq_u32(vdupq_n_u32(0x7FFF), odd)), 16);
    const uint32x4_t is_number = vceqq_f32(value, value);
    rounded = vbslq_u32(is_number, rounded, vdupq_n_u32(0x7FC0));
    vst1_u16(reinterpret_cast<uint16_t*>(at), vmovn_u32(rounded));
  }
  static Reg fmadd(Reg a, Reg b, Reg c) { return vfmaq_f32(c, a, b); }
  // The first `lanes` lanes.
  static Mask tail_mask(int64_t lanes) { return {lanes}; }
};

}  // namespace

void depthwise_row_neon(const DepthwiseRowArgs<float>& a) { depthwise_row<Neon>(a); }
void depthwise_row_neon(const DepthwiseRowArgs<Float16Bits>& a) { depthwise_row<Neon>(a); }
void depthwise_row_neon(const DepthwiseRowArgs<BFloat16Bits>& a) { depthwise_row<Neon>(a); }
void depthwise_row_neon(const DepthwiseRowArgs<Float16Bits, float>& a) { depthwise_row<Neon>(a); }
void depthwise_row_neon(const DepthwiseRowArgs<BFloat16Bits, float>& a) { depthwise_row<Neon>(a); }

}  // namespace cpu
}  // namespace myconv
