// Minimal static-partition parallel loop over [0, n) with std::thread.
#pragma once
#include <algorithm>
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

// f(begin, end) is called on contiguous chunks; exceptions are re-thrown in the caller.
template <class F>
void parallel_for(int64_t n, int threads, F&& f, int64_t min_chunk = 16) {
  int t = resolve_threads(threads);
  int64_t chunks = std::min<int64_t>(t, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (chunks <= 1) { if (n > 0) f(int64_t(0), n); return; }
  std::vector<std::thread> pool;
  std::exception_ptr err;
  std::mutex m;
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    pool.emplace_back([&, b, e] {
      try { f(b, e); } catch (...) { std::lock_guard<std::mutex> g(m); if (!err) err = std::current_exception(); }
    });
  }
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace soxs::detail
