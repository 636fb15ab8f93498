// CPU kernel of myconv::conv2d_backward.
//  - input gradient: forward convolutions of grad_output, one per phase of the stride, on the
//    forward's kernels (dgrad_by_phases; dgrad_runs_as_phases says when); filters of few input
//    channels as grad_output x filter^T on the tile kernels + row2im (dgrad_by_rows;
//    input_grad_runs_as_rows); strided depthwise filters and those with a channel multiplier run
//    direct loops vectorised over channels;
//  - filter gradients (not depthwise, not float64) on the tile kernels (filter_grad_microkernel;
//    filter_grad_runs_on_tiles says when); float64 ones (and every dense or grouped one under
//    MYCONV_CPU_WGRAD=gemm) through ATen's GEMM, as follows:
//  - filter gradients of at most 1 MB over enough pixels: fixed chunks of output pixels, each
//    summed by one thread into its own partial (filter_grad_in_chunks), partials added in order;
//  - otherwise, per bounded tile of output pixels and per group:
//      grad_filter[K, Og] += rows^T x grad_output      (rows = im2row of the tile, K = KH*KW*Cg)
//      grad_rows[P, K]     = grad_output x filter^T, then row2im adds them onto grad_input;
//    1x1 stride-1 unpadded convolutions use the input itself as the filter gradient's rows;
//    depthwise filter gradients: direct loops (multiples of 64 channels in register blocks),
//    summing fixed chunks of rows into their own partial buffers, added in order, so it does
//    not depend on thread count.
// Half types accumulate in float32 workspaces. grad_bias is the entry point's reduction.
#include "myconv/cpu/conv2d_backward.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <string>
#include <optional>
#include <vector>

#include "myconv/cpu/conv2d_kernel.h"
#include "myconv/cpu/im2row.h"
#include "myconv/cpu/microkernel/microkernel.h"
#include "myconv/cpu/simd_clones.h"
#include "myconv/indexing.h"

