// An HTTP request as a handler sees it: parsed, bounded and complete (the server reads the
// whole body before the handler runs; see server.h for the limits).
//
// Thread safety: a plain value; a handler owns the Request it is given.
#ifndef KEYFOUNDRY_HTTP_REQUEST_H_
#define KEYFOUNDRY_HTTP_REQUEST_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/strings.h"

namespace keyfoundry::http {

struct Request {
  // The method as sent ("GET", "PUT", ...). Methods are case-sensitive (RFC 9110 §9.1).
  std::string method;
  // The Host header without its port, lower-cased: "myvault.vault.localhost", "127.0.0.1",
  // "[::1]". The server refuses a request without a valid Host.
  std::string host;
  // The raw path, still percent-encoded, without the query: "/keys/k1/". It passed
  // ValidateRequestPath (url.h).
  std::string path;
  // The request target as sent: path and query ("/keys/k1?api-version=7.4").
  std::string target;
  // The query parameters, names and values percent-decoded with '+' as space; duplicates as
  // ParseFormUrlEncoded (url.h) says.
  std::map<std::string, std::string> query;
  // The header fields in the order received, names as sent. Look them up with Header().
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The peer's IP address ("127.0.0.1", "::1").
  std::string remote_address;
  // A random UUID naming this request; the server also sends it as x-ms-request-id and logs it
  // as the correlation id.
  std::string request_id;
  // The route's parameters ("{vault}" in the host pattern, "{name}" in the path pattern),
  // percent-decoded.
  std::map<std::string, std::string> params;
  // Set by the server when the handler runs on the connection's I/O thread (a route with
  // RouteOptions::runs_inline). Such a handler that finds it would have to wait (a key not
  // cached, so a call to a vault) returns RunOnWorker() and is called again on a worker.
  bool on_io_thread = false;

  // The value of the first header field named `name` (compared case-insensitively), or
  // nullopt. The view lives as long as `headers` is not modified.
  std::optional<std::string_view> Header(std::string_view name) const;
};

// ASCII case-insensitive equality, as header names and ARM path segments compare.
using ::keyfoundry::EqualsIgnoreCase;  // common/strings.h

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_REQUEST_H_
