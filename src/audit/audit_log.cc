// AuditLog: design.
//
// Records. Event n (n = 1, 2, 3, ...) is stored in table audit_events under the key
// EventKey(n), n as 20 zero-padded decimal digits, so key order is sequence order and a scan
// after EventKey(n) starts at n + 1. The value is compact JSON, members in name order (the
// encoding nlohmann::json gives, which Verify relies on: see below):
//   {"addr":client_address, "app":caller_app_id, "cat":category, "corr":correlation_id,
//    "detail":detail, "hash":hex, "kid":key_id, "oid":caller_object_id, "op":operation,
//    "prev":hex, "res":resource_id, "result":"Success"|"Failure", "seq":n, "status":http,
//    "time":unix_ms, "v":1}
// A reader refuses a value whose "v" is not 1; a new format is a new "v", never a changed 1.
// audit_meta["head"] = {"hash":hex, "seq":n, "v":1} names the last record. Both tables are
// written only by CommitBatch, the record inserts and the head update in one transaction, so
// the head always names the last committed record.
//
// Chain. hash(n) = SHA-256(hash(n-1) || Canonical(event n)), hash(0) = 32 zero bytes, where
// Canonical is a byte string independent of the JSON encoding:
//   u8 1 (the form's version) | u64 sequence | u64 time_ms | u32 status |
//   then, each as u32 length + bytes: operation, category, caller_object_id, caller_app_id,
//   client_address, resource_id, key_id, result, correlation_id, detail
// (integers big-endian, lengths make it unambiguous). Verify recomputes each hash and also
// re-encodes each record and compares it with the stored bytes, so a change of any stored byte
// (even one JSON would read as the same value, such as the case of a \u escape) is found.
//
// Group commit. Append validates the event, queues a Pending on its own stack and waits on the
// Pending's condition variable. One writer thread takes everything queued, up to max_batch,
// chains it onto the head, and commits it with one MetadataStore::Write: the cost of a commit
// (an fsync for SQLite) is shared by every event that queued while the previous one ran, so
// the more callers, the larger the batches. Then it gives every Pending of the batch the
// Write's status and wakes it. Nothing is acknowledged before its commit returned OK.
//
// Failure and concurrency. If the Write fails, every caller of the batch gets the error (their
// operations fail: fail closed) and the in-memory head stays where it was. A failed Write may
// nevertheless have committed (a commit whose outcome is unknown), and another process may
// append to the same store. So the Write reads the stored head first, and if it is not the
// head the batch was chained onto, chains the batch again onto the stored one: the chain stays
// contiguous and correct whatever happened before, and an event reported as failed may still
// be recorded (over-auditing, never under-auditing). Records are inserted, never overwritten:
// a head that moved backwards makes the insert fail (DataLoss) rather than fork the chain.
//
// Crash story. A batch's records and the head are one transaction, so a crash leaves the store
// at a batch boundary: Open finds a head that names the last record. Appends waiting when the
// process died were never acknowledged, whether or not their batch reached the disk.
//
// Queries. Sequences are contiguous, so a newest-first page scans key ranges downwards from
// the stored head (Scan only goes upwards). There is no index by time or caller: a query scans,
// examining at most max_examined_per_query records per call, and hands back a continuation
// token: "o<n>" (oldest first: continue after n) or "n<n>" (newest first: continue below n).
#include "audit/audit_log.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/encoding.h"
#include "common/logging.h"
#include "common/strings.h"
#include "crypto/digest.h"

