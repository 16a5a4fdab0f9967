#include "foundry/files.h"

#include <algorithm>
#include <array>
#include <future>
#include <map>
#include <optional>
#include <span>

#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"

namespace keyfoundry::foundry {
namespace {

using Json = nlohmann::json;
using storage::Record;
using storage::Transaction;

// The tables and record format are described in files.h.
constexpr std::string_view kTable = "files";
constexpr std::string_view kContentTable = "file_contents";
constexpr std::string_view kOldestFirstTable = "files_oldest_first";
constexpr std::string_view kNewestFirstTable = "files_newest_first";
constexpr std::string_view kMigrationTable = "file_migrations";
constexpr std::string_view kOrderMigration = "order_index";
constexpr int kRecordVersion = 2;
constexpr size_t kMaxIdSize = 64;
constexpr size_t kTimeDigits = 16;
// Records per migration transaction. A version-1 record holds up to ~88 KB of base64 content,
// so this bounds the migration's memory to ~22 MB.
constexpr size_t kMigrationBatch = 256;
constexpr std::array<std::string_view, 7> kPurposes = {
    "fine-tune", "fine-tune-results", "assistants", "assistants_output",
    "batch",     "batch_output",      "vision"};
// Purposes of files the platform writes for itself and never lists or serves as files.
constexpr std::array<std::string_view, 1> kInternalPurposes = {kWeightsPurpose};

std::string AccountPrefix(std::string_view account) { return std::string(account) + "/"; }

std::string RecordKey(std::string_view account, std::string_view id) {
  return AccountPrefix(account) + std::string(id);
}

// Replaces every lower-case hex digit d by f - d, keeping other characters: reverses the order
// of strings that have hex digits at the same places, and undoes itself.
std::string Mirror(std::string s) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  for (char& c : s) {
    if (const size_t d = kHex.find(c); d != std::string_view::npos) c = kHex[15 - d];
  }
  return s;
}

// The key of a file's entry in the table of `order`.
std::string OrderKey(std::string_view account, ListOrder order, int64_t created_at,
                     std::string_view id) {
  // Adding 2^63 (as a flip of the top bit) maps int64 order onto uint64 order; big-endian hex
  // of fixed width sorts as the number does.
  std::array<uint8_t, kTimeDigits / 2> time{};
  StoreBigEndian(static_cast<uint64_t>(created_at) ^ (uint64_t{1} << 63), time);
  std::string suffix = HexEncode(time) + std::string(id);
  switch (order) {
    case ListOrder::kOldestFirst:
      return AccountPrefix(account) + suffix;
    case ListOrder::kNewestFirst:
      return AccountPrefix(account) + Mirror(std::move(suffix));
  }
  return {};  // not reached: the switch covers every order
}

std::string_view OrderTable(ListOrder order) {
  switch (order) {
    case ListOrder::kOldestFirst:
      return kOldestFirstTable;
    case ListOrder::kNewestFirst:
      return kNewestFirstTable;
  }
  return {};  // not reached
}

// The file id in an entry of the table of `order` (whose key starts with `prefix`).
std::string IdOfOrderKey(std::string_view key, std::string_view prefix, ListOrder order) {
  std::string suffix(key.substr(std::min(key.size(), prefix.size())));
  if (order == ListOrder::kNewestFirst) suffix = Mirror(std::move(suffix));
  return suffix.size() > kTimeDigits ? suffix.substr(kTimeDigits) : std::string();
}

// Puts a file's entries in both orders (Put, so that the migration may redo it).
Status PutOrderEntries(Transaction& txn, std::string_view account, const FileInfo& f) {
  for (ListOrder order : {ListOrder::kOldestFirst, ListOrder::kNewestFirst}) {
    RETURN_IF_ERROR(txn.Put(OrderTable(order), OrderKey(account, order, f.created_at, f.id),
                            AsBytes(f.purpose)));
  }
  return OkStatus();
}

Status DeleteIfPresent(Transaction& txn, std::string_view table, std::string_view key) {
  Status deleted = txn.Delete(table, key);
  return deleted.code() == StatusCode::kNotFound ? OkStatus() : deleted;
}

// The record of file `id` of `account`; nullopt also for an id no file can have.
StatusOr<std::optional<Record>> GetRecord(Transaction& txn, std::string_view account,
                                          std::string_view id) {
  if (id.empty() || id.size() > kMaxIdSize) return std::optional<Record>();
  return txn.Get(kTable, RecordKey(account, id));
}

Json Encode(const FileInfo& f) {
  Json out = {{"v", kRecordVersion},
              {"id", f.id},
              {"filename", f.filename},
              {"purpose", f.purpose},
              {"bytes", f.bytes},
              {"created_at", f.created_at},
              {"generation", f.generation},
              {"key_block", Base64UrlEncode(f.key_block)},
              {"stored_bytes", f.stored_bytes},
              {"inline", f.is_inline}};
  if (!f.is_inline && f.blob != f.id) out["blob"] = f.blob;
  return out;
}

// Decodes a record of version 1 or 2. The content a version-1 record carries is decoded only
// when `legacy_content` is given (by Open): it is left nullopt for every other record.
StatusOr<FileInfo> Decode(const Record& r, std::optional<Bytes>* legacy_content = nullptr) {
  const Json j = Json::parse(AsStringView(r.value), nullptr, false);
  auto corrupt = [&] { return DataLossError("the file record '" + r.key + "' is corrupt"); };
  FileInfo f;
  try {
    const int version = j.at("v").get<int>();
    if (version != 1 && version != 2) return corrupt();
    f.id = j.at("id").get<std::string>();
    f.filename = j.at("filename").get<std::string>();
    f.purpose = j.at("purpose").get<std::string>();
    f.bytes = j.at("bytes").get<uint64_t>();
    f.created_at = j.at("created_at").get<int64_t>();
    f.generation = j.at("generation").get<uint64_t>();
    StatusOr<Bytes> block = Base64UrlDecode(j.at("key_block").get<std::string>());
    if (!block.ok()) return corrupt();
    f.key_block = *std::move(block);
    f.stored_bytes = j.at("stored_bytes").get<uint64_t>();
    f.blob = j.contains("blob") ? j.at("blob").get<std::string>() : f.id;
    if (version == 2) {
      f.is_inline = j.at("inline").get<bool>();
    } else if (j.contains("inline")) {
      f.is_inline = true;
      if (legacy_content != nullptr) {
        StatusOr<Bytes> content = Base64UrlDecode(j.at("inline").get<std::string>());
        if (!content.ok()) return corrupt();
        *legacy_content = *std::move(content);
      }
    }
  } catch (const Json::exception&) {
    return corrupt();
  }
  return f;
}

Status FileNotFound(std::string_view id) {
  return NotFoundError("No file with id '" + std::string(id) + "' was found.")
      .WithReason("NotFound");
}

}  // namespace

