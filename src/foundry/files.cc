#include "foundry/files.h"

#include <algorithm>
#include <array>

#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"

namespace keyfoundry::foundry {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kTable = "files";
constexpr size_t kMaxListLimit = 10000;
constexpr std::array<std::string_view, 7> kPurposes = {
    "fine-tune", "fine-tune-results", "assistants", "assistants_output",
    "batch",     "batch_output",      "vision"};

std::string RecordKey(std::string_view account, std::string_view id) {
  return std::string(account) + "/" + std::string(id);
}

Json Encode(const FileInfo& f) {
  Json j = {{"v", 1},
            {"id", f.id},
            {"filename", f.filename},
            {"purpose", f.purpose},
            {"bytes", f.bytes},
            {"created_at", f.created_at},
            {"generation", f.generation},
            {"key_block", Base64UrlEncode(f.key_block)},
            {"stored_bytes", f.stored_bytes}};
  if (f.is_inline) j["inline"] = Base64UrlEncode(f.inline_content);
  return j;
}

StatusOr<FileInfo> Decode(const storage::Record& r) {
  Json j = Json::parse(AsStringView(r.value), nullptr, false);
  auto corrupt = [&] { return DataLossError("the file record '" + r.key + "' is corrupt"); };
  if (!j.is_object() || j.value("v", 0) != 1) return corrupt();
  FileInfo f;
  try {
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
    if (j.contains("inline")) {
      StatusOr<Bytes> content = Base64UrlDecode(j.at("inline").get<std::string>());
      if (!content.ok()) return corrupt();
      f.inline_content = *std::move(content);
      f.is_inline = true;
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

// The upload: an envelope writer whose sink keeps a small file in memory (for its record) and
// moves to a blob once the sealed bytes pass kMaxInlineBytes.
class FileUploadImpl final : public FileUpload {
 public:
  static StatusOr<std::unique_ptr<FileUpload>> New(
      FileStore& files, std::string account, std::shared_ptr<const encryption::GenerationKey> key) {
    ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(16));
    std::string id = "file-" + HexEncode(raw);
    auto upload = std::unique_ptr<FileUploadImpl>(
        new FileUploadImpl(files, std::move(account), std::move(id), key));
    FileUploadImpl* self = upload.get();
    ASSIGN_OR_RETURN(
        upload->writer_,
        encryption::EnvelopeWriter::New(upload->id_, *key,
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
    RETURN_IF_ERROR(ValidatePurpose(purpose));
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
    if (info.is_inline) info.inline_content = std::move(inline_);
    const std::string value = Encode(info).dump();
    info.inline_content.clear();
    Status stored = files_.committer_.Write([&](storage::Transaction& txn) -> Status {
      RETURN_IF_ERROR(txn.Insert(kTable, RecordKey(account_, id_), AsBytes(value)));
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
  // `blob` is null for a file kept inline in its record.
  FileReaderImpl(FileInfo info, std::unique_ptr<storage::BlobReader> blob)
      : info_(std::move(info)), blob_(std::move(blob)) {}

  Status Open(const encryption::GenerationKey& key) {
    storage::BlobReader* blob = blob_.get();
    const Bytes* content = &info_.inline_content;
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
  std::unique_ptr<encryption::EnvelopeReader> envelope_;
};

}  // namespace

FileStore::FileStore(storage::MetadataStore& store, storage::BlobStore& blobs,
                     encryption::AccountKeys& keys, const Clock& clock)
    : store_(store), blobs_(blobs), keys_(keys), clock_(clock), committer_(store) {}

StatusOr<std::unique_ptr<FileUpload>> FileStore::BeginUpload(std::string_view account) {
  ASSIGN_OR_RETURN(std::shared_ptr<const encryption::GenerationKey> key, keys_.Active(account));
  return FileUploadImpl::New(*this, std::string(account), std::move(key));
}

StatusOr<FileInfo> FileStore::Get(std::string_view account, std::string_view id) const {
  std::optional<storage::Record> record;
  if (id.size() > 0 && id.size() <= 64) {
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(record, txn.Get(kTable, RecordKey(account, id)));
      return OkStatus();
    }));
  }
  if (!record.has_value()) return FileNotFound(id);
  return Decode(*record);
}

StatusOr<std::unique_ptr<FileReader>> FileStore::Open(std::string_view account,
                                                      std::string_view id) {
  ASSIGN_OR_RETURN(FileInfo info, Get(account, id));
  ASSIGN_OR_RETURN(std::shared_ptr<const encryption::GenerationKey> key,
                   keys_.Get(account, info.generation));
  std::unique_ptr<storage::BlobReader> blob;
  if (!info.is_inline) {
    ASSIGN_OR_RETURN(blob, blobs_.Open(info.id));
  }
  auto reader = std::make_unique<FileReaderImpl>(std::move(info), std::move(blob));
  RETURN_IF_ERROR(reader->Open(*key));
  return std::unique_ptr<FileReader>(std::move(reader));
}

StatusOr<std::vector<FileInfo>> FileStore::List(std::string_view account, std::string_view purpose,
                                                size_t limit) const {
  if (limit < 1 || limit > kMaxListLimit) {
    return InvalidArgumentError("limit must be between 1 and 10000").WithReason("invalidPayload");
  }
  std::vector<storage::Record> records;
  const std::string prefix = std::string(account) + "/";
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    records.clear();
    for (std::string after;;) {
      ASSIGN_OR_RETURN(auto page, txn.Scan(kTable, prefix, after, storage::kMaxScanLimit));
      for (auto& r : page) records.push_back(std::move(r));
      if (page.size() < storage::kMaxScanLimit) break;
      after = records.back().key;
    }
    return OkStatus();
  }));
  std::vector<FileInfo> out;
  for (const auto& r : records) {
    ASSIGN_OR_RETURN(FileInfo f, Decode(r));
    if (!purpose.empty() && f.purpose != purpose) continue;
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const FileInfo& a, const FileInfo& b) {
    return a.created_at != b.created_at ? a.created_at > b.created_at : a.id < b.id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

Status FileStore::Delete(std::string_view account, std::string_view id) {
  ASSIGN_OR_RETURN(FileInfo info, Get(account, id));
  RETURN_IF_ERROR(committer_.Write([&](storage::Transaction& txn) -> Status {
    RETURN_IF_ERROR(txn.Delete(kTable, RecordKey(account, id)));
    return encryption::AccountKeys::AddUsage(txn, account, info.generation, -1,
                                             -static_cast<int64_t>(info.bytes));
  }));
  // The record is gone first: a crash here leaves an orphan blob, never a file without content.
  if (info.is_inline) return OkStatus();
  Status removed = blobs_.Delete(info.id);
  if (!removed.ok() && removed.code() != StatusCode::kNotFound) {
    Log(LogLevel::kWarning, "files.blob_delete_failed",
        {{"file", info.id}, {"error", removed.ToString()}});
  }
  return OkStatus();
}

Status FileStore::DeleteAll(std::string_view account) {
  ASSIGN_OR_RETURN(std::vector<FileInfo> files, List(account, "", kMaxListLimit));
  while (!files.empty()) {
    for (const FileInfo& f : files) RETURN_IF_ERROR(Delete(account, f.id));
    ASSIGN_OR_RETURN(files, List(account, "", kMaxListLimit));
  }
  return OkStatus();
}

}  // namespace keyfoundry::foundry
