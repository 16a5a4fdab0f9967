// The identity provider and authorization of the real keyfoundryd over HTTPS: both grant
// types, discovery and JWKS, the managed-identity endpoint, every kind of bad token refused
// with 401 and the challenge, and role assignments allowing and denying as defined.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/encoding.h"
#include "crypto/ecdsa.h"
#include "crypto/jwk.h"
#include "crypto/jwt.h"
#include "http/url.h"
#include "identity/authorization.h"
#include "identity/directory.h"
#include "identity/signing_key.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/keyfoundryd_process.h"

namespace keyfoundry {
namespace {

using testutil::Body;
using testutil::Claims;
using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;

std::string Form(std::initializer_list<std::pair<std::string, std::string>> fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += k + "=" + http::PercentEncode(v);
  }
  return out;
}

class IdentityApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new KeyfoundrydProcess(KF_KEYFOUNDRYD); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  static http::ClientResponse TokenRequest(const std::string& form,
                                           const std::string& tenant = "") {
    return server_->Call("POST",
                         "/" + (tenant.empty() ? server_->tenant() : tenant) + "/oauth2/v2.0/token",
                         {{"Content-Type", "application/x-www-form-urlencoded"}}, form);
  }

  static Json CreateServicePrincipal(const std::string& name) {
    http::ClientResponse r = server_->Call("POST", "/v1.0/servicePrincipals",
                                           {{"Authorization", "Bearer " + server_->AdminToken()},
                                            {"Content-Type", "application/json"}},
                                           Json{{"displayName", name}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }

  static std::string SpToken(const Json& sp, const std::string& scope) {
    return server_->Token(Form({{"grant_type", "client_credentials"},
                                {"client_id", sp["appId"]},
                                {"client_secret", sp["secretText"]},
                                {"scope", scope}}));
  }

  static http::ClientResponse Assign(const std::string& token, const std::string& scope,
                                     const std::string& principal, std::string_view role) {
    static int n = 0;
    char name[40];
    std::snprintf(name, sizeof(name), "00000000-0000-4000-8000-%012d", ++n);
    return server_->Call(
        "PUT",
        scope + "/providers/Microsoft.Authorization/roleAssignments/" + name +
            "?api-version=2022-04-01",
        {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}},
        Json{{"properties",
              {{"roleDefinitionId", "/subscriptions/" + server_->subscription() +
                                        "/providers/Microsoft.Authorization/roleDefinitions/" +
                                        std::string(role)},
               {"principalId", principal}}}}
            .dump());
  }

  std::string sub_scope() const { return "/subscriptions/" + server_->subscription(); }
  std::string management_scope() const { return "https://management.localhost/.default"; }

  static KeyfoundrydProcess* server_;
};

KeyfoundrydProcess* IdentityApiTest::server_ = nullptr;

TEST_F(IdentityApiTest, PasswordGrantInV2AndV1FormsGivesTokensForTheRightAudience) {
  const std::string port = std::to_string(server_->port());
  for (const std::string& form :
       {Form({{"grant_type", "password"},
              {"username", "admin"},
              {"password", KeyfoundrydProcess::kAdminPassword},
              {"scope", "https://vault.localhost/.default"}}),
        Form({{"grant_type", "password"},
              {"username", "ADMIN"},
              {"password", KeyfoundrydProcess::kAdminPassword},
              {"scope", "https://vault.localhost:" + port + "/.default"}}),
        Form({{"grant_type", "password"},
              {"username", "admin"},
              {"password", KeyfoundrydProcess::kAdminPassword},
              {"resource", "https://vault.localhost:" + port}})}) {
    http::ClientResponse r = TokenRequest(form);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("Cache-Control").value_or(""), "no-store");
    Json body = Body(r);
    EXPECT_EQ(body["token_type"], "Bearer");
    EXPECT_GT(body["expires_in"].get<int>(), 0);
    Json claims = Claims(body["access_token"]);
    EXPECT_EQ(claims["aud"], "https://vault.localhost");
    EXPECT_EQ(claims["tid"], server_->tenant());
    EXPECT_EQ(claims["upn"], "admin");
    EXPECT_TRUE(claims.contains("oid") && claims.contains("exp") && claims.contains("nbf"));
  }
  // "common" stands for the tenant in the path.
  EXPECT_EQ(TokenRequest(Form({{"grant_type", "password"},
                               {"username", "admin"},
                               {"password", KeyfoundrydProcess::kAdminPassword},
                               {"scope", management_scope()}}),
                         "common")
                .status,
            200);
}