Json FileToJson(const FileInfo& f) {
  return {{"id", f.id},
          {"object", "file"},
          {"bytes", f.bytes},
          {"created_at", f.created_at},
          {"filename", f.filename},
          {"purpose", f.purpose},
          {"status", "processed"},
          {"status_details", nullptr}};
}

bool IsInternalPurpose(std::string_view purpose) {
  return std::find(kInternalPurposes.begin(), kInternalPurposes.end(), purpose) !=
         kInternalPurposes.end();
}

Status ValidatePurpose(std::string_view purpose) {
  if (std::find(kPurposes.begin(), kPurposes.end(), purpose) != kPurposes.end()) {
    return OkStatus();
  }
  std::string allowed;
  for (std::string_view p : kPurposes) allowed += (allowed.empty() ? "" : ", ") + std::string(p);
  return InvalidArgumentError("'" + std::string(purpose) + "' is not a valid purpose; use one of " +
                              allowed)
      .WithReason("invalidPayload");
}

// The upload: an envelope writer whose sink keeps a small file in memory (for file_contents)
// and moves to a blob once the sealed bytes pass kMaxInlineBytes.
class FileUploadImpl final : public FileUpload {
 public:
  static StatusOr<std::unique_ptr<FileUpload>> New(
      FileStore& files, std::string account, std::shared_ptr<const encryption::GenerationKey> key) {
    // 6 bytes of milliseconds since the epoch, then 10 random bytes: ids made close in time
    // sort close together, so new records append at the end of the tables' B-trees instead of
    // dirtying a random page each (fewer pages per commit), and stay unguessable.
    ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(16));
    StoreBigEndian(static_cast<uint64_t>(UnixMillis(files.clock_)), std::span(raw).first(6));
    std::string id = "file-" + HexEncode(raw);
    auto upload = std::unique_ptr<FileUploadImpl>(
        new FileUploadImpl(files, std::move(account), std::move(id), std::move(key)));
    FileUploadImpl* self = upload.get();
    ASSIGN_OR_RETURN(
        upload->writer_,
        encryption::EnvelopeWriter::New(upload->id_, *upload->key_,
                                        [self](ByteView bytes) { return self->Sink(bytes); }, {}));
    return std::unique_ptr<FileUpload>(std::move(upload));
  }

  Status Write(ByteView data) override { return writer_->Write(data); }

  uint64_t size() const override { return writer_->plaintext_size(); }

  StatusOr<FileInfo> Finish(std::string_view filename, std::string_view purpose) override {
    if (filename.empty() || filename.size() > kMaxFilenameSize) {
      return InvalidArgumentError("the file needs a filename of 1 to 255 bytes")
          .WithReason("invalidPayload");
    }
    if (!IsInternalPurpose(purpose)) RETURN_IF_ERROR(ValidatePurpose(purpose));
    RETURN_IF_ERROR(writer_->Finish());
    if (blob_ != nullptr) RETURN_IF_ERROR(blob_->Commit());
    FileInfo info;
    info.id = id_;
    info.filename = std::string(filename);
    info.purpose = std::string(purpose);
    info.bytes = writer_->plaintext_size();
    info.created_at = UnixSeconds(files_.clock_);
    info.generation = key_->generation();
    info.key_block = writer_->key_block();
    info.stored_bytes = stored_;
    info.is_inline = blob_ == nullptr;
    info.blob = id_;
    const std::string key = RecordKey(account_, id_);
    const std::string value = Encode(info).dump();
    Status stored = files_.committer_.Write([&](Transaction& txn) -> Status {
      RETURN_IF_ERROR(txn.Insert(kTable, key, AsBytes(value)));
      if (info.is_inline) RETURN_IF_ERROR(txn.Insert(kContentTable, key, inline_));
      RETURN_IF_ERROR(PutOrderEntries(txn, account_, info));
      return encryption::AccountKeys::AddUsage(txn, account_, info.generation, 1,
                                               static_cast<int64_t>(info.bytes));
    });
    if (!stored.ok()) {
      if (blob_ != nullptr) (void)files_.blobs_.Delete(id_);
      return stored;
    }
    return info;
  }

 private:
  FileUploadImpl(FileStore& files, std::string account, std::string id,
                 std::shared_ptr<const encryption::GenerationKey> key)
      : files_(files), account_(std::move(account)), id_(std::move(id)), key_(std::move(key)) {}

  Status Sink(ByteView bytes) {
    stored_ += bytes.size();
    if (blob_ == nullptr && inline_.size() + bytes.size() <= kMaxInlineBytes) {
      inline_.insert(inline_.end(), bytes.begin(), bytes.end());
      return OkStatus();
    }
    if (blob_ == nullptr) {
      ASSIGN_OR_RETURN(blob_, files_.blobs_.Create(id_));
      RETURN_IF_ERROR(blob_->Append(inline_));
      inline_ = Bytes();
    }
    return blob_->Append(bytes);
  }

  FileStore& files_;
  std::string account_;
  std::string id_;
  std::shared_ptr<const encryption::GenerationKey> key_;
  std::unique_ptr<encryption::EnvelopeWriter> writer_;
  std::unique_ptr<storage::BlobWriter> blob_;  // once the file outgrows its record
  Bytes inline_;
  uint64_t stored_ = 0;
};
namespace {

class FileReaderImpl final : public FileReader {
 public:
  // `blob` is null for a small file, whose sealed content is `content`.
  FileReaderImpl(FileInfo info, std::unique_ptr<storage::BlobReader> blob, Bytes content)
      : info_(std::move(info)), blob_(std::move(blob)), content_(std::move(content)) {}

