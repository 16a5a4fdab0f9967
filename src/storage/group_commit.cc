#include "storage/group_commit.h"

#include <utility>
#include <vector>

namespace keyfoundry::storage {

GroupCommitter::GroupCommitter(MetadataStore& store, size_t max_batch)
    : store_(store), max_batch_(max_batch == 0 ? 1 : max_batch), thread_([this] { Run(); }) {}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Status GroupCommitter::Write(TransactionFn fn) {
  std::future<Status> done;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return UnavailableError("the store is shutting down");
    queue_.push_back(Pending{std::move(fn), {}});
    done = queue_.back().done.get_future();
  }
  wake_.notify_one();
  return done.get();
}

void GroupCommitter::Run() {
  while (true) {
    std::vector<Pending> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to commit
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Status status = store_.Write([&batch](Transaction& txn) -> Status {
      for (Pending& p : batch) RETURN_IF_ERROR(p.fn(txn));
      return OkStatus();
    });
    if (status.ok() || batch.size() == 1) {
      for (Pending& p : batch) p.done.set_value(status);
      continue;
    }
    // Someone's function failed, or the store did: each on its own, so only the guilty fail.
    for (Pending& p : batch) p.done.set_value(store_.Write(p.fn));
  }
}

}  // namespace keyfoundry::storage
