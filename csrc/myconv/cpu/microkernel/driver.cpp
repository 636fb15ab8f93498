// The microkernel driver shared by every instruction set: instruction-set selection (once, at
// load time) and the tiling of output pixels x channel panels over threads (packing.cpp packs).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "myconv/cpu/epilogue.h"
#include "myconv/cpu/im2row.h"
#include "myconv/cpu/microkernel/microkernel.h"
#include "myconv/indexing.h"

// The x86 kernels exist where the build compiled them (CMake's MYCONV_X86_KERNELS, on x86-64
// targets), the NEON ones likewise on AArch64 (MYCONV_NEON_KERNELS); elsewhere the plain C++
// kernels run every call.
#if defined(MYCONV_X86_KERNELS) && defined(__x86_64__) && defined(__GNUC__)
#define MYCONV_HAS_X86_KERNELS 1
#else
#define MYCONV_HAS_X86_KERNELS 0
#endif
#if defined(MYCONV_NEON_KERNELS) && defined(__aarch64__)
#define MYCONV_HAS_NEON_KERNELS 1
#else
#define MYCONV_HAS_NEON_KERNELS 0
#endif

namespace myconv {
namespace cpu {
namespace {

// At most this many output pixels (whole tiles) share one pass over a filter panel (which stays
// in L2 across them).
constexpr int64_t kMaxPixelsPerBlock = 96;

// Whether this build compiled the instruction set's kernels.
constexpr bool compiled(Isa isa) {
  return isa == Isa::kScalar || (isa == Isa::kNeon ? MYCONV_HAS_NEON_KERNELS : MYCONV_HAS_X86_KERNELS);
}

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
#if MYCONV_HAS_X86_KERNELS
    case Isa::kAvx2:  // (F16C for the float16 conversions: every AVX2 CPU has it)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::kAvx512:  // (libgcc also checks that the OS saves the zmm and mask registers)
      return __builtin_cpu_supports("avx512f") && cpu_has(Isa::kAvx2);
#else
    case Isa::kAvx2:
    case Isa::kAvx512:
      return false;
#endif
    case Isa::kNeon:  // part of the AArch64 base architecture
      return MYCONV_HAS_NEON_KERNELS;
  }
  return false;
}

// Worst to best within an architecture (a build has x86's or AArch64's).
constexpr Isa kEveryIsa[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon};

Isa choose_isa() {
  const char* forced = std::getenv("MYCONV_CPU_ISA");
  if (forced == nullptr || *forced == '\0') {
    Isa best = Isa::kScalar;
    for (const Isa isa : kEveryIsa) best = cpu_has(isa) ? isa : best;
    return best;
  }
  for (const Isa isa : kEveryIsa) {
    if (std::string(forced) != isa_name(isa)) continue;
    TORCH_CHECK(compiled(isa), "MYCONV_CPU_ISA=", forced, " but this build has no ", forced,
                " kernels (built for another architecture, or with MYCONV_X86_KERNELS / MYCONV_NEON_KERNELS OFF)");
    TORCH_CHECK(cpu_has(isa), "MYCONV_CPU_ISA=", forced, " but this CPU lacks that instruction set");
    return isa;
  }
  TORCH_CHECK(false, "MYCONV_CPU_ISA must be one of scalar, avx2, avx512, neon (or unset), got \"", forced, "\"");
}

// The input that output pixels [first, first + count) read, over-approximated by whole input rows
// (every column and channel): [begin, end) in elements from the input's start.
std::pair<int64_t, int64_t> input_rows_read(const Conv2dPlan& p, const Conv2dIndexer& ix, int64_t first,
                                            int64_t count) {
  const Pixel a = ix.output_pixel(first), b = ix.output_pixel(first + count - 1);
  const int64_t top = std::clamp<int64_t>(geometry::input_index(a.y, p.stride_h, p.pad_h.before, 0, p.dilation_h), 0,
                                          p.in_h);
  const int64_t bottom = std::clamp<int64_t>(
      geometry::input_index(b.y, p.stride_h, p.pad_h.before, p.kernel_h - 1, p.dilation_h) + 1, 0, p.in_h);
  return {ix.input_offset(a.n, top, 0, 0), ix.input_offset(b.n, bottom, 0, 0)};
}

}  // namespace

