#include "keyfoundry/client.h"

#include <ctime>

#include "http/client.h"
#include "http/url.h"

namespace keyfoundry {
namespace {

StatusCode CodeForHttpStatus(int status) {
  switch (status) {
    case 400:
      return StatusCode::kInvalidArgument;
    case 401:
      return StatusCode::kUnauthenticated;
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kNotFound;
    case 409:
      return StatusCode::kAlreadyExists;
    case 429:
      return StatusCode::kResourceExhausted;
    case 503:
      return StatusCode::kUnavailable;
    default:
      return status >= 500 ? StatusCode::kInternal : StatusCode::kFailedPrecondition;
  }
}

// The error an API answer carries: the Azure envelope's code and message, or OAuth2's
// error_description, or the bare status.
Status ErrorFrom(const http::ClientResponse& response) {
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  std::string message;
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const auto& error = body["error"];
    message = error.value("code", "Error");
    if (error.contains("innererror") && error["innererror"].is_object() &&
        error["innererror"].contains("code") && error["innererror"]["code"].is_string()) {
      message += " (" + error["innererror"]["code"].get<std::string>() + ")";
    }
    message += ": " + error.value("message", "");
  } else if (body.is_object() && body.contains("error_description")) {
    message = body.value("error", "error") + ": " + body.value("error_description", "");
  } else {
    message = "the server answered HTTP " + std::to_string(response.status);
  }
  return Status(CodeForHttpStatus(response.status), message);
}

}  // namespace

Client::Client(ClientOptions options) : options_(std::move(options)) {
  while (!options_.server.empty() && options_.server.back() == '/') options_.server.pop_back();
}

StatusOr<Endpoints> Client::GetEndpoints() {
  http::ClientRequest request;
  request.url = options_.server + "/metadata/endpoints?api-version=2019-05-01";
  request.ca_pem = options_.ca_pem;
  request.connect_address = options_.connect_address;
  ASSIGN_OR_RETURN(http::ClientResponse response, http::HttpsRequest(request));
  if (response.status != 200) return ErrorFrom(response);
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object()) return InternalError("the server's /metadata/endpoints is not JSON");
  Endpoints endpoints;
  endpoints.login_endpoint = body["authentication"].value("loginEndpoint", "");
  const auto& audiences = body["authentication"]["audiences"];
  if (audiences.is_array() && !audiences.empty()) {
    endpoints.management_audience = audiences[0].get<std::string>();
  }
  endpoints.vault_dns_suffix = body["suffixes"].value("keyVaultDns", "");
  if (endpoints.management_audience.empty()) {
    return InternalError("the server's /metadata/endpoints names no audience");
  }
  return endpoints;
}

namespace {

StatusOr<AccessToken> RequestToken(const ClientOptions& options, const std::string& tenant,
                                   std::string form) {
  http::ClientRequest request;
  request.method = "POST";
  request.url = options.server + "/" + http::PercentEncode(tenant) + "/oauth2/v2.0/token";
  request.ca_pem = options.ca_pem;
  request.connect_address = options.connect_address;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  request.body = std::move(form);
  StatusOr<http::ClientResponse> response = http::HttpsRequest(request);
  SecureZero(
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(request.body.data()), request.body.size()));
  RETURN_IF_ERROR(response);
  if (response->status != 200) return ErrorFrom(*response);
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (!body.is_object() || !body.contains("access_token")) {
    return InternalError("the token endpoint's answer holds no access_token");
  }
  AccessToken token;
  token.token = body["access_token"].get<std::string>();
  token.expires_on = static_cast<int64_t>(std::time(nullptr)) + body.value("expires_in", 0);
  return token;
}

std::string Secret(const SecretBytes& s) {
  return std::string(AsStringView(s.Reveal(InsecureSecretAccess())));
}

}  // namespace

StatusOr<AccessToken> Client::TokenForUser(const std::string& tenant, const std::string& username,
                                           const SecretBytes& password, const std::string& scope) {
  return RequestToken(options_, tenant,
                      "grant_type=password&username=" + http::PercentEncode(username) +
                          "&password=" + http::PercentEncode(Secret(password)) +
                          "&scope=" + http::PercentEncode(scope));
}

