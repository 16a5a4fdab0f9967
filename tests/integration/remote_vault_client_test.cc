// RemoteVaultClient against a real keyfoundryd: a vault with purge protection, an RSA 2048 key
// and a service principal granted get/wrapKey/unwrapKey by an access policy, reached at
// https://{vault}.vault.localhost:PORT (connect_address 127.0.0.1) with the token learned from
// the vault's 401 challenge. Checks the key's facts, the wrap/unwrap round trip, the error
// mapping of remote_vault_client.h (each case starts from the working setup and changes one
// thing), and that the token is fetched once and reused, also by threads at once.
//
// The server logs one "token.issued" line per token (identity_routes.cc); counting them for
// the service principal is how the tests see token requests.
#include "encryption/remote_vault_client.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/encoding.h"
#include "crypto/random.h"
#include "crypto/x509.h"
#include "support/keyfoundryd_process.h"

namespace keyfoundry::encryption {
namespace {

using testutil::Body;
using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;

constexpr char kVaultApiVersion[] = "2023-07-01";
constexpr char kKeysApiVersion[] = "7.4";
constexpr char kResourceGroup[] = "rg-remote";
constexpr char kKey[] = "cmk";
constexpr char kAlg[] = "RSA-OAEP-256";

SecretBytes RandomKey() {
  StatusOr<Bytes> bytes = crypto::RandomBytes(32);
  EXPECT_TRUE(bytes.ok());
  return SecretBytes(bytes.ok() ? *bytes : Bytes(32, 0x5a), InsecureSecretAccess());
}

// Not used to authenticate (remote_vault_client.h); any identity will do.
const ActingIdentity kWho = {.object_id = "00000000-0000-4000-a000-000000000001",
                             .client_id = "00000000-0000-4000-a000-000000000002",
                             .tenant_id = "00000000-0000-4000-a000-000000000003",
                             .resource_id = "/subscriptions/x/resourceGroups/y"};

class RemoteVaultClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new KeyfoundrydProcess(KF_KEYFOUNDRYD);
    admin_ = new std::string(server_->AdminToken("management"));
    admin_vault_ = new std::string(server_->AdminToken("vault"));
    http::ClientResponse r = Arm("PUT", Group(), Json{{"location", "local"}}, "2021-04-01");
    EXPECT_TRUE(r.status == 200 || r.status == 201) << r.body;

    // A service principal, as `kf ad sp create` makes one.
    r = server_->Call(
        "POST", "/v1.0/servicePrincipals",
        {{"Authorization", "Bearer " + *admin_}, {"Content-Type", "application/json"}},
        Json{{"displayName", "remote-vault-client"}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    const Json sp = Body(r);
    sp_ =
        new ServicePrincipal{sp.value("id", ""), sp.value("appId", ""), sp.value("secretText", "")};
  }
  static void TearDownTestSuite() {
    delete sp_;
    delete admin_vault_;
    delete admin_;
    delete server_;
    sp_ = nullptr;
    admin_vault_ = admin_ = nullptr;
    server_ = nullptr;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::string log = server_->Log();
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      std::printf("--- keyfoundryd log (tail) ---\n%s\n", log.c_str());
    }
  }

  struct ServicePrincipal {
    std::string oid, app_id, secret;
  };

  // ---------------------------------------------------------------- the remote server's side

  static std::string Group() {
    return "/subscriptions/" + server_->subscription() + "/resourceGroups/" + kResourceGroup;
  }
  static std::string VaultId(const std::string& vault) {
    return Group() + "/providers/Microsoft.KeyVault/vaults/" + vault;
  }

  static http::ClientResponse Arm(const std::string& method, const std::string& path,
                                  const Json& body, const std::string& api_version) {
    return server_->Call(
        method, path + "?api-version=" + api_version,
        {{"Authorization", "Bearer " + *admin_}, {"Content-Type", "application/json"}},
        body.is_null() ? "" : body.dump());
  }

  static Json Policy(const std::string& object_id, const Json& keys) {
    return {{"tenantId", server_->tenant()},
            {"objectId", object_id},
            {"permissions", {{"keys", keys}}}};
  }
  static Json SpPolicy() { return Policy(sp_->oid, Json::array({"get", "wrapKey", "unwrapKey"})); }

