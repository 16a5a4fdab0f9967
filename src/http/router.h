// The route table: (method, host pattern, path pattern) -> handler.
//
// Patterns
//   host:  "*"                       any host
//          "management.localhost"    exactly this host (case-insensitive)
//          "{vault}.vault.localhost" one leading label, captured as params["vault"]; the
//                                    label is non-empty and holds no '.'
//   path:  "/keys/{name}/create"     literal segments and {param} segments; a param matches
//                                    one non-empty segment, percent-decoded ("%2F" included)
//          "/portal/{file...}"       a last catch-all: the rest of the path, zero or more
//                                    segments, percent-decoded ("js/app.js", or "")
// Literal segments compare case-insensitively, as ARM's paths do (resourceGroups ==
// resourcegroups). One trailing slash is ignored: "/keys/k1/" matches "/keys/{name}".
//
// Choosing a route: among the routes for the request's method whose host and path match, the
// most specific wins: first by host (exact > captured label > "*"), then segment by segment
// from the left (literal > {param} > catch-all). No route for the method but one for another
// method on that host and path: 405 with Allow. Otherwise 404. Lookup scans the table once
// per request (fine for a few hundred routes).
//
// Route tables are code: Add aborts the process, with a message naming the route, on a
// malformed pattern, a parameter named twice, or a route ambiguous with one already added
// (same method, same host pattern, same path shape). The first test run catches it.
//
// Thread safety: Add is not thread-safe; build the table, then share it (const) with the
// server, whose threads call Match concurrently.
#ifndef KEYFOUNDRY_HTTP_ROUTER_H_
#define KEYFOUNDRY_HTTP_ROUTER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "http/request.h"
#include "http/response.h"

namespace keyfoundry::http {

// Runs on one of the server's worker threads, synchronously; it may block (an RSA operation, a
// database commit), but each blocked handler holds one of a fixed number of workers.
// Exceptions are caught at the boundary and become a 500 without details.
using Handler = std::function<Response(Request&)>;

// Receives a streamed request body (uploads of any size in bounded memory), piece by piece as
// the server reads it from the socket, on a worker thread (one call at a time per request):
// each Consume should take no longer than handling one small request (sealing and writing a
// segment, say).
class BodyConsumer {
 public:
  // Dropped without Finish (the client left, a timeout, a bad body): whatever was written for
  // the request must be discarded.
  virtual ~BodyConsumer() = default;
  // The next piece of the body (1 byte to a few hundred KiB). An error stops the read: the
  // server answers Fail(status) and closes the connection.
  virtual Status Consume(ByteView data) = 0;
  // The whole body has arrived and every Consume succeeded: the response to send.
  virtual Response Finish() = 0;
  // The response for a failed Consume.
  virtual Response Fail(const Status& status) = 0;
};

// A streaming route's handler runs once the request's header has been read and checked, with
// an empty Request::body. It answers at once (a Response, e.g. 401: the body is then not read
// and the connection closes after the response) or returns the consumer of the body.
using StreamingHandler =
    std::function<std::variant<Response, std::unique_ptr<BodyConsumer>>(Request&)>;

inline constexpr size_t kDefaultMaxBodyBytes = size_t{1} << 20;  // 1 MiB

struct RouteOptions {
  // A larger body is refused with 413 before it is read when Content-Length says so, and as
  // soon as it is exceeded when the body is chunked.
  size_t max_body_bytes = kDefaultMaxBodyBytes;
  // The route's label in metrics and logs; the path pattern when empty. Keep the set of labels
  // small: never derive one from request data.
  std::string metrics_name;
  // The handler (and the source of a streamed response) runs on the connection's own I/O
  // thread instead of a worker, saving two thread hand-offs per request (about a third of the
  // cost of a small request). Only for handlers that never wait on a commit, a lock held across
  // one, or the network: while one runs, the other connections of its thread wait. Reads of
  // the metadata store and CPU work (an RSA operation) qualify. A handler that may need to
  // wait only sometimes checks Request::on_io_thread and returns RunOnWorker() then.
  bool runs_inline = false;
};

struct Route {
  std::string method;
  std::string host_pattern;
  std::string path_pattern;
  Handler handler;             // a plain route: the body is read whole first
  StreamingHandler streaming;  // a streaming route (handler is then empty)
  RouteOptions options;
  std::string label;  // options.metrics_name, or path_pattern when that is empty
};

enum class MatchKind {
  kFound = 1,
  kNotFound = 2,
  kMethodNotAllowed = 3,
};

struct RouteMatch {
  MatchKind kind = MatchKind::kNotFound;
  const Route* route = nullptr;               // kFound: owned by the Router
  std::map<std::string, std::string> params;  // kFound
  std::vector<std::string> allowed_methods;   // kMethodNotAllowed: sorted, unique
};

class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  void Add(std::string method, std::string host_pattern, std::string path_pattern, Handler handler,
           RouteOptions options = {});
  // A route whose body is streamed to a BodyConsumer. Its max_body_bytes still bounds the
  // body, and the read deadline restarts with every piece received, so a long upload is
  // bounded by its progress, not by read_timeout as a whole.
  void AddStreaming(std::string method, std::string host_pattern, std::string path_pattern,
                    StreamingHandler handler, RouteOptions options = {});

  // `host` as Request::host (lower case, no port); `path` as Request::path (raw).
  RouteMatch Match(std::string_view method, std::string_view host, std::string_view path) const;

  // Match, then the handler (kFound: with request.params set), or the 404 / 405 response.
  // A streaming route's consumer is given request.body in one piece. No body limit applies:
  // the server enforces it while reading. For in-process callers and tests; the server uses
  // Match, InvokeHandler and InvokeStreamingHandler.
  Response Handle(Request& request) const;

 private:
  struct CompiledRoute;
  void AddRoute(Route route);
  std::vector<CompiledRoute> routes_;
};

// Runs `route.handler`, turning an exception into 500 InternalServerError (logged with
// `request.request_id`, without the exception's text in the response).
Response InvokeHandler(const Route& route, Request& request);
// The same for `route.streaming`.
std::variant<Response, std::unique_ptr<BodyConsumer>> InvokeStreamingHandler(const Route& route,
                                                                             Request& request);
// consumer.Finish(), with the same exception boundary.
Response InvokeFinish(const Route& route, const Request& request, BodyConsumer& consumer);

// The HTTP layer's own error responses (codes listed in response.h).
Response NotFoundResponse(std::string_view method, std::string_view path);
Response MethodNotAllowedResponse(std::string_view method,
                                  const std::vector<std::string>& allowed_methods);

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_ROUTER_H_
