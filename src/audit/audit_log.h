// AuditLog: the append-only, hash-chained audit trail of keyfoundry. Every key-vault data-plane
// operation (KeyUnwrap, KeySign, ...) and every management change records one AuditEvent, and
// the operation is acknowledged only once its event is durable: nothing acknowledged is
// unaudited. The record format, the chain and the group commit are described at the top of
// audit_log.cc.
//
// Tamper evidence. Each record carries hash = SHA-256(previous record's hash || the record's
// canonical form), so changing, removing, reordering or inserting a stored record breaks the
// chain at that record, and Verify names it. The chain has no secret in it: someone who can
// write the store can rewrite the whole chain consistently. What defeats that is keeping
// Head() somewhere they cannot write (a periodic export, a log shipper) and checking it later.
//
// Storage (tables of the MetadataStore; values are JSON objects with "v": 1):
//   audit_events  key: the sequence as 20 zero-padded decimal digits ("00000000000000000001")
//                 value: the event, its sequence, prev and hash
//   audit_meta    key "head": the last sequence and its hash, updated in the same transaction
// The log is the only writer of these tables.
//
// Thread safety: an AuditLog is safe to use from many threads at once. The store and the clock
// must outlive it. All Appends must have returned before it is destroyed; the destructor
// commits whatever is still queued. Several logs (in several processes) may share one store:
// each transaction chains its batch onto the head it finds stored, so there is still one
// chain.
#ifndef KEYFOUNDRY_AUDIT_AUDIT_LOG_H_
#define KEYFOUNDRY_AUDIT_AUDIT_LOG_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::audit {

// The longest free-text field kept (caller ids, addresses, resource ids, detail...): Append
// truncates longer ones at a UTF-8 character boundary rather than refuse to audit.
inline constexpr size_t kMaxFieldSize = 2048;
// The longest operation or category name ("KeyUnwrap", "KeyVaultDataPlane").
inline constexpr size_t kMaxNameSize = 64;
// The largest time an event may carry: 9999-12-31T23:59:59.999Z.
inline constexpr int64_t kMaxTimeMs = 253402300799999;
// Query returns at most this many events per page.
inline constexpr int kMaxQueryLimit = 1000;
// The most events committed in one transaction.
inline constexpr size_t kMaxBatchLimit = 4096;

// One audited operation. The caller fills the fields above the line; the log fills those below
// when it appends the event (and Query returns them).
struct AuditEvent {
  int64_t time_ms = 0;           // unix milliseconds; 0: the log's clock at Append
  std::string operation;         // Azure-style name: "KeyCreate", "KeyUnwrap", "VaultPut", ...
  std::string category;          // "KeyVaultDataPlane", "Management", ...
  std::string caller_object_id;  // the authenticated principal's object id
  std::string caller_app_id;     // its application id, when it is an application
  std::string client_address;    // the peer's IP address
  std::string resource_id;       // the vault's resource id, or the key's id (see Query)
  std::string key_id;            // the key id with its version; may be empty
  std::string result;            // "Success" or "Failure"
  int status = 0;                // the HTTP status returned; 0 when there was none
  std::string correlation_id;    // the request id
  std::string detail;            // a short reason, optional; never secrets or plaintext
  // ---- set by the log ----
  int64_t sequence = 0;   // 1, 2, 3, ... with no gap
  std::string hash;       // hex SHA-256 of this record, chained
  std::string prev_hash;  // hex hash of the record before (64 zeros for the first)
};

struct AuditOptions {
  // The most events one transaction commits (1..kMaxBatchLimit). A larger batch amortises a
  // commit's fsync over more events; a smaller one keeps each transaction short.
  size_t max_batch = 1024;
  // The most records one Query call examines (1..1,000,000) before it returns a page, full or
  // not, with a continuation token: a query whose filters skip most records stays bounded.
  size_t max_examined_per_query = 10000;
  // How long the writer lets events queued by Record gather before it commits them (0..1000
  // ms), unless an Append is waiting or max_batch are queued. Under a steady stream of key
  // uses this turns many small commits, each with its own fsync and thread wake-ups, into few
  // large ones; a crash can lose at most this long of recorded (never of appended) events.
  std::chrono::milliseconds record_linger{20};
};

