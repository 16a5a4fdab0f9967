#include "audit/audit_log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/test_util.h"

namespace keyfoundry::audit {
namespace {

using ::keyfoundry::testutil::ScopedTempDir;
using std::chrono::milliseconds;

constexpr int64_t kStartMs = 1795870800123;  // 2026-11-28T13:00:00.123Z
constexpr char kVault[] = "https://v1.vault.example";
constexpr char kZeroHash[] = "0000000000000000000000000000000000000000000000000000000000000000";

std::string EventKey(int64_t sequence) {
  char buf[32];
  (void)std::snprintf(buf, sizeof(buf), "%020lld", static_cast<long long>(sequence));
  return buf;
}

// A good event; each test changes what it needs.
AuditEvent Event(std::string operation = "KeyUnwrap", std::string caller = "oid-alice",
                 std::string resource = std::string(kVault) + "/keys/k1",
                 std::string result = "Success") {
  AuditEvent e;
  e.operation = std::move(operation);
  e.category = "KeyVaultDataPlane";
  e.caller_object_id = std::move(caller);
  e.caller_app_id = "app-1";
  e.client_address = "203.0.113.7";
  e.resource_id = std::move(resource);
  e.key_id = e.resource_id + "/0123456789abcdef";
  e.result = std::move(result);
  e.status = e.result == "Success" ? 200 : 403;
  e.correlation_id = "req-1";
  return e;
}

std::vector<int64_t> Sequences(const std::vector<AuditEvent>& events) {
  std::vector<int64_t> out;
  for (const AuditEvent& e : events) out.push_back(e.sequence);
  return out;
}

// A fake for fault injection, test-only: forwards to a real store and, when told to, holds a
// Write until released, fails a Write after running its fn (so everything fn wrote is rolled
// back, as after an I/O error), or reports a failure for a Write that did commit (a commit
// whose outcome the caller cannot know).
class FaultInjectingStore final : public storage::MetadataStore {
 public:
  enum class Fault { kNone = 1, kFailAndRollBack = 2, kFailAfterCommit = 3 };

  explicit FaultInjectingStore(storage::MetadataStore& inner) : inner_(inner) {}

  Status Read(const storage::TransactionFn& fn) override { return inner_.Read(fn); }