  // PUT .../accessPolicies/{add|remove} with the service principal's policy.
  static ::testing::AssertionResult UpdateSpPolicy(const std::string& vault,
                                                   const std::string& kind) {
    http::ClientResponse r =
        Arm("PUT", VaultId(vault) + "/accessPolicies/" + kind,
            {{"properties", {{"accessPolicies", Json::array({SpPolicy()})}}}}, kVaultApiVersion);
    if (r.status != 200) return ::testing::AssertionFailure() << r.status << " " << r.body;
    return ::testing::AssertionSuccess();
  }

  // A key vault (purge protection on; the admin may do anything) holding an RSA 2048 key
  // `cmk`, whose access policies grant the service principal get, wrapKey and unwrapKey.
  static ::testing::AssertionResult MakeVaultWithKey(const std::string& vault) {
    const std::string admin_oid = ClaimsOid(*admin_vault_);
    Json body = {{"location", "local"},
                 {"properties",
                  {{"tenantId", server_->tenant()},
                   {"sku", {{"family", "A"}, {"name", "standard"}}},
                   {"accessPolicies", Json::array({Policy(admin_oid, Json::array({"all"}))})},
                   {"enableRbacAuthorization", false},
                   {"enablePurgeProtection", true},
                   {"softDeleteRetentionInDays", 7}}}};
    http::ClientResponse r = Arm("PUT", VaultId(vault), body, kVaultApiVersion);
    if (r.status != 201) return ::testing::AssertionFailure() << "vault: " << r.body;
    r = Kv("POST", vault, std::string("/keys/") + kKey + "/create",
           {{"kty", "RSA"}, {"key_size", 2048}});
    if (r.status != 200) return ::testing::AssertionFailure() << "key: " << r.body;
    return UpdateSpPolicy(vault, "add");
  }

  static std::string ClaimsOid(const std::string& token) {
    const size_t a = token.find('.');
    const size_t b = token.find('.', a + 1);
    if (a == std::string::npos || b == std::string::npos) return "";
    StatusOr<Bytes> payload = Base64UrlDecode(token.substr(a + 1, b - a - 1));
    if (!payload.ok()) return "";
    return Json::parse(AsStringView(*payload), nullptr, false).value("oid", "");
  }