namespace myconv {
namespace cpu {
namespace {

// The most input channels of an input gradient that runs as rows (input_grad_runs_as_rows).
constexpr int64_t kMaxRowsInputChannels = 8;

// Partial sums of the depthwise filter gradient: at most this many, whatever the thread count.
constexpr int64_t kMaxDepthwiseFilterGradChunks = 64;

// Filter gradients whose sums fit a core's L2 cache run in fixed chunks of output pixels, each
// chunk summed by one thread into its own partial, the partials then added in order: the result
// does not depend on the thread count, and each core's im2row rows stay in its cache for its GEMM.
// (One GEMM over 16 MB tiles, threaded by ATen over the sum's few outputs, left the rows in memory.)
constexpr int64_t kMaxChunkedFilterGradBytes = int64_t{1} << 20;
constexpr int64_t kMinChunkPixels = 1024;     // a GEMM this deep runs near its peak
constexpr int64_t kMaxFilterGradPartials = 16;
constexpr int64_t kChunkRowsBytes = int64_t{512} << 10;  // a chunk's rows are made this many at a time

// The number of chunks: a function of the shape alone; even, so that two cores share them evenly;
// 1 (not chunked) below two chunks' worth of pixels or above the size bound.
int64_t filter_grad_chunks(const Conv2dPlan& p, int64_t acc_size) {
  if (p.window_size() * p.out_channels * acc_size > kMaxChunkedFilterGradBytes) return 1;
  const int64_t chunks = std::min(p.output_pixels() / kMinChunkPixels, kMaxFilterGradPartials);
  return chunks < 2 ? 1 : chunks - chunks % 2;
}

// Elements of the partial sums' total a thread adds at least.
constexpr int64_t kSumGrainElements = 4096;

// partials[0] + partials[1] + ... (contiguous), added in this order for every element whatever
// the thread count, in one pass. (An add_ per partial cost ~3 us each: 56 partials of a depthwise
// filter gradient took longer than their sums.)
at::Tensor sum_in_order(const at::Tensor& partials) {
  TORCH_INTERNAL_ASSERT(partials.is_contiguous() && partials.size(0) > 0);
  at::Tensor sum = at::empty(partials.sizes().slice(1), partials.options());
  const int64_t count = partials.size(0), len = sum.numel();
  AT_DISPATCH_FLOATING_TYPES(partials.scalar_type(), "myconv_sum_in_order", [&] {
    const scalar_t* const src = partials.const_data_ptr<scalar_t>();
    scalar_t* const dst = sum.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, len, kSumGrainElements, [&](int64_t begin, int64_t end) {
      std::copy(src + begin, src + end, dst + begin);
      for (int64_t i = 1; i < count; ++i) {
        const scalar_t* const part = src + i * len;
        for (int64_t e = begin; e < end; ++e) dst[e] += part[e];
      }
    });
  });
  return sum;
}

// Whether the filter gradient's rows are the input itself (unpadded pointwise, nothing to widen).
template <typename scalar_t, typename acc_t>
bool input_is_rows(const Conv2dPlan& p) {
  return p.is_unpadded_pointwise() && std::is_same_v<scalar_t, acc_t>;
}

// The filter gradient's rows [count, KH*KW*Cg] of output pixels [first, first + count), group g:
// a view of the input, or im2row into `workspace` (widened to acc_t).
template <typename scalar_t, typename acc_t>
at::Tensor filter_grad_rows(const at::Tensor& input, const Conv2dPlan& p, int64_t g, int64_t first, int64_t count,
                            const at::Tensor& workspace) {
  if (input_is_rows<scalar_t, acc_t>(p)) {
    const int64_t cg = p.group_in_channels;
    return input.view({p.batch * p.in_h * p.in_w, p.in_channels}).narrow(0, first, count).narrow(1, g * cg, cg);
  }
  im2row(input.const_data_ptr<scalar_t>(), p, g, first, count, workspace.mutable_data_ptr<acc_t>());
  return workspace.narrow(0, 0, count);
}

// The filter gradient [KH*KW*Cg, O] in acc_t: the sum over chunks of rows^T x grad_output, `chunks` > 1.
template <typename scalar_t, typename acc_t>
at::Tensor filter_grad_in_chunks(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dPlan& p,
                                 int64_t chunks) {
  constexpr bool widen = !std::is_same_v<scalar_t, acc_t>;
  const auto acc_options = input.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const int64_t pixels = p.output_pixels();
  const int64_t row_len = p.window_size();
  const int64_t og = p.group_out_channels;
  const bool direct = input_is_rows<scalar_t, acc_t>(p);
  const int64_t chunk = (pixels + chunks - 1) / chunks;
  const int64_t pieces = direct ? 1 : (chunk * row_len * int64_t{sizeof(acc_t)} + kChunkRowsBytes - 1) / kChunkRowsBytes;
  const int64_t piece = (chunk + pieces - 1) / pieces;
  const at::Tensor partials = at::zeros({chunks, row_len, p.out_channels}, acc_options);
  const at::Tensor gy2d = grad_output.view({pixels, p.out_channels});
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    // Worker threads start without the caller's inference mode: below autograd, in-place updates
    // of the partials (inference tensors when the caller is in inference mode) are plain ones.
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    const at::Tensor rows_workspace = direct ? at::Tensor() : at::empty({piece, row_len}, acc_options);
    const at::Tensor grad_output_workspace = widen ? at::empty({piece, p.out_channels}, acc_options) : at::Tensor();
    for (int64_t c = begin; c < end; ++c) {
      const at::Tensor partial = partials[c];
      const int64_t chunk_end = std::min(pixels, (c + 1) * chunk);
      for (int64_t first = c * chunk; first < chunk_end; first += piece) {
        const int64_t count = std::min(piece, chunk_end - first);
        const at::Tensor gy = widen ? grad_output_workspace.narrow(0, 0, count).copy_(gy2d.narrow(0, first, count))
                                    : gy2d.narrow(0, first, count);
        for (int64_t g = 0; g < p.groups; ++g) {
          const at::Tensor rows = filter_grad_rows<scalar_t, acc_t>(input, p, g, first, count, rows_workspace);
          partial.narrow(1, g * og, og).addmm_(rows.t(), gy.narrow(1, g * og, og));
        }
      }
    }
  });
  return sum_in_order(partials);
}

