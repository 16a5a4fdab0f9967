// GroupCommitter: many small write transactions from many threads, committed together so that
// one durable commit (one fsync with SQLite's synchronous=FULL) acknowledges a whole batch.
// Each caller still waits until its own writes are durable: nothing is acknowledged early.
//
// How: callers queue their function and wait; one committer thread takes everything queued
// (up to max_batch), runs the functions in order in one MetadataStore::Write, and wakes their
// callers with its status. While a batch commits, the next one gathers. When a batch fails, each
// of its functions is run again alone, so one caller's error (a conflict, say) does not fail the
// others; a store failure then fails each on its own.
//
// A function must do its work only through the Transaction (it may run twice) and must not
// call back into the store.
//
// Thread safety: Write may be called from many threads at once. The destructor commits what is
// queued, then stops the thread.
#ifndef KEYFOUNDRY_STORAGE_GROUP_COMMIT_H_
#define KEYFOUNDRY_STORAGE_GROUP_COMMIT_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "storage/metadata_store.h"

namespace keyfoundry::storage {

class GroupCommitter {
 public:
  // `store` must outlive the committer.
  explicit GroupCommitter(MetadataStore& store, size_t max_batch = 256);
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Runs `fn` in a transaction shared with others; returns once it committed (OK) or failed.
  Status Write(TransactionFn fn);

 private:
  struct Pending {
    TransactionFn fn;
    std::promise<Status> done;
  };
  void Run();

  MetadataStore& store_;
  const size_t max_batch_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  std::thread thread_;
};

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_GROUP_COMMIT_H_