  Status Open(const encryption::GenerationKey& key) {
    storage::BlobReader* blob = blob_.get();
    const Bytes* content = &content_;
    encryption::EnvelopeSource source =
        [blob, content](uint64_t offset, std::span<uint8_t> out) -> StatusOr<size_t> {
      if (blob != nullptr) return blob->ReadAt(offset, out);
      if (offset >= content->size()) return size_t{0};
      const size_t n = std::min<size_t>(out.size(), content->size() - offset);
      std::copy_n(content->begin() + static_cast<std::ptrdiff_t>(offset), n, out.begin());
      return n;
    };
    const uint64_t stored = blob != nullptr ? blob->size() : content->size();
    ASSIGN_OR_RETURN(envelope_, encryption::EnvelopeReader::Open(info_.id, info_.key_block, key,
                                                                 std::move(source), stored));
    if (envelope_->plaintext_size() != info_.bytes) {
      return DataLossError("the stored file does not match its record");
    }
    return OkStatus();
  }

  const FileInfo& info() const override { return info_; }

  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) override {
    return envelope_->ReadAt(offset, out);
  }

 private:
  FileInfo info_;
  std::unique_ptr<storage::BlobReader> blob_;
  Bytes content_;
  std::unique_ptr<encryption::EnvelopeReader> envelope_;
};

}  // namespace

FileStore::FileStore(storage::MetadataStore& store, storage::BlobStore& blobs,
                     encryption::AccountKeys& keys, const Clock& clock)
    : store_(store), blobs_(blobs), keys_(keys), clock_(clock), committer_(store) {
  if (Status ordered = EnsureOrdered(); !ordered.ok()) {
    Log(LogLevel::kError, "files.order_migration_failed", {{"error", ordered.ToString()}});
  }
}