  Status Write(const storage::TransactionFn& fn) override {
    Fault fault = Fault::kNone;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++writes_;
      ++held_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !gated_; });
      --held_;
      if (faults_left_ > 0) {
        --faults_left_;
        fault = fault_;
      }
    }
    switch (fault) {
      case Fault::kNone:
        return inner_.Write(fn);
      case Fault::kFailAndRollBack:
        return inner_.Write([&](storage::Transaction& txn) -> Status {
          RETURN_IF_ERROR(fn(txn));
          return UnavailableError("injected: disk I/O error");
        });
      case Fault::kFailAfterCommit: {
        Status status = inner_.Write(fn);
        return status.ok() ? UnavailableError("injected: commit outcome unknown") : status;
      }
    }
    return InternalError("unreachable");
  }

  void InjectFaults(Fault fault, int count) {
    std::lock_guard<std::mutex> lock(mu_);
    fault_ = fault;
    faults_left_ = count;
  }
  // While gated, every Write waits before it starts.
  void SetGate(bool gated) {
    std::lock_guard<std::mutex> lock(mu_);
    gated_ = gated;
    cv_.notify_all();
  }
  void WaitUntilAWriteIsHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return held_ > 0; });
  }
  int writes() {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_;
  }

 private:
  storage::MetadataStore& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gated_ = false;
  int held_ = 0;
  int writes_ = 0;
  Fault fault_ = Fault::kNone;
  int faults_left_ = 0;
};

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenStore();
    OpenLog();
  }

  std::string path() const { return dir_.path() + "/metadata.db"; }

  void OpenStore() {
    auto store = storage::SqliteMetadataStore::Open(path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void OpenLog(AuditOptions options = {}, storage::MetadataStore* store = nullptr) {
    log_.reset();
    auto log = AuditLog::Open(store ? *store : *store_, clock_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
  }

  // Closes the log and the store and opens both again.
  void Reopen() {
    log_.reset();
    store_.reset();
    OpenStore();
    OpenLog();
  }

  void AppendOk(AuditEvent event) {
    clock_.Advance(milliseconds(10));
    Status status = log_->Append(std::move(event));
    ASSERT_TRUE(status.ok()) << status;
  }

  void AppendMany(int n) {
    for (int i = 0; i < n; ++i) {
      AuditEvent e = Event();
      e.correlation_id = "req-" + std::to_string(i + 1);
      AppendOk(std::move(e));
    }
  }

  // Every page of `query` (with its limit), following the continuation tokens.
  std::vector<AuditEvent> AllPages(AuditQuery query, int* calls = nullptr) {
    std::vector<AuditEvent> out;
    for (int call = 1; call <= 10000; ++call) {
      StatusOr<AuditPage> page = log_->Query(query);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      out.insert(out.end(), page->events.begin(), page->events.end());
      if (calls != nullptr) *calls = call;
      if (page->continuation.empty()) break;
      query.continuation = page->continuation;
    }
    return out;
  }

  std::vector<int64_t> Matching(AuditQuery query) {
    query.order = AuditOrder::kOldestFirst;
    return Sequences(AllPages(std::move(query)));
  }

  VerifyResult VerifyOk(int64_t from = 1) {
    StatusOr<VerifyResult> result = log_->Verify(from);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : VerifyResult{-1, -1, "error"};
  }

  // The stored value of record `sequence`, read and written directly through the store.
  std::string StoredValue(int64_t sequence) {
    std::string value;
    Status status = store_->Read([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(std::optional<storage::Record> record,
                       txn.Get("audit_events", EventKey(sequence)));
      if (!record) return NotFoundError("no record");
      value = std::string(AsStringView(record->value));
      return OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return value;
  }
  void PutStored(std::string_view table, std::string_view key, std::string_view value) {
    Status status = store_->Write(
        [&](storage::Transaction& txn) { return txn.Put(table, key, AsBytes(value)); });
    ASSERT_TRUE(status.ok()) << status;
  }
  void DeleteStored(std::string_view table, std::string_view key) {
    Status status =
        store_->Write([&](storage::Transaction& txn) { return txn.Delete(table, key); });
    ASSERT_TRUE(status.ok()) << status;
  }

  // Opens the log on a fault-injecting wrapper of the store.
  FaultInjectingStore& OpenFaultyLog(AuditOptions options = {}) {
    log_.reset();
    faulty_ = std::make_unique<FaultInjectingStore>(*store_);
    OpenLog(options, faulty_.get());
    return *faulty_;
  }

  ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(milliseconds(kStartMs))};
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<FaultInjectingStore> faulty_;
  std::unique_ptr<AuditLog> log_;  // destroyed before the stores it uses
};

// ---- Append ----

TEST_F(AuditLogTest, AppendNumbersEventsFromOneAndChainsTheirHashes) {
  AppendMany(3);
  EXPECT_EQ(log_->Head().sequence, 3);

  AuditQuery query;
  query.order = AuditOrder::kOldestFirst;
  StatusOr<AuditPage> page = log_->Query(query);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(Sequences(page->events), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(page->continuation.empty());
  EXPECT_EQ(page->events[0].prev_hash, kZeroHash);
  EXPECT_EQ(page->events[1].prev_hash, page->events[0].hash);
  EXPECT_EQ(page->events[2].prev_hash, page->events[1].hash);
  EXPECT_EQ(page->events[2].hash, log_->Head().hash);
  EXPECT_EQ(page->events[0].hash.size(), 64u);
  EXPECT_NE(page->events[0].hash, page->events[1].hash);
  EXPECT_EQ(page->events[0].time_ms, kStartMs + 10);  // from the clock
  EXPECT_EQ(page->events[0].correlation_id, "req-1");
  EXPECT_EQ(page->events[2].key_id, std::string(kVault) + "/keys/k1/0123456789abcdef");

  VerifyResult verify = VerifyOk();
  EXPECT_TRUE(verify.intact()) << verify.reason;
  EXPECT_EQ(verify.checked, 3);
}

TEST_F(AuditLogTest, AppendKeepsTheCallersTimeAndIgnoresChainFields) {
  AuditEvent e = Event();
  e.time_ms = 1000;
  e.sequence = 77;
  e.hash = "forged";
  e.prev_hash = "forged";
  AppendOk(e);
  StatusOr<AuditPage> page = log_->Query(AuditQuery());
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].time_ms, 1000);
  EXPECT_EQ(page->events[0].sequence, 1);
  EXPECT_EQ(page->events[0].prev_hash, kZeroHash);
}

TEST_F(AuditLogTest, AppendRejectsAnInvalidEventAndQueuesNothing) {
  const std::vector<std::pair<const char*, std::function<void(AuditEvent&)>>> cases = {
      {"empty operation", [](AuditEvent& e) { e.operation.clear(); }},
      {"operation with a space", [](AuditEvent& e) { e.operation = "Key Unwrap"; }},
      {"operation too long", [](AuditEvent& e) { e.operation = std::string(65, 'K'); }},
      {"empty category", [](AuditEvent& e) { e.category.clear(); }},
      {"category with a slash", [](AuditEvent& e) { e.category = "Key/Vault"; }},
      {"result not Success or Failure", [](AuditEvent& e) { e.result = "OK"; }},
      {"result in lower case", [](AuditEvent& e) { e.result = "success"; }},
      {"status below 100", [](AuditEvent& e) { e.status = 42; }},
      {"status above 599", [](AuditEvent& e) { e.status = 600; }},
      {"negative status", [](AuditEvent& e) { e.status = -1; }},
      {"negative time", [](AuditEvent& e) { e.time_ms = -1; }},
      {"time after year 9999", [](AuditEvent& e) { e.time_ms = kMaxTimeMs + 1; }},
  };
  for (const auto& [name, change] : cases) {
    AuditEvent e = Event();
    change(e);
    EXPECT_EQ(log_->Append(e).code(), StatusCode::kInvalidArgument) << name;
  }
  EXPECT_EQ(log_->Head().sequence, 0);
  EXPECT_EQ(log_->BatchesCommittedForTest(), 0);
  // The same event unchanged is accepted, and a status of 0 (no HTTP status) too.
  AppendOk(Event());
  AuditEvent no_status = Event();
  no_status.status = 0;
  AppendOk(no_status);
  EXPECT_EQ(log_->Head().sequence, 2);
}

TEST_F(AuditLogTest, AppendStoresInvalidUtf8AsReplacementCharactersAndTruncatesLongFields) {
  AuditEvent e = Event();
  e.detail = "bad \xff byte, cut \xe2\x82";     // a stray byte and a cut sequence
  e.client_address = "\xed\xa0\x80 surrogate";  // UTF-16 surrogates are not UTF-8
  e.resource_id = std::string(5000, 'r');       // ASCII: cut at kMaxFieldSize
  e.correlation_id = "";                        // empty is fine
  std::string accents;
  for (int i = 0; i < 1500; ++i) accents += "\xc3\xa9";  // 3000 bytes of 'e' acute
  e.caller_app_id = accents;
  AppendOk(e);

  StatusOr<AuditPage> page = log_->Query(AuditQuery());
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->events.size(), 1u);
  const AuditEvent& stored = page->events[0];
  EXPECT_EQ(stored.detail, "bad \xEF\xBF\xBD byte, cut \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(stored.client_address, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD surrogate");
  EXPECT_EQ(stored.resource_id, std::string(kMaxFieldSize, 'r'));
  EXPECT_EQ(stored.caller_app_id, accents.substr(0, kMaxFieldSize));  // 1024 whole characters
  EXPECT_TRUE(VerifyOk().intact());
}

// ---- Query ----

class AuditLogQueryTest : public AuditLogTest {
 protected:
  // Ten events: seq, operation, caller, resource, result.
  //   1 KeyCreate  alice v1/keys/k1 Success     6 VaultPut   carol v1         Success
  //   2 KeyUnwrap  alice v1/keys/k1 Success     7 KeyUnwrap  bob   v10/keys/k1 Success
  //   3 KeyUnwrap  bob   v1/keys/k2 Failure     8 KeyUnwrap  alice v1/keys/k2 Success
  //   4 KeyUnwrap  alice v2/keys/k1 Success     9 KeyDelete  alice v1/keys/k1 Success
  //   5 KeySign    bob   v1/keys/k1 Success    10 KeyUnwrap  bob   v1/keys/k1 Failure
  // Times are kStartMs + 10 * seq.
  void SetUp() override {
    AuditLogTest::SetUp();
    const std::string v1 = "https://v1.vault.example";
    const std::string v2 = "https://v2.vault.example";
    const std::string v10 = "https://v10.vault.example";
    AppendOk(Event("KeyCreate", "oid-alice", v1 + "/keys/k1"));
    AppendOk(Event("KeyUnwrap", "oid-alice", v1 + "/keys/k1"));
    AppendOk(Event("KeyUnwrap", "oid-bob", v1 + "/keys/k2", "Failure"));
    AppendOk(Event("KeyUnwrap", "oid-alice", v2 + "/keys/k1"));
    AppendOk(Event("KeySign", "oid-bob", v1 + "/keys/k1"));
    AuditEvent vault_put = Event("VaultPut", "oid-carol", v1);
    vault_put.category = "Management";
    vault_put.key_id.clear();
    AppendOk(vault_put);
    AppendOk(Event("KeyUnwrap", "oid-bob", v10 + "/keys/k1"));
    AppendOk(Event("KeyUnwrap", "oid-alice", v1 + "/keys/k2"));
    AppendOk(Event("KeyDelete", "oid-alice", v1 + "/keys/k1"));
    AppendOk(Event("KeyUnwrap", "oid-bob", v1 + "/keys/k1", "Failure"));
  }
};

TEST_F(AuditLogQueryTest, NoFilterReturnsEverythingNewestFirstByDefault) {
  StatusOr<AuditPage> page = log_->Query(AuditQuery());
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Sequences(page->events), (std::vector<int64_t>{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_TRUE(page->continuation.empty());
}

TEST_F(AuditLogQueryTest, FiltersByOperationIgnoringCase) {
  AuditQuery q;
  q.operation = "keyunwrap";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{2, 3, 4, 7, 8, 10}));
  q.operation = "KeyDelete";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{9}));
  q.operation = "KeyPurge";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{}));
}