  // A data-plane request as the admin.
  static http::ClientResponse Kv(const std::string& method, const std::string& vault,
                                 const std::string& path, const Json& body = nullptr) {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + *admin_vault_}};
    if (!body.is_null()) headers.emplace_back("Content-Type", "application/json");
    return server_->Call(method,
                         server_->vault_url(vault) + path + "?api-version=" + kKeysApiVersion,
                         headers, body.is_null() ? "" : body.dump());
  }

  static ::testing::AssertionResult SetKeyEnabled(const std::string& vault, bool enabled) {
    http::ClientResponse r =
        Kv("PATCH", vault, std::string("/keys/") + kKey, {{"attributes", {{"enabled", enabled}}}});
    if (r.status != 200) return ::testing::AssertionFailure() << r.body;
    return ::testing::AssertionSuccess();
  }

  // How many tokens the server has issued to the service principal.
  static int TokensIssued() {
    std::istringstream log(server_->Log());
    int n = 0;
    for (std::string line; std::getline(log, line);) {
      if (line.find("\"event\":\"token.issued\"") != std::string::npos &&
          line.find("\"principal_id\":\"" + sp_->oid + "\"") != std::string::npos) {
        ++n;
      }
    }
    return n;
  }

  // ---------------------------------------------------------------- the client's side

  static RemoteVaultOptions GoodOptions() {
    RemoteVaultOptions options;
    options.host_suffix = ".vault.localhost";
    options.client_id = sp_->app_id;
    options.client_secret = SecretBytes(AsBytes(sp_->secret), InsecureSecretAccess());
    options.ca_pem = server_->ca_pem();
    options.connect_address = "127.0.0.1";
    options.api_version = kKeysApiVersion;
    return options;
  }

  static std::unique_ptr<RemoteVaultClient> NewClient(RemoteVaultOptions options) {
    StatusOr<std::unique_ptr<RemoteVaultClient>> client =
        RemoteVaultClient::New(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static KeyReference Ref(const std::string& vault, const std::string& name = kKey,
                          const std::string& version = "") {
    return {server_->vault_url(vault) + "/", name, version};
  }

  static KeyfoundrydProcess* server_;
  static std::string* admin_;        // management token
  static std::string* admin_vault_;  // vault data-plane token
  static ServicePrincipal* sp_;
};

KeyfoundrydProcess* RemoteVaultClientTest::server_ = nullptr;
std::string* RemoteVaultClientTest::admin_ = nullptr;
std::string* RemoteVaultClientTest::admin_vault_ = nullptr;
RemoteVaultClientTest::ServicePrincipal* RemoteVaultClientTest::sp_ = nullptr;

// ------------------------------------------------------------------ the working setup

TEST_F(RemoteVaultClientTest, GetsWrapsAndUnwrapsWithOneToken) {
  ASSERT_TRUE(MakeVaultWithKey("kv-remote"));
  const int tokens_before = TokensIssued();
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);

  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-remote"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kty, "RSA");
  EXPECT_EQ(info->rsa_bits, 2048);
  EXPECT_TRUE(info->enabled);
  EXPECT_FALSE(info->not_before.has_value());
  EXPECT_FALSE(info->expires.has_value());
  EXPECT_NE(std::find(info->key_ops.begin(), info->key_ops.end(), "wrapKey"), info->key_ops.end());
  EXPECT_NE(std::find(info->key_ops.begin(), info->key_ops.end(), "unwrapKey"),
            info->key_ops.end());
  StatusOr<KeyReference> kid = ParseKid(info->kid);
  ASSERT_TRUE(kid.ok()) << kid.status();
  EXPECT_EQ(kid->vault_uri, server_->vault_url("kv-remote") + "/");
  EXPECT_EQ(kid->name, kKey);

  // The same version, named; and the vault URI without its slash.
  StatusOr<VaultKeyInfo> versioned =
      client->GetKey(kWho, {server_->vault_url("kv-remote"), kKey, kid->version});
  ASSERT_TRUE(versioned.ok()) << versioned.status();
  EXPECT_EQ(versioned->kid, info->kid);

  const SecretBytes dek = RandomKey();
  StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, Ref("kv-remote"), kAlg, dek);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->kid, info->kid);
  EXPECT_EQ(wrapped->value.size(), 256u);
  StatusOr<SecretBytes> unwrapped = client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(*unwrapped == dek);

  // With the version named, and RSA-OAEP.
  wrapped = client->WrapKey(kWho, Ref("kv-remote", kKey, kid->version), "RSA-OAEP", dek);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  unwrapped = client->UnwrapKey(kWho, wrapped->kid, "RSA-OAEP", wrapped->value);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(*unwrapped == dek);

  // Six calls, one token.
  EXPECT_EQ(TokensIssued() - tokens_before, 1);
}

TEST_F(RemoteVaultClientTest, AConfiguredAuthorityIsUsedInsteadOfTheChallenges) {
  ASSERT_TRUE(MakeVaultWithKey("kv-authority"));
  RemoteVaultOptions options = GoodOptions();
  options.authority = server_->base_url() + "/" + server_->tenant() + "/";
  std::unique_ptr<RemoteVaultClient> client = NewClient(std::move(options));
  ASSERT_NE(client, nullptr);
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-authority"));
  EXPECT_TRUE(info.ok()) << info.status();

  // An authority of another tenant issues no token.
  options = GoodOptions();
  options.authority = server_->base_url() + "/00000000-0000-4000-a000-00000000dead";
  client = NewClient(std::move(options));
  ASSERT_NE(client, nullptr);
  info = client->GetKey(kWho, Ref("kv-authority"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), StatusCode::kUnauthenticated) << info.status();
}

TEST_F(RemoteVaultClientTest, ThreadsAtOnceShareOneToken) {
  ASSERT_TRUE(MakeVaultWithKey("kv-threads"));
  const int tokens_before = TokensIssued();
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  std::atomic<int> failures{0};
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        const SecretBytes dek = RandomKey();
        StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, Ref("kv-threads"), kAlg, dek);
        StatusOr<SecretBytes> unwrapped =
            wrapped.ok() ? client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value)
                         : StatusOr<SecretBytes>(wrapped.status());
        if (!unwrapped.ok() || !(*unwrapped == dek)) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(TokensIssued() - tokens_before, 1);
}

