// im2row and its adjoint row2im for the CPU kernels: the rows of a bounded tile of output pixels
// in NHWC (each filter tap is a contiguous run of C/groups input channels), and the scatter of
// row gradients back onto the input, written as a gather so that threads never share an element;
// and the GEMM these rows go through.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>

#include "myconv/conv2d_plan.h"
#include "myconv/indexing.h"

namespace myconv {
namespace cpu {

// Bound on the im2row workspace: large tiles amortise GEMM packing, yet stay independent of N.
constexpr int64_t kWorkspaceBytes = int64_t{16} << 20;
// Elements copied per parallel_for chunk, so that small tiles do not pay for threading.
constexpr int64_t kCopyGrainElements = int64_t{1} << 15;

// dst[i] = src[i] in dst's type (widened, or narrowed back).
template <typename From, typename To>
void copy_cast(const From* __restrict__ src, To* __restrict__ dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<To>(src[i]);
}

// One filter row of a window: the KW x Cg values under the window whose tap 0 reads column iw0
// of `row` (input[n, ih, 0, group * Cg]), widened to acc_t, zeros for taps outside the width.
// With one group and no width dilation the inside taps are one contiguous NHWC run, copied at
// once. Pointers are formed only for inside taps.
template <typename scalar_t, typename acc_t>
void copy_filter_row(const scalar_t* row, const Conv2dPlan& p, int64_t iw0, acc_t* dst) {
  const int64_t cg = p.group_in_channels;
  const auto [kw_begin, kw_end] = geometry::taps_inside(iw0, p.dilation_w, p.kernel_w, p.in_w);
  std::fill(dst, dst + kw_begin * cg, acc_t(0));
  std::fill(dst + kw_end * cg, dst + p.kernel_w * cg, acc_t(0));
  if (kw_begin == kw_end) return;  // (no pointer to a column far in the padding)
  if (cg == p.in_channels && p.dilation_w == 1) {
    copy_cast(row + (iw0 + kw_begin) * p.in_channels, dst + kw_begin * cg, (kw_end - kw_begin) * cg);
    return;
  }
  for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
    copy_cast(row + (iw0 + kw * p.dilation_w) * p.in_channels, dst + kw * cg, cg);
  }
}

// Writes rows [num_pixels, KH*KW*Cg] for output pixels [first_pixel, first_pixel + num_pixels)
// of one group, widening to acc_t; taps that fall into the padding are zeros.
template <typename scalar_t, typename acc_t>
void im2row(const scalar_t* input, const Conv2dPlan& p, int64_t group, int64_t first_pixel,
            int64_t num_pixels, acc_t* rows) {
  const int64_t cg = p.group_in_channels;
  const int64_t row_len = p.window_size();
  const int64_t grain = std::max<int64_t>(1, kCopyGrainElements / row_len);
  const Conv2dIndexer ix(p);
  at::parallel_for(0, num_pixels, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Pixel out = ix.output_pixel(first_pixel + i);
      const int64_t iw0 = geometry::input_index(out.x, p.stride_w, p.pad_w.before, 0, p.dilation_w);
      acc_t* dst = rows + i * row_len;
      for (int64_t kh = 0; kh < p.kernel_h; ++kh, dst += p.kernel_w * cg) {
        const int64_t ih = geometry::input_index(out.y, p.stride_h, p.pad_h.before, kh, p.dilation_h);
        if (ih < 0 || ih >= p.in_h) {
          std::fill(dst, dst + p.kernel_w * cg, acc_t(0));
          continue;
        }
        copy_filter_row(input + ix.input_offset(out.n, ih, 0, group * cg), p, iw0, dst);
      }
    }
  });
}