TEST_F(AuditLogQueryTest, FiltersByCaller) {
  AuditQuery q;
  q.caller_object_id = "OID-BOB";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 5, 7, 10}));
  q.caller_object_id = "oid-carol";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{6}));
  q.caller_object_id = "oid-al";  // a prefix is not a match
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{}));
}

TEST_F(AuditLogQueryTest, FiltersByResult) {
  AuditQuery q;
  q.result = "failure";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 10}));
  q.result = "Success";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{1, 2, 4, 5, 6, 7, 8, 9}));
}

TEST_F(AuditLogQueryTest, FiltersByTimeFromInclusiveToExclusive) {
  AuditQuery q;
  q.from_time_ms = kStartMs + 30;
  q.to_time_ms = kStartMs + 60;
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 4, 5}));
  q.to_time_ms.reset();
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 4, 5, 6, 7, 8, 9, 10}));
  q.from_time_ms.reset();
  q.to_time_ms = kStartMs + 21;
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{1, 2}));
  q.from_time_ms = kStartMs + 21;  // from == to: an empty range
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{}));
}

TEST_F(AuditLogQueryTest, ResourcePrefixFindsAVaultAndItsKeysSegmentBySegment) {
  AuditQuery q;
  q.resource_id_prefix = "https://V1.vault.example";  // not v10, not v2; case ignored
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{1, 2, 3, 5, 6, 8, 9, 10}));
  q.resource_id_prefix = "https://v1.vault.example/";  // a trailing slash changes nothing
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{1, 2, 3, 5, 6, 8, 9, 10}));
  q.resource_id_prefix = "https://v1.vault.example/keys/k2";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 8}));
  q.resource_id_prefix = "https://v1.vault.example/keys/k";  // not a whole segment
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{}));
  q.resource_id_prefix = "https://v10.vault.example";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{7}));
}

