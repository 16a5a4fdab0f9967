// AccountStore against real components: SQLite and SoftHSM2 (a token in a temporary directory,
// sealing the API keys). An observing decorator around the real metadata store counts the
// store's reads and can run a write inside a read, as a write racing that read would (it
// forwards every call; nothing is faked).
#include "foundry/accounts.h"

#include <gtest/gtest.h>

#include <functional>
#include <utility>

#include "hsm/key_provider.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/softhsm.h"
#include "support/test_util.h"

namespace keyfoundry::foundry {
namespace {

class ObservedStore final : public storage::MetadataStore {
 public:
  explicit ObservedStore(storage::MetadataStore& real) : real_(real) {}

  Status Read(const storage::TransactionFn& fn) override {
    ++reads_;
    return real_.Read([&](storage::Transaction& txn) {
      Status status = fn(txn);
      if (std::function<void()> hook = std::exchange(inside_next_read_, nullptr)) hook();
      return status;
    });
  }
  Status Write(const storage::TransactionFn& fn) override { return real_.Write(fn); }

  int reads() const { return reads_; }
  // Runs `hook` in the next Read, after its function, before its snapshot ends.
  void InsideNextRead(std::function<void()> hook) { inside_next_read_ = std::move(hook); }

 private:
  storage::MetadataStore& real_;
  int reads_ = 0;
  std::function<void()> inside_next_read_;
};

class AccountStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hsm = testutil::OpenSoftHsm(dir_.path());
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    hsm_ = *std::move(hsm);
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    sqlite_ = *std::move(store);
    observed_ = std::make_unique<ObservedStore>(*sqlite_);
    accounts_ = std::make_unique<AccountStore>(*observed_, *hsm_);

    Account account;
    account.subscription_id = "sub";
    account.resource_group = "rg";
    account.name = "Acct1";
    account.kind = "AIServices";
    account.location = "local";
    auto created = accounts_->Put(account);
    ASSERT_TRUE(created.ok()) << created.status();
    account_ = *std::move(created);
  }

  testutil::ScopedTempDir dir_;
  std::unique_ptr<hsm::KeyProvider> hsm_;
  std::unique_ptr<storage::SqliteMetadataStore> sqlite_;
  std::unique_ptr<ObservedStore> observed_;
  std::unique_ptr<AccountStore> accounts_;
  Account account_;
};

TEST_F(AccountStoreTest, RepeatedLookupsReadTheStoreOnce) {
  ASSERT_TRUE(accounts_->GetByName("acct1").ok());
  const int reads = observed_->reads();
  for (int i = 0; i < 10; ++i) {
    auto again = accounts_->GetByName(i % 2 == 0 ? "ACCT1" : "acct1");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->name, "Acct1");
    EXPECT_EQ(again->api_key_digests[0], account_.api_key_digests[0]);
  }
  EXPECT_EQ(observed_->reads(), reads);
}

TEST_F(AccountStoreTest, EveryWriteIsSeenByTheNextLookup) {
  ASSERT_TRUE(accounts_->GetByName("acct1").ok());  // cached

  auto regenerated = accounts_->RegenerateKey(account_, 1);
  ASSERT_TRUE(regenerated.ok()) << regenerated.status();
  ASSERT_NE(regenerated->api_key_digests[0], account_.api_key_digests[0]);
  auto seen = accounts_->GetByName("acct1");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->api_key_digests[0], regenerated->api_key_digests[0]);

  Account changed = *seen;
  changed.disable_local_auth = true;
  ASSERT_TRUE(accounts_->Put(changed).ok());
  seen = accounts_->GetByName("acct1");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_TRUE(seen->disable_local_auth);

  ASSERT_TRUE(accounts_->Delete(*seen).ok());
  EXPECT_EQ(accounts_->GetByName("acct1").status().code(), StatusCode::kNotFound);
}

TEST_F(AccountStoreTest, ALookupWhoseReadOverlapsAWriteDoesNotKeepWhatItRead) {
  // The read's snapshot predates the new key: it returns the old account, which must not be
  // what later lookups see.
  std::string written_digest;
  observed_->InsideNextRead([&] {
    auto regenerated = accounts_->RegenerateKey(account_, 2);
    ASSERT_TRUE(regenerated.ok()) << regenerated.status();
    written_digest = regenerated->api_key_digests[1];
  });
  auto during = accounts_->GetByName("acct1");
  ASSERT_TRUE(during.ok()) << during.status();
  ASSERT_FALSE(written_digest.empty());
  EXPECT_EQ(during->api_key_digests[1], account_.api_key_digests[1]);

  auto after = accounts_->GetByName("acct1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->api_key_digests[1], written_digest);
}

TEST_F(AccountStoreTest, AnUnknownOrInvalidNameIsNotFound) {
  EXPECT_EQ(accounts_->GetByName("nobody").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(accounts_->GetByName("-bad-").status().code(), StatusCode::kNotFound);
  // Not cached as missing: an account created later is found.
  Account later = account_;
  later.name = "nobody";
  ASSERT_TRUE(accounts_->Put(later).ok());
  EXPECT_TRUE(accounts_->GetByName("nobody").ok());
}

}  // namespace
}  // namespace keyfoundry::foundry