namespace keyfoundry::audit {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kEventsTable = "audit_events";
constexpr std::string_view kMetaTable = "audit_meta";
constexpr std::string_view kHeadKey = "head";
constexpr int kRecordVersion = 1;      // "v" of stored values
constexpr uint8_t kCanonicalForm = 1;  // first byte of the hashed form
constexpr size_t kEventKeyDigits = 20;
constexpr size_t kMaxExaminedLimit = 1000000;
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Lets std::condition_variable_any release and retake a Mutex that the waiting thread holds
// through a MutexLock. The analysis does not see the release inside wait(), which is right:
// the mutex is held again whenever the waiting code runs.
class CondVarLock {
 public:
  explicit CondVarLock(Mutex* mu) : mu_(mu) {}
  void lock() ACQUIRE(mu_) { mu_->Lock(); }
  void unlock() RELEASE(mu_) { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

std::string EventKey(int64_t sequence) {
  char buf[kEventKeyDigits + 1];
  (void)std::snprintf(buf, sizeof(buf), "%020lld", static_cast<long long>(sequence));
  return std::string(buf, kEventKeyDigits);
}

Bytes ZeroHash() { return Bytes(crypto::kSha256Size, 0); }

// ---- Text fields ----

// The length of the well-formed UTF-8 sequence (RFC 3629) starting at text[i], or 0 when the
// bytes there are not one (stray continuation, overlong form, surrogate, above U+10FFFF, cut).
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  const auto lead = static_cast<uint8_t>(text[i]);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint32_t code_point = 0;
  uint32_t min_code_point = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, code_point = lead & 0x1F, min_code_point = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code_point = lead & 0x0F, min_code_point = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code_point = lead & 0x07, min_code_point = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - i < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<uint8_t>(text[i + k]);
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < min_code_point || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// `text` as valid UTF-8 of at most kMaxFieldSize bytes: each invalid byte becomes U+FFFD and
// the text is cut at the last whole character that fits.
std::string SanitizeText(std::string text) {
  bool clean = text.size() <= kMaxFieldSize;
  for (size_t i = 0; clean && i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) clean = false;
    i += n;
  }
  if (clean) return text;
  std::string out;
  out.reserve(std::min(text.size(), kMaxFieldSize));
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    const std::string_view piece = n == 0 ? kReplacementChar : std::string_view(text).substr(i, n);
    if (out.size() + piece.size() > kMaxFieldSize) break;
    out += piece;
    i += n == 0 ? 1 : n;
  }
  return out;
}

Status ValidateName(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxNameSize;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
  }
  if (!ok) {
    return InvalidArgumentError("an audit event's " + std::string(what) +
                                " is 1 to 64 ASCII letters and digits");
  }
  return OkStatus();
}

// Checks what the caller must get right and makes the free text storable (see Append).
Status Normalize(AuditEvent* event) {
  RETURN_IF_ERROR(ValidateName("operation", event->operation));
  RETURN_IF_ERROR(ValidateName("category", event->category));
  if (event->result != "Success" && event->result != "Failure") {
    return InvalidArgumentError("an audit event's result is Success or Failure");
  }
  if (event->status != 0 && (event->status < 100 || event->status > 599)) {
    return InvalidArgumentError("an audit event's status is 0 or an HTTP status (100 to 599)");
  }
  if (event->time_ms < 0 || event->time_ms > kMaxTimeMs) {
    return InvalidArgumentError("an audit event's time is 0 (now) or a time up to year 9999");
  }
  for (std::string* text :
       {&event->caller_object_id, &event->caller_app_id, &event->client_address,
        &event->resource_id, &event->key_id, &event->correlation_id, &event->detail}) {
    *text = SanitizeText(std::move(*text));
  }
  event->sequence = 0;
  event->hash.clear();
  event->prev_hash.clear();
  return OkStatus();
}

// ---- The chain ----

Bytes Canonical(const AuditEvent& event, int64_t sequence) {
  ByteWriter out(256);
  out.WriteU8(kCanonicalForm);
  out.WriteU64(static_cast<uint64_t>(sequence));
  out.WriteU64(static_cast<uint64_t>(event.time_ms));
  out.WriteU32(static_cast<uint32_t>(event.status));
  for (const std::string* text :
       {&event.operation, &event.category, &event.caller_object_id, &event.caller_app_id,
        &event.client_address, &event.resource_id, &event.key_id, &event.result,
        &event.correlation_id, &event.detail}) {
    out.WriteU32(static_cast<uint32_t>(text->size()));
    out.WriteBytes(AsBytes(*text));
  }
  return out.Take();
}

StatusOr<Bytes> ChainHash(ByteView prev, const AuditEvent& event, int64_t sequence) {
  ByteWriter input(crypto::kSha256Size + 256);
  input.WriteBytes(prev);
  input.WriteBytes(Canonical(event, sequence));
  return crypto::Sha256(input.bytes());
}

// ---- Stored values ----

Bytes EncodeJson(const Json& json) {
  // Strings are valid UTF-8 (Normalize, or parsed JSON), so the replace handler never acts; it
  // is there so that dump cannot throw.
  return ToBytes(json.dump(-1, ' ', false, Json::error_handler_t::replace));
}