enum class AuditOrder {
  kNewestFirst = 1,
  kOldestFirst = 2,
};

// Filters are ANDed; an empty or unset one matches every event. There is no index: the
// filters are applied to the records scanned in sequence order, so a selective filter costs
// more calls (see AuditOptions::max_examined_per_query), not longer ones.
struct AuditQuery {
  std::optional<int64_t> from_time_ms;  // events with time_ms >= this
  std::optional<int64_t> to_time_ms;    // events with time_ms < this
  std::string operation;                // equal, ignoring ASCII case
  std::string caller_object_id;         // equal, ignoring ASCII case
  // The resource id itself or anything under it, segment by segment and ignoring ASCII case:
  // "https://v1.vault.example" matches "https://v1.vault.example/keys/k1/0a1b" but not
  // "https://v10.vault.example". So a vault's id finds its keys' events when the callers record
  // key events under the vault's id (a key id "<vault uri>/keys/<name>", or
  // "<vault resource id>/keys/<name>"). A trailing '/' is ignored.
  std::string resource_id_prefix;
  std::string result;  // "Success" or "Failure", ignoring ASCII case
  AuditOrder order = AuditOrder::kNewestFirst;
  int limit = 100;           // 1..kMaxQueryLimit events per page
  std::string continuation;  // empty for the first page; then the previous page's token
};

struct AuditPage {
  std::vector<AuditEvent> events;
  // Pass as AuditQuery::continuation (with the same filters and order) for the next page;
  // empty when there is nothing more. A page may be short, or even empty, and still carry a
  // token: the call stopped after examining max_examined_per_query records.
  std::string continuation;
};

// The last record of the chain: what to keep elsewhere to detect a rewrite of the whole chain.
struct ChainHead {
  int64_t sequence = 0;  // 0 while the log is empty
  std::string hash;      // hex; 64 zeros while the log is empty
};

struct VerifyResult {
  int64_t checked = 0;  // records found intact, from the first one verified
  // The first sequence at which the chain is broken (a record changed, missing, moved or
  // extra, or the head disagrees with the records); 0 when the chain is intact.
  int64_t first_broken_sequence = 0;
  std::string reason;  // why it is broken, for the operator; empty when intact
  bool intact() const { return first_broken_sequence == 0; }
};

class AuditLog {
 public:
  // Opens the log kept in `store`: reads the chain head and checks it against the last record.
  // InvalidArgument for bad options; DataLoss when the head and the records disagree (records
  // without a head, a head whose record is missing or differs, records after the head): the
  // log will not extend a chain whose end it cannot trust, and an operator must look at the
  // store first. Starts the writer thread.
  static StatusOr<std::unique_ptr<AuditLog>> Open(storage::MetadataStore& store,
                                                  const Clock& clock = Clock::Real(),
                                                  AuditOptions options = {});
  // Commits whatever is queued, then stops the writer thread.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends `event` and returns once it is committed (durable), or with the reason it is not:
  // the caller must then fail its own operation (fail closed). The events of concurrent
  // callers are committed together, in one transaction of up to max_batch events; if that
  // transaction fails, every one of its callers gets the error, and later Appends try again.
  // InvalidArgument (nothing queued) unless operation and category are 1..kMaxNameSize ASCII
  // letters and digits, result is "Success" or "Failure", status is 0 or 100..599 and time_ms
  // is 0..kMaxTimeMs. Free-text fields are kept as valid UTF-8 (each invalid sequence becomes
  // U+FFFD) of at most kMaxFieldSize bytes (longer ones are truncated). sequence, hash and
  // prev_hash are ignored. FailedPrecondition once the log is being destroyed.
  Status Append(AuditEvent event);

