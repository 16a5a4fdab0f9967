#include "identity/tokens.h"

#include <gtest/gtest.h>

#include "common/encoding.h"
#include "crypto/jwk.h"
#include "identity/ids.h"
#include "identity/test_util.h"

namespace keyfoundry::identity {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr std::string_view kBaseUrl = "https://localhost:8443";
constexpr std::string_view kVault = "https://vault.localhost";
constexpr std::string_view kManagement = "https://management.localhost";
constexpr std::string_view kAccountId =
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/"
    "Microsoft.CognitiveServices/accounts/a1";

// --- scopes and audiences

TEST(AudienceTest, ScopeFormsMapToTheAudienceWithoutPort) {
  const std::pair<const char*, const char*> cases[] = {
      {"https://management.localhost/.default", "https://management.localhost"},
      {"https://management.localhost:8443/.default", "https://management.localhost"},
      {"https://management.localhost//.default", "https://management.localhost"},
      {"https://management.localhost:8443//.default", "https://management.localhost"},
      {"https://vault.localhost/.default", "https://vault.localhost"},
      {"https://vault.localhost:443/.default", "https://vault.localhost"},
      {"HTTPS://VAULT.LOCALHOST:8443/.DEFAULT", "https://vault.localhost"},
      {"https://cognitiveservices.localhost/.default", "https://cognitiveservices.localhost"},
      {"https://cognitiveservices.localhost:1/.default", "https://cognitiveservices.localhost"},
      // MSAL adds the OpenID scopes; they are ignored.
      {"https://vault.localhost:8443/.default offline_access openid profile",
       "https://vault.localhost"},
      {"openid  https://vault.localhost/.default", "https://vault.localhost"},
  };
  for (const auto& [scope, audience] : cases) {
    auto got = AudienceFromScope(scope, "localhost");
    ASSERT_TRUE(got.ok()) << scope << ": " << got.status();
    EXPECT_EQ(*got, audience) << scope;
  }
}

TEST(AudienceTest, ScopeFormsRefused) {
  for (const char* scope : {
           "",
           "openid profile",
           "https://vault.localhost",
           "https://vault.localhost/keys.read",
           "https://vault.localhost/.default https://management.localhost/.default",
           "http://vault.localhost/.default",
           "https://vault.example.com/.default",
           "https://evil.vault.localhost/.default",
           "https://vault.localhost.evil/.default",
           "https://storage.localhost/.default",
           "https://vault.localhost:0/.default",
           "https://vault.localhost:65536/.default",
           "https://vault.localhost:abc/.default",
           "https://vault.localhost:/.default",
           "https://user@vault.localhost/.default",
           "https://vault.localhost/path/.default",
           "https://vault.localhost?x/.default",
           "/.default",
           "https:///.default",
       }) {
    auto got = AudienceFromScope(scope, "localhost");
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << scope;
  }
  // The message names what to ask for.
  EXPECT_NE(AudienceFromScope("https://x/.default", "localhost")
                .status()
                .message()
                .find("https://vault.localhost/.default"),
            std::string::npos);
}

TEST(AudienceTest, ResourceForms) {
  EXPECT_EQ(*AudienceFromResource("https://vault.localhost", "localhost"), kVault);
  EXPECT_EQ(*AudienceFromResource("https://vault.localhost:8443/", "localhost"), kVault);
  EXPECT_EQ(*AudienceFromResource("https://management.kf.test:8443", "KF.test"),
            "https://management.kf.test");
  EXPECT_FALSE(AudienceFromResource("https://vault.localhost/.default", "localhost").ok());
  EXPECT_FALSE(AudienceFromResource("vault.localhost", "localhost").ok());
}

TEST(AudienceTest, NormalizeAudience) {
  EXPECT_EQ(NormalizeAudience("https://vault.localhost:8443"), kVault);
  EXPECT_EQ(NormalizeAudience("https://VAULT.localhost/"), kVault);
  EXPECT_EQ(NormalizeAudience("https://vault.localhost"), kVault);
  EXPECT_EQ(NormalizeAudience("https://vault.localhost:8443/x"), "https://vault.localhost/x");
  EXPECT_EQ(NormalizeAudience("api://Something/"), "api://something");
  EXPECT_EQ(AudienceFor(Service::kCognitiveServices, "LocalHost"),
            "https://cognitiveservices.localhost");
  EXPECT_EQ(AudienceFor(Service{}, "localhost"), "");
}

// --- issuing and verifying

class TokensTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    issuer_ = MakeIssuer(key_);
    auto verifier = TokenVerifier::For(*issuer_, clock_);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = std::make_unique<TokenVerifier>(*std::move(verifier));
    user_ = *directory_->CreateUser("alice", Secret("pw"));
  }

  std::unique_ptr<TokenIssuer> MakeIssuer(const crypto::EcPrivateKey& key) {
    auto scalar = key.PrivateScalar();
    auto point = key.PublicKey()->Coordinates();
    auto copy =
        crypto::EcPrivateKey::FromComponents(crypto::EcCurve::kP256, point->x, point->y, *scalar);
    auto issuer = TokenIssuer::New(
        {.base_url = std::string(kBaseUrl) + "/", .tenant_id = std::string(kTestTenant)},
        *std::move(copy), clock_);
    EXPECT_TRUE(issuer.ok()) << issuer.status();
    return issuer.ok() ? *std::move(issuer) : nullptr;
  }

  std::string IssueFor(const Principal& principal, std::string_view audience = kVault) {
    auto token = issuer_->Issue(principal, audience);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? token->access_token : "";
  }

  // Verifies and expects a refusal; returns its category.
  TokenVerifyFailure Refusal(std::string_view token, std::string_view audience = kVault) {
    TokenVerifyFailure failure{};
    auto caller = verifier_->Verify(token, audience, &failure);
    EXPECT_FALSE(caller.ok());
    if (!caller.ok()) EXPECT_EQ(caller.status().code(), StatusCode::kUnauthenticated);
    return failure;
  }

  crypto::EcPrivateKey key_ = *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256);
  std::unique_ptr<TokenIssuer> issuer_;
  std::unique_ptr<TokenVerifier> verifier_;
  Principal user_;
};

