// The CPU convolution microkernel family: one register tile of MR output pixels x NR output
// channels (sizes per instruction set), accumulated over every (tap, input channel) of the window
// straight from the NHWC input through per-pixel row pointers (taps in the padding point at a zero
// row): an indirect GEMM with no im2row copy; and a depthwise kernel (AVX2, AVX-512). The kernels
// (kernels.h) are one file per instruction set, compiled with its own flags; the driver (packing,
// tiling, threading) is shared, and the instruction set is chosen once at load time.
#pragma once

#include <cstdint>
#include <optional>

#include "myconv/conv2d_plan.h"
#include "myconv/cpu/microkernel/kernels.h"

namespace myconv {
namespace cpu {

// The instruction sets with compiled kernels; scalar is plain C++ and always present.
enum class Isa { kScalar, kAvx2, kAvx512 };

// The tile kernel in use, chosen once (at the first float32 convolution): the best the CPU
// supports, or MYCONV_CPU_ISA=scalar|avx2|avx512 when set (an unknown or unsupported name is an
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

// out = conv(input, filter) + bias for NHWC input / HWIO filter with the selected tile kernel:
// packs the filter into NR-wide panels (or finds them packed: the kernel, and so NR, is fixed
// for the process), then tiles output pixels x panels over threads. float32, float16 and
// bfloat16: half types are widened to float32 (the filter once while packing, the input rows of
// each block of tiles as it starts) and the output narrowed back, so every sum accumulates in
// float32; bfloat16 runs the bfloat16 kernel instead where has_bfloat16_tile_kernel() (its
// filter panels in bfloat16 pairs, its sums in float32 too, its output rounded in registers).
// Extra memory: the packed filter (kept across calls, see filter_cache.h), and per thread the
// pointers of one block of tiles, copies of its edge segments and, for half types widened, its
// input rows and outputs in float32; independent of N.
void conv2d_microkernel(const at::Tensor& input, const at::Tensor& filter, const std::optional<at::Tensor>& bias,
                        const Conv2dPlan& plan, at::Tensor& output);

// Whether conv2d_depthwise_microkernel takes this call: depthwise with one output channel per
// input channel, on an instruction set with a depthwise kernel (AVX2, AVX-512). Other depthwise
// calls run the generic loops of conv2d_kernel.cpp, also the scalar path.
bool has_depthwise_microkernel(const Conv2dPlan& plan);
// Output rows over threads. float32, float16 and bfloat16 (the kernels widen half types as they
// load them and round each output once as they store it); no extra memory but the filter and
// bias in float32.
void conv2d_depthwise_microkernel(const at::Tensor& input, const at::Tensor& filter,
                                  const std::optional<at::Tensor>& bias, const Conv2dPlan& plan, at::Tensor& output);

}  // namespace cpu
}  // namespace myconv
