// Files: an account's uploaded content (training data, results), OpenAI's file objects, sealed
// at rest with the envelope format under the account's active key generation.
//
// Write path. BeginUpload gets the active generation's key (refused with its 403 status when
// the customer's key is inaccessible), then each Write seals and appends, one segment in
// memory. A small file (sealed size up to kMaxInlineBytes) is kept inside its record; a larger
// one goes to a new blob. Finish commits the blob (durable, all or nothing) and then, in one
// transaction, the file's record (with the key block naming the generation, and the content
// when inline) and the generation's usage count. Those transactions are group-committed
// (storage/group_commit.h): concurrent uploads share one durable commit, and each is
// acknowledged only once its own record is durable. A crash before that transaction leaves at
// most an orphan blob and no file: nothing acknowledged is lost, nothing half-written is ever
// listed.
//
// Read path. Open finds the record, gets the key of the generation its key block names
// (PermissionDenied naming the key and the reason when it is inaccessible), opens the
// envelope (which authenticates the last segment, so the size is proven) and reads any range,
// authenticating every segment before returning its bytes.
//
// Storage:
//   blob      file-{id}                                 the sealed content (larger files)
//   table     files  {account key}/{id}                 {filename, purpose, bytes, created_at,
//                                                        generation, key_block, stored_bytes,
//                                                        inline?: the sealed content}
//
// Thread safety: FileStore is safe from many threads; an upload or a reader is used by one
// thread at a time.
#ifndef KEYFOUNDRY_FOUNDRY_FILES_H_
#define KEYFOUNDRY_FOUNDRY_FILES_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/status.h"
#include "encryption/account_keys.h"
#include "encryption/envelope.h"
#include "storage/blob_store.h"
#include "storage/group_commit.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

inline constexpr size_t kMaxFilenameSize = 255;
inline constexpr size_t kMaxInlineBytes = size_t{64} * 1024;

struct FileInfo {
  std::string id;  // "file-" + 32 hex
  std::string filename;
  std::string purpose;  // "fine-tune", "assistants", "batch", ...
  uint64_t bytes = 0;
  int64_t created_at = 0;
  uint64_t generation = 0;  // the key generation that seals it
  Bytes key_block;
  uint64_t stored_bytes = 0;
  Bytes inline_content;  // the sealed content when it is kept in the record
  bool is_inline = false;
};

// OpenAI's file object: {id, object: "file", bytes, created_at, filename, purpose, status}.
nlohmann::json FileToJson(const FileInfo& file);

// OK for a purpose OpenAI accepts; InvalidArgument naming them otherwise.
Status ValidatePurpose(std::string_view purpose);

class FileUpload {
 public:
  virtual ~FileUpload() = default;  // discards the upload unless Finish succeeded
  virtual Status Write(ByteView data) = 0;
  // Commits; returns the file. `filename` and `purpose` may only be known at the end of a
  // multipart body, hence here.
  virtual StatusOr<FileInfo> Finish(std::string_view filename, std::string_view purpose) = 0;
  virtual uint64_t size() const = 0;
};

class FileReader {
 public:
  virtual ~FileReader() = default;
  virtual const FileInfo& info() const = 0;
  // Plaintext [offset, offset + out.size()) clamped to the end; returns how many bytes.
  virtual StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) = 0;
};

class FileStore {
 public:
  // Every reference must outlive the store.
  FileStore(storage::MetadataStore& store, storage::BlobStore& blobs, encryption::AccountKeys& keys,
            const Clock& clock = Clock::Real());

  // `account` is Account::Key(). Fails with the key engine's status when the active key
  // generation is inaccessible.
  StatusOr<std::unique_ptr<FileUpload>> BeginUpload(std::string_view account);
  StatusOr<std::unique_ptr<FileReader>> Open(std::string_view account, std::string_view id);

  // NotFound (reason "NotFound") when the account has no such file.
  StatusOr<FileInfo> Get(std::string_view account, std::string_view id) const;
  // Newest first, up to `limit` (1..10000), optionally only one purpose.
  StatusOr<std::vector<FileInfo>> List(std::string_view account, std::string_view purpose,
                                       size_t limit) const;
  Status Delete(std::string_view account, std::string_view id);
  // Deletes every file of an account (the account is being deleted).
  Status DeleteAll(std::string_view account);

 private:
  friend class FileUploadImpl;
  storage::MetadataStore& store_;
  storage::BlobStore& blobs_;
  encryption::AccountKeys& keys_;
  const Clock& clock_;
  storage::GroupCommitter committer_;
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_FILES_H_