TEST_F(IdentityApiTest, ClientCredentialsGrantWithFormOrBasicAuthentication) {
  Json sp = CreateServicePrincipal("grant-test");
  ASSERT_TRUE(sp.contains("appId") && sp.contains("secretText"));
  std::string token = SpToken(sp, management_scope());
  Json claims = Claims(token);
  EXPECT_EQ(claims["appid"], sp["appId"]);
  EXPECT_EQ(claims["oid"], sp["id"]);
  EXPECT_EQ(claims["idtyp"], "app");

  const std::string basic = Base64Encode(
      AsBytes(sp["appId"].get<std::string>() + ":" + sp["secretText"].get<std::string>()));
  http::ClientResponse r = server_->Call(
      "POST", "/" + server_->tenant() + "/oauth2/v2.0/token",
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", "Basic " + basic}},
      Form({{"grant_type", "client_credentials"}, {"scope", management_scope()}}));
  EXPECT_EQ(r.status, 200) << r.body;

  // A service principal without a role sees no subscription.
  http::ClientResponse subs = server_->Call("GET", "/subscriptions?api-version=2022-12-01",
                                            {{"Authorization", "Bearer " + token}});
  ASSERT_EQ(subs.status, 200);
  EXPECT_TRUE(Body(subs)["value"].empty());
}

TEST_F(IdentityApiTest, BadCredentialsAndMalformedTokenRequestsGetOAuthErrors) {
  Json sp = CreateServicePrincipal("bad-credentials");
  struct Case {
    std::string form;
    int status;
    std::string error;
  };
  const std::vector<Case> cases = {
      {Form({{"grant_type", "password"},
             {"username", "admin"},
             {"password", "wrong"},
             {"scope", management_scope()}}),
       400, "invalid_grant"},
      {Form({{"grant_type", "password"},
             {"username", "nobody"},
             {"password", "wrong"},
             {"scope", management_scope()}}),
       400, "invalid_grant"},
      {Form({{"grant_type", "client_credentials"},
             {"client_id", sp["appId"]},
             {"client_secret", "not-the-secret"},
             {"scope", management_scope()}}),
       401, "invalid_client"},
      {Form({{"grant_type", "authorization_code"}, {"scope", management_scope()}}), 400,
       "unsupported_grant_type"},
      {Form({{"grant_type", "password"},
             {"username", "admin"},
             {"password", KeyfoundrydProcess::kAdminPassword},
             {"scope", "https://graph.microsoft.com/.default"}}),
       400, "invalid_scope"},
      {Form({{"grant_type", "password"}, {"password", "x"}, {"scope", management_scope()}}), 400,
       "invalid_request"},
      {"grant_type=password&grant_type=client_credentials", 400, "invalid_request"},
  };
  for (const Case& c : cases) {
    http::ClientResponse r = TokenRequest(c.form);
    EXPECT_EQ(r.status, c.status) << c.form << " " << r.body;
    EXPECT_EQ(Body(r).value("error", ""), c.error) << c.form;
    EXPECT_FALSE(Body(r).value("error_description", "").empty());
  }
  EXPECT_EQ(TokenRequest(Form({{"grant_type", "password"}}), "some-other-tenant").status, 400);
}