TEST_F(RemoteVaultClientTest, TheTokenIsRefreshedShortlyBeforeItExpires) {
  ASSERT_TRUE(MakeVaultWithKey("kv-refresh"));
  FakeClock clock(std::chrono::system_clock::now());
  RemoteVaultOptions options = GoodOptions();
  options.clock = &clock;
  std::unique_ptr<RemoteVaultClient> client = NewClient(std::move(options));
  ASSERT_NE(client, nullptr);
  const int tokens_before = TokensIssued();
  ASSERT_TRUE(client->GetKey(kWho, Ref("kv-refresh")).ok());
  ASSERT_EQ(TokensIssued() - tokens_before, 1);

  // keyfoundryd's tokens live at least 5 minutes: a minute on, the token is still used.
  clock.Advance(std::chrono::minutes(1));
  ASSERT_TRUE(client->GetKey(kWho, Ref("kv-refresh")).ok());
  EXPECT_EQ(TokensIssued() - tokens_before, 1);

  // A day on, it is due: one new token, then reused.
  clock.Advance(std::chrono::hours(24));
  ASSERT_TRUE(client->GetKey(kWho, Ref("kv-refresh")).ok());
  ASSERT_TRUE(client->GetKey(kWho, Ref("kv-refresh")).ok());
  EXPECT_EQ(TokensIssued() - tokens_before, 2);
}

// ------------------------------------------------------------------ the error mapping

TEST_F(RemoteVaultClientTest, AnUnknownKeyIsNotFound) {
  ASSERT_TRUE(MakeVaultWithKey("kv-absent"));
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-absent", "no-such-key"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), StatusCode::kNotFound) << info.status();
  EXPECT_EQ(info.status().reason(), "KeyNotFound") << info.status();
  EXPECT_NE(info.status().message().find("no-such-key"), std::string::npos) << info.status();

  StatusOr<WrappedKey> wrapped =
      client->WrapKey(kWho, Ref("kv-absent", "no-such-key"), kAlg, RandomKey());
  ASSERT_FALSE(wrapped.ok());
  EXPECT_EQ(wrapped.status().code(), StatusCode::kNotFound) << wrapped.status();
  EXPECT_EQ(wrapped.status().reason(), "KeyNotFound") << wrapped.status();
}

TEST_F(RemoteVaultClientTest, PolicyRemovedIsAccessDeniedAndADisabledKeyIsKeyDisabled) {
  ASSERT_TRUE(MakeVaultWithKey("kv-denied"));
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  const SecretBytes dek = RandomKey();
  StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, Ref("kv-denied"), kAlg, dek);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();

  ASSERT_TRUE(UpdateSpPolicy("kv-denied", "remove"));
  StatusOr<SecretBytes> unwrapped = client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value);
  ASSERT_FALSE(unwrapped.ok());
  EXPECT_EQ(unwrapped.status().code(), StatusCode::kPermissionDenied) << unwrapped.status();
  EXPECT_EQ(unwrapped.status().reason(), "AccessDenied") << unwrapped.status();
  EXPECT_NE(unwrapped.status().message().find(sp_->oid), std::string::npos)
      << "the vault's message names the caller: " << unwrapped.status();
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-denied"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().reason(), "AccessDenied") << info.status();

  ASSERT_TRUE(UpdateSpPolicy("kv-denied", "add"));
  unwrapped = client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(*unwrapped == dek);

  ASSERT_TRUE(SetKeyEnabled("kv-denied", false));
  StatusOr<WrappedKey> refused = client->WrapKey(kWho, Ref("kv-denied"), kAlg, dek);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status();
  EXPECT_EQ(refused.status().reason(), "KeyDisabled") << refused.status();
  unwrapped = client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value);
  ASSERT_FALSE(unwrapped.ok());
  EXPECT_EQ(unwrapped.status().code(), StatusCode::kPermissionDenied) << unwrapped.status();
  EXPECT_EQ(unwrapped.status().reason(), "KeyDisabled") << unwrapped.status();
  // Its facts stay readable, and say so.
  info = client->GetKey(kWho, Ref("kv-denied"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->enabled);
}

TEST_F(RemoteVaultClientTest, AWrongValueToUnwrapIsBadParameter) {
  ASSERT_TRUE(MakeVaultWithKey("kv-garbage"));
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, Ref("kv-garbage"), kAlg, RandomKey());
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  wrapped->value[10] ^= 0x01;
  StatusOr<SecretBytes> unwrapped = client->UnwrapKey(kWho, wrapped->kid, kAlg, wrapped->value);
  ASSERT_FALSE(unwrapped.ok());
  EXPECT_EQ(unwrapped.status().code(), StatusCode::kInvalidArgument) << unwrapped.status();
  EXPECT_EQ(unwrapped.status().reason(), "BadParameter") << unwrapped.status();
}

