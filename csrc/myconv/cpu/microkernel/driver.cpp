// The microkernel driver shared by every instruction set: instruction-set selection (once, at
// load time), filter packing, and the tiling of output pixels x channel panels over threads.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "myconv/cpu/microkernel/microkernel.h"
#include "myconv/indexing.h"

namespace myconv {
namespace cpu {
namespace {

// At most this many tiles share one pass over a filter panel (which stays in L2 across them).
constexpr int64_t kMaxTilesPerBlock = 16;

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#if defined(__x86_64__) && defined(__GNUC__)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Isa choose_isa() {
  const char* forced = std::getenv("MYCONV_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return cpu_has(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar;
  for (const Isa isa : {Isa::kScalar, Isa::kAvx2}) {
    if (std::string(forced) != isa_name(isa)) continue;
    TORCH_CHECK(cpu_has(isa), "MYCONV_CPU_ISA=", forced, " but this CPU lacks that instruction set");
    return isa;
  }
  TORCH_CHECK(false, "MYCONV_CPU_ISA must be one of scalar, avx2 (or unset), got \"", forced, "\"");
}

}  // namespace

Isa selected_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

const char* isa_name(Isa isa) { return isa == Isa::kAvx2 ? "avx2" : "scalar"; }

TileKernel tile_kernel(Isa isa) { return isa == Isa::kAvx2 ? &tile_avx2 : &tile_scalar; }

void conv2d_microkernel(const float* input, const float* filter, const float* bias,
                        const Conv2dPlan& p, float* output) {
  const TileKernel kernel = tile_kernel(selected_isa());
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t cg = p.group_in_channels;
  const int64_t og = p.group_out_channels;
  const int64_t panels = (og + kNR - 1) / kNR;
  const int64_t depth = p.window_size();  // the reduction length

  // packed[g, j, (t, c), r] = filter[t, c, g * og + j * kNR + r], zero past og; bias likewise.
  std::vector<float> packed(p.groups * panels * depth * kNR, 0.0f);
  std::vector<float> bias_packed(p.groups * panels * kNR, 0.0f);
  at::parallel_for(0, p.groups * panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gj = begin; gj < end; ++gj) {
      const int64_t first_channel = (gj / panels) * og + (gj % panels) * kNR;
      const int64_t width = std::min<int64_t>(kNR, (gj / panels + 1) * og - first_channel);
      float* dst = packed.data() + gj * depth * kNR;
      for (int64_t k = 0; k < depth; ++k, dst += kNR) {
        std::copy_n(filter + k * p.out_channels + first_channel, width, dst);
      }
      if (bias) std::copy_n(bias + first_channel, width, bias_packed.data() + gj * kNR);
    }
  });

  const std::vector<float> zeros(cg, 0.0f);
  const Conv2dIndexer ix(p);
  const int64_t pixels = p.output_pixels();
  // Tiles spread evenly over the blocks, so that every work item costs the same.
  const int64_t all_tiles = (pixels + kMR - 1) / kMR;
  const int64_t blocks = (all_tiles + kMaxTilesPerBlock - 1) / kMaxTilesPerBlock;
  const int64_t tiles_per_block = (all_tiles + blocks - 1) / blocks;
  // Work items: (block of pixel tiles, group, panel), panels fastest, so that a thread's
  // consecutive items share the block's input rows, and small images still fill every thread.
  const int64_t panels_per_block = p.groups * panels;
  at::parallel_for(0, blocks * panels_per_block, 1, [&](int64_t begin, int64_t end) {
    std::vector<const float*> pointers(tiles_per_block * taps * kMR);
    int64_t pointers_for = -1;  // (block, group) the pointers were built for, as block * groups + g
    for (int64_t item = begin; item < end; ++item) {
      const int64_t block = item / panels_per_block;
      const int64_t gj = item % panels_per_block;
      const int64_t g = gj / panels;
      const int64_t j = gj % panels;
      const int64_t first = block * tiles_per_block * kMR;
      const int64_t tiles = std::min(tiles_per_block, (pixels - first + kMR - 1) / kMR);
      if (pointers_for != block * p.groups + g) {
        // Row pointers of every tile of the block for this group: [tile][tap][pixel].
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const float** tile_pointers = pointers.data() + tile * taps * kMR;
          for (int i = 0; i < kMR; ++i) {
            const int64_t pixel = first + tile * kMR + i;
            for (int64_t t = 0; t < taps; ++t) tile_pointers[t * kMR + i] = zeros.data();
            if (pixel >= pixels) continue;
            const Pixel out = ix.output_pixel(pixel);
            for_each_tap_inside(p, out.y, out.x, [&](int64_t ih, int64_t iw, int64_t kh, int64_t kw) {
              tile_pointers[(kh * p.kernel_w + kw) * kMR + i] = input + ix.input_offset(out.n, ih, iw, g * cg);
            });
          }
        }
        pointers_for = block * p.groups + g;
      }
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t tile_first = first + tile * kMR;
        const TileArgs args{pointers.data() + tile * taps * kMR,
                            taps,
                            cg,
                            packed.data() + gj * depth * kNR,
                            bias_packed.data() + gj * kNR,
                            output + tile_first * p.out_channels + g * og + j * kNR,
                            p.out_channels,
                            static_cast<int>(std::min<int64_t>(kMR, pixels - tile_first)),
                            static_cast<int>(std::min<int64_t>(kNR, og - j * kNR))};
        kernel(args);
      }
    }
  });
}

namespace {

// GFLOP/s of the FMA loop of the selected instruction set on every intra-op thread at once:
// the peak the benchmark reports each shape's share of.
double fma_peak_gflops() {
  const auto chains = selected_isa() == Isa::kAvx2 ? &fma_chains_avx2 : &fma_chains_scalar;
  constexpr int64_t kRounds = int64_t{1} << 22;
  const int threads = at::get_num_threads();
  std::vector<double> flops(threads, 0.0);
  std::vector<float> sinks(threads, 0.0f);
  double best = 0.0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) flops[t] = chains(kRounds, &sinks[t]);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total = 0.0;
    for (const double f : flops) total += f;
    best = std::max(best, total / seconds / 1e9);
  }
  return best;
}

}  // namespace

// The tile kernel this process uses and the machine's FMA peak for it (tests and benchmarks).
TORCH_LIBRARY_FRAGMENT(myconv, m) {
  m.def("cpu_isa() -> str", [] { return std::string(isa_name(selected_isa())); });
  m.def("cpu_fma_peak_gflops() -> float", &fma_peak_gflops);
}

}  // namespace cpu
}  // namespace myconv