// Small strided input gradients and filter gradients as im2row tiles times ATen's GEMM.
template <typename scalar_t, typename acc_t>
void conv2d_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& filter, const Conv2dPlan& p, Conv2dGrads& grads) {
  const auto acc_options = input.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  constexpr bool widen = !std::is_same_v<scalar_t, acc_t>;
  const int64_t pixels = p.output_pixels();
  const int64_t row_len = p.window_size();
  const int64_t og = p.group_out_channels;
  const bool direct = p.is_unpadded_pointwise();
  const bool want_input = grads.input.defined();
  const bool want_filter = grads.filter.defined();
  // (An unpadded pointwise input gradient is a stride-1 one: the phases computed it.)
  TORCH_INTERNAL_ASSERT(!(want_input && direct));

  const at::Tensor gy2d = grad_output.view({pixels, p.out_channels});
  const at::Tensor weights =
      want_input ? filter.contiguous().to(acc_options.dtype()).view({row_len, p.out_channels})
                 : at::Tensor();
  const int64_t filter_chunks = want_filter ? filter_grad_chunks(p, sizeof(acc_t)) : 1;
  if (filter_chunks > 1) {
    grads.filter.view({row_len, p.out_channels})
        .copy_(filter_grad_in_chunks<scalar_t, acc_t>(grad_output, input, p, filter_chunks));
  }
  const bool tiled_filter = want_filter && filter_chunks == 1;  // in the tiles below
  // Accumulators: the outputs themselves, or float32 copies for half types.
  at::Tensor grad_filter_acc;
  if (tiled_filter) {
    grad_filter_acc = widen ? at::zeros({row_len, p.out_channels}, acc_options)
                            : grads.filter.view({row_len, p.out_channels}).zero_();
  }
  at::Tensor grad_input_acc;  // row2im accumulates overlapping windows
  if (want_input) grad_input_acc = widen ? at::zeros(input.sizes(), acc_options) : grads.input.zero_();

  const int64_t tile = std::clamp<int64_t>(
      kWorkspaceBytes / ((2 * row_len + p.out_channels) * int64_t{sizeof(acc_t)}), 1, pixels);
  const int64_t tiled_pixels = tiled_filter || want_input ? pixels : 0;
  const bool need_rows = tiled_filter && !input_is_rows<scalar_t, acc_t>(p);
  const at::Tensor rows_workspace = need_rows ? at::empty({tile, row_len}, acc_options) : at::Tensor();
  const at::Tensor grad_rows_workspace = want_input ? at::empty({tile, row_len}, acc_options) : at::Tensor();
  const at::Tensor grad_output_workspace =
      widen && tiled_pixels > 0 ? at::empty({tile, p.out_channels}, acc_options) : at::Tensor();

  for (int64_t first = 0; first < tiled_pixels; first += tile) {
    const int64_t count = std::min(tile, pixels - first);
    const at::Tensor gy_tile = widen ? grad_output_workspace.narrow(0, 0, count).copy_(gy2d.narrow(0, first, count))
                                     : gy2d.narrow(0, first, count);
    for (int64_t g = 0; g < p.groups; ++g) {
      const at::Tensor gy_g = gy_tile.narrow(1, g * og, og);
      if (tiled_filter) {
        const at::Tensor rows = filter_grad_rows<scalar_t, acc_t>(input, p, g, first, count, rows_workspace);
        gemm_in_row_blocks(grad_filter_acc.narrow(1, g * og, og), rows.t(), gy_g, 1);
      }
      if (want_input) {
        at::Tensor grad_rows = grad_rows_workspace.narrow(0, 0, count);
        gemm_in_row_blocks(grad_rows, gy_g, weights.narrow(1, g * og, og).t(), 0);
        row2im_add(grad_rows.const_data_ptr<acc_t>(), p, g, first, count, grad_input_acc.mutable_data_ptr<acc_t>());
      }
    }
  }
  if (widen && tiled_filter) grads.filter.copy_(grad_filter_acc.view(filter.sizes()));
  if (widen && want_input) grads.input.copy_(grad_input_acc);
}

// grad_input of one input pixel (n, ih, iw) of a depthwise convolution with channel multiplier m:
// for each output channel o = c * m + j, the sum over the taps that read this pixel of
// grad_output[.., o] * filter[tap, o]; then summed over j (kUnitMultiplier: m = 1, a plain copy).
template <bool kUnitMultiplier, typename scalar_t, typename acc_t>
MYCONV_SIMD_CLONES void depthwise_grad_input_row(const scalar_t* grad_output, const acc_t* w,
                                                 scalar_t* grad_row, const Conv2dIndexer& ix,
                                                 int64_t n, int64_t ih, acc_t* __restrict__ acc) {
  const Conv2dPlan& p = ix.p;
  const int64_t m = p.group_out_channels;
  for (int64_t iw = 0; iw < p.in_w; ++iw) {
    std::fill(acc, acc + p.out_channels, acc_t(0));
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t oh = geometry::output_index(ih, p.stride_h, p.pad_h.before, kh, p.dilation_h);
      if (oh < 0 || oh >= p.out_h) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t ow = geometry::output_index(iw, p.stride_w, p.pad_w.before, kw, p.dilation_w);
        if (ow < 0 || ow >= p.out_w) continue;
        const scalar_t* __restrict__ gy = grad_output + ix.output_offset(n, oh, ow, 0);
        const acc_t* __restrict__ f = w + (kh * p.kernel_w + kw) * p.out_channels;
        for (int64_t o = 0; o < p.out_channels; ++o) acc[o] += static_cast<acc_t>(gy[o]) * f[o];
      }
    }
    scalar_t* dst = grad_row + iw * p.in_channels;
    for (int64_t c = 0; c < p.in_channels; ++c) {
      acc_t sum = acc[c * m];
      if (!kUnitMultiplier) {
        for (int64_t j = 1; j < m; ++j) sum += acc[c * m + j];
      }
      dst[c] = static_cast<scalar_t>(sum);
    }
  }
}

