// Access tokens: the OAuth2 token endpoint's logic (password and client_credentials grants),
// the managed-identity (IMDS-shaped) token, the OpenID discovery document and JWKS, and the
// verifier every API runs on a bearer token.
//
// Tokens are ES256 JWTs (crypto/jwt.h) signed with the deployment's one signing key, whose key
// id is its RFC 7638 thumbprint (so it is stable across restarts and changes with the key).
//
// Issuer. Entra ID's v2 issuer is "https://login.microsoftonline.com/{tenant}/v2.0"; ours is
// "{base_url}/{tenant}/v2.0" where base_url is the server's own "https://HOST:PORT". The token
// endpoint is "{base_url}/{tenant}/oauth2/v2.0/token", the JWKS "{base_url}/{tenant}/discovery/
// v2.0/keys", the discovery document "{base_url}/{tenant}/v2.0/.well-known/openid-configuration"
// (the HTTP layer routes them; "common" may stand for the tenant in request paths, but the
// issuer always names the real tenant).
//
// Audiences. Three resources take tokens, each named by its service host under the
// deployment's DOMAIN:
//   https://management.DOMAIN        the control plane (ARM-shaped API)
//   https://vault.DOMAIN             the key vault data plane
//   https://cognitiveservices.DOMAIN the AI data plane
// A client asks with the v2 "scope" form "https://vault.DOMAIN/.default" or the v1 "resource"
// form "https://vault.DOMAIN". Either may carry ":PORT" after DOMAIN and a trailing '/' (the
// SDKs build the scope from the 401 challenge, "https://vault.DOMAIN:PORT", and some append
// "/.default" to a resource that ends in '/'). Host names compare case-insensitively. Whatever
// the form, the token's "aud" is the normalised "https://vault.DOMAIN": no port, no slash. The
// verifier normalises both sides the same way, so a caller may pass its expected audience with
// or without the port.
//
// Claims (as Entra ID's v1 access tokens, whose names the Azure SDKs and tools know):
//   iss, aud, iat, nbf (= iat), exp (= iat + lifetime), uti (a random token id, for audit),
//   sub = oid (the principal's object id), tid (tenant), appid (client id), idtyp ("user" or
//   "app"); users add upn and name (the username); service principals app_displayname; managed
//   identities xms_mirid (the resource id of the resource the identity belongs to).
// A user token's appid is the client_id the request named when it is a UUID (the app the user
// signed in with), else kDefaultUserAppId.
//
// Thread safety: TokenIssuer and TokenVerifier are immutable after construction and may be used
// from many threads at once.
#ifndef KEYFOUNDRY_IDENTITY_TOKENS_H_
#define KEYFOUNDRY_IDENTITY_TOKENS_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ecdsa.h"
#include "crypto/jwt.h"
#include "identity/directory.h"

