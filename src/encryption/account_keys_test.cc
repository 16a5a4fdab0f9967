// AccountKeys against real components: SQLite, SoftHSM2 (a token in a temporary directory), the
// built-in KeyVault reached through LocalVaultClient, its event bus; time is a FakeClock so the
// cache TTL can be driven. A counting decorator around the real vault client shows how many
// unwrapkey calls reach the vault (it forwards every call; nothing is faked).
#include "encryption/account_keys.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "encryption/local_vault_client.h"
#include "keyvault/key_vault.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/softhsm.h"
#include "support/test_util.h"

namespace keyfoundry::encryption {
namespace {

using keyvault::KeyPermission;
using std::chrono::seconds;

constexpr char kTenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
constexpr char kOwner[] = "11111111-2222-3333-4444-555555555555";
constexpr char kIdentity[] = "aaaaaaaa-2222-3333-4444-555555555555";
constexpr char kAccount[] = "/subscriptions/s/resourcegroups/rg/accounts/a1";
constexpr char kVaultUri[] = "https://vault1.vault.localhost:8443/";

// Counts the calls it forwards to the real client.
class CountingClient : public VaultClient {
 public:
  explicit CountingClient(VaultClient& real) : real_(real) {}
  StatusOr<VaultKeyInfo> GetKey(const ActingIdentity& who, const KeyReference& key) override {
    return real_.GetKey(who, key);
  }
  StatusOr<WrappedKey> WrapKey(const ActingIdentity& who, const KeyReference& key,
                               std::string_view alg, const SecretBytes& bytes) override {
    return real_.WrapKey(who, key, alg, bytes);
  }
  StatusOr<SecretBytes> UnwrapKey(const ActingIdentity& who, std::string_view kid,
                                  std::string_view alg, ByteView wrapped) override {
    ++unwraps;
    if (unwrap_delay.count() > 0) std::this_thread::sleep_for(unwrap_delay);
    return real_.UnwrapKey(who, kid, alg, wrapped);
  }
  std::atomic<int> unwraps{0};
  // Makes each unwrap slow, as a remote vault's round trip is (set before threads start).
  std::chrono::milliseconds unwrap_delay{0};

 private:
  VaultClient& real_;
};

class AccountKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto provider = testutil::OpenSoftHsm(dir_.path());
    ASSERT_TRUE(provider.ok()) << provider.status();
    hsm_ = *std::move(provider);
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    vaults_ = std::make_unique<keyvault::VaultStore>(*store_, clock_);
    authorizer_ = std::make_unique<identity::Authorizer>(*store_, clock_);
    kv_ = std::make_unique<keyvault::KeyVault>(*store_, *vaults_, *authorizer_, *hsm_, events_,
                                               nullptr, clock_);
    local_ = std::make_unique<LocalVaultClient>(*kv_, "localhost");
    counting_ = std::make_unique<CountingClient>(*local_);
    keys_ = NewKeys();
    // Push invalidation, wired as keyfoundryd wires it.
    events_.Subscribe([this](const keyvault::VaultEvent& e) {
      keys_->Invalidate(e.vault.empty() ? std::string() : e.vault + ".vault.localhost");
    });

    keyvault::Vault vault;
    vault.name = "vault1";
    vault.subscription_id = "00000000-0000-0000-0000-000000000001";
    vault.resource_group = "rg";
    vault.location = "local";
    vault.tenant_id = kTenant;
    vault.sku = "premium";
    vault.purge_protection = true;
    vault.access_policies.push_back(
        Policy(kOwner, {KeyPermission::kCreate, KeyPermission::kGet, KeyPermission::kUpdate,
                        KeyPermission::kRotate, KeyPermission::kDelete}));
    vault.access_policies.push_back(Policy(
        kIdentity, {KeyPermission::kGet, KeyPermission::kWrapKey, KeyPermission::kUnwrapKey}));
    ASSERT_TRUE(vaults_->Put(vault).ok());
    owner_.object_id = kOwner;
    owner_.tenant_id = kTenant;
    owner_.origin.client_address = "127.0.0.1";
    owner_.base_url = "https://vault1.vault.localhost:8443";
    keyvault::CreateKeyParams params;
    params.type = keyvault::KeyType::kRsa;
    ASSERT_TRUE(kv_->CreateKey(owner_, "vault1", "k1", params).ok());
    who_ = {kIdentity, "bbbbbbbb-2222-3333-4444-555555555555", kTenant, kAccount};
  }

  std::unique_ptr<AccountKeys> NewKeys() {
    auto keys = std::make_unique<AccountKeys>(
        *store_, *hsm_,
        [this](std::string_view uri) -> VaultClient* {
          return local_->Owns(uri) ? counting_.get() : nullptr;
        },
        clock_, AccountKeysOptions{seconds(60), seconds(5)});
    return keys;
  }