// partial[tap, o] += input[n, ih, iw, o / m] * grad_output[n, oh, ow, o] over one output row.
template <bool kUnitMultiplier, typename scalar_t, typename acc_t>
MYCONV_SIMD_CLONES void depthwise_grad_filter_row(const scalar_t* image, const scalar_t* gy_row,
                                                  const Conv2dIndexer& ix, int64_t oh,
                                                  acc_t* __restrict__ partial) {
  const Conv2dPlan& p = ix.p;
  for (int64_t ow = 0; ow < p.out_w; ++ow) {
    const scalar_t* __restrict__ gy = gy_row + ow * p.out_channels;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = geometry::input_index(oh, p.stride_h, p.pad_h.before, kh, p.dilation_h);
      if (ih < 0 || ih >= p.in_h) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = geometry::input_index(ow, p.stride_w, p.pad_w.before, kw, p.dilation_w);
        if (iw < 0 || iw >= p.in_w) continue;
        const scalar_t* __restrict__ x = image + (ih * p.in_w + iw) * p.in_channels;
        acc_t* __restrict__ dst = partial + (kh * p.kernel_w + kw) * p.out_channels;
        for (int64_t o = 0; o < p.out_channels; ++o) {
          const int64_t c = kUnitMultiplier ? o : ix.depthwise_input_channel(o);
          dst[o] += static_cast<acc_t>(x[c]) * static_cast<acc_t>(gy[o]);
        }
      }
    }
  }
}

// Channels a register block of the depthwise filter gradient sums (float32: 4 AVX-512 vectors,
// 8 AVX2 ones), and the output pixels of a block, whose input stays in L1 across the taps.
constexpr int64_t kDepthwiseFilterGradChannels = 64;
constexpr int64_t kDepthwiseFilterGradPixels = 16;

