// KeyVault against real components: SQLite, SoftHSM2 (a token in a temporary directory), the
// audit log; time is a FakeClock, so rotation policies and scheduled purges can be driven.
// The HTTP API over these is covered by tests/integration/keyvault_keys_test.cc.
#include "keyvault/key_vault.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <thread>

#include "crypto/random.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/softhsm.h"
#include "support/test_util.h"

namespace keyfoundry::keyvault {
namespace {

using std::chrono::hours;

constexpr char kTenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
constexpr char kOwner[] = "11111111-2222-3333-4444-555555555555";
constexpr char kStranger[] = "99999999-2222-3333-4444-555555555555";

class KeyVaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto provider = testutil::OpenSoftHsm(dir_.path());
    ASSERT_TRUE(provider.ok()) << provider.status();
    hsm_ = *std::move(provider);
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto audit = audit::AuditLog::Open(*store_, clock_);
    ASSERT_TRUE(audit.ok()) << audit.status();
    audit_ = *std::move(audit);
    vaults_ = std::make_unique<VaultStore>(*store_, clock_);
    authorizer_ = std::make_unique<identity::Authorizer>(*store_, clock_);
    kv_ = std::make_unique<KeyVault>(*store_, *vaults_, *authorizer_, *hsm_, events_, audit_.get(),
                                     clock_);
    events_.Subscribe([this](const VaultEvent& e) { seen_.push_back(e); });

    Vault vault;
    vault.name = "Vault1";
    vault.subscription_id = "00000000-0000-0000-0000-000000000001";
    vault.resource_group = "rg";
    vault.location = "local";
    vault.tenant_id = kTenant;
    vault.sku = "premium";
    vault.soft_delete_retention_days = 7;
    AccessPolicy policy;
    policy.tenant_id = kTenant;
    policy.object_id = kOwner;
    for (int p = static_cast<int>(KeyPermission::kEncrypt);
         p <= static_cast<int>(KeyPermission::kSetRotationPolicy); ++p) {
      policy.keys.insert(static_cast<KeyPermission>(p));
    }
    vault.access_policies.push_back(policy);
    ASSERT_TRUE(vaults_->Put(vault).ok());

    ctx_.object_id = kOwner;
    ctx_.tenant_id = kTenant;
    ctx_.origin.client_address = "127.0.0.1";
    ctx_.base_url = "https://vault1.vault.localhost:8443";
  }

  StatusOr<KeyVersion> CreateRsa(std::string_view name) {
    CreateKeyParams params;
    params.type = KeyType::kRsa;
    return kv_->CreateKey(ctx_, "vault1", name, params);
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000))};
  std::unique_ptr<hsm::KeyProvider> hsm_;
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<audit::AuditLog> audit_;
  std::unique_ptr<VaultStore> vaults_;
  std::unique_ptr<identity::Authorizer> authorizer_;
  EventBus events_;
  std::vector<VaultEvent> seen_;
  std::unique_ptr<KeyVault> kv_;
  AccessContext ctx_;
};

TEST_F(KeyVaultTest, ParsesIsoDurations) {
  EXPECT_EQ(*ParseIsoDuration("P90D"), 90 * 86400);
  EXPECT_EQ(*ParseIsoDuration("P1Y2M"), 365 * 86400 + 60 * 86400);
  EXPECT_EQ(*ParseIsoDuration("PT12H30M"), 12 * 3600 + 30 * 60);
  EXPECT_EQ(*ParseIsoDuration("P2W"), 14 * 86400);
  for (const char* bad : {"", "P", "90D", "PT", "P1H", "PT1D", "P-1D", "P1.5D", "P1DT", "PD"}) {
    EXPECT_FALSE(ParseIsoDuration(bad).ok()) << bad;
  }
}

TEST_F(KeyVaultTest, UnwrapGivesBackWhatAWrapWithThePublicKeyHid) {
  auto key = CreateRsa("k1");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->version.size(), 32u);
  auto cek = crypto::RandomBytes(32);
  auto pub = crypto::RsaPublicKey::FromComponents(key->rsa);
  auto wrapped = pub->Encrypt(crypto::RsaPadding::kOaepSha256, *cek);
  auto unwrapped =
      kv_->UnwrapKey(ctx_, "vault1", "k1", "", EncryptionAlgorithm::kRsaOaep256, *wrapped);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_EQ(unwrapped->value, *cek);
  EXPECT_EQ(unwrapped->key.version, key->version);
}

