// FileBlobStore: the BlobStore as files under one root directory, the embedded default. The
// layout and the crash story are described at the top of the .cc.
//
// Durability: Commit returns OK only once the blob's bytes and its name are fsync'd, and
// Delete only once the removal is; a crash at any point leaves each blob whole or absent.
//
// Memory: a writer buffers at most kWriteBufferSize bytes; readers buffer nothing.
//
// One process at a time: OpenDirectory locks root/LOCK and fails with FailedPrecondition while
// another process (or another FileBlobStore in this one) holds it, because it deletes the
// partial writes it finds, which would be another live store's uploads.
//
// A reader opened before a Delete keeps reading the whole blob it opened. The root must be on a
// local, case-sensitive POSIX filesystem.
//
// Thread safety: as BlobStore says.
#ifndef KEYFOUNDRY_STORAGE_FILES_FILE_BLOB_STORE_H_
#define KEYFOUNDRY_STORAGE_FILES_FILE_BLOB_STORE_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "storage/blob_store.h"

namespace keyfoundry::storage {

class FileBlobStore final : public BlobStore {
 public:
  static constexpr size_t kWriteBufferSize = size_t{1} << 20;

  // Opens the store at `root`, creating it (its parent must exist) and its layout when missing,
  // and removes the partial writes a crash left behind. (Not named Open, which reads a blob.)
  static StatusOr<std::unique_ptr<FileBlobStore>> OpenDirectory(const std::string& root);
  ~FileBlobStore() override;  // releases the lock
  FileBlobStore(const FileBlobStore&) = delete;
  FileBlobStore& operator=(const FileBlobStore&) = delete;

  StatusOr<std::unique_ptr<BlobWriter>> Create(std::string_view name) override;
  StatusOr<std::unique_ptr<BlobReader>> Open(std::string_view name) override;
  Status Delete(std::string_view name) override;
  StatusOr<bool> Exists(std::string_view name) override;

 private:
  FileBlobStore(std::string root, int lock_fd) : root_(std::move(root)), lock_fd_(lock_fd) {}

  // Where the blob `name` (already validated) lives, and its directory.
  std::string ShardDir(std::string_view name) const;
  std::string ObjectPath(std::string_view name) const;

  const std::string root_;
  const int lock_fd_;  // holds the flock on root/LOCK
};

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_FILES_FILE_BLOB_STORE_H_
