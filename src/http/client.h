// A small synchronous HTTPS client (HTTP/1.1 over TLS 1.2+, on Beast) for the CLI, for tests
// and for load generators.
//
// Trust: the server's certificate must chain to `ca_pem` (only to it; to the system's trust
// store when it is empty) and name the URL's host: its DNS name (SNI is sent) or, for an IP
// literal, its address.
//
// Deadlines: everything a request does (connect, TLS handshake, write, read) must finish within
// `timeout`, else DeadlineExceeded. A streamed request (body_source or response_sink set) may
// take as long as its data does: there `timeout` bounds each I/O step instead (the connect, the
// TLS handshake, reading the response header, and each single write or read of the body on the
// connection), so a transfer fails only when it stalls for `timeout`. Time spent in the source
// or sink is not counted. Name resolution (getaddrinfo) is not bounded; give connect_address to
// skip it.
//
// Streaming: with body_source and response_sink, memory stays bounded (a buffer of
// kClientStreamPieceBytes each way) whatever the size of the bodies, so multi-GiB files go up
// and down; count bytes in the source and sink for a progress bar.
//
// Errors: InvalidArgument for a malformed URL, header or CA; Unavailable when the server cannot
// be reached, the TLS handshake fails (an untrusted certificate included) or the connection
// breaks; DeadlineExceeded on timeout; ResourceExhausted when the response body exceeds
// max_response_bytes (a body given to response_sink has no limit). The status of a failing
// body_source or response_sink is returned as it is. Any HTTP status is a successful exchange.
// Messages name the host and port, never the path or query. After any error the connection is
// closed. When the server answers before it has read the whole request and stops reading (a 413
// or 401 to a large upload), that response is returned rather than the failed write.
//
// Thread safety: HttpsRequest is thread-safe; an HttpsClient is used by one thread at a time.
#ifndef KEYFOUNDRY_HTTP_CLIENT_H_
#define KEYFOUNDRY_HTTP_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
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
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // see Deadlines above
  size_t max_response_bytes = size_t{64} << 20;                 // for `ClientResponse::body`

  // A streamed request body, used instead of `body`. The client calls body_source with a buffer
  // to fill (at most kClientStreamPieceBytes); it writes up to span.size() bytes and returns how
  // many, 0 meaning the end; it may return fewer than asked for, and is not called again after
  // it returns 0 or an error. Exactly *body_size bytes must come before the end; they are sent
  // with Content-Length: *body_size. InvalidArgument before anything is sent when body_size is
  // missing, given without a body_source, or `body` is not empty as well; InvalidArgument when
  // the source ends early, yields more than *body_size bytes or returns more than it was asked
  // for: the last piece is then held back, so the server never sees a complete request. An error
  // from the source aborts the request and is returned. Such a request is never retried (it
  // cannot be replayed), whatever its method.
  std::function<StatusOr<size_t>(std::span<uint8_t>)> body_source;
  std::optional<uint64_t> body_size;

  // When set, the body of a 2xx response is handed to response_sink piece by piece as it arrives
  // (non-empty pieces of at most kClientStreamPieceBytes, in order) instead of being kept in
  // ClientResponse::body, which stays empty; max_response_bytes does not apply to it. Other
  // responses are kept whole in `body` as usual (so callers can read the error, within
  // max_response_bytes). An error from the sink aborts the request (the connection is closed)
  // and is returned. Chunked and Content-Length bodies are both handled.
  std::function<Status(std::string_view)> response_sink;
};

// The size of the pieces a streamed request reads from body_source and gives to
// response_sink (at most).
inline constexpr size_t kClientStreamPieceBytes = size_t{64} * 1024;

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
// before any response byte is retried once on a new connection, unless its body comes from a
// body_source. Other methods are never sent twice.
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
