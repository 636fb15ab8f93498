// The filter gradient on the tile kernels: per group, grad_filter[k, o] = sum over output pixels
// p of rows[p, k] * grad_output[p, o] (rows: the im2row rows), a product whose narrower side, A,
// is the kernels' MR "pixels": grad_output's channels, or the rows' values where the window is
// smaller than the output channels (1x1 expansions, few input channels). A is transposed into
// float32 rows of pixels a chunk at a time; the wider side, B, is packed from the input or
// grad_output a block of pixels at a time into NR-wide panels, which stay in L2 while every tile
// of A passes over them. ATen's GEMM, which this replaces, runs MKL's AVX2 code on AMD CPUs:
// 35-40% of a Zen 5's AVX-512 FMA peak.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "myconv/cpu/microkernel/microkernel.h"
#include "myconv/indexing.h"

namespace myconv {
namespace cpu {
namespace {

// Output pixels a block of B holds: each panel [kBlockPixels][NR] float32 (64 KB for NR = 32).
// Fixed, so that each sum's order (block by block) does not depend on the thread count.
constexpr int64_t kBlockPixels = 512;
// Panels of B a work item packs from each block of pixels at once (reading each pixel's values in
// one pass: res2 1x1 256->64 read 128 of every 1024 bytes a panel), and the bytes of an item's
// sums over them.
constexpr int64_t kMaxItemPanels = 8;
constexpr int64_t kItemSumsBytes = int64_t{256} << 10;
// Bytes of A transposed at a time (a chunk of pixels, whole blocks of them).
constexpr int64_t kChunkBytes = int64_t{16} << 20;
// Pixels of A a thread transposes at a time (each row's run: a cache line).
constexpr int64_t kTransposePixels = 16;

// dst[i] = src[i] as float32 for a short run: float32 in fixed blocks of 8, which compile to
// inline moves (GCC turned the plain copy loop into a memmove call per run: a quarter of pw 1x1
// 24->144's filter gradient).
template <typename T>
inline void copy_run(const T* src, float* dst, int64_t count) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 8 <= count; i += 8) std::memcpy(dst + i, src + i, 8 * sizeof(float));
  }
  for (; i < count; ++i) dst[i] = static_cast<float>(src[i]);
}

// A run of reduction values inside one segment (Segments) and one panel: values
// [value, value + length) of segment `segment`, at `offset` floats into a pixel's packed row
// (panel q's rows lie q * panel_floats apart).
struct ValueRun {
  int64_t segment, value, offset, length;
};

// The runs of reduction values [first, first + count), for panels of nr values panel_floats apart.
std::vector<ValueRun> value_runs(const Segments& seg, int64_t first, int64_t count, int64_t nr,
                                 int64_t panel_floats) {
  std::vector<ValueRun> runs;
  for (int64_t k = first; k < first + count;) {
    const int64_t s = k / seg.length, v = k % seg.length, q = (k - first) / nr, column = (k - first) % nr;
    const int64_t length = std::min({seg.length - v, first + count - k, nr - column});
    runs.push_back({s, v, q * panel_floats + column, length});
    k += length;
  }
  return runs;
}