StatusOr<AccessToken> Client::TokenForServicePrincipal(const std::string& tenant,
                                                       const std::string& client_id,
                                                       const SecretBytes& secret,
                                                       const std::string& scope) {
  return RequestToken(options_, tenant,
                      "grant_type=client_credentials&client_id=" + http::PercentEncode(client_id) +
                          "&client_secret=" + http::PercentEncode(Secret(secret)) +
                          "&scope=" + http::PercentEncode(scope));
}

StatusOr<ApiResult> Client::Call(const std::string& method, const std::string& path,
                                 const AccessToken& token, const nlohmann::json& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string text = body.is_null() ? "" : body.dump();
  return Send(method, path, token, body.is_null() ? nullptr : &text, headers);
}

StatusOr<ApiResult> Client::CallWithSecretBody(const std::string& method, const std::string& path,
                                               const AccessToken& token,
                                               const SecretBytes& json_body) {
  std::string text(AsStringView(json_body.Reveal(InsecureSecretAccess())));
  StatusOr<ApiResult> result = Send(method, path, token, &text);
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  return result;
}

namespace {

// The JSON answer of a 2xx response, or the error an Azure envelope carries.
StatusOr<ApiResult> ResultOf(const http::ClientResponse& response) {
  if (response.status < 200 || response.status > 299) return ErrorFrom(response);
  ApiResult result;
  result.status = response.status;
  if (!response.body.empty()) {
    result.body = nlohmann::json::parse(response.body, nullptr, false);
    if (result.body.is_discarded()) return InternalError("the server's answer is not JSON");
  }
  return result;
}

}  // namespace

http::ClientRequest Client::Request(
    const std::string& method, const std::string& path, const AccessToken& token,
    const std::vector<std::pair<std::string, std::string>>& headers) const {
  http::ClientRequest request;
  request.method = method;
  request.url = options_.server + path;
  request.ca_pem = options_.ca_pem;
  request.connect_address = options_.connect_address;
  if (!token.token.empty()) request.headers = {{"Authorization", "Bearer " + token.token}};
  for (const auto& h : headers) request.headers.push_back(h);
  return request;
}

StatusOr<ApiResult> Client::Send(const std::string& method, const std::string& path,
                                 const AccessToken& token, std::string* body,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  http::ClientRequest request = Request(method, path, token, headers);
  if (body != nullptr) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body.swap(*body);
  }
  StatusOr<http::ClientResponse> sent = http::HttpsRequest(request);
  if (body != nullptr) request.body.swap(*body);  // back to the caller, who may wipe it
  ASSIGN_OR_RETURN(http::ClientResponse response, std::move(sent));
  return ResultOf(response);
}

StatusOr<ApiResult> Client::Upload(
    const std::string& path, const AccessToken& token, const std::string& content_type,
    uint64_t size, std::function<StatusOr<size_t>(std::span<uint8_t>)> source,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  http::ClientRequest request = Request("POST", path, token, headers);
  request.headers.emplace_back("Content-Type", content_type);
  request.body_source = std::move(source);
  request.body_size = size;
  ASSIGN_OR_RETURN(http::ClientResponse response, http::HttpsRequest(request));
  return ResultOf(response);
}

Status Client::Download(const std::string& path, const AccessToken& token,
                        std::function<Status(std::string_view)> sink,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  http::ClientRequest request = Request("GET", path, token, headers);
  request.response_sink = std::move(sink);
  ASSIGN_OR_RETURN(http::ClientResponse response, http::HttpsRequest(request));
  if (response.status < 200 || response.status > 299) return ErrorFrom(response);
  return OkStatus();
}

Status Client::Stream(const std::string& method, const std::string& path, const AccessToken& token,
                      const nlohmann::json& body, std::function<Status(std::string_view)> sink,
                      const std::vector<std::pair<std::string, std::string>>& headers) {
  http::ClientRequest request = Request(method, path, token, headers);
  if (!body.is_null()) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body.dump();
  }
  request.response_sink = std::move(sink);
  ASSIGN_OR_RETURN(http::ClientResponse response, http::HttpsRequest(request));
  if (response.status < 200 || response.status > 299) return ErrorFrom(response);
  return OkStatus();
}

}  // namespace keyfoundry
