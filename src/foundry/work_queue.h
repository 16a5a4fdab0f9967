// WorkQueue: background work for a fixed number of threads, as the fine-tuning trainer and the
// reprocessor run it: Push queues an item, a thread runs it to its end, Stop lets each thread
// finish the item it runs (the runner checks stopping() to cut it short) and joins them.
//
// Thread safety: every method may be called from any thread; Start and Stop not concurrently
// with each other.
#ifndef KEYFOUNDRY_FOUNDRY_WORK_QUEUE_H_
#define KEYFOUNDRY_FOUNDRY_WORK_QUEUE_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace keyfoundry::foundry {

template <typename Work>
class WorkQueue {
 public:
  using Runner = std::function<void(const Work&)>;

  WorkQueue() = default;
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;
  ~WorkQueue() { Stop(); }

  // Starts `threads` threads calling `run` for each item, in the order pushed.
  void Start(int threads, Runner run) {
    std::lock_guard lock(mu_);
    stopping_ = false;
    run_ = std::move(run);
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }

  void Push(Work work) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(work));
    }
    wake_.notify_one();
  }

  // Stops taking items (those queued stay unrun) and joins the threads.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    idle_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  // Sleeps until `due` or until Stop; returns whether it is stopping.
  bool SleepUntil(std::chrono::steady_clock::time_point due) {
    std::unique_lock lock(mu_);
    return wake_.wait_until(lock, due, [this] { return stopping_; });
  }

  // Blocks until nothing is queued or running (or Stop).
  void WaitIdle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [this] { return (queue_.empty() && running_ == 0) || stopping_; });
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      Work work = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      lock.unlock();
      run_(work);
      lock.lock();
      --running_;
      if (queue_.empty() && running_ == 0) idle_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Work> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  Runner run_;
  std::vector<std::thread> threads_;
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_WORK_QUEUE_H_