namespace keyfoundry::identity {

// The appid of user tokens requested without a UUID client_id: keyfoundry's own public client
// (the CLI and the portal), in the role the Azure CLI's well-known id plays for Entra ID.
inline constexpr std::string_view kDefaultUserAppId = "a1b2c3d4-6b66-4f00-8c11-6b6579666f75";
inline constexpr std::chrono::seconds kDefaultTokenLifetime{3600};

enum class Service {
  kManagement = 1,
  kVault = 2,
  kCognitiveServices = 3,
};

// "https://management.DOMAIN", "https://vault.DOMAIN", "https://cognitiveservices.DOMAIN"
// (DOMAIN lower-cased); empty for a non-enumerator.
std::string AudienceFor(Service service, std::string_view domain);

// Lower-cases the scheme and host of an "https://host[:port][/...]" string, removes ":port" and
// trailing '/'s. Other strings are returned lower-cased and without trailing '/'s.
std::string NormalizeAudience(std::string_view audience);

// The audience named by an OAuth2 v2 "scope" parameter: space-separated scopes of which exactly
// one is "{resource}/.default" for one of our three resources; the OpenID scopes "openid",
// "profile", "offline_access" and "email" (which MSAL adds) are ignored. InvalidArgument with a
// message saying what to send otherwise.
StatusOr<std::string> AudienceFromScope(std::string_view scope, std::string_view domain);
// The audience named by a v1 "resource" parameter ("https://vault.DOMAIN[:PORT][/]").
StatusOr<std::string> AudienceFromResource(std::string_view resource, std::string_view domain);

struct TokenIssuerOptions {
  std::string base_url;   // "https://HOST:PORT" as clients reach the server; a trailing '/' is cut
  std::string tenant_id;  // a UUID
  std::string domain = "localhost";                       // the DOMAIN of the audiences
  std::chrono::seconds lifetime = kDefaultTokenLifetime;  // 5 minutes to 24 hours
};

struct IssuedToken {
  std::string access_token;
  std::string token_id;  // the "uti" claim
  std::string audience;
  int64_t issued_at = 0;  // seconds since the epoch
  int64_t expires_at = 0;
};

class TokenIssuer {
 public:
  // InvalidArgument unless base_url starts with "https://", tenant_id is a UUID, domain is a
  // host name, the lifetime is within bounds and the key is P-256. `clock` must outlive the
  // issuer.
  static StatusOr<std::unique_ptr<TokenIssuer>> New(TokenIssuerOptions options,
                                                    crypto::EcPrivateKey signing_key,
                                                    const Clock& clock = Clock::Real());

  const std::string& issuer() const { return issuer_; }  // "{base_url}/{tenant}/v2.0"
  const std::string& key_id() const { return key_id_; }
  const std::string& tenant_id() const { return options_.tenant_id; }
  const std::string& domain() const { return options_.domain; }
  std::chrono::seconds lifetime() const { return options_.lifetime; }
  std::string token_endpoint() const;  // "{base_url}/{tenant}/oauth2/v2.0/token"
  std::string jwks_uri() const;        // "{base_url}/{tenant}/discovery/v2.0/keys"

  // A token for `principal` to call `audience` (any form AudienceFromResource accepts).
  // `client_app_id` is used for a user's appid claim (see the file comment). InvalidArgument
  // for an unknown audience or an incomplete principal.
  StatusOr<IssuedToken> Issue(const Principal& principal, std::string_view audience,
                              std::string_view client_app_id = {}) const;

  // {"keys":[{"kty":"EC","crv":"P-256","x","y","kid","use":"sig","alg":"ES256"}]}
  const nlohmann::json& Jwks() const { return jwks_; }
  // The OpenID Connect discovery document (issuer, token_endpoint, jwks_uri,
  // id_token_signing_alg_values_supported ["ES256"], ...). It names an authorization_endpoint,
  // which MSAL requires to be present although this server has no interactive sign-in.
  nlohmann::json OpenIdConfiguration() const;

  // A key set holding this issuer's public key, for a TokenVerifier.
  StatusOr<crypto::JwtKeySet> VerificationKeys() const;

 private:
  TokenIssuer(TokenIssuerOptions options, crypto::EcPrivateKey key, std::string key_id,
              nlohmann::json jwks, const Clock& clock);