Status FileStore::EnsureOrdered() const {
  if (ordered_.load(std::memory_order_acquire)) return OkStatus();
  MutexLock lock(&migration_mu_);
  for (bool done = ordered_.load(std::memory_order_acquire); !done;) {
    RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(std::optional<Record> state, txn.Get(kMigrationTable, kOrderMigration));
      std::string after;  // the last record key migrated
      done = false;
      if (state.has_value()) {
        const Json j = Json::parse(AsStringView(state->value), nullptr, false);
        try {
          done = j.at("done").get<bool>();
          after = j.at("after").get<std::string>();
        } catch (const Json::exception&) {
          return DataLossError("the state of the file order migration is corrupt");
        }
      }
      if (done) return OkStatus();
      // Whole table, all accounts: record keys are {account}/{id} and ids hold no '/'.
      ASSIGN_OR_RETURN(std::vector<Record> page, txn.Scan(kTable, "", after, kMigrationBatch));
      for (const Record& r : page) {
        // A corrupt record stops the migration, and so every List, rather than leave a file
        // out of its account's lists without a word: files.order_migration_failed names it.
        ASSIGN_OR_RETURN(FileInfo f, Decode(r));
        RETURN_IF_ERROR(PutOrderEntries(txn, r.key.substr(0, r.key.rfind('/')), f));
      }
      done = page.size() < kMigrationBatch;
      if (!page.empty()) after = page.back().key;
      const Json progress = {{"done", done}, {"after", after}};
      return txn.Put(kMigrationTable, kOrderMigration, AsBytes(progress.dump()));
    }));
  }
  ordered_.store(true, std::memory_order_release);
  return OkStatus();
}

StatusOr<std::unique_ptr<FileUpload>> FileStore::BeginUpload(std::string_view account) {
  ASSIGN_OR_RETURN(std::shared_ptr<const encryption::GenerationKey> key, keys_.Active(account));
  return FileUploadImpl::New(*this, std::string(account), std::move(key));
}

StatusOr<FileInfo> FileStore::Get(std::string_view account, std::string_view id) const {
  std::optional<Record> record;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, GetRecord(txn, account, id));
    return OkStatus();
  }));
  if (!record.has_value()) return FileNotFound(id);
  return Decode(*record);
}

StatusOr<std::unique_ptr<FileReader>> FileStore::Open(std::string_view account, std::string_view id,
                                                      KeyWait wait) {
  FileInfo info;
  std::optional<Bytes> content;  // a small file's sealed content
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(std::optional<Record> record, GetRecord(txn, account, id));
    if (!record.has_value()) return FileNotFound(id);
    content.reset();
    ASSIGN_OR_RETURN(info, Decode(*record, &content));
    if (!info.is_inline || content.has_value()) return OkStatus();  // a blob, or version 1
    ASSIGN_OR_RETURN(std::optional<Record> sealed, txn.Get(kContentTable, record->key));
    if (!sealed.has_value()) return DataLossError("the content of file " + info.id + " is missing");
    content = std::move(sealed->value);
    return OkStatus();
  }));
  if (wait == KeyWait::kNever && !keys_.IsCached(account, info.generation)) {
    return UnavailableError("the key of file " + info.id + " is not cached")
        .WithReason("KeyNotCached");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const encryption::GenerationKey> key,
                   keys_.Get(account, info.generation));
  std::unique_ptr<storage::BlobReader> blob;
  if (!info.is_inline) {
    ASSIGN_OR_RETURN(blob, blobs_.Open(info.blob));
  }
  auto reader = std::make_unique<FileReaderImpl>(std::move(info), std::move(blob),
                                                 std::move(content).value_or(Bytes()));
  RETURN_IF_ERROR(reader->Open(*key));
  return std::unique_ptr<FileReader>(std::move(reader));
}