// grad_input[n, ih, iw, group * Cg + c] += rows[p - first_pixel, (kh, kw, c)] for every output
// pixel p in [first_pixel, first_pixel + num_pixels) whose tap (kh, kw) reads (ih, iw): the adjoint
// of im2row. Each thread owns whole input rows, so the sums need no atomics and are deterministic.
// Per input row and filter row kh, each output pixel adds its taps inside the input as spans: one
// span of (inside taps) * C values where adjacent taps are adjacent pixels' whole channels (one
// group, no width dilation: the stem's 7x7, 21 values), else one of Cg a tap. (Gathered per input
// pixel, tap and channel, the stem's 7x7/2 input gradient at N = 8 spent ~4x its tile kernels'
// time here.)
template <typename acc_t>
void row2im_add(const acc_t* rows, const Conv2dPlan& p, int64_t group, int64_t first_pixel,
                int64_t num_pixels, acc_t* grad_input) {
  const int64_t cg = p.group_in_channels;
  const int64_t row_len = p.window_size();
  const int64_t end_pixel = first_pixel + num_pixels;
  // Output rows n * OH + oh that the tile touches, and the input rows n * H + ih their windows
  // reach: threads share only those (over its images' every row, the stem's input gradient at N = 8
  // took 10.9 ms, 9.05 so; 384x384x8 7x7 at N = 1, chunks of 27 rows, 24.3 against 17.7).
  const int64_t first_out_row = first_pixel / p.out_w;
  const int64_t last_out_row = (end_pixel - 1) / p.out_w;
  const auto input_row = [&](int64_t out_row, int64_t kh, int64_t past) {  // clamped to its image
    const int64_t ih = geometry::input_index(out_row % p.out_h, p.stride_h, p.pad_h.before, kh, p.dilation_h);
    return out_row / p.out_h * p.in_h + std::clamp<int64_t>(ih + past, 0, p.in_h);
  };
  const int64_t begin_row = input_row(first_out_row, 0, 0);
  const int64_t end_row = input_row(last_out_row, p.kernel_h - 1, 1);
  const bool whole_pixels = cg == p.in_channels && p.dilation_w == 1;
  const int64_t grain = std::max<int64_t>(1, kCopyGrainElements / (p.out_w * row_len));
  const Conv2dIndexer ix(p);
  at::parallel_for(begin_row, end_row, grain, [&](int64_t begin, int64_t end) {
    for (int64_t in_row = begin; in_row < end; ++in_row) {
      int64_t n = 0, ih = 0;
      ix.in_h.divmod(in_row, &n, &ih);
      acc_t* const grad_row = grad_input + ix.input_offset(n, ih, 0, group * cg);
      for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
        const int64_t oh = geometry::output_index(ih, p.stride_h, p.pad_h.before, kh, p.dilation_h);
        if (oh < 0 || oh >= p.out_h) continue;
        const int64_t row_pixel = (n * p.out_h + oh) * p.out_w;  // pixel ow = 0 of output row oh
        const int64_t ow_begin = std::max<int64_t>(0, first_pixel - row_pixel);
        const int64_t ow_end = std::min<int64_t>(p.out_w, end_pixel - row_pixel);
        for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
          const acc_t* const src = rows + (row_pixel + ow - first_pixel) * row_len + kh * p.kernel_w * cg;
          const int64_t iw0 = geometry::input_index(ow, p.stride_w, p.pad_w.before, 0, p.dilation_w);
          const geometry::IndexRange taps = geometry::taps_inside(iw0, p.dilation_w, p.kernel_w, p.in_w);
          if (taps.begin == taps.end) continue;  // (no pointer to a column far in the padding)
          if (whole_pixels) {
            acc_t* const dst = grad_row + (iw0 + taps.begin) * p.in_channels;
            const acc_t* const from = src + taps.begin * cg;
            const int64_t count = (taps.end - taps.begin) * cg;
            for (int64_t c = 0; c < count; ++c) dst[c] += from[c];
            continue;
          }
          for (int64_t kw = taps.begin; kw < taps.end; ++kw) {
            acc_t* const dst = grad_row + (iw0 + kw * p.dilation_w) * p.in_channels;
            const acc_t* const from = src + kw * cg;
            for (int64_t c = 0; c < cg; ++c) dst[c] += from[c];
          }
        }
      }
    }
  });
}

// out = beta * out + a x b (beta 0: out is only written) through ATen's GEMM, with out's rows in
// an even number of blocks (2 to 16, a function of out's height alone), one GEMM a block, each on
// one thread: the result's bits do not depend on the thread count. (Threaded by MKL itself, a
// float32 input gradient differed by 9.5e-7 between 1 and 2 threads, a float64 convolution by
// 2.8e-14.) MKL runs single-threaded inside an OpenMP parallel region unless nested parallelism
// is on (OMP_NESTED=TRUE, off by default, and then the bits can differ again); a single block
// would run outside one, hence two at least (with one thread ATen runs them in turn, and MKL has
// one thread). Side by side with MKL's own threading on 2 cores: 0.94-1.02x with blocks of at
// least 256 rows (res4/res5 filter gradients, float64 3x3, N = 1 and 8); blocks of 128 rows cost
// up to 10% on 1x1 filter gradients (each block packs all of b). Up to 16 blocks keep 16 cores busy.
constexpr int64_t kGemmBlockRows = 256;
constexpr int64_t kMaxGemmBlocks = 16;
inline void gemm_in_row_blocks(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, double beta) {
  const int64_t rows = out.size(0);
  int64_t blocks = std::clamp<int64_t>((rows + kGemmBlockRows - 1) / kGemmBlockRows, 2, kMaxGemmBlocks);
  blocks += blocks % 2;  // two threads share them evenly
  const int64_t block_rows = (rows + blocks - 1) / blocks;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    // Worker threads start without the caller's inference mode: below autograd, the in-place GEMM
    // into `out` (an inference tensor when the caller is in inference mode) is a plain one.
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * block_rows;
      const int64_t count = std::min(block_rows, rows - first);
      if (count > 0) out.narrow(0, first, count).addmm_(a.narrow(0, first, count), b, beta, 1);
    }
  });
}

}  // namespace cpu
}  // namespace myconv
