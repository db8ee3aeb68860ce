#include "thread_pool.h"

#include <chrono>

namespace casspec::cpu {

// A forward pass hands out a few hundred jobs in quick succession; sleeping on a condition
// variable between them costs far more than the jobs themselves, so an idle thread first spins
// (briefly pausing, then yielding the core in case the machine is oversubscribed) for this long.
static constexpr auto kSpin = std::chrono::microseconds(300);
static constexpr int kPauseRounds = 1000;

static inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waits until done() holds or kSpin has passed; returns done().
template <class Done>
static bool spinUntil(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0; !done(); ++i) {
    if (i < kPauseRounds) {
      cpuRelax();
      continue;
    }
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() > until) return done();
  }
  return true;
}

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) threads = 1;
  for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { workerLoop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work(const Job& job, int worker) {
  const uint64_t tag = (uint64_t)job.id << 32;
  uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if ((t & ~0xffffffffull) != tag || (int)(uint32_t)t >= job.tasks) return;  // job over or not ours
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
    try {
      (*job.fn)((int)(uint32_t)t, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    if (completed_.fetch_add(1, std::memory_order_acq_rel) + 1 == job.tasks) {
      std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
      done_.notify_one();
    }
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::workerLoop(int worker) {
  uint32_t seen = 0;
  for (;;) {
    spinUntil([&] { return published_.load(std::memory_order_acquire) != seen; });
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || job_.id != seen; });
      if (stop_) return;
      job = job_;
      seen = job.id;
    }
    work(job, worker);
  }
}

void ThreadPool::run(int tasks, const std::function<void(int, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job = {job_.id + 1, tasks, &fn};
    job_ = job;
    error_ = nullptr;
    completed_.store(0, std::memory_order_relaxed);
    ticket_.store((uint64_t)job.id << 32, std::memory_order_release);
    published_.store(job.id, std::memory_order_release);
  }
  wake_.notify_all();
  work(job, 0);
  // Wait only for tasks that others claimed; a worker that has not woken up yet claims nothing.
  auto finished = [&] { return completed_.load(std::memory_order_acquire) == tasks; };
  std::exception_ptr err;
  {
    if (!spinUntil(finished)) {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, finished);
    }
    std::lock_guard<std::mutex> lock(mu_);
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace casspec::cpu
