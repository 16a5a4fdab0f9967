#include "storage/sqlite/sqlite_metadata_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_util.h"

namespace keyfoundry::storage {
namespace {

using ::keyfoundry::testutil::KillSelf;
using ::keyfoundry::testutil::RunInChildUntilKilled;
using ::keyfoundry::testutil::ScopedTempDir;

// Runs `sql` on the database file directly, bypassing the store; returns the first column of
// the first row (0 when there is none).
int64_t RawQuery(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  int64_t result = 0;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  int rc = sqlite3_step(stmt);
  EXPECT_TRUE(rc == SQLITE_ROW || rc == SQLITE_DONE) << sqlite3_errmsg(db);
  if (rc == SQLITE_ROW) result = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

// A record's value as text, or "<none>".
std::string TextOf(const std::optional<Record>& record) {
  return record ? std::string(AsStringView(record->value)) : "<none>";
}

class SqliteMetadataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  std::string path() const { return dir_.path() + "/metadata.db"; }

  void Reopen() {
    store_.reset();
    auto store = SqliteMetadataStore::Open(path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  Status Put(std::string_view table, std::string_view key, std::string_view value) {
    return store_->Write([&](Transaction& tx) { return tx.Put(table, key, AsBytes(value)); });
  }

  std::optional<Record> Get(std::string_view table, std::string_view key) {
    std::optional<Record> record;
    Status status = store_->Read([&](Transaction& tx) -> Status {
      ASSIGN_OR_RETURN(record, tx.Get(table, key));
      return OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return record;
  }

  std::string ValueOf(std::string_view table, std::string_view key) {
    return TextOf(Get(table, key));
  }

  int64_t Count(std::string_view table, std::string_view prefix = "") {
    int64_t count = -1;
    Status status = store_->Read([&](Transaction& tx) -> Status {
      ASSIGN_OR_RETURN(count, tx.Count(table, prefix));
      return OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return count;
  }

  std::vector<std::string> ScanKeys(std::string_view table, std::string_view prefix,
                                    std::string_view start_after, size_t limit) {
    std::vector<std::string> keys;
    Status status = store_->Read([&](Transaction& tx) -> Status {
      ASSIGN_OR_RETURN(std::vector<Record> records, tx.Scan(table, prefix, start_after, limit));
      keys.clear();
      for (Record& record : records) keys.push_back(std::move(record.key));
      return OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return keys;
  }

  ScopedTempDir dir_;
  std::unique_ptr<SqliteMetadataStore> store_;
};

TEST_F(SqliteMetadataStoreTest, PutThenGetRoundTripsAnyBytes) {
  const std::string binary_key("k\0\xff\x01", 4);
  const std::string binary_value("\0\x80\xff", 3);
  ASSERT_TRUE(Put("vaults", "plain", "hello").ok());
  ASSERT_TRUE(Put("vaults", binary_key, binary_value).ok());
  ASSERT_TRUE(Put("vaults", "empty", "").ok());

  std::optional<Record> plain = Get("vaults", "plain");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->key, "plain");
  EXPECT_EQ(AsStringView(plain->value), "hello");
  EXPECT_EQ(plain->version, 1);
  EXPECT_EQ(ValueOf("vaults", binary_key), binary_value);
  std::optional<Record> empty = Get("vaults", "empty");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->value.empty());
}

TEST_F(SqliteMetadataStoreTest, GetOfAMissingKeyIsEmpty) {
  ASSERT_TRUE(Put("vaults", "a", "1").ok());
  EXPECT_FALSE(Get("vaults", "b").has_value());
  EXPECT_FALSE(Get("keys", "a").has_value());
}

TEST_F(SqliteMetadataStoreTest, InsertRefusesATakenKeyAndKeepsItsValue) {
  auto insert = [&](std::string_view value) {
    return store_->Write([&](Transaction& tx) { return tx.Insert("t", "k", AsBytes(value)); });
  };
  ASSERT_TRUE(insert("first").ok());
  EXPECT_EQ(insert("second").code(), StatusCode::kAlreadyExists);
  std::optional<Record> record = Get("t", "k");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(AsStringView(record->value), "first");
  EXPECT_EQ(record->version, 1);
}

TEST_F(SqliteMetadataStoreTest, PutCreatesAtVersionOneThenIncrements) {
  for (int64_t version = 1; version <= 3; ++version) {
    ASSERT_TRUE(Put("t", "k", "v" + std::to_string(version)).ok());
    std::optional<Record> record = Get("t", "k");
    ASSERT_TRUE(record.has_value());
    EXPECT_EQ(record->version, version);
    EXPECT_EQ(AsStringView(record->value), "v" + std::to_string(version));
  }
}

TEST_F(SqliteMetadataStoreTest, UpdateWritesOnlyTheExpectedVersion) {
  ASSERT_TRUE(Put("t", "k", "one").ok());
  auto update = [&](std::string_view key, std::string_view value, int64_t expected) {
    return store_->Write(
        [&](Transaction& tx) { return tx.Update("t", key, AsBytes(value), expected); });
  };

  EXPECT_EQ(update("k", "stale", 2).code(), StatusCode::kAborted);
  EXPECT_EQ(ValueOf("t", "k"), "one");

  ASSERT_TRUE(update("k", "two", 1).ok());
  std::optional<Record> record = Get("t", "k");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(AsStringView(record->value), "two");
  EXPECT_EQ(record->version, 2);

  EXPECT_EQ(update("k", "again", 1).code(), StatusCode::kAborted);
  EXPECT_EQ(update("missing", "x", 1).code(), StatusCode::kNotFound);
  EXPECT_FALSE(Get("t", "missing").has_value());
}

TEST_F(SqliteMetadataStoreTest, DeleteRemovesARecordAndReportsAMissingOne) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  ASSERT_TRUE(Put("t", "k", "v2").ok());
  auto remove = [&](std::string_view key) {
    return store_->Write([&](Transaction& tx) { return tx.Delete("t", key); });
  };
  ASSERT_TRUE(remove("k").ok());
  EXPECT_FALSE(Get("t", "k").has_value());
  EXPECT_EQ(remove("k").code(), StatusCode::kNotFound);

  ASSERT_TRUE(Put("t", "k", "reborn").ok());
  std::optional<Record> record = Get("t", "k");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->version, 1);
}

TEST_F(SqliteMetadataStoreTest, TablesDoNotShareKeys) {
  ASSERT_TRUE(Put("vaults", "k", "vault").ok());
  ASSERT_TRUE(Put("keys", "k", "key").ok());
  EXPECT_EQ(ValueOf("vaults", "k"), "vault");
  EXPECT_EQ(ValueOf("keys", "k"), "key");
  EXPECT_EQ(Count("vaults"), 1);
}

TEST_F(SqliteMetadataStoreTest, ScanOrdersKeysAsUnsignedBytes) {
  const std::vector<std::string> sorted = {"a", std::string("a\0", 2), "ab", "b", "\x7f", "\xff"};
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) ASSERT_TRUE(Put("t", *it, "").ok());
  EXPECT_EQ(ScanKeys("t", "", "", kMaxScanLimit), sorted);
}

TEST_F(SqliteMetadataStoreTest, ScanPagesThroughAPrefix) {
  std::vector<std::string> wanted;
  for (int i = 1; i <= 10; ++i)
    wanted.push_back("user/" + std::string(i < 10 ? "0" : "") + std::to_string(i));
  for (const std::string& key : wanted) ASSERT_TRUE(Put("t", key, "").ok());
  // Neighbours on both sides of the range, and the same keys in another table.
  for (const char* key : {"use", "user", "user.", "user0", "users/1"}) {
    ASSERT_TRUE(Put("t", key, "").ok());
  }
  ASSERT_TRUE(Put("other", "user/05", "").ok());

  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  std::string start_after;
  for (;;) {
    std::vector<std::string> page = ScanKeys("t", "user/", start_after, 3);
    page_sizes.push_back(page.size());
    if (page.empty()) break;
    seen.insert(seen.end(), page.begin(), page.end());
    start_after = page.back();
  }
  EXPECT_EQ(seen, wanted);
  EXPECT_EQ(page_sizes, (std::vector<size_t>{3, 3, 3, 1, 0}));

  // start_after below the prefix starts at the prefix; inside it, just after it.
  EXPECT_EQ(ScanKeys("t", "user/", "a", 2), (std::vector<std::string>{"user/01", "user/02"}));
  EXPECT_EQ(ScanKeys("t", "user/", "user/05", 2), (std::vector<std::string>{"user/06", "user/07"}));
  EXPECT_EQ(ScanKeys("t", "user/", "user/050", 1), (std::vector<std::string>{"user/06"}));
  EXPECT_TRUE(ScanKeys("t", "user/", "user/10", 5).empty());
}

TEST_F(SqliteMetadataStoreTest, ScanHandlesPrefixesOfFfBytes) {
  const std::vector<std::string> keys = {"\xfe", "\xff", std::string("\xff\0", 2), "\xff\xff",
                                         "\xff\xfe"};
  for (const std::string& key : keys) ASSERT_TRUE(Put("t", key, "").ok());
  EXPECT_EQ(ScanKeys("t", "\xff", "", 10),
            (std::vector<std::string>{"\xff", std::string("\xff\0", 2), "\xff\xfe", "\xff\xff"}));
  EXPECT_EQ(ScanKeys("t", "\xff\xff", "", 10), (std::vector<std::string>{"\xff\xff"}));
  EXPECT_EQ(Count("t", "\xff"), 4);
}

TEST_F(SqliteMetadataStoreTest, CountCountsAPrefix) {
  for (const char* key : {"a/1", "a/2", "a/3", "b/1", "a"}) ASSERT_TRUE(Put("t", key, "").ok());
  EXPECT_EQ(Count("t", "a/"), 3);
  EXPECT_EQ(Count("t", "a"), 4);
  EXPECT_EQ(Count("t"), 5);
  EXPECT_EQ(Count("t", "c"), 0);
  EXPECT_EQ(Count("empty"), 0);
}

// Calls every Transaction method with `table` and `key` in a Write, and expects each to fail
// with InvalidArgument; fn then returns OK, so anything they wrote would be committed.
void ExpectEveryCallRefuses(MetadataStore& store, std::string_view table, std::string_view key,
                            ByteView value) {
  Status status = store.Write([&](Transaction& tx) -> Status {
    EXPECT_EQ(tx.Get(table, key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Insert(table, key, value).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Put(table, key, value).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Update(table, key, value, 1).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Delete(table, key).code(), StatusCode::kInvalidArgument);
    return OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(SqliteMetadataStoreTest, BadTableNamesAreRefusedAndChangeNothing) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  const std::string bad_names[] = {"",          "T",
                                   "1t",        "_t",
                                   "t-t",       "t t",
                                   "t.t",       std::string("t\0", 2),
                                   "t\xc3\xa9", std::string(kMaxTableNameSize + 1, 'a')};
  for (const std::string& table : bad_names) {
    SCOPED_TRACE(table);
    ExpectEveryCallRefuses(*store_, table, "k", AsBytes("new"));
    Status status = store_->Read([&](Transaction& tx) -> Status {
      EXPECT_EQ(tx.Scan(table, "", "", 10).status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(tx.Count(table, "").status().code(), StatusCode::kInvalidArgument);
      return OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(RawQuery(path(), "SELECT COUNT(*) FROM records"), 1);
  EXPECT_EQ(ValueOf("t", "k"), "v");

  const std::string longest(kMaxTableNameSize, 'a');
  EXPECT_TRUE(Put(longest, "k", "v").ok());
  EXPECT_TRUE(Put("a_1", "k", "v").ok());
}

TEST_F(SqliteMetadataStoreTest, BadKeysAreRefusedAndChangeNothing) {
  ExpectEveryCallRefuses(*store_, "t", "", AsBytes("v"));
  ExpectEveryCallRefuses(*store_, "t", std::string(kMaxKeySize + 1, 'k'), AsBytes("v"));
  EXPECT_EQ(Count("t"), 0);

  const std::string longest(kMaxKeySize, '\xff');
  ASSERT_TRUE(Put("t", longest, "v").ok());
  EXPECT_EQ(ValueOf("t", longest), "v");
}

TEST_F(SqliteMetadataStoreTest, OversizedValuesAreRefusedAndChangeNothing) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  const Bytes too_big(kMaxValueSize + 1, 7);
  EXPECT_EQ(store_->Write([&](Transaction& tx) { return tx.Put("t", "k", too_big); }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Write([&](Transaction& tx) { return tx.Insert("t", "new", too_big); }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Write([&](Transaction& tx) { return tx.Update("t", "k", too_big, 1); }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueOf("t", "k"), "v");
  EXPECT_EQ(Count("t"), 1);

  const Bytes largest(kMaxValueSize, 7);
  ASSERT_TRUE(store_->Write([&](Transaction& tx) { return tx.Put("t", "k", largest); }).ok());
  std::optional<Record> record = Get("t", "k");
  ASSERT_TRUE(record.has_value());
  EXPECT_TRUE(record->value == largest);
}

TEST_F(SqliteMetadataStoreTest, BadScanArgumentsAndVersionsAreRefused) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  const std::string too_long(kMaxKeySize + 1, 'k');
  Status status = store_->Write([&](Transaction& tx) -> Status {
    EXPECT_EQ(tx.Scan("t", "", "", 0).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Scan("t", "", "", kMaxScanLimit + 1).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Scan("t", too_long, "", 1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Scan("t", "", too_long, 1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Count("t", too_long).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Update("t", "k", AsBytes("x"), 0).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Update("t", "k", AsBytes("x"), -1).code(), StatusCode::kInvalidArgument);
    return OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ValueOf("t", "k"), "v");
  EXPECT_EQ(ScanKeys("t", "", "", kMaxScanLimit), (std::vector<std::string>{"k"}));
}

TEST_F(SqliteMetadataStoreTest, AFailingWriteRollsBackEverythingItWrote) {
  ASSERT_TRUE(Put("t", "kept", "old").ok());
  ASSERT_TRUE(Put("t", "doomed", "old").ok());

  Status status = store_->Write([&](Transaction& tx) -> Status {
    RETURN_IF_ERROR(tx.Put("t", "kept", AsBytes("new")));
    RETURN_IF_ERROR(tx.Update("t", "kept", AsBytes("newer"), 2));
    RETURN_IF_ERROR(tx.Delete("t", "doomed"));
    RETURN_IF_ERROR(tx.Insert("t", "fresh", AsBytes("new")));
    RETURN_IF_ERROR(tx.Put("u", "fresh", AsBytes("new")));
    // The transaction sees its own writes.
    EXPECT_EQ(*tx.Count("t", ""), 2);
    return AbortedError("changed my mind");
  });
  EXPECT_EQ(status, AbortedError("changed my mind"));

  std::optional<Record> kept = Get("t", "kept");
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(AsStringView(kept->value), "old");
  EXPECT_EQ(kept->version, 1);
  EXPECT_EQ(ValueOf("t", "doomed"), "old");
  EXPECT_FALSE(Get("t", "fresh").has_value());
  EXPECT_EQ(Count("u"), 0);
}

// Fault injection: a file size limit makes SQLite fail to spill a large Put into the WAL, midway
// through a transaction whose fn ignores the failure, writes on and returns OK. Write must
// report that failure and commit nothing of the transaction.
TEST_F(SqliteMetadataStoreTest, AWriteInWhichAStatementFailedReportsItAndCommitsNothing) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);  // fail the write, not the process
  ASSERT_NE(old_handler, SIG_ERR);

  Status failed_put;
  Status status = store_->Write([&](Transaction& tx) -> Status {
    EXPECT_TRUE(tx.Put("t", "small", AsBytes("x")).ok());
    rlimit low = saved;
    low.rlim_cur = 1 << 20;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &low), 0);
    failed_put = tx.Put("t", "big", Bytes(size_t{8} << 20, 1));
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
    // SQLite may have ended the transaction; a later write must not run outside it.
    EXPECT_EQ(tx.Put("t", "later", AsBytes("x")), failed_put);
    return OkStatus();
  });
  EXPECT_NE(signal(SIGXFSZ, old_handler), SIG_ERR);

  EXPECT_FALSE(failed_put.ok());
  EXPECT_EQ(status, failed_put);
  EXPECT_FALSE(Get("t", "small").has_value());
  EXPECT_FALSE(Get("t", "big").has_value());
  EXPECT_FALSE(Get("t", "later").has_value());
  EXPECT_EQ(ValueOf("t", "k"), "v");
  ASSERT_TRUE(Put("t", "after", "works").ok());
  EXPECT_EQ(Count("t"), 2);
}

TEST_F(SqliteMetadataStoreTest, WritesInAReadAreRefused) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  Status status = store_->Read([&](Transaction& tx) -> Status {
    EXPECT_EQ(tx.Insert("t", "new", AsBytes("x")).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(tx.Put("t", "k", AsBytes("x")).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(tx.Update("t", "k", AsBytes("x"), 1).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(tx.Delete("t", "k").code(), StatusCode::kFailedPrecondition);
    return OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ValueOf("t", "k"), "v");
  EXPECT_EQ(Count("t"), 1);
}

TEST_F(SqliteMetadataStoreTest, AReadSeesOneSnapshotWhileAWriteCommits) {
  ASSERT_TRUE(Put("t", "k", "before").ok());
  Status status = store_->Read([&](Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Record> first, tx.Get("t", "k"));
    // The writer neither waits for this open Read nor shows up in it.
    std::thread writer([&] {
      EXPECT_TRUE(Put("t", "k", "after").ok());
      EXPECT_TRUE(Put("t", "k2", "after").ok());
    });
    writer.join();
    ASSIGN_OR_RETURN(std::optional<Record> second, tx.Get("t", "k"));
    EXPECT_EQ(TextOf(first), "before");
    EXPECT_EQ(TextOf(second), "before");
    EXPECT_EQ(*tx.Count("t", ""), 1);
    return OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ValueOf("t", "k"), "after");
  EXPECT_EQ(Count("t"), 2);
}

TEST_F(SqliteMetadataStoreTest, ReopeningKeepsDataAndAppliesNoMigrationTwice) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  store_.reset();
  const int64_t version = RawQuery(path(), "SELECT MAX(version) FROM schema_version");
  EXPECT_GE(version, 1);
  EXPECT_EQ(RawQuery(path(), "SELECT COUNT(*) FROM schema_version"), version);

  Reopen();
  Reopen();
  EXPECT_EQ(ValueOf("t", "k"), "v");
  store_.reset();
  EXPECT_EQ(RawQuery(path(), "SELECT MAX(version) FROM schema_version"), version);
  EXPECT_EQ(RawQuery(path(), "SELECT COUNT(*) FROM schema_version"), version);
}

TEST_F(SqliteMetadataStoreTest, ADatabaseFromANewerBuildIsRefused) {
  ASSERT_TRUE(Put("t", "k", "v").ok());
  store_.reset();
  RawQuery(path(),
           "INSERT INTO schema_version (version) SELECT MAX(version) + 1 FROM schema_version");
  const int64_t newer = RawQuery(path(), "SELECT MAX(version) FROM schema_version");

  auto store = SqliteMetadataStore::Open(path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("schema version " + std::to_string(newer)),
            std::string::npos)
      << store.status();
  EXPECT_NE(store.status().message().find("newer"), std::string::npos) << store.status();
  EXPECT_EQ(RawQuery(path(), "SELECT MAX(version) FROM schema_version"), newer);
  EXPECT_EQ(RawQuery(path(), "SELECT COUNT(*) FROM records"), 1);
}

TEST_F(SqliteMetadataStoreTest, AFileThatIsNotADatabaseIsRefused) {
  store_.reset();
  const std::string other = dir_.path() + "/not-a-database";
  std::ofstream(other) << std::string(4096, 'x');
  auto store = SqliteMetadataStore::Open(other);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status();
}

TEST_F(SqliteMetadataStoreTest, AWriteKilledBeforeCommitIsInvisibleAfterReopen) {
  ASSERT_TRUE(Put("t", "baseline", "kept").ok());
  store_.reset();  // the child must not inherit open connections

  const bool killed = RunInChildUntilKilled([&] {
    auto store = SqliteMetadataStore::Open(path());
    if (!store.ok()) return;
    Status acknowledged =
        (*store)->Write([](Transaction& tx) { return tx.Put("t", "acked", AsBytes("yes")); });
    if (!acknowledged.ok()) return;
    (void)(*store)->Write([](Transaction& tx) -> Status {
      // 8 MiB: more than SQLite's page cache, so uncommitted pages spill into the WAL.
      const Bytes big(size_t{1} << 20, 0x5a);
      for (int i = 0; i < 8; ++i) RETURN_IF_ERROR(tx.Put("t", "lost" + std::to_string(i), big));
      RETURN_IF_ERROR(tx.Delete("t", "baseline"));
      KillSelf();
      return OkStatus();
    });
  });
  ASSERT_TRUE(killed);
  // The uncommitted pages did reach the WAL, so recovery really has frames to ignore.
  EXPECT_GT(std::filesystem::file_size(path() + "-wal"), size_t{4} << 20);

  Reopen();
  EXPECT_EQ(ValueOf("t", "baseline"), "kept");
  EXPECT_EQ(ValueOf("t", "acked"), "yes");
  EXPECT_EQ(Count("t", "lost"), 0);
  EXPECT_EQ(Count("t"), 2);
  ASSERT_TRUE(Put("t", "after", "works").ok());
  EXPECT_EQ(ValueOf("t", "after"), "works");
}

TEST_F(SqliteMetadataStoreTest, ConcurrentReadersSeeOnlyWholeTransactions) {
  constexpr int kRecords = 10;
  constexpr int kBatches = 60;
  constexpr int kReaders = 3;
  // Each batch sets every record to its number in one transaction, so a snapshot in which the
  // records differ is a torn one.
  auto write_batch = [&](int batch) {
    return store_->Write([&](Transaction& tx) -> Status {
      for (int i = 0; i < kRecords; ++i) {
        RETURN_IF_ERROR(tx.Put("t", "r" + std::to_string(i), AsBytes(std::to_string(batch))));
      }
      return OkStatus();
    });
  };
  ASSERT_TRUE(write_batch(0).ok());

  std::atomic<bool> writer_done{false};
  std::vector<std::thread> readers;
  readers.reserve(kReaders);
  std::vector<int> reads(kReaders, 0);
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      int last_batch = 0;
      do {
        Status status = store_->Read([&](Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(std::vector<Record> records, tx.Scan("t", "r", "", kMaxScanLimit));
          if (records.size() != kRecords) return InternalError("a torn number of records");
          const int batch = std::stoi(std::string(AsStringView(records.front().value)));
          for (const Record& record : records) {
            EXPECT_EQ(std::stoi(std::string(AsStringView(record.value))), batch) << record.key;
          }
          // A later statement of the same Read still sees the same batch.
          ASSIGN_OR_RETURN(std::optional<Record> last, tx.Get("t", records.back().key));
          EXPECT_EQ(TextOf(last), std::to_string(batch));
          EXPECT_GE(batch, last_batch);  // snapshots never go back in time
          last_batch = batch;
          return OkStatus();
        });
        EXPECT_TRUE(status.ok()) << status;
        ++reads[r];
      } while (!writer_done.load());
    });
  }
  std::thread writer([&] {
    for (int batch = 1; batch <= kBatches; ++batch) EXPECT_TRUE(write_batch(batch).ok());
    writer_done.store(true);
  });
  writer.join();
  for (std::thread& reader : readers) reader.join();

  EXPECT_EQ(ValueOf("t", "r0"), std::to_string(kBatches));
  for (int r = 0; r < kReaders; ++r) EXPECT_GT(reads[r], 0);
}

TEST_F(SqliteMetadataStoreTest, ConcurrentWritersLoseNoUpdate) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 20;
  ASSERT_TRUE(Put("t", "counter", "0").ok());
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        Status status = store_->Write([](Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(std::optional<Record> counter, tx.Get("t", "counter"));
          if (!counter) return NotFoundError("the counter is gone");
          const int next = std::stoi(std::string(AsStringView(counter->value))) + 1;
          return tx.Update("t", "counter", AsBytes(std::to_string(next)), counter->version);
        });
        EXPECT_TRUE(status.ok()) << status;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::optional<Record> counter = Get("t", "counter");
  ASSERT_TRUE(counter.has_value());
  EXPECT_EQ(AsStringView(counter->value), std::to_string(kThreads * kIncrements));
  EXPECT_EQ(counter->version, 1 + kThreads * kIncrements);
}

}  // namespace
}  // namespace keyfoundry::storage

namespace keyfoundry::storage {
namespace {

// Commits leave the WAL's pages to the background checkpointer: after many writes the WAL file
// stays within the backstop's bound, the background thread did checkpoint, and every record is
// there after reopening.
TEST(SqliteCheckpointTest, CheckpointsRunInTheBackgroundAndKeepTheWalBounded) {
  ScopedTempDir dir;
  const std::string path = dir.path() + "/metadata.db";
  SqliteOptions options;
  options.checkpoint_pages = 50;
  auto store = SqliteMetadataStore::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string value(3000, 'v');  // about a page per record
  constexpr int kRecords = 2000;
  for (int i = 0; i < kRecords; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_TRUE(
        (*store)->Write([&](Transaction& tx) { return tx.Put("t", key, AsBytes(value)); }).ok());
  }
  for (int i = 0; i < 1000 && (*store)->BackgroundCheckpointsForTest() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT((*store)->BackgroundCheckpointsForTest(), 0);
  // Without checkpoints the WAL would hold every page written (> 2000 pages, ~8 MiB); the
  // writer restarts it once it passes 4 x 50 pages (a transaction here adds a few).
  const auto wal_bytes = std::filesystem::file_size(path + "-wal");
  EXPECT_LT(wal_bytes, uintmax_t{8} * 50 * (4096 + 24)) << wal_bytes;
  store->reset();
  auto reopened = SqliteMetadataStore::Open(path, options);
  ASSERT_TRUE(reopened.ok());
  int64_t count = 0;
  ASSERT_TRUE((*reopened)
                  ->Read([&](Transaction& tx) -> Status {
                    ASSIGN_OR_RETURN(count, tx.Count("t", ""));
                    return OkStatus();
                  })
                  .ok());
  EXPECT_EQ(count, kRecords);
}

}  // namespace
}  // namespace keyfoundry::storage