TEST_F(AuditLogQueryTest, FiltersCombine) {
  AuditQuery q;
  q.operation = "KeyUnwrap";
  q.caller_object_id = "oid-bob";
  q.resource_id_prefix = "https://v1.vault.example";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{3, 10}));
  q.result = "Success";
  EXPECT_EQ(Matching(q), (std::vector<int64_t>{}));
}

TEST_F(AuditLogQueryTest, PagesNewestFirstAndOldestFirst) {
  AuditQuery q;
  q.limit = 4;
  StatusOr<AuditPage> page = log_->Query(q);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Sequences(page->events), (std::vector<int64_t>{10, 9, 8, 7}));
  ASSERT_FALSE(page->continuation.empty());
  q.continuation = page->continuation;
  page = log_->Query(q);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Sequences(page->events), (std::vector<int64_t>{6, 5, 4, 3}));
  q.continuation = page->continuation;
  page = log_->Query(q);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Sequences(page->events), (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(page->continuation.empty());

  q = AuditQuery();
  q.order = AuditOrder::kOldestFirst;
  q.limit = 3;
  int calls = 0;
  EXPECT_EQ(Sequences(AllPages(q, &calls)), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(calls, 4);

  // A filtered query pages the same way.
  q.operation = "KeyUnwrap";
  q.limit = 2;
  q.order = AuditOrder::kNewestFirst;
  EXPECT_EQ(Sequences(AllPages(q)), (std::vector<int64_t>{10, 8, 7, 4, 3, 2}));
}

TEST_F(AuditLogQueryTest, NewestFirstSeesEventsAppendedAfterTheFirstPageOnlyOnANewQuery) {
  AuditQuery q;
  q.limit = 5;
  StatusOr<AuditPage> first = log_->Query(q);
  ASSERT_TRUE(first.ok());
  AppendMany(2);  // 11 and 12
  q.continuation = first->continuation;
  StatusOr<AuditPage> second = log_->Query(q);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(Sequences(second->events), (std::vector<int64_t>{5, 4, 3, 2, 1}));
  StatusOr<AuditPage> fresh = log_->Query(AuditQuery());
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->events.front().sequence, 12);
}

TEST_F(AuditLogQueryTest, RejectsBadLimitsTokensAndFilters) {
  const std::vector<std::pair<const char*, std::function<void(AuditQuery&)>>> cases = {
      {"limit 0", [](AuditQuery& q) { q.limit = 0; }},
      {"limit 1001", [](AuditQuery& q) { q.limit = 1001; }},
      {"negative limit", [](AuditQuery& q) { q.limit = -5; }},
      {"garbage token", [](AuditQuery& q) { q.continuation = "garbage"; }},
      {"tag only", [](AuditQuery& q) { q.continuation = "n"; }},
      {"other order's token", [](AuditQuery& q) { q.continuation = "o5"; }},
      {"unknown tag", [](AuditQuery& q) { q.continuation = "x5"; }},
      {"sign", [](AuditQuery& q) { q.continuation = "n-5"; }},
      {"plus", [](AuditQuery& q) { q.continuation = "n+5"; }},
      {"zero", [](AuditQuery& q) { q.continuation = "n0"; }},
      {"leading zero", [](AuditQuery& q) { q.continuation = "n05"; }},
      {"trailing text", [](AuditQuery& q) { q.continuation = "n5x"; }},
      {"overflow", [](AuditQuery& q) { q.continuation = "n99999999999999999999"; }},
      {"negative from", [](AuditQuery& q) { q.from_time_ms = -1; }},
      {"from after to",
       [](AuditQuery& q) {
         q.from_time_ms = 10;
         q.to_time_ms = 9;
       }},
      {"result Maybe", [](AuditQuery& q) { q.result = "Maybe"; }},
      {"huge prefix", [](AuditQuery& q) { q.resource_id_prefix = std::string(3000, 'x'); }},
  };
  for (const auto& [name, change] : cases) {
    AuditQuery q;
    change(q);
    EXPECT_EQ(log_->Query(q).status().code(), StatusCode::kInvalidArgument) << name;
  }
  // The good query the cases start from, and the limits' edges.
  AuditQuery q;
  EXPECT_TRUE(log_->Query(q).ok());
  q.limit = 1;
  EXPECT_TRUE(log_->Query(q).ok());
  q.limit = kMaxQueryLimit;
  EXPECT_TRUE(log_->Query(q).ok());
  q.continuation = "n5";
  EXPECT_TRUE(log_->Query(q).ok());
}

