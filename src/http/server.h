// HttpsServer: HTTP/1.1 over TLS, with every per-connection resource bounded, serving a Router.
//
// TLS only. TLS 1.2 and 1.3 (1.3 preferred); for 1.2 only ECDHE with AES-GCM
// (forward secrecy, AEAD); no compression, no renegotiation. The certificate is whatever the
// caller gives (crypto/x509.h makes one).
//
// Threads. `io_threads` threads (one per core by default) each run their own io_context; a
// connection lives on one of them (round robin) for its whole life, so its state needs no lock
// and its chain of reads and writes never changes threads (no hand-off, no wake-up per TLS
// record). Handlers, body consumers and the sources of streamed bodies run on a pool of
// `threads` worker threads, since they may block (SQLite, fsync, the HSM, a remote vault);
// each hands its result back to the connection's thread. A route marked runs_inline (a read or
// CPU-only handler) runs on the connection's thread instead, without the two hand-offs. One request at a time per connection,
// up to `threads` handlers at once in the process.
//
// A connection's life (each arrow is one asynchronous step on its strand):
//
//   accept ── over max_connections, or stopping: closed at once (counted, never queued)
//     │
//   handshake ── must finish within handshake_timeout
//     │
//   idle ── wait for the request's first byte: read_timeout for a connection's first request,
//     │     idle_timeout between keep-alive requests; then closed quietly
//   header ── the request line and headers, at most max_header_bytes (else 431); the whole
//     │       request, body included, must arrive within read_timeout of its first byte (so a
//     │       client dribbling bytes is dropped: slowloris). Then Host, path and query are
//     │       checked (400) and the route is found; its max_body_bytes is compared with
//     │       Content-Length before the body is read (413), then enforced while reading
//     │       chunked bodies (413). "Expect: 100-continue" is answered once the checks pass.
//   body
//     │
//   handler ── 404 / 405 when no route; exceptions become 500
//     │
//   write ── within write_timeout; then back to idle (keep-alive), or close
//     │
//   close ── after a response to an unreadable request (400/413/431), on "Connection: close",
//            and while stopping: TLS close_notify, then wait (at most 1 s) for the peer to close
//            so the response is not lost to a TCP reset; timeouts and transport errors close at
//            once.
//
// Why these limits: each bounds memory or time an unauthenticated client can take (BRIEF §8).
// Headers are read only up to max_header_bytes, bodies only up to the route's limit, and no
// connection outlives its deadlines whatever it sends. A refused request that was not read to
// its end cannot be followed by another on the same connection, hence the close.
//
// Every response carries x-ms-request-id (a fresh UUID, also Request::request_id), echoes
// x-ms-client-request-id, and every request is logged as one JSON line ("http.request": method,
// route label, host, path, status, duration, request id, remote address). Never logged: the
// query string, headers (Authorization, api-key) and bodies.
//
// Stop(drain): stop accepting, close idle connections, let requests in progress finish and be
// answered (with "Connection: close") until `drain` has passed, then close whatever remains and
// join the threads. Call it from a thread of your own, never from a handler.
//
// Cross-origin calls (CORS), as Azure Key Vault answers them, for browser pages served from
// another origin (the portal calls each vault's own host). Only when ServerOptions::cors has an
// allow_origin, and only for a request whose Origin header it allows:
//   - a preflight (OPTIONS with Access-Control-Request-Method) for a method that has a route on
//     that host and path is answered 204 by the server itself, before any handler or
//     authentication, with Access-Control-Allow-Origin (the origin echoed), -Allow-Methods (the
//     method asked), -Allow-Headers, -Max-Age;
//   - every other response carries Access-Control-Allow-Origin and -Expose-Headers.
// A preflight from another origin, or for a route that does not exist, is routed as any
// OPTIONS request (404 or 405), without CORS headers, so the browser refuses the call. With
// CORS on, every response carries "Vary: Origin". No Access-Control-Allow-Credentials: callers
// send bearer tokens themselves, never cookies.
//
// Errors: Start fails with InvalidArgument for unusable options (a timeout, thread count or
// limit that is not positive) or certificate/key, Unavailable when it cannot listen. Nothing a
// client sends makes the server fail.
#ifndef KEYFOUNDRY_HTTP_SERVER_H_
#define KEYFOUNDRY_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/secret_bytes.h"
#include "common/status.h"
#include "http/metrics.h"
#include "http/router.h"

namespace keyfoundry::http {

struct CorsOptions {
  // Whether a page of `origin` (the Origin header as sent, e.g. "https://127.0.0.1:8443") may
  // call. Null: CORS is off. Called on I/O threads, concurrently: keep it cheap and thread-safe.
  std::function<bool(std::string_view origin)> allow_origin;
  std::string allow_headers = "Authorization, Content-Type, x-ms-client-request-id";
  std::string expose_headers =
      "x-ms-request-id, x-ms-client-request-id, WWW-Authenticate, Azure-AsyncOperation, "
      "Location, Retry-After, Content-Range";
  std::chrono::seconds max_age{600};
};

struct ServerOptions {
  std::string listen_host = "127.0.0.1";        // an IP address, or a name resolved once at Start
  uint16_t listen_port = 0;                     // 0: a free port, see HttpsServer::port()
  std::string certificate_pem;                  // the server certificate, then any intermediates
  SecretBytes private_key_pem;                  // its key (PEM, unencrypted); dropped after Start
  size_t max_header_bytes = size_t{16} * 1024;  // request line + headers
  size_t max_connections = 1024;                // open at once, TLS handshakes included
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};   // a whole request
  std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};  // a whole response
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};   // between requests
  int threads = 16;    // workers for handlers, body consumers and body sources
  int io_threads = 0;  // threads running connections; 0: one per core
  // Where the server records its metrics; a new Metrics when null. Pass one in to register a
  // /metrics route (rendering it) on the router before the server starts.
  std::shared_ptr<Metrics> metrics;
  CorsOptions cors;  // off by default
};

class HttpsServer {
 public:
  // Sets up TLS, binds and listens, and starts the threads: when it returns the server accepts
  // connections. `router` must not be null.
  static StatusOr<std::unique_ptr<HttpsServer>> Start(ServerOptions options,
                                                      std::shared_ptr<const Router> router);

  // Stop(0) unless stopped.
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // The port listened on (the chosen one when listen_port was 0).
  uint16_t port() const;

  // See the file comment. Idempotent; later calls return at once.
  void Stop(std::chrono::milliseconds drain);

  // ServerOptions::metrics, or the server's own. Thread-safe.
  Metrics& metrics();

  class Impl;  // in server.cc; keeps Asio and OpenSSL out of this header

 private:
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_SERVER_H_