Bytes EncodeRecord(const AuditEvent& e, int64_t sequence, std::string_view prev_hex,
                   std::string_view hash_hex) {
  return EncodeJson(Json{{"v", kRecordVersion},
                         {"seq", sequence},
                         {"time", e.time_ms},
                         {"op", e.operation},
                         {"cat", e.category},
                         {"oid", e.caller_object_id},
                         {"app", e.caller_app_id},
                         {"addr", e.client_address},
                         {"res", e.resource_id},
                         {"kid", e.key_id},
                         {"result", e.result},
                         {"status", e.status},
                         {"corr", e.correlation_id},
                         {"detail", e.detail},
                         {"prev", prev_hex},
                         {"hash", hash_hex}});
}

bool GetString(const Json& json, const char* name, std::string* out) {
  auto it = json.find(name);
  if (it == json.end() || !it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

bool GetInt(const Json& json, const char* name, int64_t min, int64_t max, int64_t* out) {
  auto it = json.find(name);
  if (it == json.end() || !it->is_number_integer()) return false;
  int64_t value = 0;
  if (it->is_number_unsigned()) {
    const auto u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return false;
    value = static_cast<int64_t>(u);
  } else {
    value = it->get<int64_t>();
  }
  if (value < min || value > max) return false;
  *out = value;
  return true;
}

bool IsHash(const std::string& hex) {
  return hex.size() == 2 * crypto::kSha256Size && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Status CorruptRecord(std::string_view key) {
  return DataLossError("audit record " + std::string(key) + " is corrupt");
}

// The event stored in `record`, with its sequence and hashes; DataLoss unless it is a
// well-formed version-1 record. Its sequence is not checked against its key.
StatusOr<AuditEvent> DecodeValue(const storage::Record& record) {
  const Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return CorruptRecord(record.key);
  AuditEvent e;
  int64_t version = 0;
  int64_t status = 0;
  if (!GetInt(json, "v", kRecordVersion, kRecordVersion, &version) ||
      !GetInt(json, "seq", 1, INT64_MAX, &e.sequence) ||
      !GetInt(json, "time", 0, kMaxTimeMs, &e.time_ms) ||
      !GetInt(json, "status", 0, 999, &status) || !GetString(json, "op", &e.operation) ||
      !GetString(json, "cat", &e.category) || !GetString(json, "oid", &e.caller_object_id) ||
      !GetString(json, "app", &e.caller_app_id) || !GetString(json, "addr", &e.client_address) ||
      !GetString(json, "res", &e.resource_id) || !GetString(json, "kid", &e.key_id) ||
      !GetString(json, "result", &e.result) || !GetString(json, "corr", &e.correlation_id) ||
      !GetString(json, "detail", &e.detail) || !GetString(json, "prev", &e.prev_hash) ||
      !GetString(json, "hash", &e.hash) || !IsHash(e.prev_hash) || !IsHash(e.hash)) {
    return CorruptRecord(record.key);
  }
  e.status = static_cast<int>(status);
  return e;
}

// As DecodeValue, and the sequence must match the key.
StatusOr<AuditEvent> DecodeRecord(const storage::Record& record) {
  ASSIGN_OR_RETURN(AuditEvent event, DecodeValue(record));
  if (EventKey(event.sequence) != record.key) return CorruptRecord(record.key);
  return event;
}

Bytes EncodeHead(int64_t sequence, std::string_view hash_hex) {
  return EncodeJson(Json{{"v", kRecordVersion}, {"seq", sequence}, {"hash", hash_hex}});
}

// The stored chain head; sequence 0 and the zero hash when there is none yet.
StatusOr<ChainHead> ReadStoredHead(storage::Transaction& txn) {
  ASSIGN_OR_RETURN(std::optional<storage::Record> record, txn.Get(kMetaTable, kHeadKey));
  if (!record) return ChainHead{0, HexEncode(ZeroHash())};
  const Json json = Json::parse(AsStringView(record->value), nullptr, false);
  ChainHead head;
  int64_t version = 0;
  if (json.is_discarded() || !json.is_object() ||
      !GetInt(json, "v", kRecordVersion, kRecordVersion, &version) ||
      !GetInt(json, "seq", 1, INT64_MAX, &head.sequence) || !GetString(json, "hash", &head.hash) ||
      !IsHash(head.hash)) {
    return DataLossError("the audit chain head is corrupt");
  }
  return head;
}

// ---- Queries ----

Status ValidateQuery(const AuditQuery& q) {
  if (q.limit < 1 || q.limit > kMaxQueryLimit) {
    return InvalidArgumentError("an audit query's limit is 1 to 1000");
  }
  if ((q.from_time_ms && *q.from_time_ms < 0) || (q.to_time_ms && *q.to_time_ms < 0)) {
    return InvalidArgumentError("an audit query's times are not before 1970");
  }
  if (q.from_time_ms && q.to_time_ms && *q.from_time_ms > *q.to_time_ms) {
    return InvalidArgumentError("an audit query's start time is after its end time");
  }
  if (!q.result.empty() && !EqualsIgnoreCase(q.result, "Success") &&
      !EqualsIgnoreCase(q.result, "Failure")) {
    return InvalidArgumentError("an audit query's result is Success or Failure");
  }
  for (const std::string* text : {&q.operation, &q.caller_object_id, &q.resource_id_prefix}) {
    if (text->size() > kMaxFieldSize) {
      return InvalidArgumentError("an audit query's filter is at most 2048 bytes");
    }
  }
  return OkStatus();
}

char TokenTag(AuditOrder order) {
  switch (order) {
    case AuditOrder::kNewestFirst:
      return 'n';
    case AuditOrder::kOldestFirst:
      return 'o';
  }
  return '?';
}

std::string MakeToken(AuditOrder order, int64_t sequence) {
  return TokenTag(order) + std::to_string(sequence);
}

// The sequence in a continuation token for `order`; nullopt for no token.
StatusOr<std::optional<int64_t>> ParseToken(std::string_view token, AuditOrder order) {
  if (token.empty()) return std::optional<int64_t>();
  int64_t sequence = 0;
  // The digits must be the shortest decimal form of a sequence >= 1: no sign, no leading zero.
  if (token.size() >= 2 && token.size() <= 20 && token[0] == TokenTag(order) && token[1] != '0') {
    const char* end = token.data() + token.size();
    auto [ptr, ec] = std::from_chars(token.data() + 1, end, sequence);
    if (ec == std::errc() && ptr == end && sequence >= 1) return std::optional<int64_t>(sequence);
  }
  return InvalidArgumentError("the continuation token is not valid for this query");
}

// `id` is `prefix` or below it, segment by segment, ignoring ASCII case.
bool UnderResource(std::string_view id, std::string_view prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  if (prefix.empty()) return true;
  if (id.size() < prefix.size() || !EqualsIgnoreCase(id.substr(0, prefix.size()), prefix)) {
    return false;
  }
  return id.size() == prefix.size() || id[prefix.size()] == '/';
}

bool Matches(const AuditEvent& e, const AuditQuery& q) {
  return (!q.from_time_ms || e.time_ms >= *q.from_time_ms) &&
         (!q.to_time_ms || e.time_ms < *q.to_time_ms) &&
         (q.operation.empty() || EqualsIgnoreCase(e.operation, q.operation)) &&
         (q.caller_object_id.empty() || EqualsIgnoreCase(e.caller_object_id, q.caller_object_id)) &&
         (q.result.empty() || EqualsIgnoreCase(e.result, q.result)) &&
         (q.resource_id_prefix.empty() || UnderResource(e.resource_id, q.resource_id_prefix));
}

// ---- Time ----

// "2026-11-28T13:00:00.123Z" (UTC, milliseconds) for 0 <= unix_ms <= kMaxTimeMs.
std::string FormatTimeMs(int64_t unix_ms) {
  namespace chrono = std::chrono;
  const chrono::sys_time<chrono::milliseconds> t{chrono::milliseconds(unix_ms)};
  const chrono::sys_days day = chrono::floor<chrono::days>(t);
  const chrono::year_month_day date(day);
  const chrono::hh_mm_ss<chrono::milliseconds> time(t - day);
  char buf[40];
  const int n = std::snprintf(
      buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(date.year()),
      static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
      static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
      static_cast<int>(time.seconds().count()), static_cast<int>(time.subseconds().count()));
  return std::string(buf, static_cast<size_t>(std::max(n, 0)));
}

int64_t NowMs(const Clock& clock) { return std::clamp<int64_t>(UnixMillis(clock), 0, kMaxTimeMs); }

}  // namespace

// One Append waiting for its batch. `event` is set before it is queued and only read after;
// `done`, `result` and `cv`'s waits are guarded by AuditLog::mu_.
struct AuditLog::Pending {
  explicit Pending(AuditEvent e) : event(std::move(e)) {}
  AuditEvent event;
  // Queued by Record: owned by the queue, deleted by the writer once committed.
  bool detached = false;
  bool done = false;
  Status result;
  std::condition_variable_any cv;
};

// A batch chained onto one head, ready to insert.
struct AuditLog::Prepared {
  std::vector<std::pair<std::string, Bytes>> records;  // key, value
  Tip head;                                            // after the batch
  Bytes head_value;
};

StatusOr<AuditLog::Prepared> AuditLog::Prepare(const Tip& head,
                                               const std::vector<Pending*>& batch) {
  Prepared out;
  out.records.reserve(batch.size());
  Bytes prev = head.hash;
  std::string prev_hex = HexEncode(prev);
  int64_t sequence = head.sequence;
  for (const Pending* pending : batch) {
    ++sequence;
    ASSIGN_OR_RETURN(Bytes hash, ChainHash(prev, pending->event, sequence));
    std::string hash_hex = HexEncode(hash);
    out.records.emplace_back(EventKey(sequence),
                             EncodeRecord(pending->event, sequence, prev_hex, hash_hex));
    prev = std::move(hash);
    prev_hex = std::move(hash_hex);
  }
  out.head_value = EncodeHead(sequence, prev_hex);
  out.head = Tip{sequence, std::move(prev)};
  return out;
}

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(storage::MetadataStore& store,
                                                   const Clock& clock, AuditOptions options) {
  if (options.max_batch < 1 || options.max_batch > kMaxBatchLimit) {
    return InvalidArgumentError("the audit log's max_batch is 1 to 4096");
  }
  if (options.record_linger < std::chrono::milliseconds(0) ||
      options.record_linger > std::chrono::milliseconds(1000)) {
    return InvalidArgumentError("the audit log's record_linger is 0 to 1000 ms");
  }
  if (options.max_examined_per_query < 1 || options.max_examined_per_query > kMaxExaminedLimit) {
    return InvalidArgumentError("the audit log's max_examined_per_query is 1 to 1000000");
  }
  Tip head;
  Status status = store.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(ChainHead stored, ReadStoredHead(txn));
    ASSIGN_OR_RETURN(head.hash, HexDecode(stored.hash));
    head.sequence = stored.sequence;
    // Nothing may follow the head, and the head's record must carry the head's hash.
    const std::string after = head.sequence == 0 ? "" : EventKey(head.sequence);
    ASSIGN_OR_RETURN(std::vector<storage::Record> extra, txn.Scan(kEventsTable, "", after, 1));
    if (!extra.empty()) {
      return DataLossError("audit record " + extra.front().key + " follows the chain head");
    }
    if (head.sequence == 0) return OkStatus();
    ASSIGN_OR_RETURN(std::optional<storage::Record> last, txn.Get(kEventsTable, after));
    if (!last) {
      return DataLossError("audit record " + after + " named by the chain head is missing");
    }
    ASSIGN_OR_RETURN(AuditEvent event, DecodeRecord(*last));
    if (event.hash != stored.hash) {
      return DataLossError("audit record " + after + " does not match the chain head");
    }
    return OkStatus();
  });
  if (!status.ok()) return status.WithContext("opening the audit log");
  std::unique_ptr<AuditLog> log(new AuditLog(store, clock, options, std::move(head)));
  log->writer_ = std::thread([raw = log.get()] { raw->WriterLoop(); });
  return log;
}