TEST_F(AuditLogTest, QueryExaminesABoundedNumberOfRecordsPerCall) {
  AuditOptions options;
  options.max_examined_per_query = 7;
  OpenLog(options);
  for (int i = 1; i <= 30; ++i) {
    AppendOk(Event(i == 3 || i == 29 ? "KeyDelete" : "KeyUnwrap"));
  }
  for (AuditOrder order : {AuditOrder::kOldestFirst, AuditOrder::kNewestFirst}) {
    AuditQuery q;
    q.order = order;
    q.operation = "KeyDelete";
    StatusOr<AuditPage> first = log_->Query(q);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_LE(first->events.size(), 1u);
    EXPECT_FALSE(first->continuation.empty()) << "stopped after 7 records, not at the end";
    int calls = 0;
    std::vector<int64_t> found = Sequences(AllPages(q, &calls));
    const std::vector<int64_t> expected = order == AuditOrder::kOldestFirst
                                              ? std::vector<int64_t>{3, 29}
                                              : std::vector<int64_t>{29, 3};
    EXPECT_EQ(found, expected);
    EXPECT_GE(calls, 30 / 7);
    EXPECT_LE(calls, 30 / 7 + 2);
  }
}

TEST_F(AuditLogTest, QueryOfAnEmptyLogIsAnEmptyLastPage) {
  for (AuditOrder order : {AuditOrder::kOldestFirst, AuditOrder::kNewestFirst}) {
    AuditQuery q;
    q.order = order;
    StatusOr<AuditPage> page = log_->Query(q);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_TRUE(page->events.empty());
    EXPECT_TRUE(page->continuation.empty());
  }
}

TEST_F(AuditLogTest, QueryReportsACorruptRecordAsDataLoss) {
  AppendMany(3);
  PutStored("audit_events", EventKey(2), "not json");
  EXPECT_EQ(log_->Query(AuditQuery()).status().code(), StatusCode::kDataLoss);
}

// ---- Durability and verification ----

TEST_F(AuditLogTest, SequencesAndChainContinueAcrossCloseAndReopen) {
  AppendMany(5);
  const ChainHead before = log_->Head();
  Reopen();
  EXPECT_EQ(log_->Head().sequence, before.sequence);
  EXPECT_EQ(log_->Head().hash, before.hash);
  AppendMany(3);
  EXPECT_EQ(log_->Head().sequence, 8);
  EXPECT_EQ(Matching(AuditQuery()), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));

  VerifyResult all = VerifyOk();
  EXPECT_TRUE(all.intact()) << all.reason;
  EXPECT_EQ(all.checked, 8);
  VerifyResult tail = VerifyOk(6);
  EXPECT_TRUE(tail.intact()) << tail.reason;
  EXPECT_EQ(tail.checked, 3);
  VerifyResult beyond = VerifyOk(9);
  EXPECT_TRUE(beyond.intact());
  EXPECT_EQ(beyond.checked, 0);
  EXPECT_EQ(log_->Verify(0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AuditLogTest, VerifyOfAnEmptyLogIsIntact) {
  VerifyResult result = VerifyOk();
  EXPECT_TRUE(result.intact());
  EXPECT_EQ(result.checked, 0);
  EXPECT_EQ(log_->Head().sequence, 0);
  EXPECT_EQ(log_->Head().hash, kZeroHash);
}

TEST_F(AuditLogTest, VerifyNamesARecordWithAnyOneByteChanged) {
  AppendMany(5);
  const std::string original = StoredValue(3);
  ASSERT_FALSE(original.empty());
  for (size_t i = 0; i < original.size(); ++i) {
    std::string tampered = original;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    PutStored("audit_events", EventKey(3), tampered);
    VerifyResult result = VerifyOk();
    EXPECT_EQ(result.first_broken_sequence, 3) << "byte " << i << ": " << tampered;
    EXPECT_EQ(result.checked, 2);
    EXPECT_FALSE(result.reason.empty());
  }
  PutStored("audit_events", EventKey(3), original);
  EXPECT_TRUE(VerifyOk().intact());
}

TEST_F(AuditLogTest, VerifyNamesARecordWhoseContentsChangedUnderItsOldHash) {
  AppendMany(5);
  // A plausible edit (a different detail), its hash left as it was.
  std::string value = StoredValue(4);
  const size_t at = value.find("\"detail\":\"\"");
  ASSERT_NE(at, std::string::npos);
  value.replace(at, 11, "\"detail\":\"x\"");
  PutStored("audit_events", EventKey(4), value);
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 4);
  EXPECT_NE(result.reason.find("hash"), std::string::npos) << result.reason;
  // Verifying from the next record starts from record 4's stored hash, which is unchanged.
  EXPECT_TRUE(VerifyOk(5).intact());
}