  // Queues `event` and returns at once: the writer commits it with the next batch, retrying
  // a failed batch until it commits or the log is destroyed (which commits what is queued
  // first). For uses that change nothing (a key read, an unwrap), where waiting for a commit
  // per request would bound the service by the disk's commit rate. Recorded events wait up to
  // options.record_linger for company, so a crash can lose the events of the last linger
  // interval and of the batch in flight, never those of an Append. Same validation as Append.
  Status Record(AuditEvent event);

  // One page of the events matching `query`, in sequence order (newest or oldest first).
  // InvalidArgument for a limit outside 1..kMaxQueryLimit, a negative time, from > to, a
  // result other than Success/Failure, or a continuation token that is malformed or was issued
  // for the other order. DataLoss when a record examined cannot be read (run Verify). Query does
  // not check hashes: Verify does.
  StatusOr<AuditPage> Query(const AuditQuery& query) const;

  // Recomputes the chain from `from_sequence` (>= 1; InvalidArgument otherwise) to the head
  // stored when the call starts, starting from the hash stored in record from_sequence - 1.
  // Checks every record's bytes, sequence, link and hash, that the head names the last record
  // and nothing follows it, and that the last record this log appended is still there. A
  // broken chain is a result, not an error; errors are store failures, and DataLoss when the
  // stored head itself is unreadable. Linear in the records checked; records appended during
  // the call are not checked.
  StatusOr<VerifyResult> Verify(int64_t from_sequence = 1) const;

  // The last record this log knows of (its own appends, or what it read at Open).
  ChainHead Head() const;

  // Transactions committed by the writer so far (each one a batch of events).
  int64_t BatchesCommittedForTest() const;
  // Events waiting for the writer (not counting the batch being committed).
  size_t QueuedForTest() const;

 private:
  struct Pending;  // one waiting Append, on its caller's stack
  // The chain head as the writer uses it: the hash as bytes.
  struct Tip {
    int64_t sequence = 0;
    Bytes hash;  // kSha256Size bytes; zeros while the log is empty
  };

  struct Prepared;  // a batch chained onto a head, ready to insert

  AuditLog(storage::MetadataStore& store, const Clock& clock, AuditOptions options, Tip head);

  static StatusOr<Prepared> Prepare(const Tip& head, const std::vector<Pending*>& batch);

  void WriterLoop();
  // Commits `batch` chained onto `expected` (or onto the stored head if it moved); the head
  // committed in *committed.
  Status CommitBatch(const std::vector<Pending*>& batch, const Tip& expected, Tip* committed);

  storage::MetadataStore& store_;
  const Clock& clock_;
  const AuditOptions options_;

  mutable Mutex mu_;
  std::deque<Pending*> queue_ GUARDED_BY(mu_);
  size_t queued_appends_ GUARDED_BY(mu_) = 0;  // the members of queue_ a caller waits for
  bool stopping_ GUARDED_BY(mu_) = false;
  Tip head_ GUARDED_BY(mu_);  // only the writer thread changes it
  int64_t batches_committed_ GUARDED_BY(mu_) = 0;
  // Signalled when an Append is queued, when a Record makes queue_ non-empty or fills a batch,
  // and when stopping_ is set.
  std::condition_variable_any queue_cv_;
  std::thread writer_;
};

// The event as the API shows it: {"time":"2026-11-28T13:00:00.123Z", "operationName",
// "category", "callerObjectId", "callerAppId", "clientAddress", "resourceId", "keyId",
// "result", "status", "correlationId", "detail", "sequence", "hash", "prevHash"}; every member
// is present (empty strings included), so the shape is stable.
nlohmann::json AuditEventJson(const AuditEvent& event);

}  // namespace keyfoundry::audit

#endif  // KEYFOUNDRY_AUDIT_AUDIT_LOG_H_