AuditLog::AuditLog(storage::MetadataStore& store, const Clock& clock, AuditOptions options,
                   Tip head)
    : store_(store), clock_(clock), options_(options), head_(std::move(head)) {}

AuditLog::~AuditLog() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  writer_.join();
}

Status AuditLog::Append(AuditEvent event) {
  RETURN_IF_ERROR(Normalize(&event));
  Pending pending(std::move(event));
  CondVarLock cv_lock(&mu_);
  MutexLock lock(&mu_);
  if (stopping_) return FailedPreconditionError("the audit log is closing");
  // The time is taken under the lock, so times follow sequences whenever the clock does.
  if (pending.event.time_ms == 0) pending.event.time_ms = NowMs(clock_);
  queue_.push_back(&pending);
  ++queued_appends_;
  queue_cv_.notify_one();
  while (!pending.done) pending.cv.wait(cv_lock);
  return pending.result;
}

Status AuditLog::Record(AuditEvent event) {
  RETURN_IF_ERROR(Normalize(&event));
  auto pending = std::make_unique<Pending>(std::move(event));
  pending->detached = true;
  MutexLock lock(&mu_);
  if (stopping_) return FailedPreconditionError("the audit log is closing");
  if (pending->event.time_ms == 0) pending->event.time_ms = NowMs(clock_);
  queue_.push_back(pending.release());
  // The writer is told of the first event and of a full batch; the ones between join the
  // batch it is gathering (see record_linger) without a wake-up each.
  if (queue_.size() == 1 || queue_.size() == options_.max_batch) queue_cv_.notify_one();
  return OkStatus();
}