TEST_F(AuditLogTest, VerifyNamesADeletedRecord) {
  AppendMany(5);
  DeleteStored("audit_events", EventKey(3));
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 3);
  EXPECT_EQ(result.checked, 2);
  EXPECT_NE(result.reason.find("missing"), std::string::npos) << result.reason;
}

TEST_F(AuditLogTest, VerifyNamesTheFirstOfASwappedPair) {
  AppendMany(5);
  const std::string two = StoredValue(2);
  const std::string three = StoredValue(3);
  PutStored("audit_events", EventKey(2), three);
  PutStored("audit_events", EventKey(3), two);
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 2);
  EXPECT_EQ(result.checked, 1);
}

TEST_F(AuditLogTest, VerifyNamesAnEventInsertedAfterTheHead) {
  AppendMany(3);
  PutStored("audit_events", EventKey(4), StoredValue(3));
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 4);
  EXPECT_EQ(result.checked, 3);
  // And a log opened on that store refuses to extend the chain.
  log_.reset();
  EXPECT_EQ(AuditLog::Open(*store_, clock_).status().code(), StatusCode::kDataLoss);
}

TEST_F(AuditLogTest, DeletingTheLastRecordIsFoundAndOpenRefusesTheStore) {
  AppendMany(5);
  DeleteStored("audit_events", EventKey(5));
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 5);
  log_.reset();
  EXPECT_EQ(AuditLog::Open(*store_, clock_).status().code(), StatusCode::kDataLoss);
}

TEST_F(AuditLogTest, ARewrittenTailIsFoundByTheLogThatAppendedIt) {
  AppendMany(5);
  const std::string head_at_four = StoredValue(4);
  // Remove record 5 and move the head back to 4, consistently: only this process's memory of
  // what it appended (or a copy of Head() kept elsewhere) can tell.
  const size_t at = head_at_four.find("\"hash\":\"");
  const std::string hash4 = head_at_four.substr(at + 8, 64);
  DeleteStored("audit_events", EventKey(5));
  PutStored("audit_meta", "head", R"({"hash":")" + hash4 + R"(","seq":4,"v":1})");
  VerifyResult result = VerifyOk();
  EXPECT_EQ(result.first_broken_sequence, 5);
  EXPECT_NE(result.reason.find("removed"), std::string::npos) << result.reason;
}

TEST_F(AuditLogTest, OpenRefusesACorruptHeadOrRecordsWithoutAHead) {
  AppendMany(2);
  log_.reset();
  PutStored("audit_meta", "head", "{}");
  EXPECT_EQ(AuditLog::Open(*store_, clock_).status().code(), StatusCode::kDataLoss);
  DeleteStored("audit_meta", "head");
  EXPECT_EQ(AuditLog::Open(*store_, clock_).status().code(), StatusCode::kDataLoss);
}

TEST_F(AuditLogTest, OpenRejectsBadOptions) {
  for (AuditOptions options : {AuditOptions{0, 10000}, AuditOptions{kMaxBatchLimit + 1, 10000},
                               AuditOptions{16, 0}, AuditOptions{16, 1000001}}) {
    EXPECT_EQ(AuditLog::Open(*store_, clock_, options).status().code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(AuditLog::Open(*store_, clock_, AuditOptions{kMaxBatchLimit, 1000000}).ok());
}

// ---- Group commit and failures ----

TEST_F(AuditLogTest, ConcurrentAppendsAreContiguousChainedAndGroupCommitted) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  log_.reset();
  auto log = AuditLog::Open(*store_);  // the real clock
  ASSERT_TRUE(log.ok()) << log.status();
  log_ = std::move(*log);

  std::atomic<int> failures{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        AuditEvent e = Event();
        e.correlation_id = std::to_string(t) + "/" + std::to_string(i);
        if (!log_->Append(std::move(e)).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(failures.load(), 0);

  const int64_t batches = log_->BatchesCommittedForTest();
  std::printf("[ audit    ] %d appends from %d threads in %.3f s: %.0f appends/s, %lld commits\n",
              kThreads * kPerThread, kThreads, seconds, kThreads * kPerThread / seconds,
              static_cast<long long>(batches));
  EXPECT_EQ(log_->Head().sequence, kThreads * kPerThread);
  EXPECT_LT(batches, kThreads * kPerThread / 2) << "appends were not grouped";

  AuditQuery q;
  q.order = AuditOrder::kOldestFirst;
  q.limit = kMaxQueryLimit;
  std::vector<AuditEvent> all = AllPages(q);
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> ids;
  std::vector<int> next(kThreads, 0);  // each thread's events appear in its own order
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].sequence, static_cast<int64_t>(i + 1));
    ids.insert(all[i].correlation_id);
    const size_t slash = all[i].correlation_id.find('/');
    const int t = std::stoi(all[i].correlation_id.substr(0, slash));
    EXPECT_EQ(std::stoi(all[i].correlation_id.substr(slash + 1)), next[t]++);
  }
  EXPECT_EQ(ids.size(), all.size());

  VerifyResult result = VerifyOk();
  EXPECT_TRUE(result.intact()) << result.reason;
  EXPECT_EQ(result.checked, kThreads * kPerThread);
}