TEST_F(RemoteVaultClientTest, AWrongSecretIsUnauthenticated) {
  ASSERT_TRUE(MakeVaultWithKey("kv-secret"));
  RemoteVaultOptions options = GoodOptions();
  std::string wrong = sp_->secret;
  wrong[0] = wrong[0] == 'x' ? 'y' : 'x';
  options.client_secret = SecretBytes(AsBytes(wrong), InsecureSecretAccess());
  std::unique_ptr<RemoteVaultClient> client = NewClient(std::move(options));
  ASSERT_NE(client, nullptr);
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-secret"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), StatusCode::kUnauthenticated) << info.status();
  EXPECT_EQ(info.status().message().find(wrong), std::string::npos);
  EXPECT_EQ(info.status().message().find(sp_->secret), std::string::npos);
  StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, Ref("kv-secret"), kAlg, RandomKey());
  ASSERT_FALSE(wrapped.ok());
  EXPECT_EQ(wrapped.status().code(), StatusCode::kUnauthenticated) << wrapped.status();
}

TEST_F(RemoteVaultClientTest, AnotherCaIsUnavailable) {
  ASSERT_TRUE(MakeVaultWithKey("kv-ca"));
  StatusOr<crypto::CertificateAndKey> other = crypto::GenerateCa("another CA");
  ASSERT_TRUE(other.ok()) << other.status();
  RemoteVaultOptions options = GoodOptions();
  options.ca_pem = other->certificate_pem;
  std::unique_ptr<RemoteVaultClient> client = NewClient(std::move(options));
  ASSERT_NE(client, nullptr);
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, Ref("kv-ca"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), StatusCode::kUnavailable) << info.status();
  EXPECT_TRUE(info.status().reason().empty()) << info.status().reason();
}

TEST_F(RemoteVaultClientTest, AnUnreachableVaultIsUnavailable) {
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  // Port 1 on 127.0.0.1: nobody listens there.
  const KeyReference ref = {"https://kv.vault.localhost:1/", kKey, ""};
  StatusOr<VaultKeyInfo> info = client->GetKey(kWho, ref);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), StatusCode::kUnavailable) << info.status();
}

TEST_F(RemoteVaultClientTest, VaultsOutsideTheHostSuffixAreRefusedUnsent) {
  std::unique_ptr<RemoteVaultClient> client = NewClient(GoodOptions());
  ASSERT_NE(client, nullptr);
  const std::string version = "0123456789abcdef0123456789abcdef";
  const std::string port = std::to_string(server_->port());
  for (const std::string& uri : {
           "https://kv.vault.other.example:" + port + "/",
           "https://kv.vault.localhost.other.example:" + port + "/",
           "https://kvvault.localhost:" + port + "/",
           "https://vault.localhost:" + port + "/",  // the suffix's own domain is not a vault
           "http://kv.vault.localhost:" + port + "/",
           "https://127.0.0.1:" + port + "/",
       }) {
    SCOPED_TRACE(uri);
    StatusOr<VaultKeyInfo> info = client->GetKey(kWho, {uri, kKey, ""});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), StatusCode::kInvalidArgument) << info.status();
    EXPECT_EQ(info.status().reason(), "BadParameter");
    StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, {uri, kKey, ""}, kAlg, RandomKey());
    ASSERT_FALSE(wrapped.ok());
    EXPECT_EQ(wrapped.status().code(), StatusCode::kInvalidArgument) << wrapped.status();
    EXPECT_EQ(wrapped.status().reason(), "BadParameter");
    std::string kid = uri;
    kid.append("keys/").append(kKey).append("/").append(version);
    StatusOr<SecretBytes> unwrapped = client->UnwrapKey(kWho, kid, kAlg, Bytes(256, 1));
    ASSERT_FALSE(unwrapped.ok());
    EXPECT_EQ(unwrapped.status().code(), StatusCode::kInvalidArgument) << unwrapped.status();
    EXPECT_EQ(unwrapped.status().reason(), "BadParameter");
    EXPECT_NE(unwrapped.status().message().find(uri.substr(0, uri.size() - 1)), std::string::npos)
        << unwrapped.status();
  }
  // Malformed references and arguments, on a served host.
  const std::string base = server_->vault_url("kv") + "/";
  const KeyReference bad_refs[] = {{base, "bad_name", ""},
                                   {base, "", ""},
                                   {base, kKey, "not-a-version"},
                                   {base + "keys/", kKey, ""},
                                   {base + "?x=1", kKey, ""}};
  for (const KeyReference& ref : bad_refs) {
    SCOPED_TRACE(ref.vault_uri + " " + ref.name + " " + ref.version);
    StatusOr<VaultKeyInfo> info = client->GetKey(kWho, ref);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().reason(), "BadParameter") << info.status();
  }
  StatusOr<WrappedKey> wrapped = client->WrapKey(kWho, {base, kKey, ""}, "RSA OAEP\"", RandomKey());
  EXPECT_EQ(wrapped.status().reason(), "BadParameter") << wrapped.status();
  wrapped = client->WrapKey(kWho, {base, kKey, ""}, kAlg, SecretBytes());
  EXPECT_EQ(wrapped.status().reason(), "BadParameter") << wrapped.status();
  StatusOr<SecretBytes> unwrapped =
      client->UnwrapKey(kWho, base + "keys/" + kKey + "/" + version, kAlg, ByteView());
  EXPECT_EQ(unwrapped.status().reason(), "BadParameter") << unwrapped.status();
}