StatusOr<FileList> FileStore::List(std::string_view account,
                                   const ListFilesOptions& options) const {
  if (options.limit < 1 || options.limit > kMaxListLimit) {
    return InvalidArgumentError("limit must be between 1 and " + std::to_string(kMaxListLimit))
        .WithReason("invalidPayload");
  }
  RETURN_IF_ERROR(EnsureOrdered());
  const std::string_view table = OrderTable(options.order);
  const std::string prefix = AccountPrefix(account);
  FileList out;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    out = FileList();
    std::string after;  // the last entry read
    if (!options.after.empty()) {
      ASSIGN_OR_RETURN(std::optional<Record> cursor, GetRecord(txn, account, options.after));
      if (!cursor.has_value()) {
        return InvalidArgumentError("'after' names no file of this account")
            .WithReason("invalidPayload");
      }
      ASSIGN_OR_RETURN(FileInfo f, Decode(*cursor));
      after = OrderKey(account, options.order, f.created_at, f.id);
    }
    for (;;) {
      // Unfiltered, the page needs limit + 1 entries (the last one only to learn has_more).
      const size_t want = options.purpose.empty() ? std::min(storage::kMaxScanLimit,
                                                             options.limit + 1 - out.files.size())
                                                  : storage::kMaxScanLimit;
      ASSIGN_OR_RETURN(std::vector<Record> entries, txn.Scan(table, prefix, after, want));
      for (const Record& entry : entries) {
        if (!options.purpose.empty() && AsStringView(entry.value) != options.purpose) continue;
        if (!options.include_internal && IsInternalPurpose(AsStringView(entry.value))) continue;
        if (out.files.size() == options.limit) {
          out.has_more = true;
          return OkStatus();
        }
        ASSIGN_OR_RETURN(std::optional<Record> record,
                         GetRecord(txn, account, IdOfOrderKey(entry.key, prefix, options.order)));
        // Entries and records are written and deleted together, so this is corruption.
        if (!record.has_value()) return DataLossError("a file order entry names no file");
        ASSIGN_OR_RETURN(FileInfo f, Decode(*record));
        out.files.push_back(std::move(f));
      }
      if (entries.size() < want) return OkStatus();
      after = entries.back().key;
    }
  }));
  return out;
}

Status FileStore::Delete(std::string_view account, std::string_view id) {
  // Read first, outside the group commit: a failing function there costs its whole batch a
  // retry, so unknown ids are answered here. Records never change, so `info` stays true while
  // the record exists, which the record's Delete checks.
  ASSIGN_OR_RETURN(FileInfo info, Get(account, id));
  RETURN_IF_ERROR(committer_.Write([&](Transaction& txn) -> Status {
    const std::string key = RecordKey(account, info.id);
    RETURN_IF_ERROR(txn.Delete(kTable, key));
    // A version-1 record has no content entry, nor order entries until it is migrated.
    if (info.is_inline) RETURN_IF_ERROR(DeleteIfPresent(txn, kContentTable, key));
    for (ListOrder order : {ListOrder::kOldestFirst, ListOrder::kNewestFirst}) {
      RETURN_IF_ERROR(DeleteIfPresent(txn, OrderTable(order),
                                      OrderKey(account, order, info.created_at, info.id)));
    }
    return encryption::AccountKeys::AddUsage(txn, account, info.generation, -1,
                                             -static_cast<int64_t>(info.bytes));
  }));
  // The record is gone first: a crash here leaves an orphan blob, never a file without content.
  if (info.is_inline) return OkStatus();
  Status removed = blobs_.Delete(info.blob);
  if (!removed.ok() && removed.code() != StatusCode::kNotFound) {
    Log(LogLevel::kWarning, "files.blob_delete_failed",
        {{"file", info.id}, {"error", removed.ToString()}});
  }
  return OkStatus();
}

Status FileStore::DeleteAll(std::string_view account) {
  for (;;) {
    ASSIGN_OR_RETURN(FileList page, List(account, {.limit = storage::kMaxScanLimit,
                                                   .order = ListOrder::kOldestFirst,
                                                   .include_internal = true}));
    for (const FileInfo& f : page.files) {
      Status deleted = Delete(account, f.id);
      if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
    }
    if (!page.has_more) return OkStatus();
  }
}

// --- reprocessing

struct FileStore::Candidate {
  Record record;  // as read: its version guards the switch
  FileInfo info;
  std::optional<Bytes> content;  // a small file's sealed content
  bool legacy = false;           // a version-1 record, whose content is in the record
};

namespace {

// The content header's size: fixed fields, then the object id (envelope.h).
constexpr size_t kHeaderFixedSize = 27;
// Records read and rewrapped while the previous ones are written.
constexpr size_t kRewrapChunk = 500;

void AddDelta(std::map<uint64_t, std::pair<int64_t, int64_t>>& deltas, uint64_t generation,
              int64_t objects, int64_t bytes) {
  auto& d = deltas[generation];
  d.first += objects;
  d.second += bytes;
}

// The key of a generation for reprocessing: the key, or a failure counted on the page.
std::shared_ptr<const encryption::GenerationKey> KeyOrFailure(encryption::AccountKeys& keys,
                                                              std::string_view account,
                                                              uint64_t generation,
                                                              ReprocessPage& page, Status* fatal) {
  StatusOr<std::shared_ptr<const encryption::GenerationKey>> key = keys.Get(account, generation);
  if (key.ok()) return *key;
  if (key.status().code() == StatusCode::kPermissionDenied ||
      key.status().code() == StatusCode::kUnavailable) {
    ++page.failed;
    if (page.first_failure.ok()) page.first_failure = key.status();
  } else {
    *fatal = key.status();
  }
  return nullptr;
}

}  // namespace

