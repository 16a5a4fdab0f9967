// Files: an account's uploaded content (training data, results), OpenAI's file objects, sealed
// at rest with the envelope format under the account's active key generation.
//
// Write path. BeginUpload gets the active generation's key (refused with its 403 status when
// the customer's key is inaccessible), then each Write seals and appends, one segment in
// memory. A small file (sealed size up to kMaxInlineBytes) is kept in the metadata store, in a
// table of its own; a larger one goes to a new blob. Finish commits the blob (durable, all or
// nothing) and then, in one transaction, the file's record (with the key block naming the
// generation), its content when small, its two ordering entries and the generation's usage
// count. Those transactions are group-committed (storage/group_commit.h): concurrent uploads
// share one durable commit, and each is acknowledged only once its own record is durable. A
// crash before that transaction leaves at most an orphan blob and no file: nothing
// acknowledged is lost, nothing half-written is ever listed.
//
// Read path. Open finds the record, gets the key of the generation its key block names
// (PermissionDenied naming the key and the reason when it is inaccessible), opens the
// envelope (which authenticates the last segment, so the size is proven) and reads any range,
// authenticating every segment before returning its bytes. Only Open reads content: Get and
// List read records and ordering entries, which are small.
//
// Listing. An account's files are kept in two orders, each a table whose keys sort as the
// order goes, because MetadataStore::Scan only reads forward: oldest first (created_at, then
// id) and its exact reverse, newest first. Files created in the same second keep one stable
// place in each order, so the cursor `after` (a file id) never skips or repeats a file. A page
// costs one Scan per kMaxScanLimit entries and one Get per file returned, whatever the
// account's size; a purpose filter reads further in the order (each entry holds its file's
// purpose, so non-matching files cost no Get) and stops once the page is full.
//
// Storage (MetadataStore tables; blob names are the file ids):
//   blob   file-{id}                                     the sealed content (larger files)
//   table  files              {account}/{id}             the record: JSON, below
//          file_contents      {account}/{id}             the sealed content (small files), raw
//          files_oldest_first {account}/{T}{id}          the file's purpose
//          files_newest_first {account}/{Mirror(T{id})}  the file's purpose
//          file_migrations    order_index                {"done", "after"}: see FileStore()
// where {account} is Account::Key(), {id} is "file-" + 32 lower-case hex digits, T is
// created_at + 2^63 as 16 lower-case hex digits (fixed width, so byte order is time order,
// negative times included), and Mirror replaces every hex digit d by f - d: as every such key
// has its hex digits at the same places, that reverses their order.
//
// Records. Version 2 (written now):
//   {"v": 2, id, filename, purpose, bytes, created_at, generation, key_block (base64url),
//    stored_bytes, "inline": true when the content is in file_contents, false in a blob}
// Version 1 (written before ordering and file_contents existed; read, never written): the
// same fields with "v": 1, and for a small file "inline": its sealed content as base64url,
// with no file_contents entry. Open decodes that content; Get and List never do.
//
// Thread safety: FileStore is safe from many threads; an upload or a reader is used by one
// thread at a time.
#ifndef KEYFOUNDRY_FOUNDRY_FILES_H_
#define KEYFOUNDRY_FOUNDRY_FILES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "encryption/account_keys.h"
#include "encryption/envelope.h"
#include "storage/blob_store.h"
#include "storage/group_commit.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

inline constexpr size_t kMaxFilenameSize = 255;
inline constexpr size_t kMaxInlineBytes = size_t{64} * 1024;
inline constexpr size_t kMaxListLimit = 10000;
inline constexpr size_t kMaxReprocessPage = 100000;  // files one Reprocess call may visit
// The purpose of a fine-tuned model's sealed weights: a file the platform writes for itself,
// never listed, served or deleted through the files API (IsInternalPurpose).
inline constexpr std::string_view kWeightsPurpose = "fine-tune-weights";

struct FileInfo {
  std::string id;  // "file-" + 32 hex
  std::string filename;
  std::string purpose;  // "fine-tune", "assistants", "batch", ...
  uint64_t bytes = 0;
  int64_t created_at = 0;
  uint64_t generation = 0;  // the key generation that seals it
  Bytes key_block;
  uint64_t stored_bytes = 0;
  bool is_inline = false;  // the sealed content is in the metadata store, not in a blob
  std::string blob;        // a blob's name: the id, or "{id}.g{n}" once re-encrypted
};

enum class ReprocessMode {
  kRewrap = 1,     // the data key is wrapped again under the target generation; content as is
  kReencrypt = 2,  // the content is sealed again under a new data key of the target generation
};

// What one call of FileStore::Reprocess did.
struct ReprocessPage {
  size_t visited = 0;        // records looked at
  size_t moved = 0;          // files now under the target generation
  uint64_t moved_bytes = 0;  // their plaintext bytes
  size_t failed = 0;         // files left as they were: their generation's key is inaccessible
  Status first_failure;      // why (the key engine's status, naming the key)
  std::string last_id;       // the cursor: pass it as `after` to continue
  bool done = false;         // no file follows last_id
};

enum class ListOrder {
  kOldestFirst = 1,  // OpenAI's "asc"
  kNewestFirst = 2,  // OpenAI's "desc", the default
};

struct ListFilesOptions {
  std::string purpose;           // empty: every purpose
  size_t limit = kMaxListLimit;  // 1..kMaxListLimit
  ListOrder order = ListOrder::kNewestFirst;
  std::string after;  // empty, or the id of a file of the account: the page starts after it
  bool include_internal = false;  // also files of internal purposes (IsInternalPurpose)
};