TEST_F(KeyVaultTest, ACallerWithoutAPolicyIsDeniedAndAudited) {
  ASSERT_TRUE(CreateRsa("k1").ok());
  AccessContext stranger = ctx_;
  stranger.object_id = kStranger;
  auto got = kv_->GetKey(stranger, "vault1", "k1", "");
  EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(got.status().reason(), "AccessDenied");
  EXPECT_NE(got.status().message().find(kStranger), std::string::npos);
  // Reads are recorded without waiting for the commit (AuditLog::Record): poll for it.
  audit::AuditQuery query;
  query.caller_object_id = kStranger;
  StatusOr<audit::AuditPage> page = audit::AuditPage{};
  for (int i = 0; i < 200; ++i) {
    page = audit_->Query(query);
    ASSERT_TRUE(page.ok());
    if (!page->events.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].operation, "KeyGet");
  EXPECT_EQ(page->events[0].result, "Failure");
  EXPECT_EQ(page->events[0].status, 403);
}

TEST_F(KeyVaultTest, ExpiryAndActivationFollowTheClock) {
  CreateKeyParams params;
  params.not_before = 1'800'000'000 + 3600;
  params.expires = 1'800'000'000 + 7200;
  ASSERT_TRUE(kv_->CreateKey(ctx_, "vault1", "k1", params).ok());
  Bytes digest(32, 7);
  auto early = kv_->Sign(ctx_, "vault1", "k1", "", SignatureAlgorithm::kRs256, digest);
  EXPECT_EQ(early.status().reason(), "KeyNotYetValid");
  clock_.Advance(hours(1));
  EXPECT_TRUE(kv_->Sign(ctx_, "vault1", "k1", "", SignatureAlgorithm::kRs256, digest).ok());
  clock_.Advance(hours(1));
  auto late = kv_->Sign(ctx_, "vault1", "k1", "", SignatureAlgorithm::kRs256, digest);
  EXPECT_EQ(late.status().reason(), "KeyExpired");
}

TEST_F(KeyVaultTest, RotationPolicyRotatesWhenDueAndSetsTheLifetime) {
  auto first = CreateRsa("k1");
  ASSERT_TRUE(first.ok());
  RotationPolicy policy;
  policy.lifetime_actions.push_back({"Rotate", "P30D", ""});
  policy.expiry_time = "P90D";
  ASSERT_TRUE(kv_->SetRotationPolicy(ctx_, "vault1", "k1", policy).ok());
  clock_.Advance(hours(24 * 29));
  EXPECT_EQ(*kv_->RunScheduledTasks(), 0);
  clock_.Advance(hours(24 * 1));
  seen_.clear();
  EXPECT_EQ(*kv_->RunScheduledTasks(), 1);
  auto latest = kv_->GetKey(ctx_, "vault1", "k1", "");
  ASSERT_TRUE(latest.ok());
  EXPECT_NE(latest->version, first->version);
  ASSERT_TRUE(latest->attributes.expires.has_value());
  EXPECT_EQ(*latest->attributes.expires, latest->attributes.created + 90 * 86400);
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].type, VaultEventType::kKeyVersionCreated);
  EXPECT_EQ(seen_[0].version, latest->version);
  // Not again until the new version is 30 days old.
  EXPECT_EQ(*kv_->RunScheduledTasks(), 0);
  // The old version still works for old data.
  EXPECT_TRUE(kv_->GetKey(ctx_, "vault1", "k1", first->version).ok());
}

TEST_F(KeyVaultTest, RotationPolicyRefusesBadPolicies) {
  ASSERT_TRUE(CreateRsa("k1").ok());
  auto set = [&](RotationPolicy p) { return kv_->SetRotationPolicy(ctx_, "vault1", "k1", p); };
  RotationPolicy too_soon;
  too_soon.lifetime_actions.push_back({"Rotate", "P1D", ""});
  EXPECT_EQ(set(too_soon).status().code(), StatusCode::kInvalidArgument);
  RotationPolicy both;
  both.lifetime_actions.push_back({"Rotate", "P30D", "P10D"});
  EXPECT_EQ(set(both).status().code(), StatusCode::kInvalidArgument);
  RotationPolicy unknown;
  unknown.lifetime_actions.push_back({"Explode", "P30D", ""});
  EXPECT_EQ(set(unknown).status().code(), StatusCode::kInvalidArgument);
  RotationPolicy short_life;
  short_life.expiry_time = "P7D";
  EXPECT_EQ(set(short_life).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyVaultTest, DeletedKeysArePurgedByTheSchedulerAfterRetention) {
  ASSERT_TRUE(CreateRsa("k1").ok());
  auto deleted = kv_->DeleteKey(ctx_, "vault1", "k1");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->scheduled_purge_date, deleted->deleted_date + 7 * 86400);
  clock_.Advance(hours(24 * 7) - std::chrono::seconds(1));
  EXPECT_EQ(*kv_->RunScheduledTasks(), 0);
  EXPECT_TRUE(kv_->GetDeletedKey(ctx_, "vault1", "k1").ok());
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_EQ(*kv_->RunScheduledTasks(), 1);
  EXPECT_EQ(kv_->GetDeletedKey(ctx_, "vault1", "k1").status().code(), StatusCode::kNotFound);
  // The name is free again.
  EXPECT_TRUE(CreateRsa("k1").ok());
}