void AuditLog::WriterLoop() {
  CondVarLock cv_lock(&mu_);
  while (true) {
    std::vector<Pending*> batch;
    Tip expected;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) queue_cv_.wait(cv_lock);
      if (queue_.empty()) return;  // stopping, and everything queued has been committed
      // Only recorded events: let more of them come before paying for a commit.
      const auto deadline = std::chrono::steady_clock::now() + options_.record_linger;
      while (queued_appends_ == 0 && !stopping_ && queue_.size() < options_.max_batch &&
             queue_cv_.wait_until(cv_lock, deadline) != std::cv_status::timeout) {
      }
      const size_t n = std::min(queue_.size(), options_.max_batch);
      batch.assign(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
      for (const Pending* pending : batch) {
        if (!pending->detached) --queued_appends_;
      }
      expected = head_;
    }
    Tip committed;
    const Status status = CommitBatch(batch, expected, &committed);
    MutexLock lock(&mu_);
    if (status.ok()) {
      head_ = std::move(committed);
      ++batches_committed_;
    }
    std::vector<Pending*> retry;
    for (Pending* pending : batch) {
      if (pending->detached) {
        // Recorded events are never dropped: a failed batch's are queued again, first.
        if (status.ok()) {
          delete pending;
        } else {
          retry.push_back(pending);
        }
        continue;
      }
      pending->result = status;
      pending->done = true;
      pending->cv.notify_one();
    }
    if (!retry.empty() && stopping_) {
      // Closing on a store that refuses writes: what is left cannot be kept anywhere.
      Log(LogLevel::kError, "audit.records_lost",
          {{"count", std::to_string(retry.size())}, {"error", status.ToString()}});
      for (Pending* pending : retry) delete pending;
      retry.clear();
    }
    if (!retry.empty()) {
      queue_.insert(queue_.begin(), retry.begin(), retry.end());  // all detached
      // Give a failing store a moment rather than spinning on it.
      queue_cv_.wait_for(cv_lock, std::chrono::milliseconds(100));
    }
  }
}