StatusOr<std::vector<FileStore::Candidate>> FileStore::ReadCandidates(
    std::string_view account, const std::vector<uint64_t>& from,
    const encryption::GenerationKey& to, std::string_view after, size_t n,
    ReprocessPage& page) const {
  std::vector<Candidate> todo;
  const std::string prefix = AccountPrefix(account);
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    todo.clear();
    ASSIGN_OR_RETURN(std::vector<Record> records,
                     txn.Scan(kTable, prefix, after.empty() ? "" : prefix + std::string(after), n));
    page.visited = records.size();
    page.done = records.size() < n;
    page.last_id = records.empty() ? std::string(after) : records.back().key.substr(prefix.size());
    size_t inline_files = 0;
    for (Record& r : records) {
      std::optional<Bytes> content;
      ASSIGN_OR_RETURN(FileInfo f, Decode(r, &content));
      const bool legacy = content.has_value();
      if (f.is_inline && !legacy) ++inline_files;  // moved or not: its content is in the range
      if (f.generation == to.generation()) continue;
      if (!from.empty() && std::find(from.begin(), from.end(), f.generation) == from.end()) {
        continue;
      }
      todo.push_back({std::move(r), std::move(f), std::move(content), legacy});
    }
    if (inline_files == 0 || todo.empty()) return OkStatus();
    // Small files' contents share their records' keys: one scan from the same place reads
    // them in order (the files not moved, and any stray content, only cost a point read).
    ASSIGN_OR_RETURN(std::vector<Record> contents,
                     txn.Scan(kContentTable, prefix,
                              after.empty() ? "" : prefix + std::string(after), inline_files));
    auto next = contents.begin();
    for (Candidate& c : todo) {
      if (!c.info.is_inline || c.content.has_value()) continue;
      while (next != contents.end() && next->key < c.record.key) ++next;
      if (next != contents.end() && next->key == c.record.key) {
        c.content = std::move(next->value);
        continue;
      }
      ASSIGN_OR_RETURN(std::optional<Record> sealed, txn.Get(kContentTable, c.record.key));
      if (!sealed.has_value())
        return DataLossError("the content of file " + c.info.id + " is missing");
      c.content = std::move(sealed->value);
    }
    return OkStatus();
  }));
  return todo;
}

StatusOr<ReprocessPage> FileStore::Reprocess(std::string_view account, ReprocessMode mode,
                                             const std::vector<uint64_t>& from,
                                             const encryption::GenerationKey& to,
                                             std::string_view after, size_t max_files) {
  if (max_files < 1 || max_files > kMaxReprocessPage) {
    return InvalidArgumentError("max_files must be between 1 and " +
                                std::to_string(kMaxReprocessPage));
  }
  ReprocessPage page;
  page.last_id = std::string(after);
  if (mode == ReprocessMode::kReencrypt) {
    for (std::string cursor(after); !page.done && page.visited < max_files;) {
      ReprocessPage chunk;
      ASSIGN_OR_RETURN(
          std::vector<Candidate> todo,
          ReadCandidates(account, from, to, cursor,
                         std::min(storage::kMaxScanLimit, max_files - page.visited), chunk));
      for (Candidate& c : todo) RETURN_IF_ERROR(ReencryptFile(account, c, to, chunk));
      page.visited += chunk.visited;
      page.moved += chunk.moved;
      page.moved_bytes += chunk.moved_bytes;
      page.failed += chunk.failed;
      if (page.first_failure.ok()) page.first_failure = chunk.first_failure;
      page.last_id = cursor = chunk.last_id;
      page.done = chunk.done;
    }
    return page;
  }
  // Rewrap, pipelined over two threads: while one chunk's changes are written (SQLite's single
  // writer), the next chunk is read and its key blocks rewrapped (readers run beside the
  // writer in WAL mode). A change carries the version it was prepared from, so the write
  // skips a file deleted in between.
  struct Prepared {
    ReprocessPage page;
    std::vector<RewrapChange> changes;
    Status status;
  };
  auto prepare = [&](std::string cursor, size_t n) {
    Prepared p;
    StatusOr<std::vector<Candidate>> todo = ReadCandidates(account, from, to, cursor, n, p.page);
    if (!todo.ok()) {
      p.status = todo.status();
      return p;
    }
    StatusOr<std::vector<RewrapChange>> changes = PrepareRewrap(account, *todo, to, p.page);
    if (!changes.ok()) {
      p.status = changes.status();
    } else {
      p.changes = *std::move(changes);
    }
    return p;
  };
  size_t left = max_files;
  Prepared current = prepare(std::string(after), std::min(kRewrapChunk, left));
  for (;;) {
    RETURN_IF_ERROR(current.status);
    left -= current.page.visited;
    const bool more = !current.page.done && left > 0;
    std::future<Prepared> next;
    if (more) {
      next = std::async(std::launch::async, prepare, current.page.last_id,
                        std::min(kRewrapChunk, left));
    }
    Status applied = ApplyRewrap(account, current.changes, to, current.page);
    if (!applied.ok()) {
      if (next.valid()) next.wait();
      return applied;
    }
    page.visited += current.page.visited;
    page.moved += current.page.moved;
    page.moved_bytes += current.page.moved_bytes;
    page.failed += current.page.failed;
    if (page.first_failure.ok()) page.first_failure = current.page.first_failure;
    page.last_id = current.page.last_id;
    page.done = current.page.done;
    if (!more) return page;
    current = next.get();
  }
}

