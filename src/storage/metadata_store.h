// MetadataStore: the ordered key-value store with named tables and ACID transactions on which
// keyfoundry keeps vaults, keys, accounts, file metadata and audit records. Backends: SQLite
// (sqlite/, the embedded default) and, to come, PostgreSQL (shared by several nodes); each keeps
// this contract, so callers never know which one they have.
//
// Data model. A store holds tables; a table holds records ordered by key. A table exists while
// it holds a record: there is no create or drop.
//   table    1..63 characters matching [a-z][a-z0-9_]*
//   key      1..kMaxKeySize bytes, arbitrary (UTF-8 or binary). Keys order as unsigned bytes
//            (memcmp), a key before its extensions: "a" < "a\0" < "ab" < "b" < "\xff".
//   value    0..kMaxValueSize bytes.
//   version  1 when a record is created, +1 on every later Put or Update of it. Callers use it
//            for optimistic concurrency: read a record, compute, then Update expecting that
//            version. A record deleted and created again starts again at 1, so a caller that
//            must detect a delete in between keeps its own generation in the value.
// Every call checks its input before touching the store: a bad table name, key, value, version
// or scan limit gets InvalidArgument and changes nothing.
//
// Transactions. All access goes through Read or Write, which run a function with a Transaction:
//   Read   runs fn on a consistent snapshot: every Get, Scan and Count in fn sees the store as
//          of one instant, whatever commits meanwhile. Writes in fn fail with
//          FailedPrecondition. Readers never wait for writers.
//   Write  runs fn in a serializable read-write transaction, which commits iff fn returns OK;
//          otherwise everything fn wrote is rolled back and fn's status is returned. When Write
//          returns OK the changes are durable. If a call inside fn fails in the store itself
//          (disk full, I/O error), Write fails and commits nothing even if fn returns OK.
//          Waiting for a concurrent writer is bounded by the backend's timeout, then
//          Unavailable. A backend may run fn again after a conflict it can only detect late,
//          so whatever fn does outside its Transaction (such as filling its caller's
//          variables) must be safe to redo. A fn that fails is never run again.
//
// Thread safety: a MetadataStore is safe to use from many threads at once. A Transaction is
// valid only inside the fn it is given, on that fn's thread. fn must not call Read or Write on
// the same store: that may deadlock.
#ifndef KEYFOUNDRY_STORAGE_METADATA_STORE_H_
#define KEYFOUNDRY_STORAGE_METADATA_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::storage {

inline constexpr size_t kMaxTableNameSize = 63;
// Keys are indexed; PostgreSQL's B-tree refuses index rows above ~2.7 KB, so 1 KiB leaves room.
inline constexpr size_t kMaxKeySize = 1024;
inline constexpr size_t kMaxValueSize = size_t{16} << 20;  // 16 MiB
// Scan returns at most this many records per call; page with start_after for more.
inline constexpr size_t kMaxScanLimit = 1000;

struct Record {
  std::string key;
  Bytes value;
  int64_t version = 0;
};

class Transaction {
 public:
  virtual ~Transaction() = default;

  // The record at (table, key), or nullopt when there is none.
  virtual StatusOr<std::optional<Record>> Get(std::string_view table, std::string_view key) = 0;

  // Creates a record at version 1; AlreadyExists (and nothing changed) when the key is taken.
  virtual Status Insert(std::string_view table, std::string_view key, ByteView value) = 0;

  // Creates the record at version 1, or replaces its value and increments its version.
  virtual Status Put(std::string_view table, std::string_view key, ByteView value) = 0;

  // Replaces the value of a record whose version is `expected_version` and increments the
  // version. NotFound when there is no record; Aborted when its version differs (someone wrote
  // it since the caller read it: read again and retry). Nothing changes on failure.
  virtual Status Update(std::string_view table, std::string_view key, ByteView value,
                        int64_t expected_version) = 0;

  // Removes a record; NotFound when there is none.
  virtual Status Delete(std::string_view table, std::string_view key) = 0;

  // Up to `limit` (1..kMaxScanLimit) records whose key starts with `prefix` and, unless
  // `start_after` is empty, sorts after `start_after`, in key order. To page, pass the last key
  // of one page as `start_after` of the next; a page shorter than `limit` is the last. `prefix`
  // and `start_after` are at most kMaxKeySize bytes.
  virtual StatusOr<std::vector<Record>> Scan(std::string_view table, std::string_view prefix,
                                             std::string_view start_after, size_t limit) = 0;

  // The number of records in `table` whose key starts with `prefix` (empty: all of them; at
  // most kMaxKeySize bytes).
  virtual StatusOr<int64_t> Count(std::string_view table, std::string_view prefix) = 0;
};

using TransactionFn = std::function<Status(Transaction&)>;

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // See the file comment for both.
  virtual Status Read(const TransactionFn& fn) = 0;
  virtual Status Write(const TransactionFn& fn) = 0;
};

// The input checks every backend makes before it touches its store, so that all backends refuse
// the same inputs with the same messages. Each returns InvalidArgument or OK.
Status ValidateTableName(std::string_view table);
Status ValidateKey(std::string_view key);
Status ValidateValue(ByteView value);
Status ValidateExpectedVersion(int64_t version);
Status ValidateScan(std::string_view prefix, std::string_view start_after, size_t limit);

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_METADATA_STORE_H_