Status AuditLog::CommitBatch(const std::vector<Pending*>& batch, const Tip& expected,
                             Tip* committed) {
  // Hashing and encoding happen before the transaction, keeping it short; they are redone
  // inside only when the stored head is not the one expected (see the file comment).
  StatusOr<Prepared> prepared = Prepare(expected, batch);
  if (!prepared.ok()) return prepared.status().WithContext("preparing audit records");
  Status status = store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(ChainHead stored, ReadStoredHead(txn));
    std::optional<Prepared> rebuilt;
    if (stored.sequence != expected.sequence || stored.hash != HexEncode(expected.hash)) {
      Tip head{stored.sequence, {}};
      ASSIGN_OR_RETURN(head.hash, HexDecode(stored.hash));
      ASSIGN_OR_RETURN(rebuilt, Prepare(head, batch));
    }
    const Prepared& records = rebuilt ? *rebuilt : *prepared;
    for (const auto& [key, value] : records.records) {
      Status inserted = txn.Insert(kEventsTable, key, value);
      if (inserted.code() == StatusCode::kAlreadyExists) {
        return DataLossError("audit record " + key + " already exists beyond the chain head");
      }
      RETURN_IF_ERROR(inserted);
    }
    RETURN_IF_ERROR(txn.Put(kMetaTable, kHeadKey, records.head_value));
    *committed = records.head;
    return OkStatus();
  });
  return status.ok() ? status : status.WithContext("committing audit records");
}