StatusOr<std::vector<FileStore::RewrapChange>> FileStore::PrepareRewrap(
    std::string_view account, std::vector<Candidate>& files, const encryption::GenerationKey& to,
    ReprocessPage& page) {
  std::vector<RewrapChange> changes;
  Status fatal = OkStatus();
  // One rewrapper per generation met in the chunk (usually one), with the key it uses.
  struct From {
    std::shared_ptr<const encryption::GenerationKey> key;
    std::unique_ptr<encryption::KeyBlockRewrapper> rewrapper;
  };
  std::map<uint64_t, From> rewrappers;
  for (Candidate& c : files) {
    auto it = rewrappers.find(c.info.generation);
    if (it == rewrappers.end()) {
      From from;
      from.key = KeyOrFailure(keys_, account, c.info.generation, page, &fatal);
      RETURN_IF_ERROR(fatal);
      if (from.key != nullptr) {
        ASSIGN_OR_RETURN(from.rewrapper, encryption::KeyBlockRewrapper::New(*from.key, to));
      }
      it = rewrappers.emplace(c.info.generation, std::move(from)).first;
    } else if (it->second.key == nullptr) {
      ++page.failed;  // as KeyOrFailure counts it
    }
    if (it->second.key == nullptr) continue;
    const size_t header_size = kHeaderFixedSize + c.info.id.size();
    Bytes header(header_size);
    if (c.content.has_value()) {
      if (c.content->size() < header_size)
        return DataLossError("file " + c.info.id + " is corrupt");
      std::copy_n(c.content->begin(), header_size, header.begin());
    } else {
      ASSIGN_OR_RETURN(std::unique_ptr<storage::BlobReader> blob, blobs_.Open(c.info.blob));
      ASSIGN_OR_RETURN(size_t n, blob->ReadAt(0, header));
      if (n != header_size) return DataLossError("file " + c.info.id + " is corrupt");
    }
    RewrapChange change;
    change.key = std::move(c.record.key);
    change.version = c.record.version;
    change.old_generation = c.info.generation;
    change.info = std::move(c.info);
    ASSIGN_OR_RETURN(change.info.key_block,
                     it->second.rewrapper->Rewrap(change.info.key_block, header));
    change.info.generation = to.generation();
    change.record = Encode(change.info).dump();
    if (c.legacy) change.legacy_content = std::move(c.content);
    changes.push_back(std::move(change));
  }
  return changes;
}

Status FileStore::ApplyRewrap(std::string_view account, const std::vector<RewrapChange>& changes,
                              const encryption::GenerationKey& to, ReprocessPage& page) {
  if (changes.empty()) return OkStatus();
  size_t moved = 0;
  uint64_t bytes = 0;
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
    moved = 0;
    bytes = 0;
    std::map<uint64_t, std::pair<int64_t, int64_t>> deltas;
    for (const RewrapChange& change : changes) {
      Status updated = txn.Update(kTable, change.key, AsBytes(change.record), change.version);
      if (updated.code() == StatusCode::kAborted || updated.code() == StatusCode::kNotFound) {
        continue;  // changed or deleted meanwhile: left to the next run
      }
      RETURN_IF_ERROR(updated);
      // A version-1 small file's content moves to the content table with its new record.
      if (change.legacy_content.has_value()) {
        RETURN_IF_ERROR(txn.Put(kContentTable, change.key, *change.legacy_content));
      }
      const auto size = static_cast<int64_t>(change.info.bytes);
      AddDelta(deltas, change.old_generation, -1, -size);
      AddDelta(deltas, to.generation(), 1, size);
      ++moved;
      bytes += change.info.bytes;
    }
    for (const auto& [generation, d] : deltas) {
      RETURN_IF_ERROR(
          encryption::AccountKeys::AddUsage(txn, account, generation, d.first, d.second));
    }
    return OkStatus();
  }));
  page.moved += moved;
  page.moved_bytes += bytes;
  return OkStatus();
}

