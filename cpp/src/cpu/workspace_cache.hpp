// Large host workspaces kept between calls. A call's workspaces of a few MB are freed when
// it returns; glibc then gives big blocks back to the kernel (munmap, or a trim of the heap
// top), and the next call pays a page fault per 4 KiB to get them back. On a VM those
// faults cost as much as the call's GEMMs (an exact diagonal with chunks of 1024 inputs:
// 12 -> 25 ms). Blocks of at least kMinBytes are kept instead, per thread, up to kKeepBytes,
// and handed to the next allocation they fit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace fisherkit::cpu {

class WorkspaceCache {
 public:
  static constexpr std::size_t kMinBytes = std::size_t(256) << 10;
  static constexpr std::size_t kKeepBytes = std::size_t(64) << 20;
  static constexpr std::size_t kAlign = 64;  // the header's size too: data stay 64-byte aligned

  /// A block of at least `bytes` (>= kMinBytes): a cached one no more than twice as large,
  /// else a new one. Throws std::bad_alloc.
  static void* take(std::size_t bytes) {
    WorkspaceCache& c = local();
    int best = -1;
    for (int i = 0; i < c.count_; ++i)
      if (c.size_[i] >= bytes && c.size_[i] <= 2 * bytes && (best < 0 || c.size_[i] < c.size_[best])) best = i;
    if (best >= 0) {
      char* p = c.block_[best];
      c.held_ -= c.size_[best];
      c.remove(best);
      return p + kAlign;
    }
    if (bytes > SIZE_MAX - kAlign) throw std::bad_alloc();
    const std::size_t total = (bytes + kAlign + kAlign - 1) / kAlign * kAlign;
    char* p = static_cast<char*>(std::aligned_alloc(kAlign, total));
    if (!p) throw std::bad_alloc();
    *reinterpret_cast<std::size_t*>(p) = total - kAlign;
    return p + kAlign;
  }

  /// Return a block of take(): kept while the cache holds under kKeepBytes (older blocks
  /// make room for it), else freed.
  static void give(void* data) noexcept {
    char* p = static_cast<char*>(data) - kAlign;
    const std::size_t size = *reinterpret_cast<std::size_t*>(p);
    WorkspaceCache& c = local();
    if (size > kKeepBytes) {
      std::free(p);
      return;
    }
    while (c.count_ > 0 && (c.count_ == kSlots || c.held_ + size > kKeepBytes)) {
      c.held_ -= c.size_[0];
      std::free(c.block_[0]);
      c.remove(0);
    }
    c.block_[c.count_] = p;
    c.size_[c.count_++] = size;
    c.held_ += size;
  }

  ~WorkspaceCache() {
    for (int i = 0; i < count_; ++i) std::free(block_[i]);
  }

 private:
  static constexpr int kSlots = 16;
  static WorkspaceCache& local() {
    thread_local WorkspaceCache cache;
    return cache;
  }
  void remove(int i) {
    for (int j = i + 1; j < count_; ++j) block_[j - 1] = block_[j], size_[j - 1] = size_[j];
    --count_;
  }
  char* block_[kSlots] = {};
  std::size_t size_[kSlots] = {};
  std::size_t held_ = 0;
  int count_ = 0;
};

}  // namespace fisherkit::cpu
