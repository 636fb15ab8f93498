// Packed filters kept across calls of the CPU microkernel. Inference calls the same weights again
// and again, and packing a large filter (res5 3x3: 9.4 MB) moves as many bytes as the
// convolution itself reads. An entry belongs to one filter tensor: its storage (held weakly, so
// that a dead storage's entry is dropped and its address cannot be reused while the entry
// exists), data pointer, offset, sizes, packed layout and version counter; an in-place update
// (optimizer step, copy_) therefore repacks. Bounded in bytes by MYCONV_CPU_FILTER_CACHE_MB
// (default 256, 0 disables), least recently used evicted first. Inference tensors (no version
// counter) and non-contiguous filters (a temporary copy each call) are never cached.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace myconv {
namespace cpu {

// What besides the filter decides its packed form: the group count, and the length of the
// reduction's segments (the bfloat16 kernel pairs values within a segment).
struct PackedLayout {
  int64_t groups;
  int64_t segment_length;
  bool operator==(const PackedLayout& other) const {
    return groups == other.groups && segment_length == other.segment_length;
  }
};

// The packed form of `filter` in `layout`: from the cache, or made by `pack` and cached when the
// filter qualifies.
at::Tensor packed_filter(const at::Tensor& filter, const PackedLayout& layout,
                         const std::function<at::Tensor()>& pack);

// Bytes the cache holds now (tests, benchmark).
int64_t filter_cache_bytes();

}  // namespace cpu
}  // namespace myconv
