// A fixed set of worker threads, created once per backend. Work is handed out as numbered tasks;
// which thread runs which task is left to chance, so callers must make every task's result
// independent of the thread that computes it (each task owns disjoint outputs and does its own
// reductions start to finish). That is what keeps forward passes bitwise reproducible.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace casspec::cpu {

class ThreadPool {
 public:
  // threads = total number of threads working on a job, the calling thread included.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return (int)workers_.size() + 1; }

  // Runs fn(task, worker) for task = 0..tasks-1 and returns when all are done. worker is in
  // 0..size()-1 and identifies per-thread scratch space; the caller runs as worker 0.
  // Not reentrant: one job at a time (the engine serialises forward passes per model).
  void run(int tasks, const std::function<void(int task, int worker)>& fn);

 private:
  struct Job {
    uint32_t id = 0;
    int tasks = 0;
    const std::function<void(int, int)>* fn = nullptr;
  };
  void workerLoop(int worker);
  void work(const Job& job, int worker);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  bool stop_ = false;
  Job job_;                            // the current job (written under mu_)
  std::atomic<uint32_t> published_{0};  // job_.id, readable without the lock for spinning
  // Next task to claim, tagged with the job id in the high half: a worker that wakes up late
  // cannot claim a task of a later job by mistake.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> completed_{0};  // tasks of the current job that have finished
  std::exception_ptr error_;
};

}  // namespace casspec::cpu