// depthwise_grad_filter_row for one output channel per input channel and a multiple of 64
// channels, by blocks of pixels and channels: each tap's sum over a block is kept in registers
// and added to `partial` once, instead of a load and store of the partial per product (dw 3x3
// C=576 at N = 8: 0.34 -> 0.25 ms). Other channel counts stay a pixel at a time: a last block
// overlapping the one before, or narrower, ran 1.3-1.8x slower on 96 and 144 channels.
template <typename scalar_t, typename acc_t>
MYCONV_SIMD_CLONES void depthwise_grad_filter_row_blocked(const scalar_t* image, const scalar_t* gy_row,
                                                          const Conv2dIndexer& ix, int64_t oh,
                                                          acc_t* __restrict__ partial) {
  const Conv2dPlan& p = ix.p;
  const int64_t channels = p.out_channels;
  for (int64_t first_ow = 0; first_ow < p.out_w; first_ow += kDepthwiseFilterGradPixels) {
    const int64_t end_ow = std::min(p.out_w, first_ow + kDepthwiseFilterGradPixels);
    for (int64_t c = 0; c < channels; c += kDepthwiseFilterGradChannels) {
      for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
        const int64_t ih = geometry::input_index(oh, p.stride_h, p.pad_h.before, kh, p.dilation_h);
        if (ih < 0 || ih >= p.in_h) continue;
        const scalar_t* const input_row = image + ih * p.in_w * channels + c;
        for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
          acc_t sums[kDepthwiseFilterGradChannels] = {};
          for (int64_t ow = first_ow; ow < end_ow; ++ow) {
            const int64_t iw = geometry::input_index(ow, p.stride_w, p.pad_w.before, kw, p.dilation_w);
            if (iw < 0 || iw >= p.in_w) continue;
            const scalar_t* __restrict__ x = input_row + iw * channels;
            const scalar_t* __restrict__ gy = gy_row + ow * channels + c;
            for (int64_t j = 0; j < kDepthwiseFilterGradChannels; ++j) {
              sums[j] += static_cast<acc_t>(x[j]) * static_cast<acc_t>(gy[j]);
            }
          }
          acc_t* __restrict__ dst = partial + (kh * p.kernel_w + kw) * channels + c;
          for (int64_t j = 0; j < kDepthwiseFilterGradChannels; ++j) dst[j] += sums[j];
        }
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
void conv2d_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& filter, const Conv2dPlan& p, Conv2dGrads& grads) {
  const auto acc_options = input.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const bool unit_multiplier = p.group_out_channels == 1;
  const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const int64_t taps = p.kernel_h * p.kernel_w;
  const Conv2dIndexer ix(p);

  if (grads.input.defined()) {
    const at::Tensor weights = filter.contiguous().to(acc_options.dtype());
    const acc_t* w = weights.const_data_ptr<acc_t>();
    scalar_t* gx = grads.input.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, p.batch * p.in_h, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(p.out_channels);
      for (int64_t row = begin; row < end; ++row) {
        int64_t n = 0, ih = 0;
        ix.in_h.divmod(row, &n, &ih);
        scalar_t* grad_row = gx + ix.input_offset(n, ih, 0, 0);
        if (unit_multiplier) {
          depthwise_grad_input_row<true>(gy, w, grad_row, ix, n, ih, acc.data());
        } else {
          depthwise_grad_input_row<false>(gy, w, grad_row, ix, n, ih, acc.data());
        }
      }
    });
  }

  if (grads.filter.defined()) {
    const int64_t out_rows = p.batch * p.out_h;
    const int64_t chunk_rows = (out_rows + kMaxDepthwiseFilterGradChunks - 1) / kMaxDepthwiseFilterGradChunks;
    const int64_t chunks = (out_rows + chunk_rows - 1) / chunk_rows;
    const int64_t filter_len = taps * p.out_channels;
    const bool blocked = unit_multiplier && p.out_channels % kDepthwiseFilterGradChannels == 0;
    at::Tensor partials = at::empty({chunks, filter_len}, acc_options);
    acc_t* partial = partials.mutable_data_ptr<acc_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        acc_t* dst = partial + chunk * filter_len;
        std::fill(dst, dst + filter_len, acc_t(0));
        for (int64_t row = chunk * chunk_rows; row < std::min(out_rows, (chunk + 1) * chunk_rows); ++row) {
          int64_t n = 0, oh = 0;
          ix.out_h.divmod(row, &n, &oh);
          const scalar_t* image = x + ix.input_offset(n, 0, 0, 0);
          const scalar_t* gy_row = gy + ix.output_offset(n, oh, 0, 0);
          if (blocked) {
            depthwise_grad_filter_row_blocked(image, gy_row, ix, oh, dst);
          } else if (unit_multiplier) {
            depthwise_grad_filter_row<true>(image, gy_row, ix, oh, dst);
          } else {
            depthwise_grad_filter_row<false>(image, gy_row, ix, oh, dst);
          }
        }
      }
    });
    grads.filter.view({filter_len}).copy_(sum_in_order(partials));
  }
}

}  // namespace

