// Routes of the identity provider: the OAuth2 token endpoint (v2.0 and v1 forms), OpenID
// discovery and JWKS, the managed-identity endpoint shaped like Azure's IMDS, and the cloud
// metadata document that tells clients (kf, az) the deployment's endpoints. None of these
// needs a token: they are how a client gets one.
#include "common/encoding.h"
#include "common/logging.h"
#include "http/url.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using http::Request;
using http::Response;

bool IsOurTenant(const Services& s, std::string_view tenant) {
  return tenant == "common" || tenant == "organizations" ||
         http::EqualsIgnoreCase(tenant, s.tenant_id);
}

Response OAuthError(int status, std::string_view error, std::string_view description) {
  Response r = http::Json(status, {{"error", error}, {"error_description", description}});
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  return r;
}

SecretBytes TakeSecret(std::map<std::string, std::string>& form, const char* name) {
  auto it = form.find(name);
  if (it == form.end()) return SecretBytes();
  SecretBytes secret(AsBytes(it->second), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(it->second.data()), it->second.size()));
  return secret;
}

// Client authentication by HTTP Basic (RFC 6749 §2.3.1): "Basic base64(id:secret)", each part
// form-encoded.
Status ReadBasicClientAuth(const Request& request, identity::TokenRequest* out) {
  std::optional<std::string_view> header = request.Header("Authorization");
  if (!header) return OkStatus();
  constexpr std::string_view kBasic = "basic ";
  if (header->size() <= kBasic.size() ||
      !http::EqualsIgnoreCase(header->substr(0, kBasic.size()), kBasic)) {
    return InvalidArgumentError("the Authorization header of a token request must be Basic");
  }
  ASSIGN_OR_RETURN(Bytes decoded, Base64Decode(header->substr(kBasic.size())));
  std::string_view text = AsStringView(decoded);
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return InvalidArgumentError("malformed Basic credentials");
  ASSIGN_OR_RETURN(out->client_id, http::PercentDecode(text.substr(0, colon), true));
  ASSIGN_OR_RETURN(std::string secret, http::PercentDecode(text.substr(colon + 1), true));
  out->client_secret = SecretBytes(AsBytes(secret), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(secret.data()), secret.size()));
  SecureZero(std::span<uint8_t>(decoded));
  return OkStatus();
}

Response Token(const Services& s, Request& request) {
  if (!s.ready.load(std::memory_order_acquire)) {
    return OAuthError(503, "temporarily_unavailable", "keyfoundryd is starting; retry shortly");
  }
  if (!IsOurTenant(s, request.params["tenant"])) {
    return OAuthError(400, "invalid_request",
                      "tenant '" + request.params["tenant"] + "' is not this deployment's; use " +
                          s.tenant_id + " or common");
  }
  std::optional<std::string_view> type = request.Header("Content-Type");
  if (!type || type->substr(0, 33) != "application/x-www-form-urlencoded") {
    return OAuthError(400, "invalid_request",
                      "a token request is a POST with Content-Type "
                      "application/x-www-form-urlencoded");
  }
  StatusOr<std::map<std::string, std::string>> form = http::ParseFormUrlEncoded(request.body);
  SecureZero(
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(request.body.data()), request.body.size()));
  if (!form.ok()) return OAuthError(400, "invalid_request", form.status().message());
  auto field = [&](const char* name) {
    auto it = form->find(name);
    return it == form->end() ? std::string() : it->second;
  };
  identity::TokenRequest token_request;
  token_request.grant_type = field("grant_type");
  token_request.username = field("username");
  token_request.client_id = field("client_id");
  token_request.scope = field("scope");
  token_request.resource = field("resource");
  token_request.password = TakeSecret(*form, "password");
  token_request.client_secret = TakeSecret(*form, "client_secret");
  if (Status basic = ReadBasicClientAuth(request, &token_request); !basic.ok()) {
    return OAuthError(401, "invalid_client", basic.message());
  }
  identity::OAuthResponse result =
      identity::HandleTokenRequest(token_request, *s.directory, *s.issuer);
  Log(result.http_status == 200 ? LogLevel::kInfo : LogLevel::kWarning,
      result.http_status == 200 ? "token.issued" : "token.refused",
      {{"request_id", request.request_id},
       {"grant_type", token_request.grant_type},
       {"principal_id", result.principal_id},
       {"reason", result.failure}});
  Response r = http::Json(result.http_status, result.body);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  return r;
}