// Packs the runs' values of output pixels [first, first + count) of `group`: pixel i's at
// panel + i * nr + run.offset, zeros for taps in the padding. Unpadded stride-1 pointwise
// convolutions copy straight from the input pixel (filter gradient alone, N = 8, side by side:
// pw 1x1 192->32 0.82 -> 0.69 ms, 576->96 0.92 -> 0.83, 512->128 4.9 -> 4.6; 256->64 -2%).
template <typename T>
void pack_rows(const T* input, const Conv2dPlan& p, const Conv2dIndexer& ix, const Segments& seg,
               const std::vector<ValueRun>& runs, int64_t group, int64_t first, int64_t count, int64_t nr,
               float* panel) {
  if (p.is_unpadded_pointwise()) {  // pixel i's values: input pixel first + i's (group's) channels
    const T* const values = input + first * p.in_channels + group * p.group_in_channels;
    for (int64_t i = 0; i < count; ++i) {
      for (const ValueRun& run : runs) {
        copy_run(values + i * p.in_channels + run.value, panel + i * nr + run.offset, run.length);
      }
    }
    return;
  }
  Pixel out = ix.output_pixel(first);
  for (int64_t i = 0; i < count; ++i, next_pixel(out, p.out_w, p.out_h)) {
    const int64_t iw0 = geometry::input_index(out.x, p.stride_w, p.pad_w.before, 0, p.dilation_w);
    for (const ValueRun& run : runs) {
      float* const dst = panel + i * nr + run.offset;
      const int64_t kh = seg.whole_rows ? run.segment : run.segment / p.kernel_w;
      const int64_t ih = geometry::input_index(out.y, p.stride_h, p.pad_h.before, kh, p.dilation_h);
      if (ih < 0 || ih >= p.in_h) {
        std::fill(dst, dst + run.length, 0.0f);
        continue;
      }
      if (seg.whole_rows) {  // the filter row's KW * C values, contiguous where it lies inside the width
        const T* const input_row = input + ix.input_offset(out.n, ih, 0, 0);
        if (iw0 >= 0 && iw0 + p.kernel_w <= p.in_w) {
          copy_run(input_row + iw0 * p.in_channels + run.value, dst, run.length);
          continue;
        }
        for (int64_t v = run.value; v < run.value + run.length;) {  // tap by tap at the image's edges
          const int64_t iw = iw0 + v / p.in_channels, c = v % p.in_channels;
          const int64_t length = std::min(p.in_channels - c, run.value + run.length - v);
          float* const at = dst + (v - run.value);
          if (iw < 0 || iw >= p.in_w) {
            std::fill(at, at + length, 0.0f);
          } else {
            copy_run(input_row + iw * p.in_channels + c, at, length);
          }
          v += length;
        }
        continue;
      }
      const int64_t iw = iw0 + run.segment % p.kernel_w * p.dilation_w;
      if (iw < 0 || iw >= p.in_w) {
        std::fill(dst, dst + run.length, 0.0f);
      } else {
        copy_run(input + ix.input_offset(out.n, ih, iw, group * p.group_in_channels) + run.value, dst, run.length);
      }
    }
  }
}

