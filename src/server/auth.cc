// The checks every API runs first (services.h).
#include "audit/audit_log.h"
#include "common/logging.h"
#include "common/strings.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

// The token of "Authorization: Bearer <token>" (scheme compared case-insensitively), or empty.
std::string_view BearerToken(const http::Request& request) {
  std::optional<std::string_view> header = request.Header("Authorization");
  if (!header) return {};
  std::string_view value = *header;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !http::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return {};
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return value;
}

http::Response NotReady() {
  return http::AzureError(503, "ServiceUnavailable", "keyfoundryd is starting; retry shortly");
}

std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string Services::Audience(identity::Service service) const {
  return identity::AudienceFor(service, config.domain);
}

std::string Services::VaultChallengeResource() const {
  size_t colon = base_url.rfind(':');
  std::string port = colon == std::string::npos ? "" : base_url.substr(colon);
  return Audience(identity::Service::kVault) + port;
}

std::string Services::VaultUri(std::string_view vault_name) const {
  size_t colon = base_url.rfind(':');
  std::string port = colon == std::string::npos ? "" : base_url.substr(colon);
  return "https://" + std::string(vault_name) + ".vault." + config.domain + port + "/";
}

std::string Services::AccountEndpoint(std::string_view account_name) const {
  size_t colon = base_url.rfind(':');
  std::string port = colon == std::string::npos ? "" : base_url.substr(colon);
  return "https://" + ToLowerAscii(account_name) + ".openai." + config.domain + port + "/";
}

AuthResult AuthenticateManagement(const Services& services, const http::Request& request) {
  if (!services.ready.load(std::memory_order_acquire)) return NotReady();
  std::string_view token = BearerToken(request);
  std::string code, message;
  if (token.empty()) {
    code = "AuthenticationFailed";
    message =
        "Authentication failed. The 'Authorization' header is missing or is not a Bearer "
        "token. Get a token for " +
        services.Audience(identity::Service::kManagement) + " (kf login).";
  } else {
    identity::TokenVerifyFailure failure;
    StatusOr<identity::Caller> caller = services.verifier->Verify(
        token, services.Audience(identity::Service::kManagement), &failure);
    if (caller.ok()) return *std::move(caller);
    code = failure.rejection == identity::TokenRejection::kExpired ? "ExpiredAuthenticationToken"
                                                                   : "InvalidAuthenticationToken";
    message = caller.status().message();
    Log(LogLevel::kInfo, "auth.rejected",
        {{"request_id", request.request_id}, {"plane", "management"}, {"reason", message}});
  }
  http::Response response = http::AzureError(401, code, message);
  response.headers.emplace_back(
      "WWW-Authenticate",
      "Bearer authorization_uri=" + Quoted(services.base_url + "/" + services.tenant_id) +
          ", error=\"invalid_token\", error_description=" + Quoted(message));
  return response;
}

AuthResult AuthenticateVault(const Services& services, const http::Request& request) {
  if (!services.ready.load(std::memory_order_acquire)) return NotReady();
  std::string_view token = BearerToken(request);
  std::string message = "Unauthorized. Access token is missing or invalid.";
  if (!token.empty()) {
    identity::TokenVerifyFailure failure;
    StatusOr<identity::Caller> caller =
        services.verifier->Verify(token, services.Audience(identity::Service::kVault), &failure);
    if (caller.ok()) return *std::move(caller);
    message = caller.status().message();
    Log(LogLevel::kInfo, "auth.rejected",
        {{"request_id", request.request_id}, {"plane", "vault"}, {"reason", message}});
  }
  http::Response response = http::AzureError(401, "Unauthorized", message);
  response.headers.emplace_back(
      "WWW-Authenticate",
      "Bearer authorization=" + Quoted(services.base_url + "/" + services.tenant_id) +
          ", resource=" + Quoted(services.VaultChallengeResource()));
  return response;
}

std::optional<http::Response> RequireApiVersion(const http::Request& request) {
  auto it = request.query.find("api-version");
  if (it != request.query.end() && !it->second.empty()) return std::nullopt;
  return http::AzureError(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required for all "
                          "requests.");
}

std::optional<http::Response> Authorize(const Services& services, const identity::Caller& caller,
                                        std::string_view scope, std::string_view action) {
  StatusOr<identity::Decision> decision =
      services.authorizer->Decide(caller.object_id, scope, action, identity::ActionType::kAction);
  if (!decision.ok()) {
    return http::AzureError(503, "ServiceUnavailable",
                            "the authorization decision could not be made; retry shortly");
  }
  if (decision->allowed) return std::nullopt;
  return http::AzureError(
      403, "AuthorizationFailed",
      "The client '" + caller.name + "' with object id '" + caller.object_id +
          "' does not have authorization to perform action '" + std::string(action) +
          "' over scope '" + std::string(scope) +
          "' or the scope is invalid. If access was recently granted, please refresh your "
          "credentials.");
}

Status RecordAudit(const Services& services, const http::Request& request,
                   const identity::Caller* caller, audit::AuditEvent event) {
  if (services.audit == nullptr) return OkStatus();
  if (event.client_address.empty()) event.client_address = request.remote_address;
  if (event.correlation_id.empty()) event.correlation_id = request.request_id;
  if (caller != nullptr) {
    if (event.caller_object_id.empty()) event.caller_object_id = caller->object_id;
    if (event.caller_app_id.empty()) event.caller_app_id = caller->app_id;
  }
  if (event.result.empty()) event.result = event.status < 400 ? "Success" : "Failure";
  Status appended = services.audit->Append(std::move(event));
  if (!appended.ok()) {
    Log(LogLevel::kError, "audit.append_failed",
        {{"request_id", request.request_id}, {"error", appended.ToString()}});
  }
  return appended;
}

http::Response InternalFailure(const http::Request& request, const Status& status) {
  Log(LogLevel::kError, "request.failed",
      {{"request_id", request.request_id}, {"error", status.ToString()}});
  if (status.code() == StatusCode::kUnavailable) {
    return http::AzureError(503, "ServiceUnavailable",
                            "a dependency is unavailable; retry shortly");
  }
  return http::AzureError(500, "InternalServerError",
                          "the request failed; quote request id " + request.request_id);
}

}  // namespace keyfoundry::server