namespace {

// The input gradient as forward convolutions (microkernels), one per phase of the stride: input
// rows r, r + s, r + 2s, ... receive grad_output through the taps kh with (r + pad - kh * d)
// divisible by s, every s / gcd(s, d)-th tap, and row r + s * i reads grad_output row
// i + (r + pad - kh * d) / s: a stride-1 convolution of grad_output with those taps flipped, at
// dilation d / gcd(s, d). Stride 1 is the one phase r = 0 with every tap.
struct PhaseAxis {
  int64_t first_tap = 0, tap_step = 1, taps = 0;  // taps first_tap + j * tap_step, j < taps
  int64_t positions = 0;                          // rows r + s * i inside the input
  int64_t dilation = 1;                           // of the phase's convolution
  geometry::Padding padding;                      // of the phase's convolution, at least 0
  int64_t skip = 0;                               // its output rows before row r's
  int64_t outputs = 0;                            // its output size: at least skip + positions
};

PhaseAxis phase_axis(int64_t r, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t dilation,
                     int64_t pad_before) {
  PhaseAxis a;
  a.positions = r < in ? (in - r + stride - 1) / stride : 0;
  const int64_t step = stride / std::gcd(stride, dilation);
  for (int64_t k = 0; k < std::min(kernel, step); ++k) {
    if ((r + pad_before - k * dilation) % stride == 0) {
      a.first_tap = k;
      a.taps = (kernel - k + step - 1) / step;
      break;
    }
  }
  if (a.taps == 0 || a.positions == 0) return a;
  a.tap_step = step;
  a.dilation = dilation / std::gcd(stride, dilation);
  // Position i reads grad_output row i - before + j * dilation for flipped tap j: before is
  // minus the offset of the last tap; a negative one becomes skipped output rows.
  const int64_t last_tap = a.first_tap + (a.taps - 1) * step;
  const int64_t before = -((r + pad_before - last_tap * dilation) / stride);
  a.padding.before = std::max<int64_t>(before, 0);
  a.skip = a.padding.before - before;
  const int64_t reach = (a.taps - 1) * a.dilation;
  a.padding.after = std::max<int64_t>(0, a.skip + a.positions - out - a.padding.before + reach);
  a.outputs = out + a.padding.before + a.padding.after - reach;
  return a;
}

// The forward plan of phase (rows h, columns w) of the input gradient of plan p.
Conv2dPlan phase_plan(const Conv2dPlan& p, const PhaseAxis& h, const PhaseAxis& w) {
  Conv2dPlan t = p;
  t.in_h = p.out_h, t.in_w = p.out_w, t.out_h = h.outputs, t.out_w = w.outputs;
  t.in_channels = p.out_channels, t.out_channels = p.in_channels;
  t.group_in_channels = p.group_out_channels, t.group_out_channels = p.group_in_channels;
  t.kernel_h = h.taps, t.kernel_w = w.taps;
  t.stride_h = t.stride_w = 1;
  t.dilation_h = h.dilation, t.dilation_w = w.dilation;
  t.pad_h = h.padding, t.pad_w = w.padding;
  return t;
}

// The phase's filter [taps_h, taps_w, Og, C] from the forward's [KH, KW, Cg, O]: its taps
// flipped in space (a copy), in- and out-channels swapped per group (with one group a view, which
// the packing reads through its strides: res5's 3x3 input gradient at N = 1 took 6.1 ms with the
// transposing copy, 3.8 without; oneDNN's 2.0-2.9).
at::Tensor phase_filter(const at::Tensor& filter, const Conv2dPlan& p, const PhaseAxis& h, const PhaseAxis& w) {
  const auto taps = [](const at::Tensor& f, int64_t dim, const PhaseAxis& a) {
    return f.slice(dim, a.first_tap, a.first_tap + (a.taps - 1) * a.tap_step + 1, a.tap_step);
  };
  return taps(taps(filter, 0, h), 1, w)
      .flip({0, 1})
      .reshape({h.taps, w.taps, p.group_in_channels, p.groups, p.group_out_channels})
      .permute({0, 1, 4, 3, 2})
      .reshape({h.taps, w.taps, p.group_out_channels, p.in_channels});
}

// Strided input gradients of fewer multiply-adds run im2row + GEMM: each of the s_h * s_w phases
// has the fixed cost of a call (its filter packed, its buffers). Since the phases write in place,
// measured with and without MYCONV_CPU_DGRAD=phases (input gradient alone, minimum of 3 runs of
// 30): 2x2/2 17x31x48 N = 1 (1.3M) 93 us as GEMM, 112 us as phases; 3x3/2 17x31x16 N = 8 (2.7M)
// 148 vs 132 us; 3x3/2 33x47x32->64 N = 1 (7.5M) 192 vs 175 us, N = 8 (60M) 1035 vs 699 us;
// 2x2/2 17x31x48 N = 8 (10.6M) equal.
constexpr int64_t kMinPhasedMultiplyAdds = int64_t{1} << 23;

// Whether an input gradient that does not run as rows (input_grad_runs_as_rows) runs as phases:
// every stride-1 one (a single phase, written in place), strided ones from kMinPhasedMultiplyAdds on.
// Depthwise filters only with stride 1 (the depthwise kernel): strided ones ran 1.1-1.3x oneDNN as
// phases against 0.9x in the direct loops below (bench_cpu.py --train, dw 3x3/2); with a channel
// multiplier never (their transpose is a grouped convolution of one output channel a group, which
// the tile kernels would run at 1/NR of their width).
//
// MYCONV_CPU_DGRAD=phases runs every input gradient the phases can compute as phases, rows' ones
// too (so the tests' small shapes cover them); unset or "auto": the rules. Anything else is an error.
bool phases_forced() {
  static const bool forced = [] {
    const char* value = std::getenv("MYCONV_CPU_DGRAD");
    if (value == nullptr || *value == '\0' || std::string(value) == "auto") return false;
    TORCH_CHECK(std::string(value) == "phases", "MYCONV_CPU_DGRAD must be auto or phases (or unset), got \"",
                value, "\"");
    return true;
  }();
  return forced;
}

// MYCONV_CPU_WGRAD, read at the first filter gradient (a bad value fails filter gradients only).
FilterGradEngine requested_filter_grad_engine() {
  static const FilterGradEngine request = parse_filter_grad_engine(std::getenv("MYCONV_CPU_WGRAD"));
  return request;
}

bool dgrad_runs_as_phases(const Conv2dPlan& p) {
  const bool stride_one = p.stride_h == 1 && p.stride_w == 1;
  if (p.is_depthwise() && p.group_out_channels != 1) return false;
  if (phases_forced()) return true;
  if (p.is_depthwise()) return stride_one;
  return stride_one || p.output_pixels() * p.window_size() * p.out_channels >= kMinPhasedMultiplyAdds;
}

// grad_input through the phases: each phase's convolution writes its rows and columns of
// grad_input (a view: every s-th row and column), directly where they are all of its outputs
// (no skipped or extra ones), else through a buffer; phases no tap reaches are zero. (Through a
// buffer every strided phase cost 3-5% more, side by side at N = 8: U-Net's 3x3/2 56->112
// 22.7 against 21.5 ms written in place, res3's 3x3/2 input gradient 10.9 against 10.4 ms.)
void dgrad_by_phases(const at::Tensor& grad_output, const at::Tensor& filter, const Conv2dPlan& p,
                     at::Tensor& grad_input) {
  for (int64_t rh = 0; rh < p.stride_h; ++rh) {
    const PhaseAxis h = phase_axis(rh, p.in_h, p.out_h, p.kernel_h, p.stride_h, p.dilation_h, p.pad_h.before);
    for (int64_t rw = 0; rw < p.stride_w; ++rw) {
      const PhaseAxis w = phase_axis(rw, p.in_w, p.out_w, p.kernel_w, p.stride_w, p.dilation_w, p.pad_w.before);
      if (h.positions == 0 || w.positions == 0) continue;
      at::Tensor target = grad_input.slice(1, rh, p.in_h, p.stride_h).slice(2, rw, p.in_w, p.stride_w);
      if (h.taps == 0 || w.taps == 0) {
        target.zero_();
        continue;
      }
      const Conv2dPlan t = phase_plan(p, h, w);
      const bool direct = h.skip == 0 && w.skip == 0 && h.outputs == h.positions && w.outputs == w.positions;
      if (direct) {
        conv2d_cpu(grad_output, phase_filter(filter, p, h, w), std::nullopt, t, target);
        continue;
      }
      at::Tensor phase = at::empty({p.batch, t.out_h, t.out_w, p.in_channels}, grad_input.options());
      conv2d_cpu(grad_output, phase_filter(filter, p, h, w), std::nullopt, t, phase);
      target.copy_(phase.narrow(1, h.skip, h.positions).narrow(2, w.skip, w.positions));
    }
  }
}

// grad_input as rows (input_grad_runs_as_rows says when): grad_rows [pixels, KH*KW*C] =
// grad_output x filter^T on the tile kernels (a 1x1 convolution of grad_output whose filter is the
// forward's [KH*KW*C, O] transposed), added onto grad_input by row2im, whole output rows at a
// time, up to kWorkspaceBytes of grad_rows (they stay in L3; at least one row). (As one row of
// all its pixels the 1x1 convolution's blocks each prefetched that whole row: 3x3 4->32 at 112,
// N = 8, took 40-70 ms instead of 4.) One group; float32 rows and sums (a half type's
// grad_output widened a chunk at a time), rounded once at the end.
void dgrad_by_rows(const at::Tensor& grad_output, const at::Tensor& filter, const Conv2dPlan& p,
                   at::Tensor& grad_input) {
  TORCH_INTERNAL_ASSERT(p.groups == 1);
  const int64_t row_len = p.window_size(), out_rows = p.batch * p.out_h;
  const at::Tensor filter_rows =
      filter.to(at::kFloat).reshape({row_len, p.out_channels}).t().contiguous().view({1, 1, p.out_channels, row_len});
  Conv2dPlan t = p;  // `count` output rows of one image, 1x1
  t.batch = 1;
  t.in_w = t.out_w = p.out_w;
  t.in_channels = t.group_in_channels = p.out_channels;
  t.out_channels = t.group_out_channels = row_len;
  t.kernel_h = t.kernel_w = 1;
  t.stride_h = t.stride_w = t.dilation_h = t.dilation_w = 1;
  t.pad_h = t.pad_w = geometry::Padding{};
  const int64_t row_bytes = p.out_w * row_len * int64_t{sizeof(float)};
  const int64_t chunk = std::clamp<int64_t>(kWorkspaceBytes / row_bytes, 1, out_rows);
  const bool in_place = grad_input.scalar_type() == at::kFloat && grad_input.is_contiguous();
  const auto float_options = grad_input.options().dtype(at::kFloat);
  at::Tensor sums = in_place ? grad_input.zero_() : at::zeros(grad_input.sizes(), float_options);
  at::Tensor rows = at::empty({1, chunk, p.out_w, row_len}, float_options);
  const at::Tensor gy = grad_output.view({1, out_rows, p.out_w, p.out_channels});
  for (int64_t first = 0; first < out_rows; first += chunk) {
    const int64_t count = std::min(chunk, out_rows - first);
    t.in_h = t.out_h = count;
    at::Tensor chunk_rows = rows.narrow(1, 0, count);
    conv2d_cpu(gy.narrow(1, first, count).to(at::kFloat), filter_rows, std::nullopt, t, chunk_rows);
    row2im_add(chunk_rows.const_data_ptr<float>(), p, 0, first * p.out_w, count * p.out_w,
               sums.mutable_data_ptr<float>());
  }
  if (!in_place) grad_input.copy_(sums);
}

}  // namespace

