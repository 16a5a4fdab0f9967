// BlobStore: immutable named blobs for large content (encrypted file bytes, model weights),
// written and read as streams so that memory stays bounded whatever a blob's size. Backends:
// files/ (a directory on the local filesystem).
//
// A blob is written once, through a BlobWriter, and becomes visible whole when Commit returns
// OK; until then no reader sees any of it. A writer destroyed before Commit, or a process that
// dies while writing, leaves nothing visible behind. Blobs are immutable: Create refuses a name
// that exists (AlreadyExists) rather than replace it; to replace a blob, Delete it and Create it
// again.
//
// Names are 1..kMaxBlobNameSize characters of [A-Za-z0-9._-], other than "." and "..", so a
// name is never a path. They are case-sensitive. A bad name gets InvalidArgument from every
// call, which then touches nothing.
//
// Thread safety: a BlobStore is safe to use from many threads; writing one name from two
// writers at once is safe too (one Commit wins, the other gets AlreadyExists). A BlobWriter is
// used by one thread at a time and must not outlive its store. A BlobReader is safe to use from
// many threads (ReadAt has no cursor).
#ifndef KEYFOUNDRY_STORAGE_BLOB_STORE_H_
#define KEYFOUNDRY_STORAGE_BLOB_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::storage {

inline constexpr size_t kMaxBlobNameSize = 200;

class BlobWriter {
 public:
  // Discards the blob unless Commit returned OK.
  virtual ~BlobWriter() = default;

  // Adds bytes to the end of the blob. After a failed Append or Commit the writer is dead:
  // every later call returns that same error, and the blob can never be committed.
  virtual Status Append(ByteView data) = 0;

  // Makes the blob visible and durable, atomically. AlreadyExists when another writer committed
  // the same name first. FailedPrecondition when called after a successful Commit (and Append
  // too).
  virtual Status Commit() = 0;
};

class BlobReader {
 public:
  virtual ~BlobReader() = default;

  virtual uint64_t size() const = 0;

  // Copies bytes from `offset` into `out`: min(out.size(), size() - offset) of them, so 0 at or
  // past the end; returns how many.
  virtual StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const = 0;
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;

  // Starts writing a new blob. AlreadyExists when a blob has the name (Commit checks again).
  virtual StatusOr<std::unique_ptr<BlobWriter>> Create(std::string_view name) = 0;

  // NotFound when there is no committed blob of that name.
  virtual StatusOr<std::unique_ptr<BlobReader>> Open(std::string_view name) = 0;

  // Removes a blob, durably; NotFound when there is none. Whether readers opened before keep
  // working is the backend's to document.
  virtual Status Delete(std::string_view name) = 0;

  virtual StatusOr<bool> Exists(std::string_view name) = 0;
};

// The name check every backend makes: InvalidArgument or OK.
Status ValidateBlobName(std::string_view name);

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_BLOB_STORE_H_
