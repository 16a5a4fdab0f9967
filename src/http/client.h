// A small synchronous HTTPS client (HTTP/1.1 over TLS 1.2+, on Beast) for the CLI, for tests
// and for load generators.
//
// Trust: the server's certificate must chain to `ca_pem` (only to it; to the system's trust
// store when it is empty) and name the URL's host: its DNS name (SNI is sent) or, for an IP
// literal, its address.
//
// Deadlines: everything a request does (connect, TLS handshake, write, read) must finish within
// `timeout`, else DeadlineExceeded. Name resolution (getaddrinfo) is not bounded; give
// connect_address to skip it.
//
// Errors: InvalidArgument for a malformed URL, header or CA; Unavailable when the server cannot
// be reached, the TLS handshake fails (an untrusted certificate included) or the connection
// breaks; DeadlineExceeded on timeout; ResourceExhausted when the response body exceeds
// max_response_bytes. Any HTTP status is a successful exchange. Messages name the host and port,
// never the path or query.
//
// Thread safety: HttpsRequest is thread-safe; an HttpsClient is used by one thread at a time.
#ifndef KEYFOUNDRY_HTTP_CLIENT_H_
#define KEYFOUNDRY_HTTP_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace keyfoundry::http {

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // "https://host[:port][/path][?query]"; host may be "[::1]"
  std::vector<std::pair<std::string, std::string>> headers;  // Host and Content-Length are set
  std::string body;
  std::string ca_pem;  // PEM certificate(s) to trust; empty: the system's trust store
  // Connect to this IP address instead of resolving the URL's host; Host, SNI and certificate
  // checks still use the URL's host (e.g. "myvault.vault.localhost" served on 127.0.0.1).
  std::optional<std::string> connect_address;
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  size_t max_response_bytes = size_t{64} << 20;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // in the order received
  std::string body;

  // The first header field named `name` (case-insensitive), or nullopt.
  std::optional<std::string_view> Header(std::string_view name) const;
};

// One request on a connection of its own, closed afterwards.
StatusOr<ClientResponse> HttpsRequest(const ClientRequest& request);

// Keeps its connection open between requests (keep-alive) while they go to the same host, port,
// connect_address and ca_pem, and the server keeps it open; otherwise it reconnects. Before a
// connection is reused it is checked for a close by the server (idle timeout); a request of an
// idempotent method (GET, HEAD, PUT, DELETE, OPTIONS) whose reused connection still breaks
// before any response byte is retried once on a new connection. Other methods are never sent
// twice.
class HttpsClient {
 public:
  HttpsClient();
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  StatusOr<ClientResponse> Send(const ClientRequest& request);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_CLIENT_H_