FilterGradEngine parse_filter_grad_engine(const char* value) {
  if (value == nullptr || *value == '\0' || std::string(value) == "auto") return FilterGradEngine::kAuto;
  TORCH_CHECK_VALUE(std::string(value) == "gemm", "MYCONV_CPU_WGRAD must be auto or gemm (or unset), got \"", value,
                    "\"");
  return FilterGradEngine::kGemm;
}

bool input_grad_runs_as_rows(const Conv2dPlan& p, at::ScalarType dtype) {
  return p.groups == 1 && p.group_in_channels <= kMaxRowsInputChannels && !p.is_unpadded_pointwise() &&
         dtype != at::kDouble;
}

bool filter_grad_runs_on_tiles(const Conv2dPlan& p, at::ScalarType dtype, FilterGradEngine request) {
  return request == FilterGradEngine::kAuto && !p.is_depthwise() && dtype != at::kDouble;
}

void conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& filter, const Conv2dPlan& plan, Conv2dGrads& grads) {
  Conv2dGrads rest = grads;  // what the loops below compute
  if (grads.input.defined() && !phases_forced() && input_grad_runs_as_rows(plan, input.scalar_type())) {
    dgrad_by_rows(grad_output.contiguous(), filter, plan, grads.input);
    rest.input = at::Tensor();
  } else if (grads.input.defined() && dgrad_runs_as_phases(plan)) {
    dgrad_by_phases(grad_output, filter, plan, grads.input);
    rest.input = at::Tensor();
  }
  if (rest.filter.defined() && filter_grad_runs_on_tiles(plan, input.scalar_type(), requested_filter_grad_engine())) {
    at::Tensor sums = rest.filter.scalar_type() == at::kFloat && rest.filter.is_contiguous()
                          ? rest.filter
                          : at::empty(rest.filter.sizes(), rest.filter.options().dtype(at::kFloat));
    filter_grad_microkernel(grad_output.contiguous(), input.contiguous(), plan, sums);
    if (!sums.is_same(rest.filter)) rest.filter.copy_(sums);
    rest.filter = at::Tensor();
  }
  if (!rest.input.defined() && !rest.filter.defined()) return;
  const at::Tensor gy = grad_output.contiguous();
  // The input gradient reads only the input's sizes (conv2d_transpose passes an expanded scalar).
  const at::Tensor x = rest.filter.defined() ? input.contiguous() : input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "myconv_conv2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (plan.is_depthwise()) {
      conv2d_backward_depthwise<scalar_t, acc_t>(gy, x, filter, plan, rest);
    } else {
      conv2d_backward_gemm<scalar_t, acc_t>(gy, x, filter, plan, rest);
    }
  });
}

}  // namespace cpu
}  // namespace myconv