TEST_F(KeyVaultTest, PurgeDestroysHsmObjectsAndPublishes) {
  CreateKeyParams params;
  params.type = KeyType::kRsaHsm;
  auto key = kv_->CreateKey(ctx_, "vault1", "h1", params);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_FALSE(key->hsm_platform.empty());
  auto backup = kv_->BackupKey(ctx_, "vault1", "h1");
  ASSERT_TRUE(backup.ok()) << backup.status();
  ASSERT_TRUE(kv_->DeleteKey(ctx_, "vault1", "h1").ok());
  seen_.clear();
  ASSERT_TRUE(kv_->PurgeDeletedKey(ctx_, "vault1", "h1").ok());
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].type, VaultEventType::kKeyPurged);
  // The token objects are gone, so the backup can no longer bring the key back.
  auto restored = kv_->RestoreKey(ctx_, "vault1", *backup);
  EXPECT_EQ(restored.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyVaultTest, BackupRestoresOnlyUnaltered) {
  auto key = CreateRsa("k1");
  ASSERT_TRUE(key.ok());
  auto backup = kv_->BackupKey(ctx_, "vault1", "k1");
  ASSERT_TRUE(backup.ok());
  ASSERT_TRUE(kv_->DeleteKey(ctx_, "vault1", "k1").ok());
  ASSERT_TRUE(kv_->PurgeDeletedKey(ctx_, "vault1", "k1").ok());
  for (size_t i = 0; i < backup->size(); i += 97) {
    Bytes altered = *backup;
    altered[i] ^= 0x01;
    EXPECT_EQ(kv_->RestoreKey(ctx_, "vault1", altered).status().code(),
              StatusCode::kInvalidArgument)
        << "byte " << i;
  }
  auto restored = kv_->RestoreKey(ctx_, "vault1", *backup);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->version, key->version);
  EXPECT_EQ(restored->rsa.n, key->rsa.n);
}

TEST_F(KeyVaultTest, PurgeProtectionRefusesPurgeButTheSchedulerStillPurges) {
  StatusOr<Vault> vault = vaults_->Get("vault1");
  ASSERT_TRUE(vault.ok());
  vault->purge_protection = true;
  ASSERT_TRUE(vaults_->Put(*vault).ok());
  ASSERT_TRUE(CreateRsa("k1").ok());
  ASSERT_TRUE(kv_->DeleteKey(ctx_, "vault1", "k1").ok());
  Status purge = kv_->PurgeDeletedKey(ctx_, "vault1", "k1");
  EXPECT_EQ(purge.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(kv_->GetDeletedKey(ctx_, "vault1", "k1").ok());
  clock_.Advance(hours(24 * 7));
  EXPECT_EQ(*kv_->RunScheduledTasks(), 1);
  EXPECT_EQ(kv_->GetDeletedKey(ctx_, "vault1", "k1").status().code(), StatusCode::kNotFound);
}

TEST_F(KeyVaultTest, DeletedVaultsArePurgedWithTheirKeysAfterRetention) {
  CreateKeyParams params;
  params.type = KeyType::kEcHsm;
  ASSERT_TRUE(kv_->CreateKey(ctx_, "vault1", "h1", params).ok());
  auto backup = kv_->BackupKey(ctx_, "vault1", "h1");
  ASSERT_TRUE(backup.ok());
  ASSERT_TRUE(vaults_->Delete("vault1").ok());
  clock_.Advance(hours(24 * 7));
  EXPECT_EQ(*kv_->RunScheduledTasks(), 1);
  EXPECT_EQ(vaults_->GetAny("vault1").status().code(), StatusCode::kNotFound);
  // A new vault of the same name starts empty, and the HSM key is gone for good.
  StatusOr<Vault> fresh = [&] {
    Vault v;
    v.name = "vault1";
    v.subscription_id = "00000000-0000-0000-0000-000000000001";
    v.resource_group = "rg";
    v.location = "local";
    v.tenant_id = kTenant;
    v.sku = "premium";
    v.soft_delete_retention_days = 7;
    AccessPolicy policy;
    policy.tenant_id = kTenant;
    policy.object_id = kOwner;
    policy.keys = {KeyPermission::kGet, KeyPermission::kRestore};
    v.access_policies.push_back(policy);
    return vaults_->Put(v);
  }();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(kv_->GetKey(ctx_, "vault1", "h1", "").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv_->RestoreKey(ctx_, "vault1", *backup).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyVaultTest, CreatingOverASoftDeletedNameIsAConflict) {
  ASSERT_TRUE(CreateRsa("k1").ok());
  ASSERT_TRUE(kv_->DeleteKey(ctx_, "vault1", "k1").ok());
  auto again = CreateRsa("K1");
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(again.status().reason(), "ObjectIsDeletedButRecoverable");
  auto recovered = kv_->RecoverDeletedKey(ctx_, "vault1", "k1");
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->name, "k1");
}

}  // namespace
}  // namespace keyfoundry::keyvault
