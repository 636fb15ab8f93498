// The CPU convolution microkernel family: one register tile of MR output pixels x NR output
// channels (sizes per instruction set), accumulated over every (tap, input channel) of the window
// straight from the NHWC input through per-pixel row pointers (taps in the padding point at a zero
// row): an indirect GEMM with no im2row copy; and a depthwise kernel (AVX2, AVX-512, NEON). The kernels
// (kernels.h) are one file per instruction set, compiled with its own flags; the driver (tiling,
// threading) and the packing (packing.h) are shared, and the instruction set is chosen once at
// load time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "myconv/activation.h"
#include "myconv/conv2d_plan.h"
#include "myconv/cpu/microkernel/kernels.h"

// The microkernels' types: float32, and the half types they widen to float32 (for
// AT_DISPATCH_SWITCH, from <ATen/Dispatch.h>, which the dispatching file includes).
#define MYCONV_DISPATCH_MICROKERNEL_TYPES(TYPE, NAME, ...)                    \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                                     AT_DISPATCH_CASE_REDUCED_FLOATING_TYPES(__VA_ARGS__))

namespace myconv {
namespace cpu {

// The instruction sets with compiled kernels; scalar is plain C++ and always present. x86-64
// builds have AVX2 and AVX-512, AArch64 builds NEON.
enum class Isa { kScalar, kAvx2, kAvx512, kNeon };

// The tile kernel in use, chosen once (at the first float32 convolution): the best the CPU
// supports, or MYCONV_CPU_ISA=scalar|avx2|avx512|neon when set (an unknown or unsupported name is an
// error naming the variable, not a silent fallback).
Isa selected_isa();
const char* isa_name(Isa isa);

template <typename T>
struct TileKernel {
  void (*run)(const TileArgs<T>& args);
  TileShape shape;
};
TileKernel<float> tile_kernel(Isa isa);

// Whether bfloat16 convolutions run the bfloat16 tile kernel (tile_avx512_bf16.cpp: vdpbf16ps,
// two products a lane and instruction): with the AVX-512 instruction set on a CPU with
// AVX512-BF16 (and BW, VL). Otherwise they widen to float32 like float16.
bool has_bfloat16_tile_kernel();

// Whether calls of this dtype run the bfloat16 tile kernel (bfloat16 with
// has_bfloat16_tile_kernel()); otherwise the selected float32 kernel, on widened half types.
bool uses_bfloat16_tile_kernel(at::ScalarType dtype);
// The register tile of the kernel that runs calls of this dtype.
TileShape tile_shape(at::ScalarType dtype);

// How one pixel's reduction (taps x input channels, in HWIO order) splits into segments: runs
// contiguous both in the NHWC input and in the packed filter. With one group and no width
// dilation, the KW taps of a filter row read KW * C consecutive input values: one segment per
// filter row (7x7 taps of 3 channels become 7 runs of 21); otherwise one segment per tap.
struct Segments {
  bool whole_rows;
  int64_t count;
  int64_t length;

  explicit Segments(const Conv2dPlan& p)
      : whole_rows(p.groups == 1 && p.dilation_w == 1),
        count(whole_rows ? p.kernel_h : p.kernel_h * p.kernel_w),
        length(whole_rows ? p.kernel_w * p.in_channels : p.group_in_channels) {}
};

// The packed filter's panels for a tile shape: panel gj = g * panels + j holds output channels
// channels(gj) = [first, first + width) (width < NR in a group's last panel). Reduction value
// k = s * length + c of channel first + r is at [gj][s][c / G][r][c % G] (TileArgs::packed),
// zero past the group's channels and past the segment's length.
struct PanelLayout {
  int64_t nr, pair, group_out_channels, panels, packed_length, panel_elements;

  PanelLayout(const Conv2dPlan& p, const Segments& seg, const TileShape& tile)
      : nr(tile.channels), pair(tile.group), group_out_channels(p.group_out_channels),
        panels((p.group_out_channels + nr - 1) / nr), packed_length((seg.length + pair - 1) / pair * pair),
        panel_elements(seg.count * packed_length * nr) {}

  std::pair<int64_t, int64_t> channels(int64_t gj) const {
    const int64_t first = (gj / panels) * group_out_channels + (gj % panels) * nr;
    return {first, std::min<int64_t>(nr, (gj / panels + 1) * group_out_channels - first)};
  }
};

// out = conv(input, filter) + bias for NHWC input with the filter's panels (packing.h: FilterForm
// kPanels) and the tile kernel of the input's dtype, output pixels x panels tiled over threads.
// float32, float16 and bfloat16: half types are widened to float32 (the filter while packing,
// the input rows of each block of tiles as it starts) and the output narrowed back, so every sum
// accumulates in float32; bfloat16 runs the bfloat16 kernel instead where
// has_bfloat16_tile_kernel() (its filter panels in bfloat16 pairs, its sums in float32 too, its
// output rounded in registers). Extra memory: per thread the pointers of one block of tiles,
// copies of its edge segments and, for half types widened, its input rows and outputs in
// float32; independent of N.
// The epilogue (activation(out + residual), residual NHWC contiguous of the output's dtype or
// undefined) runs on each run of tiles as it is stored, before half types are narrowed. The
// output may be a view with contiguous channels (any strides of N, H and W): its blocks are then
// computed in float32 and copied into place from cache.
void conv2d_microkernel(const at::Tensor& input, const void* panels, const std::optional<at::Tensor>& bias,
                        const Conv2dPlan& plan, const Epilogue& epilogue, const at::Tensor& residual,
                        at::Tensor& output);

// Whether conv2d_depthwise_microkernel takes this call: depthwise with one output channel per
// input channel, on an instruction set with a depthwise kernel (AVX2, AVX-512, NEON). Other depthwise
// calls run the generic loops of conv2d_kernel.cpp, also the scalar path.
bool has_depthwise_microkernel(const Conv2dPlan& plan);
// Output rows over threads, with the filter as [KH, KW, C] float32 (FilterForm kDepthwise), into
// a contiguous output.
// float32, float16 and bfloat16 (the kernels widen half types as they load them and round each
// output once as they store it); no extra memory but the bias in float32, and for half types
// fused a row of float32 sums a thread. The epilogue runs on each output row as it is written;
// for half types on those sums, rounded once after it.
void conv2d_depthwise_microkernel(const at::Tensor& input, const float* filter,
                                  const std::optional<at::Tensor>& bias, const Conv2dPlan& plan,
                                  const Epilogue& epilogue, const at::Tensor& residual, at::Tensor& output);

// grad_filter [KH*KW*Cg, O] in float32 (contiguous, written whole) of a non-depthwise convolution
// with float32, float16 or bfloat16 input and grad_output (contiguous NHWC), on the float32 tile
// kernel of the selected instruction set (filter_grad.cpp). Each element is summed over the
// output pixels in one fixed order: the same bits for any thread count.
void filter_grad_microkernel(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dPlan& plan,
                             at::Tensor& grad_filter);

}  // namespace cpu
}  // namespace myconv
