// SqliteMetadataStore: the MetadataStore in one SQLite database file, the embedded default.
// The schema, the connections and the crash story are described at the top of the .cc.
//
// Durability: WAL mode with synchronous=FULL, so a Write that returned OK survives a crash of
// the process or the machine. Several processes may open one file; a Write then waits for
// another process's write up to SqliteOptions::busy_timeout, then fails with Unavailable.
//
// Thread safety: safe to use from many threads. Writes are serialized on one connection; each
// concurrent Read uses a connection of its own, so reads run in parallel with each other and
// with the writer. All Reads and Writes must have returned before the store is destroyed.
#ifndef KEYFOUNDRY_STORAGE_SQLITE_SQLITE_METADATA_STORE_H_
#define KEYFOUNDRY_STORAGE_SQLITE_SQLITE_METADATA_STORE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::storage {

class SqliteConnection;  // one sqlite3 handle with its prepared statements; in the .cc

struct SqliteOptions {
  // How long a Write waits for another process's write transaction before Unavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // Checkpoints (copying the WAL's pages into the database file, with its fsync) run on a
  // background thread once a commit leaves at least this many pages in the WAL, so that
  // Writes do not pay for the copying. A commit that leaves more than 4 times as many
  // finishes a checkpoint itself (the last few frames), which lets SQLite restart the WAL
  // and bounds its size. At least 1.
  int checkpoint_pages = 1000;
};

class SqliteMetadataStore final : public MetadataStore {
 public:
  // Opens the database at `path`, creating the file if missing (its directory must exist), and
  // brings its schema up to date. FailedPrecondition when the file's schema is newer than this
  // build knows (it was written by a later keyfoundry); DataLoss when it is not a database.
  static StatusOr<std::unique_ptr<SqliteMetadataStore>> Open(const std::string& path,
                                                             const SqliteOptions& options = {});
  ~SqliteMetadataStore() override;

  Status Read(const TransactionFn& fn) override;
  Status Write(const TransactionFn& fn) override;

  // Checkpoints the background thread has run so far.
  int64_t BackgroundCheckpointsForTest() const;

 private:
  SqliteMetadataStore(std::string path, SqliteOptions options,
                      std::unique_ptr<SqliteConnection> writer);

  StatusOr<std::unique_ptr<SqliteConnection>> TakeReader();
  void ReturnReader(std::unique_ptr<SqliteConnection> reader);

  // Makes `writer` report its WAL's size after each commit (instead of checkpointing itself).
  void WatchWal(SqliteConnection& writer);
  // Called by SQLite after each commit of the writer, with the pages now in the WAL.
  void OnCommit(SqliteConnection& writer, int wal_pages);
  void CheckpointLoop();

  const std::string path_;
  const SqliteOptions options_;

  Mutex write_mu_;  // held for the whole of each Write
  // Null after a failure left it unusable; the next Write opens a new one.
  std::unique_ptr<SqliteConnection> writer_ GUARDED_BY(write_mu_);

  Mutex readers_mu_;  // held only to take or return a connection
  std::vector<std::unique_ptr<SqliteConnection>> idle_readers_ GUARDED_BY(readers_mu_);

  // Guard the three fields below them.
  mutable std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;
  bool stopping_ = false;
  int64_t background_checkpoints_ = 0;
  std::thread checkpointer_;  // owns its own connection
};

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_SQLITE_SQLITE_METADATA_STORE_H_
