#include "identity/directory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "identity/ids.h"
#include "identity/test_util.h"

namespace keyfoundry::identity {
namespace {

constexpr std::string_view kVaultId =
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/"
    "Microsoft.KeyVault/vaults/v1";
constexpr std::string_view kAccountId =
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/"
    "Microsoft.CognitiveServices/accounts/a1";

using DirectoryTest = StoreTest;

TEST_F(DirectoryTest, NewRefusesBadTenantOrIterations) {
  EXPECT_EQ(Directory::New(*store_, "not-a-uuid").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Directory::New(*store_, std::string(kTestTenant), clock_,
                           {.password_iterations = 1, .secret_iterations = 1000})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(directory_->tenant_id(), kTestTenant);
}

TEST_F(DirectoryTest, CreateUserThenAuthenticate) {
  auto user = directory_->CreateUser("Alice", Secret("correct horse"));
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_TRUE(IsUuid(user->object_id));
  EXPECT_EQ(user->kind, PrincipalKind::kUser);
  EXPECT_EQ(user->display_name, "Alice");
  EXPECT_EQ(user->created_at, kTestStart);
  EXPECT_TRUE(user->app_id.empty());

  for (const char* name : {"Alice", "alice", "ALICE"}) {
    auto logged_in = directory_->AuthenticateUser(name, Secret("correct horse"));
    ASSERT_TRUE(logged_in.ok()) << logged_in.status();
    EXPECT_EQ(logged_in->object_id, user->object_id);
    EXPECT_EQ(logged_in->display_name, "Alice");
  }
  EXPECT_EQ(directory_->GetPrincipal(user->object_id)->display_name, "Alice");
  EXPECT_EQ(directory_->GetUser("aLiCe")->object_id, user->object_id);
}

TEST_F(DirectoryTest, CreateUserRefusesDuplicateNamesCaseInsensitively) {
  ASSERT_TRUE(directory_->CreateUser("bob", Secret("pw1")).ok());
  EXPECT_EQ(directory_->CreateUser("BOB", Secret("pw2")).status().code(),
            StatusCode::kAlreadyExists);
  // The first password still works; the second was never stored.
  EXPECT_TRUE(directory_->AuthenticateUser("bob", Secret("pw1")).ok());
  EXPECT_FALSE(directory_->AuthenticateUser("bob", Secret("pw2")).ok());
}

TEST_F(DirectoryTest, CreateUserRefusesBadInput) {
  for (const std::string& name :
       {std::string(""), std::string(65, 'a'), std::string("has space"), std::string(".dot"),
        std::string("-dash"), std::string("caf\xc3\xa9"), std::string("a/b"),
        std::string("a\nb")}) {
    EXPECT_EQ(directory_->CreateUser(name, Secret("pw")).status().code(),
              StatusCode::kInvalidArgument)
        << name;
  }
  EXPECT_TRUE(directory_->CreateUser(std::string(64, 'a'), Secret("pw")).ok());
  EXPECT_TRUE(directory_->CreateUser("first.last@example.com", Secret("pw")).ok());
  EXPECT_EQ(directory_->CreateUser("carol", Secret("")).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(DirectoryTest, AuthenticateUserFailsTheSameWayForUnknownUserAndWrongPassword) {
  ASSERT_TRUE(directory_->CreateUser("dave", Secret("right")).ok());
  const Status wrong_password = directory_->AuthenticateUser("dave", Secret("wrong")).status();
  const Status unknown_user = directory_->AuthenticateUser("eve", Secret("right")).status();
  const Status bad_name = directory_->AuthenticateUser("not a name!", Secret("right")).status();
  const Status empty_password = directory_->AuthenticateUser("dave", Secret("")).status();
  EXPECT_EQ(wrong_password, UnauthenticatedError("the username or password is incorrect"));
  EXPECT_EQ(unknown_user, wrong_password);
  EXPECT_EQ(bad_name, wrong_password);
  EXPECT_EQ(empty_password, wrong_password);
}

// An unknown user costs a PBKDF2 run, as a known one does, so timing does not reveal which
// usernames exist. Without the dummy run an unknown user would answer about a thousand times
// faster; the bounds are loose (5x) because this runs on shared, noisy machines, and the two
// cases are measured alternately so that a change of load affects both.
TEST_F(DirectoryTest, AuthenticateUnknownUserTakesAboutAsLongAsWrongPassword) {
  auto slow = Directory::New(*store_, std::string(kTestTenant), clock_,
                             {.password_iterations = 100000, .secret_iterations = 1000});
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE((*slow)->CreateUser("frank", Secret("right")).ok());
  auto time = [&](std::string_view name) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE((*slow)->AuthenticateUser(name, Secret("wrong")).ok());
    return std::chrono::steady_clock::now() - start;
  };
  std::chrono::nanoseconds known = std::chrono::hours(1);
  std::chrono::nanoseconds unknown = std::chrono::hours(1);
  for (int i = 0; i < 5; ++i) {
    known = std::min<std::chrono::nanoseconds>(known, time("frank"));
    unknown = std::min<std::chrono::nanoseconds>(unknown, time("nobody"));
  }
  EXPECT_GT(unknown * 5, known) << "unknown " << unknown.count() << " known " << known.count();
  EXPECT_GT(known * 5, unknown) << "unknown " << unknown.count() << " known " << known.count();
}

TEST_F(DirectoryTest, EnsureAdminCreatesOnceAndKeepsTheStoredPassword) {
  auto first = directory_->EnsureAdmin(Secret("initial"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->display_name, "admin");
  auto again = directory_->EnsureAdmin(Secret("changed-in-env"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->object_id, first->object_id);
  EXPECT_TRUE(directory_->AuthenticateUser("admin", Secret("initial")).ok());
  EXPECT_FALSE(directory_->AuthenticateUser("admin", Secret("changed-in-env")).ok());
}

TEST_F(DirectoryTest, SetUserPasswordReplacesIt) {
  ASSERT_TRUE(directory_->CreateUser("gina", Secret("old")).ok());
  ASSERT_TRUE(directory_->SetUserPassword("GINA", Secret("new")).ok());
  EXPECT_FALSE(directory_->AuthenticateUser("gina", Secret("old")).ok());
  EXPECT_TRUE(directory_->AuthenticateUser("gina", Secret("new")).ok());
  EXPECT_EQ(directory_->SetUserPassword("nobody", Secret("x")).code(), StatusCode::kNotFound);
}

TEST_F(DirectoryTest, ServicePrincipalAuthenticatesWithItsSecretOnly) {
  auto sp = directory_->CreateServicePrincipal("build agent");
  ASSERT_TRUE(sp.ok()) << sp.status();
  EXPECT_EQ(sp->principal.kind, PrincipalKind::kServicePrincipal);
  EXPECT_TRUE(IsUuid(sp->principal.app_id));
  EXPECT_TRUE(IsUuid(sp->principal.object_id));
  EXPECT_NE(sp->principal.app_id, sp->principal.object_id);
  EXPECT_EQ(sp->secret.secret.size(), 40u);
  EXPECT_EQ(sp->secret.hint, Reveal(sp->secret.secret).substr(0, 3));

  auto ok = directory_->AuthenticateServicePrincipal(sp->principal.app_id, sp->secret.secret);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->object_id, sp->principal.object_id);
  EXPECT_EQ(ok->display_name, "build agent");
  // The client id compares case-insensitively, as a GUID.
  std::string upper = sp->principal.app_id;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(upper, sp->secret.secret).ok());

  const Status bad = UnauthenticatedError("the client id or secret is incorrect");
  std::string wrong = Reveal(sp->secret.secret);
  wrong[5] = wrong[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(directory_->AuthenticateServicePrincipal(sp->principal.app_id, Secret(wrong)).status(),
            bad);
  EXPECT_EQ(
      directory_
          ->AuthenticateServicePrincipal("00000000-0000-0000-0000-000000000000", sp->secret.secret)
          .status(),
      bad);
  EXPECT_EQ(directory_->AuthenticateServicePrincipal("not-a-guid", sp->secret.secret).status(),
            bad);
  EXPECT_EQ(
      directory_->AuthenticateServicePrincipal(sp->principal.object_id, sp->secret.secret).status(),
      bad);
}

TEST_F(DirectoryTest, ServicePrincipalSecretsCanBeAddedListedAndDeleted) {
  auto sp = *directory_->CreateServicePrincipal("app");
  const std::string app = sp.principal.app_id;
  auto second = directory_->AddClientSecret(app);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(app, sp.secret.secret).ok());
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(app, second->secret).ok());

  auto listed = directory_->ListClientSecrets(app);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  for (const ClientSecretInfo& info : *listed) {
    EXPECT_TRUE(info.secret_id == sp.secret.secret_id || info.secret_id == second->secret_id);
    EXPECT_EQ(info.hint.size(), 3u);
  }

  ASSERT_TRUE(directory_->DeleteClientSecret(app, sp.secret.secret_id).ok());
  EXPECT_FALSE(directory_->AuthenticateServicePrincipal(app, sp.secret.secret).ok());
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(app, second->secret).ok());
  EXPECT_EQ(directory_->DeleteClientSecret(app, sp.secret.secret_id).code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->AddClientSecret("00000000-0000-0000-0000-000000000000").status().code(),
            StatusCode::kNotFound);
}

TEST_F(DirectoryTest, ServicePrincipalSecretsAreLimited) {
  auto sp = *directory_->CreateServicePrincipal("app");
  for (size_t i = 1; i < kMaxSecretsPerServicePrincipal; ++i) {
    ASSERT_TRUE(directory_->AddClientSecret(sp.principal.app_id).ok()) << i;
  }
  EXPECT_EQ(directory_->AddClientSecret(sp.principal.app_id).status().code(),
            StatusCode::kResourceExhausted);
}

TEST_F(DirectoryTest, ServicePrincipalDisplayNameIsChecked) {
  EXPECT_EQ(directory_->CreateServicePrincipal("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(directory_->CreateServicePrincipal(std::string(257, 'x')).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(directory_->CreateServicePrincipal("bad\xff").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(directory_->CreateServicePrincipal("caf\xc3\xa9 app").ok());
}

TEST_F(DirectoryTest, ListAndDeleteServicePrincipals) {
  auto a = *directory_->CreateServicePrincipal("a");
  auto b = *directory_->CreateServicePrincipal("b");
  ASSERT_TRUE(directory_->CreateUser("user", Secret("pw")).ok());
  ASSERT_TRUE(directory_->CreateManagedIdentity(kVaultId).ok());
  auto listed = directory_->ListServicePrincipals();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  for (const Principal& p : *listed) EXPECT_EQ(p.kind, PrincipalKind::kServicePrincipal);

  ASSERT_TRUE(directory_->DeleteServicePrincipal(a.principal.app_id).ok());
  EXPECT_EQ(directory_->ListServicePrincipals()->size(), 1u);
  EXPECT_FALSE(directory_->AuthenticateServicePrincipal(a.principal.app_id, a.secret.secret).ok());
  EXPECT_EQ(directory_->GetPrincipal(a.principal.object_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->DeleteServicePrincipal(a.principal.app_id).code(), StatusCode::kNotFound);
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(b.principal.app_id, b.secret.secret).ok());
}

TEST_F(DirectoryTest, ManagedIdentityLifecycle) {
  auto mi = directory_->CreateManagedIdentity(kAccountId);
  ASSERT_TRUE(mi.ok()) << mi.status();
  EXPECT_EQ(mi->kind, PrincipalKind::kManagedIdentity);
  EXPECT_EQ(mi->resource_id, kAccountId);
  EXPECT_TRUE(IsUuid(mi->app_id));
  // One per resource, compared as ARM compares ids.
  EXPECT_EQ(directory_->CreateManagedIdentity(ToLowerAscii(kAccountId)).status().code(),
            StatusCode::kAlreadyExists);
  auto found = directory_->GetManagedIdentityByResource(ToLowerAscii(kAccountId) + "/");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->object_id, mi->object_id);
  EXPECT_EQ(directory_->GetPrincipal(mi->object_id)->resource_id, kAccountId);
  EXPECT_EQ(directory_->GetPrincipalByAppId(mi->app_id)->object_id, mi->object_id);
  // No secret: it cannot authenticate as a service principal.
  EXPECT_FALSE(directory_->AuthenticateServicePrincipal(mi->app_id, Secret("x")).ok());
  EXPECT_EQ(directory_->AddClientSecret(mi->app_id).status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(directory_->DeleteManagedIdentity(kAccountId).ok());
  EXPECT_EQ(directory_->GetManagedIdentityByResource(kAccountId).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(directory_->GetPrincipal(mi->object_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->GetPrincipalByAppId(mi->app_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->DeleteManagedIdentity(kAccountId).code(), StatusCode::kNotFound);
  // A new identity for the same resource is a new principal.
  auto again = directory_->CreateManagedIdentity(kAccountId);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->object_id, mi->object_id);
}

TEST_F(DirectoryTest, ManagedIdentityRefusesBadResourceIds) {
  for (const char* id : {"", "vault", "/subscriptions", "/subscriptions/s/../x"}) {
    EXPECT_EQ(directory_->CreateManagedIdentity(id).status().code(), StatusCode::kInvalidArgument)
        << id;
    EXPECT_EQ(directory_->GetManagedIdentityByResource(id).status().code(), StatusCode::kNotFound);
  }
}

TEST_F(DirectoryTest, LookupsOfMalformedIdsAreNotFound) {
  EXPECT_EQ(directory_->GetPrincipal("x").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->GetPrincipalByAppId("x").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->GetUser("").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(directory_->ListClientSecrets("x").status().code(), StatusCode::kNotFound);
}

TEST_F(DirectoryTest, PrincipalsSurviveReopeningTheStore) {
  const std::string oid = directory_->CreateUser("henry", Secret("pw"))->object_id;
  auto sp = *directory_->CreateServicePrincipal("svc");
  directory_.reset();
  store_.reset();
  store_ = *storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
  directory_ = *Directory::New(*store_, std::string(kTestTenant), clock_, FastOptions());
  EXPECT_EQ(directory_->AuthenticateUser("henry", Secret("pw"))->object_id, oid);
  EXPECT_TRUE(directory_->AuthenticateServicePrincipal(sp.principal.app_id, sp.secret.secret).ok());
}

TEST_F(DirectoryTest, CorruptRecordIsDataLoss) {
  const std::string oid = directory_->CreateUser("ivy", Secret("pw"))->object_id;
  ASSERT_TRUE(store_
                  ->Write([&](storage::Transaction& txn) {
                    return txn.Put("principals", oid, AsBytes("{not json"));
                  })
                  .ok());
  EXPECT_EQ(directory_->GetPrincipal(oid).status().code(), StatusCode::kDataLoss);
  // Login fails closed on it, with the store's error rather than a token.
  EXPECT_FALSE(directory_->AuthenticateUser("ivy", Secret("pw")).ok());
}

TEST(PrincipalKindTest, Names) {
  EXPECT_EQ(PrincipalKindName(PrincipalKind::kUser), "user");
  EXPECT_EQ(PrincipalKindName(PrincipalKind::kServicePrincipal), "servicePrincipal");
  EXPECT_EQ(PrincipalKindName(PrincipalKind::kManagedIdentity), "managedIdentity");
  EXPECT_EQ(ArmPrincipalType(PrincipalKind::kUser), "User");
  EXPECT_EQ(ArmPrincipalType(PrincipalKind::kServicePrincipal), "ServicePrincipal");
  EXPECT_EQ(ArmPrincipalType(PrincipalKind::kManagedIdentity), "ServicePrincipal");
  EXPECT_EQ(ArmPrincipalType(PrincipalKind{}), "");
}

}  // namespace
}  // namespace keyfoundry::identity