  static keyvault::AccessPolicy Policy(const char* oid, std::set<KeyPermission> permissions) {
    keyvault::AccessPolicy p;
    p.tenant_id = kTenant;
    p.object_id = oid;
    p.keys = std::move(permissions);
    return p;
  }

  // Replaces the identity's policy (empty: removes it) and publishes the change, as the
  // control plane does.
  void SetIdentityPolicy(std::set<KeyPermission> permissions) {
    auto vault = vaults_->Get("vault1");
    ASSERT_TRUE(vault.ok());
    std::erase_if(vault->access_policies,
                  [](const keyvault::AccessPolicy& p) { return p.object_id == kIdentity; });
    if (!permissions.empty()) vault->access_policies.push_back(Policy(kIdentity, permissions));
    ASSERT_TRUE(vaults_->Put(*vault).ok());
    events_.Publish({keyvault::VaultEventType::kAccessPolicyChanged, "vault1", "", ""});
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(seconds(1'800'000'000))};
  std::unique_ptr<hsm::KeyProvider> hsm_;
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<keyvault::VaultStore> vaults_;
  std::unique_ptr<identity::Authorizer> authorizer_;
  keyvault::EventBus events_;
  std::unique_ptr<keyvault::KeyVault> kv_;
  std::unique_ptr<LocalVaultClient> local_;
  std::unique_ptr<CountingClient> counting_;
  std::unique_ptr<AccountKeys> keys_;
  keyvault::AccessContext owner_;
  ActingIdentity who_;
};

TEST_F(AccountKeysTest, ServiceManagedGenerationIsSealedByTheHsmAndSurvivesARestart) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  EXPECT_EQ(keys_->CreateServiceManaged(kAccount).code(), StatusCode::kAlreadyExists);
  auto active = keys_->Active(kAccount);
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ((*active)->generation(), 1u);
  auto again = NewKeys()->Get(kAccount, 1);  // a new process: from the store and the HSM
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->key() == (*active)->key());
  EXPECT_EQ(counting_->unwraps, 0);
}

TEST_F(AccountKeysTest, CustomerManagedGenerationIsProbedThenActiveAndOldOnesStay) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  auto added = keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->number, 2u);
  EXPECT_EQ(added->source, GenerationSource::kCustomerManaged);
  EXPECT_TRUE(added->kid.starts_with("https://vault1.vault.localhost:8443/keys/k1/"));
  EXPECT_EQ(counting_->unwraps, 1);  // the probe
  auto active = keys_->Active(kAccount);
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ((*active)->generation(), 2u);
  EXPECT_TRUE(keys_->Get(kAccount, 1).ok());
  EXPECT_EQ(counting_->unwraps, 1);  // cached since the probe
}

TEST_F(AccountKeysTest, NoPermissionMeansNoGenerationIsStored) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  SetIdentityPolicy({KeyPermission::kGet, KeyPermission::kWrapKey});  // no unwrapKey
  auto added = keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""});
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().reason(), "AccessDenied");
  auto report = keys_->Report(kAccount, false);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->size(), 1u);
}

TEST_F(AccountKeysTest, CacheAsksTheVaultOncePerTtlWhateverTheLoad) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""}).ok());
  const int before = counting_->unwraps;
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(keys_->Active(kAccount).ok());
  EXPECT_EQ(counting_->unwraps, before);
  clock_.Advance(seconds(61));
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(keys_->Active(kAccount).ok());
  EXPECT_EQ(counting_->unwraps, before + 1);
}

TEST_F(AccountKeysTest, ConcurrentMissesAtExpiryShareOneUnwrap) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""}).ok());
  counting_->unwrap_delay = std::chrono::milliseconds(200);
  clock_.Advance(seconds(61));
  const int before = counting_->unwraps;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 50; ++j) ok += keys_->Active(kAccount).ok() ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 400);
  EXPECT_EQ(counting_->unwraps, before + 1);
}

TEST_F(AccountKeysTest, IsCachedTellsWhetherGetWouldAskTheVault) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  auto added = keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(keys_->IsCached(kAccount, added->number));  // since the probe
  clock_.Advance(seconds(61));
  EXPECT_FALSE(keys_->IsCached(kAccount, added->number));
  SetIdentityPolicy({});
  EXPECT_FALSE(keys_->Get(kAccount, added->number).ok());
  EXPECT_TRUE(keys_->IsCached(kAccount, added->number));  // the refusal, for the negative TTL
  clock_.Advance(seconds(6));
  EXPECT_FALSE(keys_->IsCached(kAccount, added->number));
}

