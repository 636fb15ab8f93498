#include "myconv/cpu/microkernel/packing.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#include "myconv/cpu/microkernel/kernels.h"
#include "myconv/cpu/microkernel/microkernel.h"

namespace myconv {
namespace cpu {
namespace {

// Bytes of panels written per parallel_for chunk at least: packing a small filter is not worth
// waking threads.
constexpr int64_t kPackGrainBytes = int64_t{1} << 16;

// Element offsets into an HWIO filter of any strides, for output channel 0: of segment s
// (Segments) and of value v within it; o steps between output channels. (An input gradient's
// phase filter is the forward's transposed: its output channels are rows of the forward's,
// packed without a copy.)
struct FilterOffsets {
  int64_t kh, kw, c, o;  // strides in elements
  int64_t group_in_channels, kernel_w;
  bool rows_run_on;  // a filter row's taps follow one another (contiguous HWIO): no division

  FilterOffsets(const at::Tensor& filter, const Conv2dPlan& p)
      : kh(filter.stride(0)), kw(filter.stride(1)), c(filter.stride(2)), o(filter.stride(3)),
        group_in_channels(p.group_in_channels), kernel_w(p.kernel_w), rows_run_on(kw == group_in_channels * c) {}

  int64_t segment(const Segments& seg, int64_t s) const {
    return seg.whole_rows ? s * kh : s / kernel_w * kh + s % kernel_w * kw;
  }
  int64_t value(const Segments& seg, int64_t v) const {
    if (!seg.whole_rows || rows_run_on) return v * c;
    return v / group_in_channels * kw + v % group_in_channels * c;
  }
};

// A work item: a block of this many packed rows of a segment, copied into up to kPackItemPanels
// panels. (Blocks of 16 and 64 packed forward filters alike; a transposed filter's runs of 64
// values came 1.3-1.4x faster than runs of 16 on res5's filters, which outgrow the caches. The
// panel bound leaves work for many threads where a filter has few rows, e.g. 1x1 64->2048.)
constexpr int64_t kPackBlockRows = 64;
constexpr int64_t kPackItemPanels = 16;

// A transposed filter's channels lie a row of the forward filter apart (2 KB on res5), and the
// hardware prefetchers do not follow: each channel's run is prefetched this many channels ahead
// (into L1; L2 was slower). res5's transposed 3x3 filter: 1.82 -> 1.30 ms, 3x3 256->256 172 ->
// 142 us, 1x1 512->2048 361 -> 324 us (interleaved, median of 200).
constexpr int64_t kPackPrefetchChannels = 8;
constexpr int64_t kCacheLine = 64;

// The panels of `filter` (HWIO of type T, any strides: `offsets` says where) as elements E: one
// pass, every panel row written whole (channels past the group's, values past a segment's length:
// zeros). Threads take blocks of a segment's rows and copy each into its panels: a forward filter
// (contiguous channels) is read a block of rows at a time, each from memory once and then from
// cache for every panel, and a transposed filter (contiguous values) a run of the block's values
// of each channel at a time. (Panel by panel, each thread read res5's 3x3 filter 128 bytes of
// each 2 KB row a pass: 10-17 GB/s.)
template <int kPair, typename T, typename E>
void pack_panels(const T* filter, const FilterOffsets& offsets, const Conv2dPlan& p, const Segments& seg,
                 const PanelLayout& layout, E* packed) {
  const int64_t nr = layout.nr, rows = layout.packed_length / kPair;
  const int64_t all_panels = p.groups * layout.panels;
  const bool channels_contiguous = offsets.o == 1;
  const int64_t row_blocks = (rows + kPackBlockRows - 1) / kPackBlockRows;
  const int64_t panel_runs = (all_panels + kPackItemPanels - 1) / kPackItemPanels;
  const int64_t item_panels = (all_panels + panel_runs - 1) / panel_runs;  // panels spread evenly
  const int64_t item_bytes = kPackBlockRows * kPair * nr * item_panels * static_cast<int64_t>(sizeof(E));
  at::parallel_for(0, seg.count * row_blocks * panel_runs, std::max<int64_t>(1, kPackGrainBytes / item_bytes),
                   [&](int64_t begin, int64_t end) {
    int64_t value_offsets[kPackBlockRows * kPair];  // of the block's values in a segment; -1: past its length
    for (int64_t item = begin; item < end; ++item) {  // (segment, block of rows, run of panels)
      const int64_t block = item / panel_runs, run = item % panel_runs;
      const int64_t s = block / row_blocks, first_row = block % row_blocks * kPackBlockRows;
      const int64_t block_rows = std::min(kPackBlockRows, rows - first_row);
      const int64_t values = block_rows * kPair;
      for (int64_t v = 0; v < values; ++v) {
        const int64_t c = first_row * kPair + v;
        value_offsets[v] = c < seg.length ? offsets.segment(seg, s) + offsets.value(seg, c) : -1;
      }
      for (int64_t gj = run * item_panels; gj < std::min(all_panels, (run + 1) * item_panels); ++gj) {
        const auto [first_channel, width] = layout.channels(gj);
        const T* const channels = filter + first_channel * offsets.o;
        E* const dst = packed + gj * layout.panel_elements + (s * rows + first_row) * nr * kPair;
        // dst[(row * nr + r) * kPair + q] = value row * kPair + q of channel r.
        if (channels_contiguous) {
          for (int64_t v = 0; v < values; ++v) {
            E* const out = dst + v / kPair * nr * kPair + v % kPair;
            if (value_offsets[v] < 0) {
              for (int64_t r = 0; r < width; ++r) out[r * kPair] = E(0);
            } else {
              const T* const src = channels + value_offsets[v];
              for (int64_t r = 0; r < width; ++r) out[r * kPair] = static_cast<E>(src[r]);
            }
          }
        } else {
          for (int64_t r = 0; r < width; ++r) {
            const T* const src = channels + r * offsets.o;
            if (r + kPackPrefetchChannels < width) {  // the run this many channels ahead, every line
              const T* const ahead = src + kPackPrefetchChannels * offsets.o;
              for (int64_t v = 0; v < values; v += kCacheLine / static_cast<int64_t>(sizeof(T))) {
                if (value_offsets[v] >= 0) prefetch_to_l1(ahead + value_offsets[v]);
              }
            }
            for (int64_t v = 0; v < values; ++v) {
              dst[(v / kPair * nr + r) * kPair + v % kPair] =
                  value_offsets[v] < 0 ? E(0) : static_cast<E>(src[value_offsets[v]]);
            }
          }
        }
        for (int64_t row = 0; row < block_rows && width < nr; ++row) {
          std::fill(dst + (row * nr + width) * kPair, dst + (row + 1) * nr * kPair, E(0));
        }
      }
    }
  });
}

const char* dtype_name(int32_t dtype) { return c10::toString(static_cast<at::ScalarType>(dtype)); }

}  // namespace

PackedForm cpu_filter_form(const Conv2dPlan& p, at::ScalarType dtype) {
  PackedForm form;
  form.groups = p.groups;
  form.isa = static_cast<int32_t>(selected_isa());
  const bool microkernel_type = dtype != at::kDouble;
  if (microkernel_type && p.is_depthwise() && has_depthwise_microkernel(p)) {
    form.kind = static_cast<int32_t>(FilterForm::kDepthwise);
    form.isa = 0;  // the same float32 filter for every depthwise kernel (AVX2, AVX-512, NEON)
    form.element_dtype = static_cast<int32_t>(at::kFloat);
    form.payload_bytes = p.kernel_h * p.kernel_w * p.out_channels * static_cast<int64_t>(sizeof(float));
  } else if (microkernel_type && !p.is_depthwise()) {
    const TileShape tile = tile_shape(dtype);
    const Segments seg(p);
    const PanelLayout layout(p, seg, tile);
    const at::ScalarType element = uses_bfloat16_tile_kernel(dtype) ? at::kBFloat16 : at::kFloat;
    form.kind = static_cast<int32_t>(FilterForm::kPanels);
    form.element_dtype = static_cast<int32_t>(element);
    form.pair = tile.group;
    form.panel_channels = tile.channels;
    form.segments = seg.count;
    form.segment_length = seg.length;
    form.payload_bytes =
        p.groups * layout.panels * layout.panel_elements * static_cast<int64_t>(c10::elementSize(element));
  } else {  // float64, and depthwise calls the generic loops run
    form.kind = static_cast<int32_t>(FilterForm::kAsIs);
    form.isa = 0;  // read by plain C++ loops on any CPU
    form.element_dtype = static_cast<int32_t>(dtype);
    form.payload_bytes =
        p.kernel_h * p.kernel_w * p.group_in_channels * p.out_channels * static_cast<int64_t>(c10::elementSize(dtype));
  }
  return form;
}

void pack_filter(const at::Tensor& filter, const Conv2dPlan& p, const PackedForm& form, void* dst) {
  switch (static_cast<FilterForm>(form.kind)) {
    case FilterForm::kAsIs:
      std::memcpy(dst, filter.contiguous().const_data_ptr(), form.payload_bytes);
      return;
    case FilterForm::kDepthwise:
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, filter.scalar_type(), "myconv_pack_depthwise", [&] {
        const at::Tensor dense = filter.contiguous();
        const scalar_t* src = dense.const_data_ptr<scalar_t>();
        float* out = static_cast<float*>(dst);
        for (int64_t i = 0; i < dense.numel(); ++i) out[i] = static_cast<float>(src[i]);
      });
      return;
    case FilterForm::kPanels: {
      const Segments seg(p);
      const PanelLayout layout(p, seg, tile_shape(filter.scalar_type()));
      TORCH_INTERNAL_ASSERT(layout.pair == form.pair && (form.pair == 1 || form.pair == 2));
      const FilterOffsets offsets(filter, p);
      if (static_cast<at::ScalarType>(form.element_dtype) == at::kBFloat16) {
        pack_panels<2>(filter.const_data_ptr<at::BFloat16>(), offsets, p, seg, layout, static_cast<at::BFloat16*>(dst));
        return;
      }
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, filter.scalar_type(), "myconv_pack_panels", [&] {
        pack_panels<1>(filter.const_data_ptr<scalar_t>(), offsets, p, seg, layout, static_cast<float*>(dst));
      });
      return;
    }
  }
  TORCH_INTERNAL_ASSERT(false, "unknown CPU filter form ", form.kind);
}

std::string describe_cpu_form(const PackedForm& form) {
  std::string text;
  switch (static_cast<FilterForm>(form.kind)) {
    case FilterForm::kAsIs:
      text = c10::str("the filter as it is (", dtype_name(form.element_dtype), ")");
      break;
    case FilterForm::kDepthwise:
      text = "a float32 depthwise filter for the vector depthwise kernels";
      break;
    case FilterForm::kPanels:
      text = c10::str(isa_name(static_cast<Isa>(form.isa)), " panels of ", form.panel_channels, " ",
                      dtype_name(form.element_dtype), " channels", form.pair > 1 ? " in pairs" : "", ", ",
                      form.segments, " segments of ", form.segment_length);
      break;
    default:
      text = c10::str("an unknown form (", form.kind, ")");
  }
  return c10::str(text, ", ", form.groups, " group(s), ", form.payload_bytes, " bytes");
}

}  // namespace cpu
}  // namespace myconv