StatusOr<AuditPage> AuditLog::Query(const AuditQuery& query) const {
  RETURN_IF_ERROR(ValidateQuery(query));
  ASSIGN_OR_RETURN(const std::optional<int64_t> position,
                   ParseToken(query.continuation, query.order));
  const size_t limit = static_cast<size_t>(query.limit);
  AuditPage page;
  Status status = store_.Read([&](storage::Transaction& txn) -> Status {
    page = AuditPage();
    size_t budget = options_.max_examined_per_query;
    int64_t last_examined = 0;
    // Examines one record; true when the page is full.
    auto examine = [&](const storage::Record& record) -> StatusOr<bool> {
      --budget;
      ASSIGN_OR_RETURN(AuditEvent event, DecodeRecord(record));
      last_examined = event.sequence;
      if (!Matches(event, query)) return false;
      page.events.push_back(std::move(event));
      if (page.events.size() < limit) return false;
      page.continuation = MakeToken(query.order, page.events.back().sequence);
      return true;
    };
    switch (query.order) {
      case AuditOrder::kOldestFirst: {
        std::string after = position ? EventKey(*position) : "";
        while (budget > 0) {
          const size_t chunk = std::min(storage::kMaxScanLimit, budget);
          ASSIGN_OR_RETURN(std::vector<storage::Record> records,
                           txn.Scan(kEventsTable, "", after, chunk));
          for (const storage::Record& record : records) {
            ASSIGN_OR_RETURN(bool full, examine(record));
            if (full) return OkStatus();
          }
          if (records.size() < chunk) return OkStatus();  // the end: no token
          after = records.back().key;
        }
        page.continuation = MakeToken(query.order, last_examined);  // out of budget
        return OkStatus();
      }
      case AuditOrder::kNewestFirst: {
        ASSIGN_OR_RETURN(ChainHead head, ReadStoredHead(txn));
        int64_t high = position ? std::min(head.sequence, *position - 1) : head.sequence;
        while (budget > 0 && high >= 1) {
          const size_t chunk =
              std::min({storage::kMaxScanLimit, budget, static_cast<size_t>(high)});
          const int64_t low = high - static_cast<int64_t>(chunk) + 1;
          const std::string high_key = EventKey(high);
          ASSIGN_OR_RETURN(std::vector<storage::Record> records,
                           txn.Scan(kEventsTable, "", low > 1 ? EventKey(low - 1) : "", chunk));
          for (auto it = records.rbegin(); it != records.rend(); ++it) {
            if (it->key > high_key) continue;  // only where records are missing (Verify)
            ASSIGN_OR_RETURN(bool full, examine(*it));
            if (full) return OkStatus();
          }
          high = low - 1;
        }
        if (high >= 1) page.continuation = MakeToken(query.order, high + 1);
        return OkStatus();
      }
    }
    return InvalidArgumentError("an audit query's order is newest or oldest first");
  });
  if (!status.ok()) return status;
  return page;
}