// grad_filter [K, O] (K = window values of a group, O = channels) in float32: A [groups * a_rows,
// P] times B [P, groups * b_cols], both per group, as described at the top.
template <typename T>
void filter_grad_tiles(const T* input, const T* grad_output, const Conv2dPlan& p, float* grad_filter) {
  const TileKernel<float> kernel = tile_kernel(selected_isa());
  const int64_t mr = kernel.shape.pixels, nr = kernel.shape.channels;
  const int64_t pixels = p.output_pixels(), channels = p.out_channels, og = p.group_out_channels;
  const int64_t window = p.window_size();
  const Segments seg(p);
  const Conv2dIndexer ix(p);
  // A is the narrower side: its transposing copy is the smaller (res2 1x1 64->256 with
  // grad_output as A: 9.0 ms, with the input: ~4.5).
  const bool a_is_grad_output = og <= window;
  const int64_t a_rows = a_is_grad_output ? og : window, b_cols = a_is_grad_output ? window : og;
  const int64_t threads = at::get_num_threads();

  // Work items: (group, run of B's panels, range of A's tiles), each panel's block packed once
  // per item. Each output element is summed by one item, block by block in order, and within a
  // block by the kernel in order: the result does not depend on the items or the thread count.
  // Ranges of A only where B has fewer panels than there are threads; runs of panels a multiple
  // of the threads where there are enough, each as long as the sums and panels allow.
  const int64_t panels = (b_cols + nr - 1) / nr;
  const int64_t a_tiles = (a_rows + mr - 1) / mr;
  const int64_t ranges = std::clamp<int64_t>((threads + p.groups * panels - 1) / (p.groups * panels), 1, a_tiles);
  const int64_t range_tiles = (a_tiles + ranges - 1) / ranges;
  const int64_t panel_sums = range_tiles * mr * nr;
  const int64_t run_cap =
      std::clamp<int64_t>(kItemSumsBytes / (panel_sums * static_cast<int64_t>(sizeof(float))), 1, kMaxItemPanels);
  int64_t runs = (panels + run_cap - 1) / run_cap;
  if (runs * p.groups < threads) runs = std::min(panels, (threads + p.groups - 1) / p.groups);
  runs = std::min(panels, (runs + threads - 1) / threads * threads);
  const int64_t run_panels = (panels + runs - 1) / runs;
  const int64_t items = p.groups * runs * ranges;
  const int64_t block_pixels = std::min(kBlockPixels, pixels);
  const int64_t panel_floats = block_pixels * nr;
  const int64_t thread_floats = run_panels * panel_floats + panel_sums;
  const int64_t item_sums = run_panels * panel_sums;
  // Each item's sums live across the chunks of pixels: about the filter gradient's size.
  const at::Tensor sums_buffer = at::empty({items * item_sums}, at::kFloat);
  const at::Tensor float_buffer = at::empty({threads * thread_floats}, at::kFloat);
  const at::Tensor pointer_buffer = at::empty({threads * range_tiles * mr}, at::kLong);
  const at::Tensor zeros_buffer = at::zeros({std::max(block_pixels, nr)}, at::kFloat);
  const float* const zeros = zeros_buffer.const_data_ptr<float>();
  static_assert(sizeof(const float*) == sizeof(int64_t));

  // A, transposed to float32 rows [groups * a_rows][chunk], a chunk of pixels at a time (whole
  // blocks: the sums' order is the same for any chunk size), so that the workspace does not grow
  // with the batch.
  const int64_t block_bytes = p.groups * a_rows * kBlockPixels * static_cast<int64_t>(sizeof(float));
  const int64_t chunk = std::min(pixels, std::max<int64_t>(1, kChunkBytes / block_bytes) * kBlockPixels);
  const at::Tensor a_buffer = at::empty({p.groups * a_rows, chunk}, at::kFloat);
  float* const a = a_buffer.mutable_data_ptr<float>();
  const std::vector<ValueRun> whole_window = value_runs(seg, 0, window, window, 0);
  const int64_t scratch_floats = a_is_grad_output ? 0 : kTransposePixels * window;
  const at::Tensor scratch_buffer = at::empty({threads * scratch_floats}, at::kFloat);

  for (int64_t chunk_first = 0; chunk_first < pixels; chunk_first += chunk) {
    const int64_t chunk_pixels = std::min(chunk, pixels - chunk_first);
    const bool last_chunk = chunk_first + chunk_pixels == pixels;
    // (as rows [pixels][a_rows] first: grad_output itself, or im2row rows in each thread's scratch)
    const int64_t transpose_blocks = (chunk_pixels + kTransposePixels - 1) / kTransposePixels;
    at::parallel_for(0, transpose_blocks, std::max<int64_t>(1, 4096 / (p.groups * a_rows)), [&](int64_t begin, int64_t end) {
      float* const scratch = scratch_buffer.data_ptr<float>() + at::get_thread_num() * scratch_floats;
      for (int64_t block = begin; block < end; ++block) {
        const int64_t offset = block * kTransposePixels, first = chunk_first + offset;
        const int64_t count = std::min(kTransposePixels, chunk_pixels - offset);
        for (int64_t g = 0; g < p.groups; ++g) {
          float* const dst = a + g * a_rows * chunk + offset;
          if (a_is_grad_output) {
            const T* const src = grad_output + first * channels + g * og;
            for (int64_t r = 0; r < a_rows; ++r) {
              for (int64_t i = 0; i < count; ++i) dst[r * chunk + i] = static_cast<float>(src[i * channels + r]);
            }
          } else {
            pack_rows(input, p, ix, seg, whole_window, g, first, count, window, scratch);
            for (int64_t r = 0; r < a_rows; ++r) {
              for (int64_t i = 0; i < count; ++i) dst[r * chunk + i] = scratch[i * window + r];
            }
          }
        }
      }
    });

    at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
      const int thread = at::get_thread_num();
      TORCH_INTERNAL_ASSERT(thread < threads);
      float* const packed = float_buffer.data_ptr<float>() + thread * thread_floats;
      float* const partial = packed + run_panels * panel_floats;
      const float** const rows =
          reinterpret_cast<const float**>(pointer_buffer.data_ptr<int64_t>()) + thread * range_tiles * mr;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item / (runs * ranges), run = item / ranges % runs, r = item % ranges;
        const int64_t first_row = r * range_tiles * mr;
        const int64_t row_count = std::min(range_tiles * mr, a_rows - first_row);
        const int64_t first_panel = run * run_panels, panel_count = std::min(run_panels, panels - first_panel);
        if (row_count <= 0 || panel_count <= 0) continue;
        float* const sums = sums_buffer.data_ptr<float>() + item * item_sums;
        const int64_t tiles = (row_count + mr - 1) / mr;
        const int64_t first_col = first_panel * nr, cols = std::min(panel_count * nr, b_cols - first_col);
        const int64_t last_cols = cols - (panel_count - 1) * nr;  // valid columns of the run's last panel
        const std::vector<ValueRun> value_runs_b =
            a_is_grad_output ? value_runs(seg, first_col, cols, nr, panel_floats) : std::vector<ValueRun>();
        for (int64_t first = chunk_first; first < chunk_first + chunk_pixels; first += block_pixels) {
          const int64_t count = std::min(block_pixels, pixels - first);
          if (a_is_grad_output) {
            pack_rows(input, p, ix, seg, value_runs_b, g, first, count, nr, packed);
          } else {
            for (int64_t i = 0; i < count; ++i) {
              const T* const src = grad_output + (first + i) * channels + g * og + first_col;
              for (int64_t q = 0; q < panel_count; ++q) {
                copy_run(src + q * nr, packed + q * panel_floats + i * nr, std::min(nr, cols - q * nr));
              }
            }
          }
          for (int64_t i = 0; i < count && last_cols < nr; ++i) {  // the last panel's columns past B
            float* const row = packed + (panel_count - 1) * panel_floats + i * nr;
            std::fill(row + last_cols, row + nr, 0.0f);
          }
          for (int64_t i = 0; i < tiles * mr; ++i) {
            rows[i] = i < row_count ? a + (g * a_rows + first_row + i) * chunk + (first - chunk_first) : zeros;
          }
          for (int64_t q = 0; q < panel_count; ++q) {
            float* const panel_sum = sums + q * panel_sums;
            const int64_t panel_cols = q + 1 < panel_count ? nr : last_cols;
            kernel.run({rows, 1, count, packed + q * panel_floats, zeros, first == 0 ? panel_sum : partial, nr, tiles,
                        row_count, static_cast<int>(panel_cols), nullptr, nullptr, 0});
            for (int64_t i = 0; first > 0 && i < row_count; ++i) {
              for (int64_t c = 0; c < panel_cols; ++c) panel_sum[i * nr + c] += partial[i * nr + c];
            }
          }
        }
        if (!last_chunk) continue;
        // sums[q][row][col] is grad_filter[k][g * og + o] for (k, o) = (column, row) or (row,
        // column), column = first_col + q * nr + col; the filter gradient's rows written in order
        // (a store a row of it cost res5 1x1 2048->512's filter gradient at N = 1 twice its kernels')
        for (int64_t q = 0; q < panel_count; ++q) {
          const float* const panel_sum = sums + q * panel_sums;
          const int64_t panel_col = first_col + q * nr, panel_cols = q + 1 < panel_count ? nr : last_cols;
          if (a_is_grad_output) {
            for (int64_t c = 0; c < panel_cols; ++c) {
              float* const dst = grad_filter + (panel_col + c) * channels + g * og + first_row;
              for (int64_t i = 0; i < row_count; ++i) dst[i] = panel_sum[i * nr + c];
            }
          } else {
            for (int64_t i = 0; i < row_count; ++i) {
              std::copy_n(panel_sum + i * nr, panel_cols,
                          grad_filter + (first_row + i) * channels + g * og + panel_col);
            }
          }
        }
      }
    });
  }
}

}  // namespace

void filter_grad_microkernel(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dPlan& plan,
                             at::Tensor& grad_filter) {
  TORCH_INTERNAL_ASSERT(grad_output.is_contiguous() && input.is_contiguous() && grad_filter.is_contiguous() &&
                        grad_filter.scalar_type() == at::kFloat && !plan.is_depthwise());
  TORCH_INTERNAL_ASSERT(plan.output_pixels() > 0);  // (the entry point handles empty outputs)
  float* const out = grad_filter.mutable_data_ptr<float>();
  MYCONV_DISPATCH_MICROKERNEL_TYPES(input.scalar_type(), "myconv_filter_grad_microkernel", [&] {
    filter_grad_tiles<scalar_t>(input.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(), plan, out);
  });
}

}  // namespace cpu
}  // namespace myconv