// Holds the writer in its first commit while more Appends queue, then checks they were
// committed together: deterministic, unlike counting batches under real concurrency.
TEST_F(AuditLogTest, EverythingQueuedDuringACommitIsCommittedInTheNextBatches) {
  AuditOptions options;
  options.max_batch = 16;
  FaultInjectingStore& faulty = OpenFaultyLog(options);
  faulty.SetGate(true);

  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  auto append = [&] {
    if (!log_->Append(Event()).ok()) ++failures;
  };
  threads.emplace_back(append);
  faulty.WaitUntilAWriteIsHeld();  // the first batch (one event) is being committed
  for (int i = 0; i < 40; ++i) threads.emplace_back(append);
  for (int i = 0; i < 10000 && log_->QueuedForTest() < 40; ++i) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(log_->QueuedForTest(), 40u);
  faulty.SetGate(false);
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(log_->Head().sequence, 41);
  EXPECT_EQ(log_->BatchesCommittedForTest(), 4);  // 1, then 16 + 16 + 8
  EXPECT_EQ(faulty.writes(), 4);
  EXPECT_TRUE(VerifyOk().intact());
}

// ---- Record: queued, committed later, in batches that linger for company ----

// Waits (up to 10 s) until nothing is queued and the head has reached `sequence`.
void WaitForHead(const AuditLog& log, int64_t sequence) {
  for (int i = 0; i < 10000 && (log.QueuedForTest() > 0 || log.Head().sequence < sequence); ++i) {
    std::this_thread::sleep_for(milliseconds(1));
  }
}

TEST_F(AuditLogTest, RecordedEventsGatherIntoOneBatchDuringTheLinger) {
  AuditOptions options;
  options.record_linger = milliseconds(1000);
  OpenLog(options);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(log_->Record(Event()).ok());
  WaitForHead(*log_, 100);
  EXPECT_EQ(log_->Head().sequence, 100);
  EXPECT_EQ(log_->BatchesCommittedForTest(), 1);
  EXPECT_EQ(Matching({}).size(), 100u);
  EXPECT_TRUE(VerifyOk().intact());
}

TEST_F(AuditLogTest, AFullBatchOfRecordedEventsDoesNotWaitForTheLinger) {
  AuditOptions options;
  options.max_batch = 8;
  options.record_linger = milliseconds(1000);
  OpenLog(options);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(log_->Record(Event()).ok());
  WaitForHead(*log_, 8);
  EXPECT_EQ(log_->Head().sequence, 8);
  EXPECT_EQ(log_->BatchesCommittedForTest(), 1);
  // Committed when the batch filled, not when the linger ran out (a wide margin).
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(900));
}