// ------------------------------------------------------------------ the factory

TEST(RemoteVaultOptionsTest, NewRefusesEachBadOption) {
  auto good = [] {
    RemoteVaultOptions o;
    o.host_suffix = ".vault.example";
    o.client_id = "00000000-0000-4000-a000-000000000001";
    o.client_secret = SecretBytes(AsBytes("s3cret"), InsecureSecretAccess());
    o.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    return o;
  };
  EXPECT_TRUE(RemoteVaultClient::New(good()).ok());
  {
    RemoteVaultOptions o = good();
    o.ca_pem.clear();
    o.authority = "https://login.example/tenant";
    EXPECT_TRUE(RemoteVaultClient::New(std::move(o)).ok()) << "the system store, an authority";
  }

  using Change = void (*)(RemoteVaultOptions&);
  const std::pair<const char*, Change> changes[] = {
      {"empty suffix", [](RemoteVaultOptions& o) { o.host_suffix.clear(); }},
      {"suffix without dot", [](RemoteVaultOptions& o) { o.host_suffix = "vault.example"; }},
      {"suffix of one dot", [](RemoteVaultOptions& o) { o.host_suffix = "."; }},
      {"suffix bad char", [](RemoteVaultOptions& o) { o.host_suffix = ".vault.ex/ample"; }},
      {"no client id", [](RemoteVaultOptions& o) { o.client_id.clear(); }},
      {"no secret", [](RemoteVaultOptions& o) { o.client_secret = SecretBytes(); }},
      {"http authority", [](RemoteVaultOptions& o) { o.authority = "http://login.example/t"; }},
      {"authority query", [](RemoteVaultOptions& o) { o.authority = "https://l.example/t?x"; }},
      {"learned authority, no CA", [](RemoteVaultOptions& o) { o.ca_pem.clear(); }},
      {"CA not PEM", [](RemoteVaultOptions& o) { o.ca_pem = "not a certificate"; }},
      {"empty connect address", [](RemoteVaultOptions& o) { o.connect_address = ""; }},
      {"zero timeout", [](RemoteVaultOptions& o) { o.timeout = std::chrono::milliseconds(0); }},
      {"no api version", [](RemoteVaultOptions& o) { o.api_version.clear(); }},
      {"api version with &", [](RemoteVaultOptions& o) { o.api_version = "7.4&x=y"; }},
      {"no idle connections", [](RemoteVaultOptions& o) { o.max_idle_connections = 0; }},
  };
  for (const auto& [what, change] : changes) {
    SCOPED_TRACE(what);
    RemoteVaultOptions o = good();
    change(o);
    StatusOr<std::unique_ptr<RemoteVaultClient>> client = RemoteVaultClient::New(std::move(o));
    ASSERT_FALSE(client.ok());
    EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace keyfoundry::encryption