Isa selected_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
    case Isa::kScalar:
      break;
  }
  return "scalar";
}

TileKernel<float> tile_kernel(Isa isa) {
  switch (isa) {
#if MYCONV_HAS_X86_KERNELS
    case Isa::kAvx2:
      return {&tile_avx2, kAvx2Tile};
    case Isa::kAvx512:
      return {&tile_avx512, kAvx512Tile};
#else
    case Isa::kAvx2:  // (never selected: cpu_has is false without the x86 kernels)
    case Isa::kAvx512:
#endif
#if MYCONV_HAS_NEON_KERNELS
    case Isa::kNeon:
      return {&tile_neon, kNeonTile};
#else
    case Isa::kNeon:
#endif
    case Isa::kScalar:
      break;
  }
  return {&tile_scalar, kScalarTile};
}

bool has_bfloat16_tile_kernel() {
#if MYCONV_HAS_X86_KERNELS
  static const bool has = selected_isa() == Isa::kAvx512 && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

namespace {

// The segment pointers of a block of tiles for one group: [tile][segment][pixel]. Segments in
// the padding point at `zeros`; a filter row only partly inside the input (at the left or right
// edge) is copied into the edge buffer, with zeros where it leaves the input. Storage comes from
// the caller (one slice per thread, sized by pointer_count() and edge_capacity()); `mr` pixels a
// tile. E: the elements the kernel reads (float, or at::BFloat16 for the bfloat16 kernel).
template <typename E>
class BlockPointers {
 public:
  BlockPointers(const Conv2dPlan& p, const Segments& seg, int mr, const E* zeros, int64_t block_pixels,
                const E** pointers, E* edges)
      : p_(p), ix_(p), seg_(seg), mr_(mr), zeros_(zeros), pointers_(pointers), edges_(edges),
        edge_capacity_(edge_capacity(p, seg, block_pixels)) {}

  static int64_t pointer_count(const Segments& seg, int64_t block_pixels) { return block_pixels * seg.count; }
  // Floats of edge copies a block of `pixels` output pixels can need: they span at most
  // pixels / OW + 2 output rows, each with OW minus its interior pixels at the edges.
  static int64_t edge_capacity(const Conv2dPlan& p, const Segments& seg, int64_t pixels) {
    if (!seg.whole_rows || p.out_w == 0) return 0;
    const geometry::IndexRange inner =
        geometry::outputs_inside(p.in_w, p.kernel_w, p.stride_w, p.pad_w.before, p.out_w);
    const int64_t edge_pixels = std::min(pixels, (pixels / p.out_w + 2) * (p.out_w - (inner.end - inner.begin)));
    return edge_pixels * p.kernel_h * seg.length;
  }

  const E* const* tile(int64_t t) const { return pointers_ + t * seg_.count * mr_; }

  // `rows` holds the input from element `origin` of the NHWC input on: the input itself (origin
  // 0), or the block's input rows widened from a half type. The pixels are walked in
  // order, their coordinates advanced by one (this runs for every pixel of every block).
  void build(int64_t first_pixel, int64_t tiles, int64_t group, const E* rows, int64_t origin) {
    rows_ = rows;
    origin_ = origin;
    edges_used_ = 0;
    const int64_t end = std::min(p_.output_pixels(), first_pixel + tiles * mr_);
    int64_t pixel = first_pixel;
    Pixel out = ix_.output_pixel(pixel);
    start_output_row(out);
    for (int64_t t = 0; t < tiles; ++t) {
      const E** slots = pointers_ + t * seg_.count * mr_;
      for (int i = 0; i < mr_; ++i, ++pixel) {
        if (pixel >= end) {
          for (int64_t s = 0; s < seg_.count; ++s) slots[s * mr_ + i] = zeros_;
        } else if (seg_.whole_rows) {
          add_filter_rows(out.x, slots + i);
        } else {
          add_taps(out, group, slots + i);
        }
        if (next_pixel(out, p_.out_w, p_.out_h) && pixel + 1 < end) start_output_row(out);
      }
    }
  }

 private:
  // The start of the input row under each filter row of output row (out.n, out.y): nullptr for
  // filter rows in the padding.
  void start_output_row(const Pixel& out) {
    for (int64_t kh = 0; kh < p_.kernel_h; ++kh) {
      const int64_t ih = geometry::input_index(out.y, p_.stride_h, p_.pad_h.before, kh, p_.dilation_h);
      row_starts_[kh] = ih >= 0 && ih < p_.in_h ? input_at(ix_.input_offset(out.n, ih, 0, 0)) : nullptr;
    }
  }

  // Every filter row's slot of the pixel in column `x` of the current output row: the zero row
  // for rows in the padding, else the row's start in the input, or an edge copy where the image's
  // left or right edge cuts the row.
  void add_filter_rows(int64_t x, const E** slots) {
    const int64_t iw0 = geometry::input_index(x, p_.stride_w, p_.pad_w.before, int64_t{0}, int64_t{1});
    const bool inside_width = iw0 >= 0 && iw0 + p_.kernel_w <= p_.in_w;
    const int64_t column = inside_width ? iw0 * p_.in_channels : 0;  // (far in the padding it could overflow)
    for (int64_t kh = 0; kh < p_.kernel_h; ++kh) {
      const E* const row = row_starts_[kh];
      slots[kh * mr_] = row == nullptr ? zeros_ : inside_width ? row + column : copy_edge_row(row, iw0);
    }
  }

  // One slot a tap: the tap's input channels of `group`, or zeros for taps in the padding.
  void add_taps(const Pixel& out, int64_t group, const E** slots) {
    for (int64_t s = 0; s < seg_.count; ++s) slots[s * mr_] = zeros_;
    for_each_tap_inside(p_, out.y, out.x, [&](int64_t ih, int64_t iw, int64_t kh, int64_t kw) {
      slots[(kh * p_.kernel_w + kw) * mr_] = input_at(ix_.input_offset(out.n, ih, iw, group * seg_.length));
    });
  }

  const E* input_at(int64_t offset) const { return rows_ + (offset - origin_); }

  const E* copy_edge_row(const E* row, int64_t iw0) {
    TORCH_INTERNAL_ASSERT(edges_used_ + seg_.length <= edge_capacity_, "edge rows exceed their bound");
    E* copy = edges_ + edges_used_;
    edges_used_ += seg_.length;
    copy_filter_row(row, p_, iw0, copy);
    return copy;
  }

  const Conv2dPlan& p_;
  const Conv2dIndexer ix_;
  const Segments& seg_;
  const int mr_;
  const E* rows_ = nullptr;
  int64_t origin_ = 0;
  const E* zeros_;
  const E** pointers_;
  E* edges_;
  const int64_t edge_capacity_;
  int64_t edges_used_ = 0;
  std::vector<const E*> row_starts_ = std::vector<const E*>(p_.kernel_h);
};

// dst[i] = src[i] converted between a half type and float32 (or copied, for float32), with the
// AVX2 + F16C conversions where the instruction set has them (bfloat16 -> float32 is a shift,
// which the compiler vectorises itself).
template <typename From, typename To>
void convert(const From* src, To* dst, int64_t count) {
#if MYCONV_HAS_X86_KERNELS
  if (selected_isa() != Isa::kScalar) {
    if constexpr (std::is_same_v<From, at::Half> && std::is_same_v<To, float>) {
      return half_to_float_f16c(reinterpret_cast<const uint16_t*>(src), dst, count);
    } else if constexpr (std::is_same_v<From, float> && std::is_same_v<To, at::Half>) {
      return float_to_half_f16c(src, reinterpret_cast<uint16_t*>(dst), count);
    } else if constexpr (std::is_same_v<From, float> && std::is_same_v<To, at::BFloat16>) {
      return float_to_bfloat16_avx2(src, reinterpret_cast<uint16_t*>(dst), count);
    }
  }
#endif
  copy_cast(src, dst, count);
}

// The kernels' element type for an ATen element type: float, or a half type's bits.
template <typename T>
struct KernelElement {
  using type = float;
};
template <>
struct KernelElement<at::Half> {
  using type = Float16Bits;
};
template <>
struct KernelElement<at::BFloat16> {
  using type = BFloat16Bits;
};

// Where the output's pixels lie: its element strides of N, H and W (channels contiguous), either
// the plan's dense NHWC layout or a view (each phase of a strided input gradient writes every s-th
// row and column of it).
class OutputPixels {
 public:
  OutputPixels(const at::Tensor& output, const Conv2dPlan& p)
      : ix_(p), dense_(output.is_contiguous()), n_(output.stride(0)), h_(output.stride(1)), w_(output.stride(2)) {
    TORCH_INTERNAL_ASSERT(output.stride(3) == 1 || p.out_channels <= 1, "output channels must be contiguous");
  }

  bool dense() const { return dense_; }

  // f(i, offset) for output pixels first + i, i < count, with their element offsets.
  template <typename F>
  void for_each(int64_t first, int64_t count, F&& f) const {
    if (dense_) {
      for (int64_t i = 0; i < count; ++i) f(i, (first + i) * ix_.p.out_channels);
      return;
    }
    Pixel q = ix_.output_pixel(first);
    for (int64_t i = 0; i < count; ++i, next_pixel(q, ix_.p.out_w, ix_.p.out_h)) f(i, q.n * n_ + q.y * h_ + q.x * w_);
  }

 private:
  Conv2dIndexer ix_;
  bool dense_;
  int64_t n_, h_, w_;
};

// conv2d_microkernel for input and output of type T with a tile kernel reading elements E: float
// (T float, or a half type whose input rows each block reads are widened to float32 first and
// whose output is narrowed from a float32 block), or E = T = at::BFloat16 for the bfloat16 kernel.
template <typename T, typename E>
void microkernel_conv(const T* input, const E* packed, const float* bias, const Conv2dPlan& p, T* output,
                      const OutputPixels& output_pixels, const Epilogue& epilogue, const T* residual,
                      const TileKernel<typename KernelElement<E>::type>& kernel) {
  static_assert(std::is_same_v<E, float> || std::is_same_v<E, T>);
  using KernelE = typename KernelElement<E>::type;
  constexpr bool kWiden = !std::is_same_v<T, E>;
  const at::ScalarType element_type = c10::CppTypeToScalarType<E>::value;
  const int64_t mr = kernel.shape.pixels;
  const Segments seg(p);
  const PanelLayout layout(p, seg, kernel.shape);
  const int64_t og = p.group_out_channels, nr = layout.nr, panels = layout.panels;
  const int64_t panel_elements = layout.panel_elements;
  // The bias in panels (zero past og), and the zero segment the padding points at.
  const at::Tensor bias_buffer = at::zeros({p.groups * panels * nr}, at::kFloat);
  float* const bias_packed = bias_buffer.mutable_data_ptr<float>();
  if (bias) {
    for (int64_t gj = 0; gj < p.groups * panels; ++gj) {
      const auto [first_channel, width] = layout.channels(gj);
      std::copy_n(bias + first_channel, width, bias_packed + gj * nr);
    }
  }
  const at::Tensor zeros_buffer = at::zeros({seg.length}, element_type);
  const E* const zeros = zeros_buffer.const_data_ptr<E>();

  const int64_t pixels = p.output_pixels();
  // Tiles spread evenly over the blocks, so that every work item costs the same.
  const int64_t all_tiles = (pixels + mr - 1) / mr;
  const int64_t max_tiles_per_block = std::max<int64_t>(1, kMaxPixelsPerBlock / mr);
  const int64_t blocks = (all_tiles + max_tiles_per_block - 1) / max_tiles_per_block;
  const int64_t tiles_per_block = (all_tiles + blocks - 1) / blocks;
  const int64_t block_pixels = tiles_per_block * mr;
  const Conv2dIndexer ix(p);
  const auto block_rows = [&](int64_t block) {  // the input a block reads: [begin, end) elements
    const int64_t first = block * block_pixels;
    return input_rows_read(p, ix, first, std::min(block_pixels, pixels - first));
  };
  // Widened input rows and float32 outputs of a block, for half types: the most any block needs.
  int64_t widened_floats = 0;
  for (int64_t block = 0; kWiden && block < blocks; ++block) {
    const auto [begin, end] = block_rows(block);
    widened_floats = std::max(widened_floats, end - begin);
  }
  // Float32 outputs of a block, narrowed after the epilogue and stored where the output's pixels
  // lie: for half types widened, for the bfloat16 kernel when fused (its epilogue on the float32
  // sums, not on sums already rounded) and for an output that is not dense.
  const bool fused = !epilogue.is_identity() || residual != nullptr;
  const bool float_out = kWiden || (fused && !std::is_same_v<E, float>) || !output_pixels.dense();
  const int64_t block_out_floats = float_out ? block_pixels * p.out_channels : 0;
  // Each thread's block pointers, edge copies and widened rows and outputs, allocated here once
  // (and so seen by memory profiling, which does not follow worker threads).
  const int64_t threads = at::get_num_threads();
  const int64_t pointer_count = BlockPointers<E>::pointer_count(seg, block_pixels);
  const int64_t edge_elements = BlockPointers<E>::edge_capacity(p, seg, block_pixels);
  const int64_t thread_floats = widened_floats + block_out_floats;
  static_assert(sizeof(const E*) == sizeof(int64_t));
  const at::Tensor pointer_buffer = at::empty({threads * pointer_count}, at::kLong);
  const at::Tensor edge_buffer = at::empty({threads * edge_elements}, element_type);
  const at::Tensor float_buffer = at::empty({threads * thread_floats}, at::kFloat);
  // Work items: (block of pixel tiles, group, panel), panels fastest. A thread takes a contiguous
  // range of items; consecutive items of one (block, group) share its pointers and input rows.
  const int64_t items_per_block = p.groups * panels;
  at::parallel_for(0, blocks * items_per_block, 1, [&](int64_t begin, int64_t end) {
    const int thread = at::get_thread_num();
    TORCH_INTERNAL_ASSERT(thread < threads);
    float* const widened = float_buffer.data_ptr<float>() + thread * thread_floats;
    float* const block_out = widened + widened_floats;
    BlockPointers<E> pointers(
        p, seg, static_cast<int>(mr), zeros, block_pixels,
        reinterpret_cast<const E**>(pointer_buffer.data_ptr<int64_t>()) + thread * pointer_count,
        edge_buffer.data_ptr<E>() + thread * edge_elements);
    int64_t widened_block = -1;
    for (int64_t item = begin; item < end;) {
      const int64_t block = item / items_per_block;
      const int64_t g = item % items_per_block / panels;
      const int64_t run_end = std::min(end, block * items_per_block + (g + 1) * panels);
      const int64_t first = block * block_pixels;
      const int64_t tiles = std::min(tiles_per_block, (pixels - first + mr - 1) / mr);
      if constexpr (kWiden) {
        const auto [rows_begin, rows_end] = block_rows(block);
        if (widened_block != block) convert(input + rows_begin, widened, rows_end - rows_begin);
        widened_block = block;
        pointers.build(first, tiles, g, widened, rows_begin);
      } else {
        pointers.build(first, tiles, g, input, 0);
      }
      // Passes over the second and later panels read the block's input from cache; meanwhile the
      // next block's input comes from memory, prefetched in address order, a slice a tile. (The
      // first pass waits on memory otherwise once the input outgrows the caches: res2 1x1
      // 256->64 at N = 8: ~4.9 -> ~4.5 ms, side by side in the benchmark.)
      const int64_t next_first = first + block_pixels;
      const auto [next_begin, next_end] =
          panels > 1 && next_first < pixels ? block_rows(block + 1) : std::pair<int64_t, int64_t>{0, 0};
      // Elements a tile prefetches (no division per tile: a tile of a short reduction costs less).
      const int64_t slices = p.groups * (panels - 1) * tiles;
      const int64_t slice_elements = slices > 0 ? (next_end - next_begin + slices - 1) / slices : 0;
      const int64_t gj_begin = item % items_per_block, gj_end = run_end - block * items_per_block;
      // Where the kernels write: the block's float32 outputs (narrowed below), or the output.
      E* run_out = nullptr;
      float* run_sums = nullptr;  // the bfloat16 kernel's float32 sums instead of run_out
      // (With float32 sums the bfloat16 kernel neither writes nor prefetches run_out.)
      if constexpr (std::is_same_v<T, E>) run_out = output + (output_pixels.dense() ? first * p.out_channels : 0);
      if (float_out) {
        if constexpr (std::is_same_v<E, float>) {
          run_out = block_out;
        } else {
          run_sums = block_out;
        }
      }
      const char* const prefetch_end = reinterpret_cast<const char*>(input + next_end);
      for (int64_t gj = gj_begin; gj < gj_end; ++gj) {
        const int64_t j = gj % panels;
        const int64_t first_slice = (gj / panels * (panels - 1) + j - 1) * tiles;
        const bool prefetches = j > 0 && next_end > next_begin;
        const auto [channel, width] = layout.channels(gj);
        const int cols = static_cast<int>(width);
        const T* const panel_residual = residual == nullptr ? nullptr : residual + first * p.out_channels + channel;
        kernel.run({reinterpret_cast<const KernelE* const*>(pointers.tile(0)), seg.count, seg.length,
                    reinterpret_cast<const KernelE*>(packed + gj * panel_elements), bias_packed + gj * nr,
                    reinterpret_cast<KernelE*>(run_out + channel), p.out_channels, tiles,
                    std::min(tiles * mr, pixels - first), cols,
                    reinterpret_cast<const char*>(input + next_begin + (prefetches ? first_slice * slice_elements : 0)),
                    prefetch_end, prefetches ? slice_elements * static_cast<int64_t>(sizeof(T)) : 0,
                    run_sums == nullptr ? nullptr : run_sums + channel, reinterpret_cast<const char*>(panel_residual),
                    p.out_channels * static_cast<int64_t>(sizeof(T)), cols * static_cast<int64_t>(sizeof(T))});
      }
      // This run's channels of the block's pixels: the epilogue while they are in cache, then
      // from float32 outputs narrowed (half types) and stored where the output's pixels lie.
      const int64_t channel_begin = layout.channels(gj_begin).first;
      const auto [last_first, last_width] = layout.channels(gj_end - 1);
      const int64_t run_channels = last_first + last_width - channel_begin;
      const int64_t count = std::min(block_pixels, pixels - first);
      if (fused) {
        const T* const run_residual = residual == nullptr ? nullptr : residual + first * p.out_channels + channel_begin;
        if (float_out) {
          apply_epilogue(epilogue, block_out + channel_begin, p.out_channels, run_residual, p.out_channels, count,
                         run_channels);
        } else {
          apply_epilogue(epilogue, run_out + channel_begin, p.out_channels, run_residual, p.out_channels, count,
                         run_channels);
        }
      }
      if (float_out) {
        output_pixels.for_each(first, count, [&](int64_t i, int64_t offset) {
          convert(block_out + i * p.out_channels + channel_begin, output + offset + channel_begin, run_channels);
        });
      }
      item = run_end;
    }
  });
}

}  // namespace

bool uses_bfloat16_tile_kernel(at::ScalarType dtype) {
  return dtype == at::kBFloat16 && has_bfloat16_tile_kernel();
}

TileShape tile_shape(at::ScalarType dtype) {
  return uses_bfloat16_tile_kernel(dtype) ? kAvx512Bf16Tile : tile_kernel(selected_isa()).shape;
}

void conv2d_microkernel(const at::Tensor& input, const void* panels, const std::optional<at::Tensor>& bias,
                        const Conv2dPlan& plan, const Epilogue& epilogue, const at::Tensor& residual,
                        at::Tensor& output) {
  const at::Tensor bias_float = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const float* const bias_values = bias ? bias_float.const_data_ptr<float>() : nullptr;
#if MYCONV_HAS_X86_KERNELS
  if (uses_bfloat16_tile_kernel(input.scalar_type())) {
    microkernel_conv<at::BFloat16, at::BFloat16>(
        input.const_data_ptr<at::BFloat16>(), static_cast<const at::BFloat16*>(panels), bias_values, plan,
        output.mutable_data_ptr<at::BFloat16>(), OutputPixels(output, plan), epilogue,
        residual.defined() ? residual.const_data_ptr<at::BFloat16>() : nullptr, {&tile_avx512_bf16, kAvx512Bf16Tile});
    return;
  }
#endif
  MYCONV_DISPATCH_MICROKERNEL_TYPES(input.scalar_type(), "myconv_cpu_microkernel", [&] {
    microkernel_conv<scalar_t, float>(input.const_data_ptr<scalar_t>(), static_cast<const float*>(panels), bias_values,
                                      plan, output.mutable_data_ptr<scalar_t>(), OutputPixels(output, plan), epilogue,
                                      residual.defined() ? residual.const_data_ptr<scalar_t>() : nullptr,
                                      tile_kernel(selected_isa()));
  });
}

bool has_depthwise_microkernel(const Conv2dPlan& p) {
  return p.is_depthwise() && p.group_out_channels == 1 && selected_isa() != Isa::kScalar;
}

namespace {

// The depthwise row kernel of the selected instruction set for input elements E and output O.
template <typename E, typename O>
auto depthwise_row_kernel() {
  using Kernel = void (*)(const DepthwiseRowArgs<E, O>&);
#if MYCONV_HAS_X86_KERNELS
  const Kernel avx2 = &depthwise_row_avx2, avx512 = &depthwise_row_avx512;
  return selected_isa() == Isa::kAvx512 ? avx512 : avx2;
#elif MYCONV_HAS_NEON_KERNELS
  return Kernel{&depthwise_row_neon};
#else
  TORCH_INTERNAL_ASSERT(false, "no depthwise kernel in this build");  // (has_depthwise_microkernel is false)
  return Kernel{nullptr};
#endif
}

// conv2d_depthwise_microkernel for input and output of type T: float, or a half type, which the
// kernels widen as they load it and round once as they store it; fused, a half type's sums come
// back in float32 instead, so that they are rounded once, after the epilogue.
template <typename T>
void depthwise_conv(const T* input, const float* filter, const float* bias, const Conv2dPlan& p, T* output,
                    const Epilogue& epilogue, const T* residual) {
  using E = typename KernelElement<T>::type;
  static_assert(sizeof(E) == sizeof(T));
  const auto depthwise_row = depthwise_row_kernel<E, E>();
  const auto depthwise_sums = depthwise_row_kernel<E, float>();
  const E* const image = reinterpret_cast<const E*>(input);
  E* const out = reinterpret_cast<E*>(output);
  const Conv2dIndexer ix(p);
  const bool fused = !epilogue.is_identity() || residual != nullptr;
  constexpr bool kHalf = !std::is_same_v<T, float>;
  // A row of float32 sums per thread, for half types fused.
  const int64_t row_floats = kHalf && fused ? p.out_w * p.out_channels : 0;
  const at::Tensor sums_buffer = at::empty({at::get_num_threads() * row_floats}, at::kFloat);
  at::parallel_for(0, p.batch * p.out_h, 1, [&](int64_t begin, int64_t end) {
    float* const sums = sums_buffer.data_ptr<float>() + at::get_thread_num() * row_floats;
    for (int64_t row = begin; row < end; ++row) {
      int64_t n = 0, oh = 0;
      ix.out_h.divmod(row, &n, &oh);
      const int64_t row_offset = ix.output_offset(n, oh, 0, 0);
      const E* const row_image = image + ix.input_offset(n, 0, 0, 0);
      const int64_t first_row = geometry::input_index(oh, p.stride_h, p.pad_h.before, 0, p.dilation_h);
      const auto args = [&](auto* row_out) {
        using O = std::remove_pointer_t<decltype(row_out)>;
        return DepthwiseRowArgs<E, O>{row_image,    filter,       bias,         row_out,      p.in_channels,
                                      p.in_h,       p.in_w,       p.out_w,      p.kernel_h,   p.kernel_w,
                                      p.stride_h,   p.stride_w,   p.dilation_h, p.dilation_w, p.pad_w.before,
                                      first_row};
      };
      const T* const row_residual = residual == nullptr ? nullptr : residual + row_offset;
      if (kHalf && fused) {  // the epilogue on the float32 sums, then rounded once
        depthwise_sums(args(sums));
        apply_epilogue(epilogue, sums, p.out_channels, row_residual, p.out_channels, p.out_w, p.out_channels);
        convert(sums, output + row_offset, p.out_w * p.out_channels);
        continue;
      }
      depthwise_row(args(out + row_offset));
      if (fused) {  // the row just written, in cache
        apply_epilogue(epilogue, output + row_offset, p.out_channels, row_residual, p.out_channels, p.out_w,
                       p.out_channels);
      }
    }
  });
}

}  // namespace

void conv2d_depthwise_microkernel(const at::Tensor& input, const float* filter,
                                  const std::optional<at::Tensor>& bias, const Conv2dPlan& plan,
                                  const Epilogue& epilogue, const at::Tensor& residual, at::Tensor& output) {
  TORCH_INTERNAL_ASSERT(has_depthwise_microkernel(plan) && output.is_contiguous());
  const at::Tensor bias_float = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const float* const bias_values = bias ? bias_float.const_data_ptr<float>() : nullptr;
  MYCONV_DISPATCH_MICROKERNEL_TYPES(input.scalar_type(), "myconv_cpu_depthwise", [&] {
    depthwise_conv<scalar_t>(input.const_data_ptr<scalar_t>(), filter, bias_values, plan,
                             output.mutable_data_ptr<scalar_t>(), epilogue,
                             residual.defined() ? residual.const_data_ptr<scalar_t>() : nullptr);
  });
}

namespace {

// GFLOP/s of the FMA loop of the selected instruction set on every intra-op thread at once:
// the peak the benchmark reports each shape's share of.
double fma_peak_gflops() {
  const Isa isa = selected_isa();
#if MYCONV_HAS_X86_KERNELS
  const auto chains =
      isa == Isa::kAvx512 ? &fma_chains_avx512 : isa == Isa::kAvx2 ? &fma_chains_avx2 : &fma_chains_scalar;
#elif MYCONV_HAS_NEON_KERNELS
  const auto chains = isa == Isa::kNeon ? &fma_chains_neon : &fma_chains_scalar;
#else
  static_cast<void>(isa);
  const auto chains = &fma_chains_scalar;
#endif
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

// The tile kernel this process uses, the instruction sets this build has kernels for, whether
// bfloat16 runs its own, and the machine's FMA peak (tests and benchmarks).
TORCH_LIBRARY_FRAGMENT(myconv, m) {
  m.def("cpu_isa() -> str", [] { return std::string(isa_name(selected_isa())); });
  m.def("cpu_compiled_isas() -> str[]", [] {
    std::vector<std::string> names;
    for (const Isa isa : kEveryIsa) {
      if (compiled(isa)) names.emplace_back(isa_name(isa));
    }
    return names;
  });
  m.def("cpu_bfloat16_tile_kernel() -> bool", &has_bfloat16_tile_kernel);
  m.def("cpu_fma_peak_gflops() -> float", &fma_peak_gflops);
}

}  // namespace cpu
}  // namespace myconv