Response ManagedIdentityToken(const Services& s, Request& request) {
  // IMDS answers a request without "Metadata: true" with exactly this.
  std::optional<std::string_view> metadata = request.Header("Metadata");
  if (!metadata || !http::EqualsIgnoreCase(*metadata, "true")) {
    return OAuthError(400, "invalid_request", "Required metadata header not specified");
  }
  // Only the platform's own processes, on this machine, holding the platform secret, may ask
  // for a resource's managed-identity token; anyone else could otherwise act as that resource.
  std::optional<std::string_view> secret = request.Header("X-KeyFoundry-Platform-Secret");
  const bool loopback = request.remote_address == "127.0.0.1" || request.remote_address == "::1" ||
                        request.remote_address == "::ffff:127.0.0.1";
  if (!loopback || !secret ||
      !ConstantTimeEquals(AsBytes(*secret), s.platform_secret.Reveal(InsecureSecretAccess()))) {
    Log(LogLevel::kWarning, "imds.refused",
        {{"request_id", request.request_id}, {"remote_address", request.remote_address}});
    return OAuthError(403, "unauthorized_client",
                      "managed-identity tokens are issued only to keyfoundry's own services");
  }
  if (!s.ready.load(std::memory_order_acquire)) {
    return OAuthError(503, "temporarily_unavailable", "keyfoundryd is starting; retry shortly");
  }
  auto resource = request.query.find("resource");
  auto resource_id = request.query.find("mi_res_id");
  if (resource == request.query.end() || resource_id == request.query.end()) {
    return OAuthError(400, "invalid_request",
                      "give resource (the API to call) and mi_res_id (the platform resource "
                      "whose identity to use)");
  }
  identity::OAuthResponse result = identity::HandleManagedIdentityTokenRequest(
      resource_id->second, resource->second, *s.directory, *s.issuer);
  return http::Json(result.http_status, result.body);
}

// Azure's cloud metadata document ("az cloud register" reads it); the 2019-05-01 shape, an
// object, or for later api-versions the list of clouds holding it.
Response CloudMetadata(const Services& s, Request& request) {
  const std::string& base = s.base_url;
  nlohmann::json cloud = {
      {"name", "keyfoundry"},
      {"portal", base},
      {"resourceManager", base + "/"},
      {"authentication",
       {{"loginEndpoint", base},
        {"audiences", {s.Audience(identity::Service::kManagement)}},
        {"tenant", "common"},
        {"identityProvider", "AAD"}}},
      {"suffixes",
       {{"keyVaultDns", "vault." + s.config.domain},
        {"cognitiveServicesDns", "openai." + s.config.domain}}},
  };
  auto version = request.query.find("api-version");
  if (version != request.query.end() && version->second >= "2022-09-01") {
    return http::Json(200, nlohmann::json::array({cloud}));
  }
  return http::Json(200, cloud);
}

}  // namespace

void AddIdentityRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  const http::RouteOptions small{.max_body_bytes = size_t{64} * 1024, .metrics_name = ""};
  for (const char* path : {"/{tenant}/oauth2/v2.0/token", "/{tenant}/oauth2/token"}) {
    router.Add(
        "POST", "*", path, [s](Request& r) { return Token(*s, r); }, small);
  }
  router.Add("GET", "*", "/{tenant}/v2.0/.well-known/openid-configuration", [s](Request& r) {
    if (!s->ready.load(std::memory_order_acquire) || !IsOurTenant(*s, r.params["tenant"])) {
      return http::AzureError(404, "NotFound", "no such tenant");
    }
    return http::Json(200, s->issuer->OpenIdConfiguration());
  });
  router.Add("GET", "*", "/{tenant}/discovery/v2.0/keys", [s](Request& r) {
    if (!s->ready.load(std::memory_order_acquire) || !IsOurTenant(*s, r.params["tenant"])) {
      return http::AzureError(404, "NotFound", "no such tenant");
    }
    return http::Json(200, s->issuer->Jwks());
  });
  router.Add("GET", "*", "/metadata/identity/oauth2/token",
             [s](Request& r) { return ManagedIdentityToken(*s, r); });
  router.Add("GET", "*", "/metadata/endpoints", [s](Request& r) { return CloudMetadata(*s, r); });
}

}  // namespace keyfoundry::server