TEST_F(AuditLogTest, AnAppendCommitsTheRecordedEventsQueuedBeforeItWithoutLingering) {
  AuditOptions options;
  options.record_linger = milliseconds(1000);
  OpenLog(options);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Record(Event("KeyGet")).ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(log_->Append(Event("KeyDelete")).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(900));
  // The writer takes everything queued when the Append wakes it: the recorded events are
  // committed, in their order, before the Append returns.
  EXPECT_EQ(log_->Head().sequence, 6);
  EXPECT_EQ(log_->QueuedForTest(), 0u);
  std::vector<AuditEvent> events = AllPages(AuditQuery{.order = AuditOrder::kOldestFirst});
  ASSERT_EQ(events.size(), 6u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(events[i].operation, "KeyGet");
  EXPECT_EQ(events[5].operation, "KeyDelete");
}

TEST_F(AuditLogTest, ClosingCommitsRecordedEventsWithoutWaitingForTheLinger) {
  AuditOptions options;
  options.record_linger = milliseconds(1000);
  OpenLog(options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(log_->Record(Event()).ok());
  const auto start = std::chrono::steady_clock::now();
  log_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(900));
  OpenLog(options);
  EXPECT_EQ(log_->Head().sequence, 3);
  EXPECT_TRUE(VerifyOk().intact());
}

TEST_F(AuditLogTest, OpenRejectsALingerOutsideZeroToOneSecond) {
  for (milliseconds linger : {milliseconds(-1), milliseconds(1001)}) {
    AuditOptions options;
    options.record_linger = linger;
    EXPECT_EQ(AuditLog::Open(*store_, clock_, options).status().code(),
              StatusCode::kInvalidArgument);
  }
}

TEST_F(AuditLogTest, AStoreFailureFailsEveryAppendOfTheBatchAndLaterAppendsWork) {
  FaultInjectingStore& faulty = OpenFaultyLog();
  AppendOk(Event());  // sequence 1

  faulty.SetGate(true);
  std::vector<std::thread> threads;
  std::vector<Status> results(10);
  threads.emplace_back([&] { results[0] = log_->Append(Event()); });
  faulty.WaitUntilAWriteIsHeld();
  for (int i = 1; i < 10; ++i) {
    threads.emplace_back([&, i] { results[i] = log_->Append(Event()); });
  }
  for (int i = 0; i < 10000 && log_->QueuedForTest() < 9; ++i) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(log_->QueuedForTest(), 9u);
  faulty.InjectFaults(FaultInjectingStore::Fault::kFailAndRollBack, 2);  // both batches fail
  faulty.SetGate(false);
  for (std::thread& thread : threads) thread.join();

  for (const Status& status : results) {
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
  }
  EXPECT_EQ(log_->Head().sequence, 1);
  EXPECT_EQ(Matching(AuditQuery()), (std::vector<int64_t>{1}));  // nothing of them committed

  AppendOk(Event());  // the log still works, and continues the chain
  EXPECT_EQ(log_->Head().sequence, 2);
  EXPECT_EQ(Matching(AuditQuery()), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(VerifyOk().intact());
}

TEST_F(AuditLogTest, ACommitThatReportedFailureIsChainedOntoNotForked) {
  FaultInjectingStore& faulty = OpenFaultyLog();
  AppendOk(Event());
  faulty.InjectFaults(FaultInjectingStore::Fault::kFailAfterCommit, 1);
  EXPECT_EQ(log_->Append(Event()).code(), StatusCode::kUnavailable);
  EXPECT_EQ(log_->Head().sequence, 1);  // the log does not know the event was stored
  AppendOk(Event());
  // Over-audited (the failed Append's event is there), never forked or overwritten.
  EXPECT_EQ(log_->Head().sequence, 3);
  EXPECT_EQ(Matching(AuditQuery()), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(VerifyOk().intact());
}

TEST_F(AuditLogTest, TwoLogsOnOneStoreKeepOneChain) {
  AppendMany(2);
  auto other = AuditLog::Open(*store_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  AppendMany(2);                                // 3, 4 by the first log
  ASSERT_TRUE((*other)->Append(Event()).ok());  // 5: the second log's head was stale
  AppendMany(1);                                // 6
  EXPECT_EQ((*other)->Head().sequence, 5);
  EXPECT_EQ(log_->Head().sequence, 6);
  EXPECT_EQ(Matching(AuditQuery()), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(VerifyOk().intact());
  StatusOr<VerifyResult> from_other = (*other)->Verify();
  ASSERT_TRUE(from_other.ok());
  EXPECT_TRUE(from_other->intact()) << from_other->reason;
}

// ---- API shape ----

TEST(AuditEventJsonTest, HasTheApiFieldsWithAnIsoTime) {
  AuditEvent e = Event();
  e.time_ms = kStartMs;
  e.detail = "firewall";
  e.sequence = 42;
  e.hash = "ab";
  e.prev_hash = "cd";
  const nlohmann::json json = AuditEventJson(e);
  EXPECT_EQ(json["time"], "2026-11-28T13:00:00.123Z");
  EXPECT_EQ(json["operationName"], "KeyUnwrap");
  EXPECT_EQ(json["category"], "KeyVaultDataPlane");
  EXPECT_EQ(json["callerObjectId"], "oid-alice");
  EXPECT_EQ(json["callerAppId"], "app-1");
  EXPECT_EQ(json["clientAddress"], "203.0.113.7");
  EXPECT_EQ(json["resourceId"], std::string(kVault) + "/keys/k1");
  EXPECT_EQ(json["keyId"], std::string(kVault) + "/keys/k1/0123456789abcdef");
  EXPECT_EQ(json["result"], "Success");
  EXPECT_EQ(json["status"], 200);
  EXPECT_EQ(json["correlationId"], "req-1");
  EXPECT_EQ(json["detail"], "firewall");
  EXPECT_EQ(json["sequence"], 42);
  EXPECT_EQ(json["hash"], "ab");
  EXPECT_EQ(json["prevHash"], "cd");
  EXPECT_EQ(json.size(), 15u);
}

TEST(AuditEventJsonTest, FormatsTimesAtTheEdges) {
  AuditEvent e = Event();
  e.time_ms = 0;
  EXPECT_EQ(AuditEventJson(e)["time"], "1970-01-01T00:00:00.000Z");
  e.time_ms = 1709251199999;  // a leap day
  EXPECT_EQ(AuditEventJson(e)["time"], "2024-02-29T23:59:59.999Z");
  e.time_ms = kMaxTimeMs;
  EXPECT_EQ(AuditEventJson(e)["time"], "9999-12-31T23:59:59.999Z");
  e.time_ms = 5;
  EXPECT_EQ(AuditEventJson(e)["time"], "1970-01-01T00:00:00.005Z");
}

}  // namespace
}  // namespace keyfoundry::audit