  const TokenIssuerOptions options_;
  const std::string issuer_;
  const crypto::EcPrivateKey key_;
  const std::string key_id_;
  const nlohmann::json jwks_;
  const Clock& clock_;
};

// --- the token endpoint

// The form fields of a token request, as received (absent ones empty). Client authentication
// by HTTP Basic (client_secret_basic) is decoded into client_id and client_secret by the HTTP
// layer.
struct TokenRequest {
  std::string grant_type;  // "password" or "client_credentials"
  std::string username;
  SecretBytes password;
  std::string client_id;
  SecretBytes client_secret;
  std::string scope;     // v2
  std::string resource;  // v1, used when scope is empty
};

// What to send back: the status and JSON body to answer with (the HTTP layer adds
// "Cache-Control: no-store", as RFC 6749 section 5.1 requires), and what to log.
struct OAuthResponse {
  int http_status = 0;  // 200, 400, 401, 500 or 503
  nlohmann::json body;  // the success or error JSON
  // For logs and the audit trail only, never for the client:
  std::string principal_id;  // the authenticated principal's oid, on success
  std::string failure;       // why it failed, more precisely than the body says
};

// Runs a token request:
//   200 {"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":"..."}
//   400 invalid_request         a required field is missing (named in error_description)
//   400 unsupported_grant_type  grant_type is neither "password" nor "client_credentials"
//   400 invalid_scope           the scope/resource is not one of ours (the description lists
//                               the accepted scopes)
//   400 invalid_grant           wrong username or password (the same answer for both)
//   401 invalid_client          wrong client_id or client_secret (the same answer for both)
//   503 temporarily_unavailable / 500 server_error  a store or crypto failure
// Errors are {"error": ..., "error_description": ...}.
OAuthResponse HandleTokenRequest(const TokenRequest& request, const Directory& directory,
                                 const TokenIssuer& issuer);

// A token for the managed identity of the platform resource `resource_id` (the caller has
// established that the request comes from that resource), for `resource` (a v1 resource, as
// IMDS takes it). The body has IMDS's shape, numbers as strings:
//   {"access_token","client_id","expires_in","expires_on","ext_expires_in","not_before",
//    "resource","token_type":"Bearer"}
// 400 invalid_resource for a resource that is not ours; 400 invalid_request "Identity not
// found" when the resource has no managed identity.
OAuthResponse HandleManagedIdentityTokenRequest(std::string_view resource_id,
                                                std::string_view resource,
                                                const Directory& directory,
                                                const TokenIssuer& issuer);

// --- verification

// Who is calling, from a verified token.
struct Caller {
  std::string object_id;  // oid
  std::string tenant_id;  // tid
  std::string app_id;     // appid
  PrincipalKind kind{};
  std::string name;         // users: the username; service principals: the display name;
                            // managed identities: the resource id
  std::string resource_id;  // managed identities: xms_mirid
  std::string token_id;     // uti, for the audit trail
  int64_t expires_at = 0;
};

enum class TokenRejection {
  kInvalid = 1,        // malformed, forged, wrong issuer or tenant, not one of ours
  kExpired = 2,        // past exp (plus skew): the client should get a new token
  kWrongAudience = 3,  // a good token for another resource
};

struct TokenVerifyFailure {
  TokenRejection rejection{};
  crypto::JwtFailure detail{};  // for logs
};

class TokenVerifier {
 public:
  // Verifies tokens of `issuer` for tenant `tenant_id` signed by a key of `keys`. `clock` must
  // outlive the verifier.
  TokenVerifier(std::string issuer, std::string_view tenant_id, crypto::JwtKeySet keys,
                const Clock& clock = Clock::Real(),
                std::chrono::seconds clock_skew = crypto::kDefaultJwtClockSkew);
  // The verifier of `issuer`'s tokens.
  static StatusOr<TokenVerifier> For(const TokenIssuer& issuer, const Clock& clock = Clock::Real());

  // Verifies `bearer_token` (the token, or "Bearer <token>") for `expected_audience` (e.g.
  // "https://vault.DOMAIN:PORT"; compared after NormalizeAudience). Unauthenticated with
  //   "the token is invalid", "the token has expired", or
  //   "the token is not for this resource: request a token for {audience}"
  // and *failure (when not null) set. Successes are cached (by a hash of the audience and the
  // token) until the token expires, so a client's repeated requests cost one verification.
  StatusOr<Caller> Verify(std::string_view bearer_token, std::string_view expected_audience,
                          TokenVerifyFailure* failure = nullptr) const;

 private:
  struct Cache;
  StatusOr<Caller> VerifyUncached(std::string_view bearer_token, std::string_view expected_audience,
                                  TokenVerifyFailure* failure) const;

  std::string issuer_;
  std::string tenant_id_;
  crypto::JwtKeySet keys_;
  const Clock* clock_;
  std::chrono::seconds clock_skew_;
  std::shared_ptr<Cache> cache_;  // shared by copies of this verifier
};

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_TOKENS_H_