TEST_F(TokensTest, IssuerNamesAndEndpoints) {
  const std::string tenant(kTestTenant);
  EXPECT_EQ(issuer_->issuer(), "https://localhost:8443/" + tenant + "/v2.0");
  EXPECT_EQ(issuer_->token_endpoint(), "https://localhost:8443/" + tenant + "/oauth2/v2.0/token");
  EXPECT_EQ(issuer_->jwks_uri(), "https://localhost:8443/" + tenant + "/discovery/v2.0/keys");
  EXPECT_EQ(issuer_->key_id(), *crypto::JwkThumbprint(*key_.PublicKey()));
  EXPECT_EQ(issuer_->lifetime(), seconds(3600));
}

TEST_F(TokensTest, NewRefusesBadOptions) {
  auto make = [&](TokenIssuerOptions options) {
    return TokenIssuer::New(std::move(options),
                            *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256), clock_)
        .status()
        .code();
  };
  const std::string tenant(kTestTenant);
  EXPECT_EQ(make({.base_url = "http://localhost", .tenant_id = tenant}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(make({.base_url = "https://", .tenant_id = tenant}), StatusCode::kInvalidArgument);
  EXPECT_EQ(make({.base_url = "https://h", .tenant_id = "common"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(make({.base_url = "https://h", .tenant_id = tenant, .domain = "bad domain"}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(make({.base_url = "https://h", .tenant_id = tenant, .lifetime = seconds(10)}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(make({.base_url = "https://h", .tenant_id = tenant}), StatusCode::kOk);
  EXPECT_EQ(TokenIssuer::New({.base_url = "https://h", .tenant_id = tenant},
                             *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP384), clock_)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(TokensTest, UserTokenClaimsAndRoundTrip) {
  auto token = issuer_->Issue(user_, "https://vault.localhost:8443/");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->audience, kVault);
  EXPECT_EQ(token->issued_at, kTestStart);
  EXPECT_EQ(token->expires_at, kTestStart + 3600);
  const json claims = UnverifiedClaims(token->access_token);
  EXPECT_EQ(claims["aud"], kVault);
  EXPECT_EQ(claims["iss"], issuer_->issuer());
  EXPECT_EQ(claims["tid"], kTestTenant);
  EXPECT_EQ(claims["oid"], user_.object_id);
  EXPECT_EQ(claims["sub"], user_.object_id);
  EXPECT_EQ(claims["appid"], kDefaultUserAppId);
  EXPECT_EQ(claims["idtyp"], "user");
  EXPECT_EQ(claims["upn"], "alice");
  EXPECT_EQ(claims["name"], "alice");
  EXPECT_EQ(claims["iat"], kTestStart);
  EXPECT_EQ(claims["nbf"], kTestStart);
  EXPECT_EQ(claims["exp"], kTestStart + 3600);
  EXPECT_EQ(claims["uti"], token->token_id);

  for (std::string_view audience : {kVault, std::string_view("https://vault.localhost:8443"),
                                    std::string_view("https://VAULT.localhost:8443/")}) {
    auto caller = verifier_->Verify(token->access_token, audience);
    ASSERT_TRUE(caller.ok()) << audience << ": " << caller.status();
    EXPECT_EQ(caller->object_id, user_.object_id);
    EXPECT_EQ(caller->tenant_id, kTestTenant);
    EXPECT_EQ(caller->app_id, kDefaultUserAppId);
    EXPECT_EQ(caller->kind, PrincipalKind::kUser);
    EXPECT_EQ(caller->name, "alice");
    EXPECT_EQ(caller->token_id, token->token_id);
    EXPECT_EQ(caller->expires_at, kTestStart + 3600);
  }
  EXPECT_TRUE(verifier_->Verify("Bearer " + token->access_token, kVault).ok());
  EXPECT_TRUE(verifier_->Verify("bearer " + token->access_token, kVault).ok());
}

TEST_F(TokensTest, UserTokenTakesTheClientAppIdWhenItIsAGuid) {
  const std::string cli = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
  EXPECT_EQ(UnverifiedClaims(issuer_->Issue(user_, kVault, cli)->access_token)["appid"], cli);
  EXPECT_EQ(UnverifiedClaims(issuer_->Issue(user_, kVault, "not-a-guid")->access_token)["appid"],
            kDefaultUserAppId);
}

TEST_F(TokensTest, ServicePrincipalAndManagedIdentityTokens) {
  auto sp = *directory_->CreateServicePrincipal("pipeline");
  auto caller = verifier_->Verify(IssueFor(sp.principal, kManagement), kManagement);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->kind, PrincipalKind::kServicePrincipal);
  EXPECT_EQ(caller->app_id, sp.principal.app_id);
  EXPECT_EQ(caller->object_id, sp.principal.object_id);
  EXPECT_EQ(caller->name, "pipeline");
  EXPECT_EQ(UnverifiedClaims(IssueFor(sp.principal))["idtyp"], "app");

  auto mi = *directory_->CreateManagedIdentity(kAccountId);
  const std::string token = IssueFor(mi);
  EXPECT_EQ(UnverifiedClaims(token)["xms_mirid"], kAccountId);
  caller = verifier_->Verify(token, kVault);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->kind, PrincipalKind::kManagedIdentity);
  EXPECT_EQ(caller->resource_id, kAccountId);
  EXPECT_EQ(caller->app_id, mi.app_id);
}

TEST_F(TokensTest, IssueRefusesUnknownAudienceOrIncompletePrincipal) {
  EXPECT_EQ(issuer_->Issue(user_, "https://storage.localhost").status().code(),
            StatusCode::kInvalidArgument);
  Principal broken = user_;
  broken.object_id = "";
  EXPECT_EQ(issuer_->Issue(broken, kVault).status().code(), StatusCode::kInvalidArgument);
  broken = user_;
  broken.kind = PrincipalKind{};
  EXPECT_EQ(issuer_->Issue(broken, kVault).status().code(), StatusCode::kInvalidArgument);
  broken = user_;
  broken.kind = PrincipalKind::kServicePrincipal;  // without an app id
  EXPECT_EQ(issuer_->Issue(broken, kVault).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TokensTest, VerifyRefusesExpiredTokens) {
  const std::string token = IssueFor(user_);
  clock_.Advance(seconds(3600 + 59));
  EXPECT_TRUE(verifier_->Verify(token, kVault).ok());  // within the skew
  clock_.Advance(seconds(1));
  TokenVerifyFailure failure = Refusal(token);
  EXPECT_EQ(failure.rejection, TokenRejection::kExpired);
  EXPECT_EQ(failure.detail, crypto::JwtFailure::kExpired);
  EXPECT_EQ(verifier_->Verify(token, kVault).status(),
            UnauthenticatedError("the token has expired"));
}

// Verified tokens are cached per audience: a token accepted for the vault is still refused for
// another resource afterwards, and a cached token still expires.
TEST_F(TokensTest, CachedVerificationKeepsAudienceAndExpiry) {
  const std::string token = IssueFor(user_);
  ASSERT_TRUE(verifier_->Verify(token, kVault).ok());
  ASSERT_TRUE(verifier_->Verify("Bearer " + token, kVault).ok());
  TokenVerifyFailure failure;
  EXPECT_FALSE(verifier_->Verify(token, kManagement, &failure).ok());
  EXPECT_EQ(failure.rejection, TokenRejection::kWrongAudience);
  clock_.Advance(seconds(3600 + 60));
  EXPECT_EQ(verifier_->Verify(token, kVault).status(),
            UnauthenticatedError("the token has expired"));
}

TEST_F(TokensTest, VerifyRefusesTokensNotYetValid) {
  // Issued by a clock two minutes ahead of the verifier's.
  FakeClock ahead(clock_.Now() + seconds(120));
  auto issuer =
      TokenIssuer::New({.base_url = std::string(kBaseUrl), .tenant_id = std::string(kTestTenant)},
                       *crypto::EcPrivateKey::FromComponents(
                           crypto::EcCurve::kP256, key_.PublicKey()->Coordinates()->x,
                           key_.PublicKey()->Coordinates()->y, *key_.PrivateScalar()),
                       ahead);
  ASSERT_TRUE(issuer.ok());
  const std::string token = (*issuer)->Issue(user_, kVault)->access_token;
  TokenVerifyFailure failure = Refusal(token);
  EXPECT_EQ(failure.rejection, TokenRejection::kInvalid);
  EXPECT_EQ(failure.detail, crypto::JwtFailure::kNotYetValid);
  clock_.Advance(seconds(61));
  EXPECT_TRUE(verifier_->Verify(token, kVault).ok());
}

TEST_F(TokensTest, VerifyRefusesAnotherAudience) {
  const std::string token = IssueFor(user_, kManagement);
  TokenVerifyFailure failure = Refusal(token, kVault);
  EXPECT_EQ(failure.rejection, TokenRejection::kWrongAudience);
  EXPECT_EQ(verifier_->Verify(token, "https://vault.localhost:8443").status(),
            UnauthenticatedError(
                "the token is not for this resource: request a token for https://vault.localhost"));
  EXPECT_EQ(Refusal(token, "https://management.localhost.evil").rejection,
            TokenRejection::kWrongAudience);
}

TEST_F(TokensTest, VerifyRefusesAnotherIssuerOrTenant) {
  const std::string token = IssueFor(user_);
  TokenVerifier other_issuer("https://localhost:9999/" + std::string(kTestTenant) + "/v2.0",
                             std::string(kTestTenant), *issuer_->VerificationKeys(), clock_);
  TokenVerifyFailure failure{};
  EXPECT_FALSE(other_issuer.Verify(token, kVault, &failure).ok());
  EXPECT_EQ(failure.rejection, TokenRejection::kInvalid);
  EXPECT_EQ(failure.detail, crypto::JwtFailure::kWrongIssuer);

  TokenVerifier other_tenant(issuer_->issuer(), "11111111-2222-3333-4444-555555555555",
                             *issuer_->VerificationKeys(), clock_);
  EXPECT_FALSE(other_tenant.Verify(token, kVault, &failure).ok());
  EXPECT_EQ(failure.detail, crypto::JwtFailure::kWrongIssuer);
}

TEST_F(TokensTest, VerifyRefusesTokensOfAnotherKey) {
  const crypto::EcPrivateKey other = *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256);
  auto other_issuer = MakeIssuer(other);
  const std::string token = other_issuer->Issue(user_, kVault)->access_token;
  EXPECT_EQ(Refusal(token).detail, crypto::JwtFailure::kUnknownKeyId);
  // The same claims under our kid but another key's signature.
  json claims = UnverifiedClaims(token);
  const std::string forged = *crypto::SignJwt(other, issuer_->key_id(), claims);
  EXPECT_EQ(Refusal(forged).detail, crypto::JwtFailure::kBadSignature);
}

TEST_F(TokensTest, VerifyRefusesTamperedAndUnsignedTokens) {
  const std::string token = IssueFor(user_);
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.find('.', dot1 + 1);
  // Claims changed to another principal, signature kept.
  json claims = UnverifiedClaims(token);
  claims["oid"] = "00000000-0000-0000-0000-000000000001";
  claims["sub"] = claims["oid"];
  const std::string swapped =
      token.substr(0, dot1) + "." + Base64UrlEncode(AsBytes(claims.dump())) + token.substr(dot2);
  EXPECT_EQ(Refusal(swapped).detail, crypto::JwtFailure::kBadSignature);
  // alg "none".
  const std::string none =
      Base64UrlEncode(AsBytes(R"({"alg":"none","kid":")" + issuer_->key_id() + R"("})")) + "." +
      Base64UrlEncode(AsBytes(claims.dump())) + ".AA";
  EXPECT_EQ(Refusal(none).detail, crypto::JwtFailure::kAlgNone);
  for (const char* garbage : {"", "Bearer", "Bearer ", "x.y.z", "null", "{}"}) {
    EXPECT_EQ(Refusal(garbage).rejection, TokenRejection::kInvalid) << garbage;
  }
}

TEST_F(TokensTest, VerifyRefusesSignedTokensMissingOurClaims) {
  json claims = UnverifiedClaims(IssueFor(user_));
  for (const char* name : {"tid", "oid", "appid", "idtyp"}) {
    json changed = claims;
    changed.erase(name);
    EXPECT_EQ(Refusal(*crypto::SignJwt(key_, issuer_->key_id(), changed)).rejection,
              TokenRejection::kInvalid)
        << name;
  }
  json bad_type = claims;
  bad_type["idtyp"] = "device";
  EXPECT_EQ(Refusal(*crypto::SignJwt(key_, issuer_->key_id(), bad_type)).rejection,
            TokenRejection::kInvalid);
  json sub_differs = claims;
  sub_differs["sub"] = "00000000-0000-0000-0000-000000000001";
  EXPECT_EQ(Refusal(*crypto::SignJwt(key_, issuer_->key_id(), sub_differs)).rejection,
            TokenRejection::kInvalid);
}

TEST_F(TokensTest, JwksPublishesTheVerificationKey) {
  const json& jwks = issuer_->Jwks();
  ASSERT_TRUE(jwks["keys"].is_array());
  ASSERT_EQ(jwks["keys"].size(), 1u);
  const json& key = jwks["keys"][0];
  EXPECT_EQ(key["kty"], "EC");
  EXPECT_EQ(key["crv"], "P-256");
  EXPECT_EQ(key["use"], "sig");
  EXPECT_EQ(key["alg"], "ES256");
  EXPECT_EQ(key["kid"], issuer_->key_id());
  // A relying party that knows only the JWKS can verify our tokens.
  auto parsed = crypto::ParseJwk(key.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  crypto::JwtKeySet keys;
  ASSERT_TRUE(
      keys.Add(key["kid"].get<std::string>(), std::get<crypto::EcPublicKey>(*std::move(parsed)))
          .ok());
  EXPECT_TRUE(crypto::VerifyJwt(IssueFor(user_), keys).ok());
}

TEST_F(TokensTest, OpenIdConfiguration) {
  const json doc = issuer_->OpenIdConfiguration();
  EXPECT_EQ(doc["issuer"], issuer_->issuer());
  EXPECT_EQ(doc["token_endpoint"], issuer_->token_endpoint());
  EXPECT_EQ(doc["jwks_uri"], issuer_->jwks_uri());
  EXPECT_TRUE(doc["authorization_endpoint"].is_string());
  EXPECT_EQ(doc["id_token_signing_alg_values_supported"], json::array({"ES256"}));
  EXPECT_EQ(doc["response_types_supported"], json::array({"token"}));
  EXPECT_EQ(doc["subject_types_supported"], json::array({"public"}));
  EXPECT_EQ(doc["grant_types_supported"], json::array({"password", "client_credentials"}));
}

// --- the token endpoint

class TokenEndpointTest : public TokensTest {
 protected:
  TokenRequest PasswordRequest() {
    TokenRequest request;
    request.grant_type = "password";
    request.username = "alice";
    request.password = Secret("pw");
    request.client_id = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
    request.scope = "https://vault.localhost:8443/.default offline_access openid profile";
    return request;
  }

  OAuthResponse Run(const TokenRequest& request) {
    return HandleTokenRequest(request, *directory_, *issuer_);
  }

  void ExpectError(const OAuthResponse& response, int status, std::string_view error) {
    EXPECT_EQ(response.http_status, status) << response.body.dump();
    EXPECT_EQ(response.body["error"], error) << response.body.dump();
    EXPECT_TRUE(response.body["error_description"].is_string());
    EXPECT_FALSE(response.body.contains("access_token"));
    EXPECT_FALSE(response.failure.empty());
    EXPECT_TRUE(response.principal_id.empty());
  }
};

TEST_F(TokenEndpointTest, PasswordGrant) {
  const OAuthResponse response = Run(PasswordRequest());
  ASSERT_EQ(response.http_status, 200) << response.body.dump();
  EXPECT_EQ(response.body["token_type"], "Bearer");
  EXPECT_EQ(response.body["expires_in"], 3600);
  EXPECT_EQ(response.body["ext_expires_in"], 3600);
  EXPECT_EQ(response.principal_id, user_.object_id);
  const std::string token = response.body["access_token"].get<std::string>();
  auto caller = verifier_->Verify(token, "https://vault.localhost:8443");
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->object_id, user_.object_id);
  EXPECT_EQ(caller->app_id, "04b07795-8ddb-461a-bbee-02f9e1bf7b46");
}

TEST_F(TokenEndpointTest, ClientCredentialsGrantWithScopeOrResource) {
  auto sp = *directory_->CreateServicePrincipal("ci");
  TokenRequest request;
  request.grant_type = "client_credentials";
  request.client_id = sp.principal.app_id;
  request.client_secret = sp.secret.secret.Clone();
  request.scope = "https://management.localhost/.default";
  OAuthResponse response = Run(request);
  ASSERT_EQ(response.http_status, 200) << response.body.dump();
  EXPECT_EQ(response.principal_id, sp.principal.object_id);
  EXPECT_TRUE(
      verifier_->Verify(response.body["access_token"].get<std::string>(), kManagement).ok());

  request.scope.clear();
  request.resource = "https://cognitiveservices.localhost:8443";
  response = Run(request);
  ASSERT_EQ(response.http_status, 200) << response.body.dump();
  EXPECT_EQ(UnverifiedClaims(response.body["access_token"].get<std::string>())["aud"],
            "https://cognitiveservices.localhost");
}

TEST_F(TokenEndpointTest, GrantTypeErrors) {
  TokenRequest request = PasswordRequest();
  request.grant_type = "";
  ExpectError(Run(request), 400, "invalid_request");
  for (const char* grant : {"authorization_code", "refresh_token", "Password", "implicit"}) {
    request.grant_type = grant;
    ExpectError(Run(request), 400, "unsupported_grant_type");
  }
}

TEST_F(TokenEndpointTest, MissingFieldsAreInvalidRequest) {
  TokenRequest request = PasswordRequest();
  request.scope.clear();
  ExpectError(Run(request), 400, "invalid_request");
  request = PasswordRequest();
  request.username.clear();
  ExpectError(Run(request), 400, "invalid_request");
  request = PasswordRequest();
  request.password = SecretBytes();
  ExpectError(Run(request), 400, "invalid_request");

  TokenRequest client;
  client.grant_type = "client_credentials";
  client.scope = "https://vault.localhost/.default";
  client.client_secret = Secret("s");
  ExpectError(Run(client), 400, "invalid_request");
  client.client_id = "00000000-0000-0000-0000-000000000000";
  client.client_secret = SecretBytes();
  ExpectError(Run(client), 400, "invalid_request");
}

TEST_F(TokenEndpointTest, BadScopeIsInvalidScope) {
  TokenRequest request = PasswordRequest();
  for (const char* scope : {"https://graph.microsoft.com/.default", "openid",
                            "https://vault.localhost/user_impersonation"}) {
    request.scope = scope;
    ExpectError(Run(request), 400, "invalid_scope");
  }
  request.scope.clear();
  request.resource = "https://vault.azure.net";
  ExpectError(Run(request), 400, "invalid_scope");
}

TEST_F(TokenEndpointTest, WrongPasswordAndUnknownUserGetTheSameAnswer) {
  TokenRequest request = PasswordRequest();
  request.password = Secret("wrong");
  const OAuthResponse wrong_password = Run(request);
  ExpectError(wrong_password, 400, "invalid_grant");
  request = PasswordRequest();
  request.username = "mallory";
  const OAuthResponse unknown_user = Run(request);
  ExpectError(unknown_user, 400, "invalid_grant");
  EXPECT_EQ(wrong_password.body, unknown_user.body);
}

TEST_F(TokenEndpointTest, WrongClientSecretIsInvalidClient) {
  auto sp = *directory_->CreateServicePrincipal("ci");
  TokenRequest request;
  request.grant_type = "client_credentials";
  request.client_id = sp.principal.app_id;
  request.client_secret = Secret("not-the-secret");
  request.scope = "https://vault.localhost/.default";
  const OAuthResponse wrong_secret = Run(request);
  ExpectError(wrong_secret, 401, "invalid_client");
  request.client_id = "00000000-0000-0000-0000-000000000000";
  const OAuthResponse unknown_client = Run(request);
  ExpectError(unknown_client, 401, "invalid_client");
  EXPECT_EQ(wrong_secret.body, unknown_client.body);
  // A user's credentials are no client credentials.
  request.client_id = "alice";
  request.client_secret = Secret("pw");
  ExpectError(Run(request), 401, "invalid_client");
}

TEST_F(TokenEndpointTest, ManagedIdentityToken) {
  auto mi = *directory_->CreateManagedIdentity(kAccountId);
  const OAuthResponse response = HandleManagedIdentityTokenRequest(
      kAccountId, "https://vault.localhost:8443", *directory_, *issuer_);
  ASSERT_EQ(response.http_status, 200) << response.body.dump();
  EXPECT_EQ(response.body["token_type"], "Bearer");
  EXPECT_EQ(response.body["client_id"], mi.app_id);
  EXPECT_EQ(response.body["expires_in"], "3600");
  EXPECT_EQ(response.body["ext_expires_in"], "3600");
  EXPECT_EQ(response.body["expires_on"], std::to_string(kTestStart + 3600));
  EXPECT_EQ(response.body["not_before"], std::to_string(kTestStart));
  EXPECT_EQ(response.body["resource"], kVault);
  EXPECT_EQ(response.principal_id, mi.object_id);
  auto caller = verifier_->Verify(response.body["access_token"].get<std::string>(), kVault);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->kind, PrincipalKind::kManagedIdentity);
  EXPECT_EQ(caller->object_id, mi.object_id);
}

TEST_F(TokenEndpointTest, ManagedIdentityTokenErrors) {
  ExpectError(HandleManagedIdentityTokenRequest(kAccountId, kVault, *directory_, *issuer_), 400,
              "invalid_request");  // no identity yet
  ASSERT_TRUE(directory_->CreateManagedIdentity(kAccountId).ok());
  ExpectError(HandleManagedIdentityTokenRequest(kAccountId, "https://vault.azure.net", *directory_,
                                                *issuer_),
              400, "invalid_resource");
  ExpectError(HandleManagedIdentityTokenRequest(kAccountId, "", *directory_, *issuer_), 400,
              "invalid_request");
}

}  // namespace
}  // namespace keyfoundry::identity