StatusOr<VerifyResult> AuditLog::Verify(int64_t from_sequence) const {
  if (from_sequence < 1) return InvalidArgumentError("verification starts at sequence 1 or later");
  Tip mine;
  {
    MutexLock lock(&mu_);
    mine = head_;
  }
  VerifyResult result;
  auto broken = [&result](int64_t sequence, std::string reason) {
    result.first_broken_sequence = sequence;
    result.reason = std::move(reason);
    return result;
  };
  // One snapshot: the head, whatever follows it (nothing should) and the record before the
  // first one checked, whose hash the check starts from.
  ChainHead head;
  std::optional<storage::Record> follower;
  std::optional<storage::Record> before;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(head, ReadStoredHead(txn));
    const std::string head_key = head.sequence == 0 ? "" : EventKey(head.sequence);
    ASSIGN_OR_RETURN(std::vector<storage::Record> extra, txn.Scan(kEventsTable, "", head_key, 1));
    follower.reset();
    if (!extra.empty()) follower = std::move(extra.front());
    before.reset();
    if (from_sequence > 1 && from_sequence <= head.sequence) {
      ASSIGN_OR_RETURN(before, txn.Get(kEventsTable, EventKey(from_sequence - 1)));
    }
    return OkStatus();
  }));

  Bytes prev = ZeroHash();
  if (from_sequence > 1 && from_sequence <= head.sequence) {
    const std::string key = EventKey(from_sequence - 1);
    if (!before) return broken(from_sequence - 1, "audit record " + key + " is missing");
    StatusOr<AuditEvent> event = DecodeValue(*before);
    if (!event.ok()) return broken(from_sequence - 1, "audit record " + key + " is corrupt");
    ASSIGN_OR_RETURN(prev, HexDecode(event->hash));
  }
  std::string prev_hex = HexEncode(prev);
  int64_t expected = from_sequence;
  while (expected <= head.sequence) {
    const size_t chunk =
        std::min(storage::kMaxScanLimit, static_cast<size_t>(head.sequence - expected + 1));
    std::vector<storage::Record> records;
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(
          records, txn.Scan(kEventsTable, "", expected == 1 ? "" : EventKey(expected - 1), chunk));
      return OkStatus();
    }));
    if (records.empty()) {
      return broken(expected, "audit record " + EventKey(expected) + " is missing");
    }
    for (const storage::Record& record : records) {
      const std::string key = EventKey(expected);
      if (record.key != key) return broken(expected, "audit record " + key + " is missing");
      StatusOr<AuditEvent> event = DecodeValue(record);
      if (!event.ok()) return broken(expected, "audit record " + key + " is corrupt");
      if (event->sequence != expected) {
        return broken(expected, "audit record " + key + " holds the event of sequence " +
                                    std::to_string(event->sequence) + " (records were moved)");
      }
      if (EncodeRecord(*event, event->sequence, event->prev_hash, event->hash) != record.value) {
        return broken(expected, "the stored bytes of audit record " + key + " were changed");
      }
      if (event->prev_hash != prev_hex) {
        return broken(expected, "audit record " + key + " does not follow the record before it");
      }
      ASSIGN_OR_RETURN(Bytes hash, ChainHash(prev, *event, expected));
      std::string hash_hex = HexEncode(hash);
      if (hash_hex != event->hash) {
        return broken(expected, "the hash of audit record " + key + " does not match its contents");
      }
      if (expected == mine.sequence && hash != mine.hash) {
        return broken(expected, "audit record " + key + " differs from what this log appended");
      }
      prev = std::move(hash);
      prev_hex = std::move(hash_hex);
      ++result.checked;
      ++expected;
    }
  }
  if (head.sequence >= from_sequence && head.hash != prev_hex) {
    return broken(head.sequence,
                  "the chain head does not match audit record " + EventKey(head.sequence));
  }
  if (follower) {
    return broken(head.sequence + 1, "audit record " + follower->key + " follows the chain head");
  }
  if (mine.sequence > head.sequence) {
    return broken(head.sequence + 1,
                  "the chain head is behind what this log appended: records were removed");
  }
  return result;
}

ChainHead AuditLog::Head() const {
  MutexLock lock(&mu_);
  return ChainHead{head_.sequence, HexEncode(head_.hash)};
}

int64_t AuditLog::BatchesCommittedForTest() const {
  MutexLock lock(&mu_);
  return batches_committed_;
}

size_t AuditLog::QueuedForTest() const {
  MutexLock lock(&mu_);
  return queue_.size();
}

nlohmann::json AuditEventJson(const AuditEvent& event) {
  return Json{{"time", FormatTimeMs(std::clamp<int64_t>(event.time_ms, 0, kMaxTimeMs))},
              {"operationName", event.operation},
              {"category", event.category},
              {"callerObjectId", event.caller_object_id},
              {"callerAppId", event.caller_app_id},
              {"clientAddress", event.client_address},
              {"resourceId", event.resource_id},
              {"keyId", event.key_id},
              {"result", event.result},
              {"status", event.status},
              {"correlationId", event.correlation_id},
              {"detail", event.detail},
              {"sequence", event.sequence},
              {"hash", event.hash},
              {"prevHash", event.prev_hash}};
}

}  // namespace keyfoundry::audit
