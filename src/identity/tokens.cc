#include "identity/tokens.h"

#include <charconv>
#include <exception>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "common/mutex.h"
#include "crypto/digest.h"
#include "crypto/random.h"
#include "identity/ids.h"

namespace keyfoundry::identity {
namespace {

using Json = nlohmann::json;

constexpr Service kServices[] = {Service::kManagement, Service::kVault,
                                 Service::kCognitiveServices};
constexpr size_t kMaxScopeParameterSize = 2048;
constexpr std::chrono::seconds kMinLifetime{300};
constexpr std::chrono::seconds kMaxLifetime{86400};

std::string_view ServiceHostLabel(Service service) {
  switch (service) {
    case Service::kManagement:
      return "management";
    case Service::kVault:
      return "vault";
    case Service::kCognitiveServices:
      return "cognitiveservices";
  }
  return {};
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

bool IsHostName(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '.' || host.front() == '-' ||
      host.back() == '.' || host.back() == '-') {
    return false;
  }
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsPort(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && end == port.data() + port.size() && value >= 1 && value <= 65535;
}

std::string AcceptedScopes(std::string_view domain) {
  return AudienceFor(Service::kManagement, domain) + "/.default, " +
         AudienceFor(Service::kVault, domain) + "/.default or " +
         AudienceFor(Service::kCognitiveServices, domain) + "/.default";
}

OAuthResponse Error(int http_status, std::string_view error, std::string description,
                    std::string failure) {
  OAuthResponse out;
  out.http_status = http_status;
  out.body = {{"error", std::string(error)}, {"error_description", std::move(description)}};
  out.failure = std::move(failure);
  return out;
}

// A store or crypto failure: the client may retry an unavailable store.
OAuthResponse ServerError(const Status& status) {
  if (status.code() == StatusCode::kUnavailable) {
    return Error(503, "temporarily_unavailable", "the service is busy; retry shortly",
                 status.ToString());
  }
  return Error(500, "server_error", "the token could not be issued", status.ToString());
}

std::optional<std::string> StringClaim(const Json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

std::string AudienceFor(Service service, std::string_view domain) {
  const std::string_view label = ServiceHostLabel(service);
  if (label.empty()) return {};
  return "https://" + std::string(label) + "." + ToLowerAscii(domain);
}

std::string NormalizeAudience(std::string_view audience) {
  while (!audience.empty() && audience.back() == '/') audience.remove_suffix(1);
  constexpr std::string_view kHttps = "https://";
  if (!StartsWithIgnoreCase(audience, kHttps)) return ToLowerAscii(audience);
  std::string_view rest = audience.substr(kHttps.size());
  const size_t path = rest.find('/');
  std::string_view authority = rest.substr(0, path);
  const std::string_view tail = path == std::string_view::npos ? "" : rest.substr(path);
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && IsPort(authority.substr(colon + 1))) {
    authority = authority.substr(0, colon);
  }
  return "https://" + ToLowerAscii(authority) + std::string(tail);
}

StatusOr<std::string> AudienceFromResource(std::string_view resource, std::string_view domain) {
  auto refuse = [&]() {
    return InvalidArgumentError("the resource '" + std::string(resource.substr(0, 200)) +
                                "' is not served here: ask for " + AcceptedScopes(domain));
  };
  constexpr std::string_view kHttps = "https://";
  if (resource.size() > kMaxScopeParameterSize || !StartsWithIgnoreCase(resource, kHttps)) {
    return refuse();
  }
  std::string_view authority = resource.substr(kHttps.size());
  while (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
  if (authority.find_first_of("/?#@\\ ") != std::string_view::npos) return refuse();
  const size_t colon = authority.find(':');
  if (colon != std::string_view::npos) {
    if (!IsPort(authority.substr(colon + 1))) return refuse();
    authority = authority.substr(0, colon);
  }
  for (Service service : kServices) {
    const std::string host = std::string(ServiceHostLabel(service)) + "." + ToLowerAscii(domain);
    if (EqualsIgnoreCase(authority, host)) return AudienceFor(service, domain);
  }
  return refuse();
}

StatusOr<std::string> AudienceFromScope(std::string_view scope, std::string_view domain) {
  if (scope.size() > kMaxScopeParameterSize) {
    return InvalidArgumentError("the scope parameter is too long");
  }
  std::vector<std::string_view> resources;
  size_t start = 0;
  while (start <= scope.size()) {
    size_t end = scope.find(' ', start);
    if (end == std::string_view::npos) end = scope.size();
    const std::string_view item = scope.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    if (EqualsIgnoreCase(item, "openid") || EqualsIgnoreCase(item, "profile") ||
        EqualsIgnoreCase(item, "offline_access") || EqualsIgnoreCase(item, "email")) {
      continue;
    }
    resources.push_back(item);
  }
  if (resources.size() != 1) {
    return InvalidArgumentError(std::string(resources.empty()
                                                ? "the scope names no resource"
                                                : "the scope names more than one resource") +
                                ": ask for one of " + AcceptedScopes(domain));
  }
  constexpr std::string_view kDefault = "/.default";
  std::string_view item = resources.front();
  if (item.size() <= kDefault.size() ||
      !EqualsIgnoreCase(item.substr(item.size() - kDefault.size()), kDefault)) {
    return InvalidArgumentError("the scope '" + std::string(item.substr(0, 200)) +
                                "' is not supported: only .default scopes are, e.g. " +
                                AcceptedScopes(domain));
  }
  item.remove_suffix(kDefault.size());
  return AudienceFromResource(item, domain);
}

// --- TokenIssuer

StatusOr<std::unique_ptr<TokenIssuer>> TokenIssuer::New(TokenIssuerOptions options,
                                                        crypto::EcPrivateKey signing_key,
                                                        const Clock& clock) {
  while (!options.base_url.empty() && options.base_url.back() == '/') options.base_url.pop_back();
  if (!StartsWithIgnoreCase(options.base_url, "https://") || options.base_url.size() <= 8 ||
      options.base_url.find_first_of("?# \t\r\n") != std::string::npos) {
    return InvalidArgumentError("the issuer base URL must be https://HOST[:PORT]");
  }
  if (!IsUuid(options.tenant_id)) return InvalidArgumentError("the tenant id must be a UUID");
  options.tenant_id = ToLowerAscii(options.tenant_id);
  if (!IsHostName(options.domain)) return InvalidArgumentError("the domain must be a host name");
  options.domain = ToLowerAscii(options.domain);
  if (options.lifetime < kMinLifetime || options.lifetime > kMaxLifetime) {
    return InvalidArgumentError("the token lifetime must be 5 minutes to 24 hours");
  }
  if (signing_key.curve() != crypto::EcCurve::kP256) {
    return InvalidArgumentError("the token signing key must be a P-256 key");
  }
  ASSIGN_OR_RETURN(crypto::EcPublicKey public_key, signing_key.PublicKey());
  ASSIGN_OR_RETURN(std::string key_id, crypto::JwkThumbprint(public_key));
  ASSIGN_OR_RETURN(crypto::EcCoordinates point, public_key.Coordinates());
  Json jwks = {{"keys", Json::array({{{"kty", "EC"},
                                      {"crv", "P-256"},
                                      {"x", Base64UrlEncode(point.x)},
                                      {"y", Base64UrlEncode(point.y)},
                                      {"kid", key_id},
                                      {"use", "sig"},
                                      {"alg", "ES256"}}})}};
  return std::unique_ptr<TokenIssuer>(new TokenIssuer(std::move(options), std::move(signing_key),
                                                      std::move(key_id), std::move(jwks), clock));
}

TokenIssuer::TokenIssuer(TokenIssuerOptions options, crypto::EcPrivateKey key, std::string key_id,
                         nlohmann::json jwks, const Clock& clock)
    : options_(std::move(options)),
      issuer_(options_.base_url + "/" + options_.tenant_id + "/v2.0"),
      key_(std::move(key)),
      key_id_(std::move(key_id)),
      jwks_(std::move(jwks)),
      clock_(clock) {}

std::string TokenIssuer::token_endpoint() const {
  return options_.base_url + "/" + options_.tenant_id + "/oauth2/v2.0/token";
}

std::string TokenIssuer::jwks_uri() const {
  return options_.base_url + "/" + options_.tenant_id + "/discovery/v2.0/keys";
}

StatusOr<IssuedToken> TokenIssuer::Issue(const Principal& principal, std::string_view audience,
                                         std::string_view client_app_id) const {
  IssuedToken out;
  ASSIGN_OR_RETURN(out.audience, AudienceFromResource(audience, options_.domain));
  if (!IsUuid(principal.object_id)) return InvalidArgumentError("the principal has no object id");
  ASSIGN_OR_RETURN(Bytes uti, crypto::RandomBytes(16));
  out.token_id = Base64UrlEncode(uti);
  out.issued_at = UnixSeconds(clock_);
  out.expires_at = out.issued_at + options_.lifetime.count();
  Json claims = {{"aud", out.audience},        {"iss", issuer_},
                 {"iat", out.issued_at},       {"nbf", out.issued_at},
                 {"exp", out.expires_at},      {"oid", principal.object_id},
                 {"sub", principal.object_id}, {"tid", options_.tenant_id},
                 {"uti", out.token_id}};
  switch (principal.kind) {
    case PrincipalKind::kUser:
      claims["idtyp"] = "user";
      claims["appid"] =
          IsUuid(client_app_id) ? ToLowerAscii(client_app_id) : std::string(kDefaultUserAppId);
      claims["upn"] = principal.display_name;
      claims["name"] = principal.display_name;
      break;
    case PrincipalKind::kServicePrincipal:
      if (!IsUuid(principal.app_id)) return InvalidArgumentError("the principal has no app id");
      claims["idtyp"] = "app";
      claims["appid"] = principal.app_id;
      claims["app_displayname"] = principal.display_name;
      break;
    case PrincipalKind::kManagedIdentity:
      if (!IsUuid(principal.app_id) || principal.resource_id.empty()) {
        return InvalidArgumentError("the managed identity has no app id or resource");
      }
      claims["idtyp"] = "app";
      claims["appid"] = principal.app_id;
      claims["xms_mirid"] = principal.resource_id;
      break;
  }
  if (!claims.contains("idtyp")) return InvalidArgumentError("the principal has no valid kind");
  ASSIGN_OR_RETURN(out.access_token, crypto::SignJwt(key_, key_id_, claims));
  return out;
}

nlohmann::json TokenIssuer::OpenIdConfiguration() const {
  const std::string tenant_base = options_.base_url + "/" + options_.tenant_id;
  return {
      {"issuer", issuer_},
      {"authorization_endpoint", tenant_base + "/oauth2/v2.0/authorize"},
      {"token_endpoint", token_endpoint()},
      {"jwks_uri", jwks_uri()},
      {"token_endpoint_auth_methods_supported",
       Json::array({"client_secret_post", "client_secret_basic"})},
      {"grant_types_supported", Json::array({"password", "client_credentials"})},
      {"response_types_supported", Json::array({"token"})},
      {"subject_types_supported", Json::array({"public"})},
      {"id_token_signing_alg_values_supported", Json::array({"ES256"})},
      {"scopes_supported", Json::array({"openid", "profile", "email", "offline_access"})},
      {"claims_supported",
       Json::array({"iss", "aud", "exp", "nbf", "iat", "sub", "oid", "tid", "appid", "idtyp", "upn",
                    "name", "app_displayname", "xms_mirid", "uti"})},
      {"tenant_id", options_.tenant_id},
  };
}

StatusOr<crypto::JwtKeySet> TokenIssuer::VerificationKeys() const {
  crypto::JwtKeySet keys;
  ASSIGN_OR_RETURN(crypto::EcPublicKey public_key, key_.PublicKey());
  RETURN_IF_ERROR(keys.Add(key_id_, std::move(public_key)));
  return keys;
}

// --- the token endpoint

OAuthResponse HandleTokenRequest(const TokenRequest& request, const Directory& directory,
                                 const TokenIssuer& issuer) {
  const std::string& domain = issuer.domain();
  if (request.grant_type.empty()) {
    return Error(400, "invalid_request",
                 "grant_type is required: use \"password\" or \"client_credentials\"",
                 "missing grant_type");
  }
  const bool password_grant = request.grant_type == "password";
  if (!password_grant && request.grant_type != "client_credentials") {
    return Error(400, "unsupported_grant_type",
                 "grant_type must be \"password\" or \"client_credentials\"",
                 "unsupported grant_type");
  }
  if (request.scope.empty() && request.resource.empty()) {
    return Error(400, "invalid_request", "scope is required: ask for " + AcceptedScopes(domain),
                 "missing scope");
  }
  StatusOr<std::string> audience = request.scope.empty()
                                       ? AudienceFromResource(request.resource, domain)
                                       : AudienceFromScope(request.scope, domain);
  if (!audience.ok()) {
    return Error(400, "invalid_scope", audience.status().message(), "invalid scope");
  }

  StatusOr<Principal> principal = InternalError("unreachable");
  if (password_grant) {
    if (request.username.empty()) {
      return Error(400, "invalid_request", "username is required for the password grant",
                   "missing username");
    }
    if (request.password.empty()) {
      return Error(400, "invalid_request", "password is required for the password grant",
                   "missing password");
    }
    principal = directory.AuthenticateUser(request.username, request.password);
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      return Error(400, "invalid_grant", "the username or password is incorrect",
                   "user authentication failed");
    }
  } else {
    if (request.client_id.empty()) {
      return Error(400, "invalid_request", "client_id is required for client_credentials",
                   "missing client_id");
    }
    if (request.client_secret.empty()) {
      return Error(400, "invalid_request", "client_secret is required for client_credentials",
                   "missing client_secret");
    }
    principal = directory.AuthenticateServicePrincipal(request.client_id, request.client_secret);
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      return Error(401, "invalid_client",
                   "client authentication failed: check the client_id (the application id) "
                   "and the client_secret",
                   "client authentication failed");
    }
  }
  if (!principal.ok()) return ServerError(principal.status());

  StatusOr<IssuedToken> token = issuer.Issue(*principal, *audience, request.client_id);
  if (!token.ok()) return ServerError(token.status());
  OAuthResponse out;
  out.http_status = 200;
  const int64_t expires_in = token->expires_at - token->issued_at;
  out.body = {{"token_type", "Bearer"},
              {"expires_in", expires_in},
              {"ext_expires_in", expires_in},
              {"access_token", token->access_token}};
  out.principal_id = principal->object_id;
  return out;
}

OAuthResponse HandleManagedIdentityTokenRequest(std::string_view resource_id,
                                                std::string_view resource,
                                                const Directory& directory,
                                                const TokenIssuer& issuer) {
  if (resource.empty()) {
    return Error(400, "invalid_request",
                 "resource is required, e.g. " + AudienceFor(Service::kVault, issuer.domain()),
                 "missing resource");
  }
  StatusOr<std::string> audience = AudienceFromResource(resource, issuer.domain());
  if (!audience.ok()) {
    return Error(400, "invalid_resource", audience.status().message(), "invalid resource");
  }
  StatusOr<Principal> identity = directory.GetManagedIdentityByResource(resource_id);
  if (identity.status().code() == StatusCode::kNotFound) {
    return Error(400, "invalid_request", "Identity not found", "no managed identity");
  }
  if (!identity.ok()) return ServerError(identity.status());
  StatusOr<IssuedToken> token = issuer.Issue(*identity, *audience);
  if (!token.ok()) return ServerError(token.status());
  OAuthResponse out;
  out.http_status = 200;
  const std::string expires_in = std::to_string(token->expires_at - token->issued_at);
  out.body = {{"access_token", token->access_token},
              {"client_id", identity->app_id},
              {"expires_in", expires_in},
              {"expires_on", std::to_string(token->expires_at)},
              {"ext_expires_in", expires_in},
              {"not_before", std::to_string(token->issued_at)},
              {"resource", *audience},
              {"token_type", "Bearer"}};
  out.principal_id = identity->object_id;
  return out;
}

// --- TokenVerifier

TokenVerifier::TokenVerifier(std::string issuer, std::string_view tenant_id, crypto::JwtKeySet keys,
                             const Clock& clock, std::chrono::seconds clock_skew)
    : issuer_(std::move(issuer)),
      tenant_id_(ToLowerAscii(tenant_id)),
      keys_(std::move(keys)),
      clock_(&clock),
      clock_skew_(clock_skew),
      cache_(std::make_shared<Cache>()) {}

StatusOr<TokenVerifier> TokenVerifier::For(const TokenIssuer& issuer, const Clock& clock) {
  ASSIGN_OR_RETURN(crypto::JwtKeySet keys, issuer.VerificationKeys());
  return TokenVerifier(issuer.issuer(), issuer.tenant_id(), std::move(keys), clock);
}

// Verified tokens, by SHA-256 of (audience, token): a client sends the same token with every
// request for an hour, and an ECDSA verification costs more than the rest of a key use. A hit
// still checks the expiry; only successes are cached.
struct TokenVerifier::Cache {
  static constexpr size_t kCapacity = 16384;
  Mutex mutex;
  std::unordered_map<std::string, Caller> entries GUARDED_BY(mutex);
};

StatusOr<Caller> TokenVerifier::Verify(std::string_view bearer_token,
                                       std::string_view expected_audience,
                                       TokenVerifyFailure* failure) const {
  std::string_view token = bearer_token;
  if (StartsWithIgnoreCase(token, "Bearer ")) token.remove_prefix(7);
  std::string key_input = NormalizeAudience(expected_audience);
  key_input += '\n';
  key_input.append(token);
  StatusOr<Bytes> digest = crypto::Sha256(AsBytes(key_input));
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(clock_->Now().time_since_epoch()).count();
  if (digest.ok()) {
    const std::string key(AsStringView(*digest));
    MutexLock lock(&cache_->mutex);
    auto it = cache_->entries.find(key);
    if (it != cache_->entries.end()) {
      if (now < it->second.expires_at + clock_skew_.count()) return it->second;
      cache_->entries.erase(it);
    }
  }
  StatusOr<Caller> caller = VerifyUncached(token, expected_audience, failure);
  if (caller.ok() && digest.ok()) {
    MutexLock lock(&cache_->mutex);
    if (cache_->entries.size() >= Cache::kCapacity) cache_->entries.clear();
    cache_->entries.emplace(std::string(AsStringView(*digest)), *caller);
  }
  return caller;
}

StatusOr<Caller> TokenVerifier::VerifyUncached(std::string_view bearer_token,
                                               std::string_view expected_audience,
                                               TokenVerifyFailure* failure) const {
  TokenVerifyFailure ignored;
  TokenVerifyFailure& why = failure != nullptr ? *failure : ignored;
  auto invalid = [&](crypto::JwtFailure detail) {
    why = {TokenRejection::kInvalid, detail};
    return UnauthenticatedError("the token is invalid");
  };
  if (StartsWithIgnoreCase(bearer_token, "Bearer ")) bearer_token.remove_prefix(7);

  crypto::JwtFailure detail{};
  StatusOr<crypto::VerifiedJwt> jwt = crypto::VerifyJwt(bearer_token, keys_, &detail);
  if (!jwt.ok()) return invalid(detail);
  Json& claims = jwt->claims;

  // Compare audiences in their normal form, so ":PORT" and case do not matter.
  const std::string audience = NormalizeAudience(expected_audience);
  try {
    auto aud = claims.find("aud");
    if (aud != claims.end() && aud->is_string()) {
      *aud = NormalizeAudience(aud->get<std::string>());
    } else if (aud != claims.end() && aud->is_array()) {
      for (Json& value : *aud) {
        if (value.is_string()) value = NormalizeAudience(value.get<std::string>());
      }
    }
  } catch (const std::exception&) {
    return invalid(crypto::JwtFailure::kBadClaimType);
  }
  const crypto::JwtClaimPolicy policy = {
      .issuer = issuer_, .audiences = {audience}, .clock_skew = clock_skew_};
  Status checked = crypto::CheckJwtClaims(claims, policy, clock_->Now(), &detail);
  if (!checked.ok()) {
    if (detail == crypto::JwtFailure::kExpired) {
      why = {TokenRejection::kExpired, detail};
      return checked;
    }
    if (detail == crypto::JwtFailure::kWrongAudience) {
      why = {TokenRejection::kWrongAudience, detail};
      return UnauthenticatedError("the token is not for this resource: request a token for " +
                                  audience);
    }
    return invalid(detail);
  }

  Caller caller;
  const std::optional<std::string> tid = StringClaim(claims, "tid");
  const std::optional<std::string> oid = StringClaim(claims, "oid");
  const std::optional<std::string> sub = StringClaim(claims, "sub");
  const std::optional<std::string> appid = StringClaim(claims, "appid");
  const std::optional<std::string> idtyp = StringClaim(claims, "idtyp");
  if (!tid || *tid != tenant_id_) return invalid(crypto::JwtFailure::kWrongIssuer);
  if (!oid || !IsUuid(*oid) || sub != oid || !appid || !idtyp) {
    return invalid(crypto::JwtFailure::kMissingClaim);
  }
  caller.tenant_id = *tid;
  caller.object_id = *oid;
  caller.app_id = *appid;
  caller.token_id = StringClaim(claims, "uti").value_or("");
  caller.expires_at = claims["exp"].get<int64_t>();
  if (*idtyp == "user") {
    caller.kind = PrincipalKind::kUser;
    caller.name = StringClaim(claims, "upn").value_or("");
  } else if (*idtyp == "app") {
    const std::optional<std::string> mirid = StringClaim(claims, "xms_mirid");
    if (mirid) {
      caller.kind = PrincipalKind::kManagedIdentity;
      caller.resource_id = *mirid;
      caller.name = *mirid;
    } else {
      caller.kind = PrincipalKind::kServicePrincipal;
      caller.name = StringClaim(claims, "app_displayname").value_or("");
    }
  } else {
    return invalid(crypto::JwtFailure::kBadClaimType);
  }
  return caller;
}

}  // namespace keyfoundry::identity
