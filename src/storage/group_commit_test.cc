// GroupCommitter against the real SQLite store.
#include "storage/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/test_util.h"

namespace keyfoundry::storage {
namespace {

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteMetadataStore::Open(dir_.path() + "/m.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  int64_t Count(std::string_view table) {
    int64_t n = 0;
    EXPECT_TRUE(store_
                    ->Read([&](Transaction& txn) -> Status {
                      ASSIGN_OR_RETURN(n, txn.Count(table, ""));
                      return OkStatus();
                    })
                    .ok());
    return n;
  }
  testutil::ScopedTempDir dir_;
  std::unique_ptr<SqliteMetadataStore> store_;
};

TEST_F(GroupCommitTest, EveryWriteFromManyThreadsIsCommittedOnceAcknowledged) {
  GroupCommitter committer(*store_);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string key = std::to_string(t) + "/" + std::to_string(i);
        Status s = committer.Write(
            [&](Transaction& txn) { return txn.Insert("items", key, AsBytes("v")); });
        if (!s.ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(Count("items"), 400);
}

TEST_F(GroupCommitTest, OneFailingWriteDoesNotFailTheOthersOfItsBatch) {
  ASSERT_TRUE(
      store_->Write([](Transaction& txn) { return txn.Insert("items", "taken", AsBytes("")); })
          .ok());
  GroupCommitter committer(*store_);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  std::atomic<int> exists{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = t == 0 ? "taken" : "k" + std::to_string(t);
      Status s =
          committer.Write([&](Transaction& txn) { return txn.Insert("items", key, AsBytes("")); });
      if (s.ok()) ++ok;
      if (s.code() == StatusCode::kAlreadyExists) ++exists;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 15);
  EXPECT_EQ(exists, 1);
  EXPECT_EQ(Count("items"), 16);
}

}  // namespace
}  // namespace keyfoundry::storage
