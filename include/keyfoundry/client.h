// The keyfoundry C++ client: how the `kf` CLI (and any embedder) talks to a keyfoundryd over
// HTTPS. It knows the deployment's endpoints, gets OAuth2 tokens and calls the JSON APIs,
// turning Azure error envelopes into Status values whose message is the server's.
//
// Thread safety: a Client may be used by one thread at a time.
#ifndef KEYFOUNDRY_CLIENT_H_
#define KEYFOUNDRY_CLIENT_H_

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry {
namespace http {
struct ClientRequest;
}  // namespace http

struct ClientOptions {
  std::string server;  // "https://HOST:PORT"
  std::string ca_pem;  // the deployment's CA certificate
  // Connect here instead of resolving host names (for *.vault.DOMAIN hosts that do not
  // resolve); the URL's host is still sent and checked against the certificate.
  std::optional<std::string> connect_address;
};

// What GET /metadata/endpoints says about the deployment (Azure's cloud metadata shape).
struct Endpoints {
  std::string login_endpoint;       // "https://HOST:PORT"
  std::string management_audience;  // "https://management.DOMAIN"
  std::string vault_dns_suffix;     // "vault.DOMAIN"
};

struct AccessToken {
  std::string token;
  int64_t expires_on = 0;  // unix seconds
};

// An API answer with a 2xx status.
struct ApiResult {
  int status = 0;
  nlohmann::json body;  // null when the body was empty
};

class Client {
 public:
  explicit Client(ClientOptions options);

  StatusOr<Endpoints> GetEndpoints();

  // The token endpoint's password grant (users) and client_credentials grant (service
  // principals). `tenant` may be "common". The error's message is the server's
  // error_description.
  StatusOr<AccessToken> TokenForUser(const std::string& tenant, const std::string& username,
                                     const SecretBytes& password, const std::string& scope);
  StatusOr<AccessToken> TokenForServicePrincipal(const std::string& tenant,
                                                 const std::string& client_id,
                                                 const SecretBytes& secret,
                                                 const std::string& scope);

  // Calls `method` on `path` (with its query) on the server with `token`; `body` is sent as
  // JSON unless null. A non-2xx answer becomes an error carrying the envelope's code and
  // message ("AuthorizationFailed: ..."), and the inner error's code when there is one
  // ("Forbidden (AccessDenied): ...", as the key vault data plane answers a 403).
  // `headers` are added (an api-key, say); with an empty token no Authorization is sent.
  StatusOr<ApiResult> Call(const std::string& method, const std::string& path,
                           const AccessToken& token, const nlohmann::json& body = nullptr,
                           const std::vector<std::pair<std::string, std::string>>& headers = {});

  // The same with a JSON body that is a secret (a private JWK to import): the request's copy of
  // it is wiped once sent. The answer must not echo secrets (the keys API's never does).
  StatusOr<ApiResult> CallWithSecretBody(const std::string& method, const std::string& path,
                                         const AccessToken& token, const SecretBytes& json_body);

  // Streams a request body of `size` bytes from `source` (each call fills a prefix of its
  // buffer and returns its length) with `content_type`, and returns the JSON answer. For file
  // uploads of any size in bounded memory. `headers` are added (an api-key, say).
  StatusOr<ApiResult> Upload(const std::string& path, const AccessToken& token,
                             const std::string& content_type, uint64_t size,
                             std::function<StatusOr<size_t>(std::span<uint8_t>)> source,
                             const std::vector<std::pair<std::string, std::string>>& headers = {});

  // GETs `path` and streams a 2xx body to `sink` piece by piece. A non-2xx answer is an error
  // as Call's.
  Status Download(const std::string& path, const AccessToken& token,
                  std::function<Status(std::string_view)> sink,
                  const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Sends `method` on `path` with `body` as JSON (nothing when null) and streams a 2xx answer's
  // body to `sink` piece by piece as it arrives, for answers that come in parts over time (a
  // text/event-stream of chat completion chunks, say). A non-2xx answer is an error as Call's;
  // an error from `sink` aborts the request and is returned.
  Status Stream(const std::string& method, const std::string& path, const AccessToken& token,
                const nlohmann::json& body, std::function<Status(std::string_view)> sink,
                const std::vector<std::pair<std::string, std::string>>& headers = {});

  const ClientOptions& options() const { return options_; }

 private:
  // A request to `path` with the token (when not empty) and `headers`.
  http::ClientRequest Request(
      const std::string& method, const std::string& path, const AccessToken& token,
      const std::vector<std::pair<std::string, std::string>>& headers) const;
  StatusOr<ApiResult> Send(const std::string& method, const std::string& path,
                           const AccessToken& token, std::string* body,
                           const std::vector<std::pair<std::string, std::string>>& headers = {});

  ClientOptions options_;
};

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_CLIENT_H_