struct FileList {
  std::vector<FileInfo> files;
  bool has_more = false;  // more files follow the last one (in the order, with the purpose)
};

// OpenAI's file object: {id, object: "file", bytes, created_at, filename, purpose, status}.
nlohmann::json FileToJson(const FileInfo& file);

// OK for a purpose OpenAI accepts; InvalidArgument naming them otherwise.
Status ValidatePurpose(std::string_view purpose);
// True for the purposes of files the platform writes for itself (kWeightsPurpose): FileUpload
// accepts them, List skips them unless asked, and the files API answers 404 for them.
bool IsInternalPurpose(std::string_view purpose);

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
  // Every reference must outlive the store. Migrates a data directory written before the
  // ordering tables existed: walks every record, in transactions of a bounded number of them,
  // and puts its ordering entries (idempotent), each transaction also saving how far it went in
  // file_migrations; a crash resumes there, and once it is done a start only reads that state.
  // Should the migration fail, it is logged and List retries it, failing with its status until
  // it succeeds (an incomplete list is never served). Records are not rewritten: version-1
  // records keep their content, read as before.
  FileStore(storage::MetadataStore& store, storage::BlobStore& blobs, encryption::AccountKeys& keys,
            const Clock& clock = Clock::Real());

  // `account` is Account::Key(). Fails with the key engine's status when the active key
  // generation is inaccessible.
  StatusOr<std::unique_ptr<FileUpload>> BeginUpload(std::string_view account);
  // NotFound (reason "NotFound") when the account has no such file; the key engine's status
  // when the file's generation is inaccessible. With KeyWait::kNever, a key not in the key
  // cache (getting it may mean a round trip to a remote vault) is Unavailable with reason
  // "KeyNotCached" instead: for callers on an I/O thread, which then retry where they may wait.
  enum class KeyWait { kMay = 1, kNever = 2 };
  StatusOr<std::unique_ptr<FileReader>> Open(std::string_view account, std::string_view id,
                                             KeyWait wait = KeyWait::kMay);

  // NotFound (reason "NotFound") when the account has no such file.
  StatusOr<FileInfo> Get(std::string_view account, std::string_view id) const;
  // One page of the account's files, in `options.order`, from one snapshot. InvalidArgument
  // (reason "invalidPayload") for a limit outside 1..kMaxListLimit or an `after` that names
  // no file of the account. Holds at most one page (and one Scan) in memory.
  StatusOr<FileList> List(std::string_view account, const ListFilesOptions& options) const;
  // NotFound (reason "NotFound") when the account has no such file.
  Status Delete(std::string_view account, std::string_view id);
  // Deletes every file of an account (the account is being deleted), a page at a time.
  Status DeleteAll(std::string_view account);

  // Reprocessing: moves up to `max_files` (1..kMaxReprocessPage) files of the account, those after `after` in id
  // order (empty: from the first) whose generation is one of `from` (empty: any but the
  // target), to the generation `to`. Idempotent and crash-safe: a file already under `to` is
  // left alone, and each file changes in one transaction that also moves its usage count, so
  // a file is at every moment readable under exactly one generation. Rewrap changes the
  // record's key block only. Re-encryption writes the new content first (a new blob
  // "{id}.g{to}", or the small-file table), then switches the record, then deletes the old
  // blob: a crash leaves at most an unreferenced blob, which a later run replaces. A file
  // changed or deleted meanwhile is skipped. A generation whose key is inaccessible leaves its
  // files as they are, counted in `failed`.
  StatusOr<ReprocessPage> Reprocess(std::string_view account, ReprocessMode mode,
                                    const std::vector<uint64_t>& from,
                                    const encryption::GenerationKey& to, std::string_view after,
                                    size_t max_files);

 private:
  friend class FileUploadImpl;
  // Runs the migration described at the constructor unless it is done.
  Status EnsureOrdered() const;
  struct Candidate;
  struct RewrapChange {
    std::string key;  // the record's
    int64_t version = 0;  // as read: the write skips the file if it changed since
    uint64_t old_generation = 0;
    FileInfo info;  // with the new key block and generation
    std::string record;  // `info` encoded, ready to write (encoded off the writer's path)
    std::optional<Bytes> legacy_content;  // a version-1 small file's, moving to its table
  };
  StatusOr<std::vector<Candidate>> ReadCandidates(std::string_view account,
                                                  const std::vector<uint64_t>& from,
                                                  const encryption::GenerationKey& to,
                                                  std::string_view after, size_t n,
                                                  ReprocessPage& page) const;
  StatusOr<std::vector<RewrapChange>> PrepareRewrap(std::string_view account,
                                                    std::vector<Candidate>& files,
                                                    const encryption::GenerationKey& to,
                                                    ReprocessPage& page);
  Status ApplyRewrap(std::string_view account, const std::vector<RewrapChange>& changes,
                     const encryption::GenerationKey& to, ReprocessPage& page);
  Status ReencryptFile(std::string_view account, Candidate& file,
                       const encryption::GenerationKey& to, ReprocessPage& page);

  storage::MetadataStore& store_;
  storage::BlobStore& blobs_;
  encryption::AccountKeys& keys_;
  const Clock& clock_;
  storage::GroupCommitter committer_;
  mutable Mutex migration_mu_;                // held while EnsureOrdered migrates
  mutable std::atomic<bool> ordered_{false};  // every record has its ordering entries
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_FILES_H_
