// The CPU convolution microkernel family: one register tile of kMR output pixels x kNR output
// channels, accumulated over every (tap, input channel) of the window straight from the NHWC
// input through per-pixel row pointers (taps in the padding point at a zero row): an indirect
// GEMM with no im2row copy. One file per instruction set, compiled with its own flags; the driver
// (packing, tiling, threading) is shared, and the table is chosen once at load time.
#pragma once

#include <cstdint>

#include "myconv/conv2d_plan.h"

namespace myconv {
namespace cpu {

constexpr int kMR = 6;   // output pixels per tile
constexpr int kNR = 16;  // output channels per tile: two AVX2 vectors

struct TileArgs {
  // pixels[s * kMR + i]: segment s of the tile's pixel i, `depth` input values contiguous in the
  // input that meet `depth` consecutive rows of the packed filter (row i past `rows` and
  // segments in the padding point at zeros).
  const float* const* pixels;
  int64_t segments;
  int64_t depth;
  const float* packed;  // filter panel [segments * depth][kNR], zero past `cols`
  const float* bias;    // kNR values, zero past `cols`
  float* out;           // output of pixel 0, channel 0 of the tile
  int64_t out_stride;   // elements between consecutive pixels' outputs
  int rows;             // valid pixels, <= kMR
  int cols;             // valid channels, <= kNR
};

using TileKernel = void (*)(const TileArgs& args);

// The instruction sets with a compiled tile kernel; scalar is plain C++ and always present.
enum class Isa { kScalar, kAvx2 };

void tile_scalar(const TileArgs& args);
void tile_avx2(const TileArgs& args);  // needs AVX2 + FMA

// FLOPs done by `rounds` rounds of 12 independent FMA chains of the instruction set's widest
// vector: the loop the benchmark times to measure the machine's FMA peak for the ISA in use.
double fma_chains_scalar(int64_t rounds, float* sink);
double fma_chains_avx2(int64_t rounds, float* sink);

// The tile kernel in use, chosen once (at the first float32 convolution): the best the CPU
// supports, or MYCONV_CPU_ISA=scalar|avx2 when set (an unknown or unsupported name is an error
// naming the variable, not a silent fallback). No AVX-512 kernel yet: AVX-512 CPUs use AVX2.
Isa selected_isa();
const char* isa_name(Isa isa);
TileKernel tile_kernel(Isa isa);

// out = conv(input, filter) + bias for float32 NHWC input / HWIO filter with the selected tile
// kernel: packs the filter into kNR-wide panels once per call, then tiles output pixels x panels
// over threads. Extra memory: the packed filter, and per thread the pointers of one block of
// tiles and copies of its edge segments; independent of N.
void conv2d_microkernel(const float* input, const float* filter, const float* bias,
                        const Conv2dPlan& plan, float* output);

}  // namespace cpu
}  // namespace myconv
