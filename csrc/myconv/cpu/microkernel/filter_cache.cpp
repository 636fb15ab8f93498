#include "myconv/cpu/microkernel/filter_cache.h"

#include <c10/core/Storage.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>
#include <list>
#include <mutex>
#include <string>
#include <vector>

namespace myconv {
namespace cpu {
namespace {

struct Entry {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
  const void* data;
  int64_t offset;
  std::vector<int64_t> sizes;
  PackedLayout layout;
  int64_t version;
  at::Tensor packed;
};

int64_t capacity_bytes() {
  static const int64_t capacity = [] {
    const char* text = std::getenv("MYCONV_CPU_FILTER_CACHE_MB");
    if (text == nullptr || *text == '\0') return int64_t{256} << 20;
    char* end = nullptr;
    const long long megabytes = std::strtoll(text, &end, 10);
    TORCH_CHECK(*end == '\0' && megabytes >= 0 && megabytes < (int64_t{1} << 40),
                "MYCONV_CPU_FILTER_CACHE_MB must be a whole number of MiB >= 0 (0 disables the cache), got \"",
                text, "\"");
    return static_cast<int64_t>(megabytes) << 20;
  }();
  return capacity;
}

class FilterCache {
 public:
  at::Tensor find(const at::Tensor& filter, const PackedLayout& layout) {
    std::lock_guard<std::mutex> lock(mutex_);
    drop_dead();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!same_tensor(*it, filter, layout)) continue;
      if (it->version != filter._version()) {  // modified in place since: stale
        erase(it);
        return {};
      }
      entries_.splice(entries_.begin(), entries_, it);  // most recently used first
      return it->packed;
    }
    return {};
  }

  void insert(const at::Tensor& filter, const PackedLayout& layout, const at::Tensor& packed) {
    const int64_t bytes = static_cast<int64_t>(packed.nbytes());
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > capacity_bytes()) return;
    for (const Entry& e : entries_) {  // another thread packed the same filter meanwhile
      if (same_tensor(e, filter, layout) && e.version == filter._version()) return;
    }
    entries_.push_front({filter.storage().getWeakStorageImpl(), filter.const_data_ptr(), filter.storage_offset(),
                         filter.sizes().vec(), layout, filter._version(), packed});
    bytes_ += bytes;
    while (bytes_ > capacity_bytes()) erase(std::prev(entries_.end()));
  }

  int64_t bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    drop_dead();
    return bytes_;
  }

 private:
  static bool same_tensor(const Entry& e, const at::Tensor& filter, const PackedLayout& layout) {
    return e.storage._unsafe_get_target() == filter.storage().unsafeGetStorageImpl() &&
           e.data == filter.const_data_ptr() && e.offset == filter.storage_offset() && filter.sizes().equals(e.sizes) &&
           e.layout == layout;
  }

  void drop_dead() {
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = it->storage.expired() ? erase(it) : std::next(it);
    }
  }

  std::list<Entry>::iterator erase(std::list<Entry>::iterator it) {
    bytes_ -= static_cast<int64_t>(it->packed.nbytes());
    return entries_.erase(it);
  }

  std::mutex mutex_;
  std::list<Entry> entries_;
  int64_t bytes_ = 0;
};

FilterCache& cache() {
  static FilterCache* instance = new FilterCache();  // never destroyed: calls may outlive static destruction
  return *instance;
}

bool cacheable(const at::Tensor& filter) {
  return capacity_bytes() > 0 && !filter.is_inference() && filter.is_contiguous() && filter.has_storage();
}

}  // namespace

at::Tensor packed_filter(const at::Tensor& filter, const PackedLayout& layout,
                         const std::function<at::Tensor()>& pack) {
  if (!cacheable(filter)) return pack();
  if (at::Tensor hit = cache().find(filter, layout); hit.defined()) return hit;
  at::Tensor packed = pack();  // outside the lock: packing a large filter takes a while
  cache().insert(filter, layout, packed);
  return packed;
}

int64_t filter_cache_bytes() { return cache().bytes(); }

TORCH_LIBRARY_FRAGMENT(myconv, m) {
  m.def("cpu_filter_cache_bytes() -> int", [] { return filter_cache_bytes(); });
}

}  // namespace cpu
}  // namespace myconv
