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
// uneven (orders differ in length), and a static split leaves one core idle. Each chunk has at
// least min_chunk items; there are up to 8 chunks per thread. Exceptions are re-thrown in the caller.
template <class F>
void parallel_for(int64_t n, int threads, F&& f, int64_t min_chunk = 16) {
  const int t = resolve_threads(threads);
  const int64_t chunks = std::min<int64_t>(int64_t(t) * 8, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (t <= 1 || chunks <= 1) { if (n > 0) f(int64_t(0), n); return; }
  std::atomic<int64_t> next{0};
  std::exception_ptr err;
  std::mutex m;
  auto work = [&] {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      try { f(n * c / chunks, n * (c + 1) / chunks); }
      catch (...) { std::lock_guard<std::mutex> g(m); if (!err) err = std::current_exception(); }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < std::min<int64_t>(t, chunks); ++i) pool.emplace_back(work);
  work();   // the calling thread takes chunks too
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace soxs::detail
