// Minimal parallel loop over [0, n) with std::thread and dynamically handed-out chunks.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace soxs::detail {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// f(begin, end) is called on contiguous chunks, handed out dynamically: per-order work is
// uneven (orders differ in length), and a static split leaves one core idle. The chunks depend on
// n and min_chunk only, never on the thread count (at least min_chunk items, at most MAX_CHUNKS
// chunks), so a kernel whose arithmetic follows its chunks still gives the same bits on any number
// of cores. Exceptions are re-thrown in the caller.
constexpr int64_t MAX_CHUNKS = 256;

inline int64_t chunk_count(int64_t n, int64_t min_chunk) {
  return std::clamp<int64_t>(n / std::max<int64_t>(1, min_chunk), 1, MAX_CHUNKS);
}

template <class F>
void parallel_for(int64_t n, int threads, F&& f, int64_t min_chunk = 16) {
  const int t = resolve_threads(threads);
  const int64_t chunks = chunk_count(n, min_chunk);
  if (t <= 1 || chunks <= 1) {
    for (int64_t c = 0; c < chunks && n > 0; ++c) f(n * c / chunks, n * (c + 1) / chunks);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr err;
  int64_t err_chunk = chunks;   // the first failing chunk's error, as in the serial loop
  std::mutex m;
  auto work = [&] {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      try { f(n * c / chunks, n * (c + 1) / chunks); }
      catch (...) {
        std::lock_guard<std::mutex> g(m);
        if (c < err_chunk) { err = std::current_exception(); err_chunk = c; }
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < std::min<int64_t>(t, chunks); ++i) pool.emplace_back(work);
  work();   // the calling thread takes chunks too
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace soxs::detail