TEST_F(IdentityApiTest, DiscoveryAndJwksVerifyIssuedTokens) {
  http::ClientResponse config =
      server_->Call("GET", "/" + server_->tenant() + "/v2.0/.well-known/openid-configuration");
  ASSERT_EQ(config.status, 200);
  Json doc = Body(config);
  EXPECT_EQ(doc["issuer"], server_->base_url() + "/" + server_->tenant() + "/v2.0");
  EXPECT_EQ(doc["token_endpoint"],
            server_->base_url() + "/" + server_->tenant() + "/oauth2/v2.0/token");

  http::ClientResponse jwks =
      server_->Call("GET", "/" + server_->tenant() + "/discovery/v2.0/keys");
  ASSERT_EQ(jwks.status, 200);
  Json key = Body(jwks)["keys"][0];
  EXPECT_EQ(key["alg"], "ES256");
  auto parsed = crypto::ParseJwk(key.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  crypto::JwtKeySet keys;
  ASSERT_TRUE(keys.Add(key["kid"], std::get<crypto::EcPublicKey>(std::move(*parsed))).ok());
  EXPECT_TRUE(crypto::VerifyJwt(server_->AdminToken(), keys).ok());
}

// Every kind of bad token, on the key vault's data plane: 401 with the challenge, before
// anything else about the request is looked at.
TEST_F(IdentityApiTest, EveryBadTokenIsRefusedWith401AndTheChallenge) {
  const std::string good = server_->AdminToken("vault");
  ASSERT_EQ(Claims(good)["aud"], "https://vault.localhost");
  auto key = identity::LoadSigningKey(server_->data_dir() + "/token-signing-key.json");
  ASSERT_TRUE(key.ok()) << key.status();
  auto kid = crypto::JwkThumbprint(key->PublicKey().value());
  ASSERT_TRUE(kid.ok());
  const Json claims = Claims(good);
  const int64_t now = claims["iat"].get<int64_t>();
  auto forge = [&](const std::function<void(Json&)>& edit) {
    Json c = claims;
    edit(c);
    return crypto::SignJwt(*key, *kid, c).value_or("");
  };
  auto other_key = crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256);
  ASSERT_TRUE(other_key.ok());
  std::string altered = good;
  {
    // Same signature, claims changed (oid of someone else).
    Json c = claims;
    c["oid"] = "00000000-0000-0000-0000-000000000000";
    size_t a = good.find('.'), b = good.find('.', a + 1);
    altered = good.substr(0, a + 1) + Base64UrlEncode(AsBytes(c.dump())) + good.substr(b);
  }
  const std::map<std::string, std::string> bad = {
      {"missing", ""},
      {"garbage", "not-a-token"},
      {"alg none", Base64UrlEncode(AsBytes(R"({"alg":"none","typ":"JWT"})")) + "." +
                       Base64UrlEncode(AsBytes(claims.dump())) + "."},
      {"bad signature", crypto::SignJwt(*other_key, *kid, claims).value_or("")},
      {"altered claims", altered},
      {"expired", forge([&](Json& c) {
         c["iat"] = now - 7200;
         c["nbf"] = now - 7200;
         c["exp"] = now - 3600;
       })},
      {"future nbf", forge([&](Json& c) { c["nbf"] = now + 3600; })},
      {"wrong audience", server_->AdminToken("management")},
      {"wrong issuer", forge([&](Json& c) { c["iss"] = "https://login.example.com/x/v2.0"; })},
      {"wrong tenant", forge([&](Json& c) { c["tid"] = "11111111-1111-4111-8111-111111111111"; })},
  };
  const std::string challenge =
      "Bearer authorization=\"" + server_->base_url() + "/" + server_->tenant() +
      "\", resource=\"https://vault.localhost:" + std::to_string(server_->port()) + "\"";
  for (const auto& [what, token] : bad) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    // No api-version and an unknown path: authentication still comes first.
    http::ClientResponse r =
        server_->Call("GET", server_->vault_url("anyvault") + "/keys", headers);
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
    EXPECT_EQ(r.Header("WWW-Authenticate").value_or(""), challenge) << what;
  }
  // The good token passes authentication; then the api-version is checked, then the vault
  // (which does not exist).
  http::ClientResponse no_version = server_->Call("GET", server_->vault_url("anyvault") + "/keys",
                                                  {{"Authorization", "Bearer " + good}});
  EXPECT_EQ(no_version.status, 400) << no_version.body;
  http::ClientResponse ok =
      server_->Call("GET", server_->vault_url("anyvault") + "/keys?api-version=7.5",
                    {{"Authorization", "Bearer " + good}});
  EXPECT_EQ(ok.status, 404) << ok.body;
  EXPECT_NE(ok.body.find("VaultNotFound"), std::string::npos) << ok.body;

  // The control plane refuses them too, with ARM's codes.
  http::ClientResponse expired =
      server_->Call("GET", "/subscriptions?api-version=2022-12-01",
                    {{"Authorization", "Bearer " + forge([&](Json& c) {
                                         c["aud"] = "https://management.localhost";
                                         c["exp"] = now - 3600;
                                       })}});
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(Body(expired)["error"]["code"], "ExpiredAuthenticationToken");
  http::ClientResponse wrong = server_->Call("GET", "/subscriptions?api-version=2022-12-01",
                                             {{"Authorization", "Bearer " + good}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(Body(wrong)["error"]["code"], "InvalidAuthenticationToken");
}

TEST_F(IdentityApiTest, RolesAllowAndDenyAsDefined) {
  const std::string admin = server_->AdminToken();
  Json sp = CreateServicePrincipal("rbac-test");
  Json target = CreateServicePrincipal("rbac-target");
  const std::string token = SpToken(sp, management_scope());
  const std::string rg = sub_scope() + "/resourceGroups/rg1";
  const std::string list_path =
      sub_scope() + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01";

  // No role: cannot read or write role assignments.
  http::ClientResponse r = server_->Call("GET", list_path, {{"Authorization", "Bearer " + token}});
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Body(r)["error"]["code"], "AuthorizationFailed");
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find(sp["id"].get<std::string>()),
            std::string::npos);

  // Reader at the subscription: can read, cannot assign.
  ASSERT_EQ(Assign(admin, sub_scope(), sp["id"], identity::role_ids::kReader).status, 201);
  EXPECT_EQ(server_->Call("GET", list_path, {{"Authorization", "Bearer " + token}}).status, 200);
  EXPECT_EQ(Assign(token, sub_scope(), target["id"], identity::role_ids::kReader).status, 403);

  // Owner of one resource group: can assign there, not at the subscription or another group.
  ASSERT_EQ(Assign(admin, rg, sp["id"], identity::role_ids::kOwner).status, 201);
  EXPECT_EQ(Assign(token, rg, target["id"], identity::role_ids::kKeyVaultCryptoUser).status, 201);
  EXPECT_EQ(Assign(token, rg + "/providers/Microsoft.KeyVault/vaults/v1", target["id"],
                   identity::role_ids::kKeyVaultReader)
                .status,
            201);
  EXPECT_EQ(Assign(token, sub_scope(), target["id"], identity::role_ids::kReader).status, 403);
  EXPECT_EQ(
      Assign(token, sub_scope() + "/resourceGroups/rg2", target["id"], identity::role_ids::kReader)
          .status,
      403);

  // Contributor cannot assign roles (its notActions), even where it may do everything else.
  Json contributor = CreateServicePrincipal("rbac-contributor");
  ASSERT_EQ(Assign(admin, sub_scope(), contributor["id"], identity::role_ids::kContributor).status,
            201);
  EXPECT_EQ(Assign(SpToken(contributor, management_scope()), rg, target["id"],
                   identity::role_ids::kReader)
                .status,
            403);

  // The same principal, role and scope twice: 409; an unknown principal or role: 400.
  EXPECT_EQ(Assign(admin, rg, target["id"], identity::role_ids::kKeyVaultCryptoUser).status, 409);
  EXPECT_EQ(
      Assign(admin, rg, "22222222-2222-4222-8222-222222222222", identity::role_ids::kReader).status,
      400);
  EXPECT_EQ(Assign(admin, rg, target["id"], "33333333-3333-4333-8333-333333333333").status, 400);
}