TEST_F(AccountKeysTest, ConcurrentMissesOfARevokedKeyShareOneRefusal) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""}).ok());
  SetIdentityPolicy({});
  counting_->unwrap_delay = std::chrono::milliseconds(200);
  const int before = counting_->unwraps;
  std::atomic<int> denied{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto key = keys_->Active(kAccount);
      denied += key.status().code() == StatusCode::kPermissionDenied ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(denied, 8);
  EXPECT_EQ(counting_->unwraps, before + 1);
}

TEST_F(AccountKeysTest, RevocationIsSeenAtOnceThroughTheEventBusAndRestorationToo) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""}).ok());
  SetIdentityPolicy({});
  auto refused = keys_->Get(kAccount, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().reason(), "AccessDenied");
  EXPECT_NE(refused.status().message().find("/keys/k1/"), std::string::npos);
  auto report = keys_->Report(kAccount, false);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ((*report)[1].state, GenerationState::kInaccessible);
  EXPECT_EQ((*report)[1].reason, "AccessDenied");
  EXPECT_TRUE(keys_->Get(kAccount, 1).ok());  // the service-managed generation is unaffected

  SetIdentityPolicy({KeyPermission::kGet, KeyPermission::kWrapKey, KeyPermission::kUnwrapKey});
  EXPECT_TRUE(keys_->Get(kAccount, 2).ok());
}

TEST_F(AccountKeysTest, DisabledKeyGivesItsReasonAndTheRecheckRestoresItWithoutEvents) {
  // An engine that hears no events from this vault, as with a remote vault.
  std::unique_ptr<AccountKeys> keys = NewKeys();
  ASSERT_TRUE(keys->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(keys->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""}).ok());
  keyvault::UpdateKeyParams disable;
  disable.enabled = false;
  ASSERT_TRUE(kv_->UpdateKey(owner_, "vault1", "k1", "", disable).ok());
  EXPECT_TRUE(keys->Get(kAccount, 2).ok());  // cached: the TTL bounds how long this lasts
  clock_.Advance(seconds(61));
  auto refused = keys->Get(kAccount, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().reason(), "KeyDisabled");

  keyvault::UpdateKeyParams enable;
  enable.enabled = true;
  ASSERT_TRUE(kv_->UpdateKey(owner_, "vault1", "k1", "", enable).ok());
  EXPECT_FALSE(keys->Get(kAccount, 2).ok());     // the refusal is cached for negative_ttl...
  auto recovered = keys->RecheckInaccessible();  // ...unless the recheck finds access again
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(*recovered, 1);
  EXPECT_TRUE(keys->Get(kAccount, 2).ok());
}

TEST_F(AccountKeysTest, VersionlessKeyFollowsANewVersionWithANewGeneration) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  auto first = keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(kv_->RotateKey(owner_, "vault1", "k1").ok());  // publishes kKeyVersionCreated
  auto active = keys_->Active(kAccount);
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ((*active)->generation(), 3u);
  auto generation = keys_->ActiveGeneration(kAccount);
  ASSERT_TRUE(generation.ok());
  EXPECT_NE(generation->kid, first->kid);
  EXPECT_TRUE(keys_->Get(kAccount, 2).ok());  // the old version still opens old data
}

TEST_F(AccountKeysTest, PinnedVersionIsNotFollowed) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  auto first = keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", ""});
  ASSERT_TRUE(first.ok());
  const std::string version = first->kid.substr(first->kid.rfind('/') + 1);
  ASSERT_TRUE(keys_->AddCustomerManaged(kAccount, who_, {kVaultUri, "k1", version}).ok());
  ASSERT_TRUE(kv_->RotateKey(owner_, "vault1", "k1").ok());
  auto active = keys_->Active(kAccount);
  ASSERT_TRUE(active.ok());
  EXPECT_EQ((*active)->generation(), 3u);
}

TEST_F(AccountKeysTest, UsageIsCountedPerGenerationAndDeleteAccountClearsEverything) {
  ASSERT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
  ASSERT_TRUE(store_
                  ->Write([](storage::Transaction& txn) {
                    RETURN_IF_ERROR(AccountKeys::AddUsage(txn, kAccount, 1, 2, 300));
                    return AccountKeys::AddUsage(txn, kAccount, 1, -1, -100);
                  })
                  .ok());
  auto report = keys_->Report(kAccount, true);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->size(), 1u);
  EXPECT_EQ((*report)[0].objects, 1);
  EXPECT_EQ((*report)[0].bytes, 200);
  EXPECT_TRUE((*report)[0].active);
  EXPECT_EQ((*report)[0].state, GenerationState::kAccessible);
  ASSERT_TRUE(keys_->DeleteAccount(kAccount).ok());
  EXPECT_EQ(keys_->Active(kAccount).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(keys_->CreateServiceManaged(kAccount).ok());
}

}  // namespace
}  // namespace keyfoundry::encryption