Status FileStore::ReencryptFile(std::string_view account, Candidate& c,
                                const encryption::GenerationKey& to, ReprocessPage& page) {
  Status fatal = OkStatus();
  std::shared_ptr<const encryption::GenerationKey> from =
      KeyOrFailure(keys_, account, c.info.generation, page, &fatal);
  RETURN_IF_ERROR(fatal);
  if (from == nullptr) return OkStatus();
  std::unique_ptr<storage::BlobReader> old_blob;
  if (!c.content.has_value()) {
    ASSIGN_OR_RETURN(old_blob, blobs_.Open(c.info.blob));
  }
  FileReaderImpl reader(c.info, std::move(old_blob), c.content.value_or(Bytes()));
  RETURN_IF_ERROR(reader.Open(*from));

  // The new content: small files in memory, larger ones in a blob of their own name.
  const std::string new_blob_name = c.info.id + ".g" + std::to_string(to.generation());
  std::unique_ptr<storage::BlobWriter> new_blob;
  Bytes small;
  uint64_t stored = 0;
  auto sink = [&](ByteView bytes) -> Status {
    stored += bytes.size();
    if (new_blob == nullptr && small.size() + bytes.size() <= kMaxInlineBytes) {
      small.insert(small.end(), bytes.begin(), bytes.end());
      return OkStatus();
    }
    if (new_blob == nullptr) {
      // A leftover of an interrupted run is no file's content (the record still names the
      // old one): replace it.
      Status stale = blobs_.Delete(new_blob_name);
      if (!stale.ok() && stale.code() != StatusCode::kNotFound) return stale;
      ASSIGN_OR_RETURN(new_blob, blobs_.Create(new_blob_name));
      RETURN_IF_ERROR(new_blob->Append(small));
      small = Bytes();
    }
    return new_blob->Append(bytes);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<encryption::EnvelopeWriter> writer,
                   encryption::EnvelopeWriter::New(c.info.id, to, sink, {}));
  std::vector<uint8_t> piece(size_t{1} << 20);
  for (uint64_t offset = 0; offset < c.info.bytes;) {
    ASSIGN_OR_RETURN(size_t n, reader.ReadAt(offset, piece));
    if (n == 0) return DataLossError("file " + c.info.id + " ended early");
    RETURN_IF_ERROR(writer->Write(ByteView(piece.data(), n)));
    offset += n;
  }
  RETURN_IF_ERROR(writer->Finish());
  if (new_blob != nullptr) RETURN_IF_ERROR(new_blob->Commit());

  FileInfo f = c.info;
  f.generation = to.generation();
  f.key_block = writer->key_block();
  f.stored_bytes = stored;
  f.is_inline = new_blob == nullptr;
  f.blob = f.is_inline ? f.id : new_blob_name;
  bool switched = false;
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
    switched = false;
    Status updated = txn.Update(kTable, c.record.key, AsBytes(Encode(f).dump()), c.record.version);
    if (updated.code() == StatusCode::kAborted || updated.code() == StatusCode::kNotFound) {
      return OkStatus();  // changed or deleted meanwhile
    }
    RETURN_IF_ERROR(updated);
    if (f.is_inline) {
      RETURN_IF_ERROR(txn.Put(kContentTable, c.record.key, small));
    } else if (c.info.is_inline) {
      RETURN_IF_ERROR(DeleteIfPresent(txn, kContentTable, c.record.key));
    }
    const auto size = static_cast<int64_t>(f.bytes);
    RETURN_IF_ERROR(encryption::AccountKeys::AddUsage(txn, account, c.info.generation, -1, -size));
    RETURN_IF_ERROR(encryption::AccountKeys::AddUsage(txn, account, to.generation(), 1, size));
    switched = true;
    return OkStatus();
  }));
  // The content no record names any more.
  const std::string unused =
      switched ? (c.info.is_inline ? "" : c.info.blob) : (f.is_inline ? "" : new_blob_name);
  if (!unused.empty()) {
    Status removed = blobs_.Delete(unused);
    if (!removed.ok() && removed.code() != StatusCode::kNotFound) {
      Log(LogLevel::kWarning, "files.blob_delete_failed",
          {{"file", c.info.id}, {"error", removed.ToString()}});
    }
  }
  if (switched) {
    ++page.moved;
    page.moved_bytes += f.bytes;
  }
  return OkStatus();
}

}  // namespace keyfoundry::foundry