TEST_F(IdentityApiTest, ManagementRequestsNeedAnApiVersion) {
  http::ClientResponse r = server_->Call("GET", "/subscriptions",
                                         {{"Authorization", "Bearer " + server_->AdminToken()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "MissingApiVersionParameter");
}

TEST_F(IdentityApiTest, ManagedIdentityEndpointServesOnlyThePlatform) {
  const std::string resource_id = "/subscriptions/" + server_->subscription() +
                                  "/resourceGroups/rg/providers/Microsoft.CognitiveServices/"
                                  "accounts/acct1";
  {
    // The platform gives its resources identities; here the test does it through the store.
    auto store = storage::SqliteMetadataStore::Open(server_->data_dir() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    auto directory = identity::Directory::New(**store, server_->tenant());
    ASSERT_TRUE(directory.ok());
    ASSERT_TRUE((*directory)->CreateManagedIdentity(resource_id).ok());
  }
  const std::string path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" +
                           http::PercentEncode("https://vault.localhost") +
                           "&mi_res_id=" + http::PercentEncode(resource_id);
  const std::string secret = ReadFile(server_->data_dir() + "/platform-secret").value_or("");

  http::ClientResponse no_metadata = server_->Call("GET", path);
  EXPECT_EQ(no_metadata.status, 400);
  EXPECT_EQ(Body(no_metadata)["error_description"], "Required metadata header not specified");

  // An outside caller: Metadata header but no platform secret, or a wrong one.
  for (const std::string& guess : {std::string(), std::string("guess"), secret + "x"}) {
    std::vector<std::pair<std::string, std::string>> headers = {{"Metadata", "true"}};
    if (!guess.empty()) headers.emplace_back("X-KeyFoundry-Platform-Secret", guess);
    http::ClientResponse r = server_->Call("GET", path, headers);
    EXPECT_EQ(r.status, 403) << guess;
    EXPECT_FALSE(Body(r).contains("access_token"));
  }

  http::ClientResponse ok =
      server_->Call("GET", path, {{"Metadata", "true"}, {"X-KeyFoundry-Platform-Secret", secret}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  Json claims = Claims(Body(ok)["access_token"]);
  EXPECT_EQ(claims["aud"], "https://vault.localhost");
  EXPECT_EQ(claims["xms_mirid"], resource_id);
}

TEST_F(IdentityApiTest, HealthAndDiscoveryAnswerWithoutATokenAndMetricsNeedOne) {
  EXPECT_EQ(server_->Call("GET", "/healthz").status, 200);
  EXPECT_EQ(server_->Call("GET", "/readyz").status, 200);
  EXPECT_EQ(server_->Call("GET", "/metadata/endpoints?api-version=2019-05-01").status, 200);
  EXPECT_EQ(server_->Call("GET", "/metrics").status, 401);
  http::ClientResponse metrics =
      server_->Call("GET", "/metrics", {{"Authorization", "Bearer " + server_->AdminToken()}});
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("kf_http_requests_total"), std::string::npos);
}

}  // namespace
}  // namespace keyfoundry
