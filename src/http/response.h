// An HTTP response as a handler returns it, and the helpers that build the common ones: JSON
// bodies and the Azure error envelope
//   {"error":{"code":"KeyNotFound","message":"...","innererror":{...}}}
// that Azure SDKs parse (innererror only when given).
//
// The server adds Content-Length, Date, Connection, x-ms-request-id, x-ms-client-request-id
// (echoed) and x-content-type-options: nosniff to every response; a handler's own header of one
// of those names (or Transfer-Encoding, Keep-Alive, Content-Type) is dropped. Content-Type comes
// from `content_type` and is sent when that is not empty.
//
// Error codes the HTTP layer itself produces (handlers choose their own):
//   400 BadRequest                   malformed HTTP, Host, path or query
//   404 NotFound                     no route for the host and path
//   405 MethodNotAllowed             a route for the path, not for the method (with Allow)
//   413 RequestBodyTooLarge          the body exceeds the route's max_body_bytes
//   431 RequestHeaderFieldsTooLarge  the request line and headers exceed max_header_bytes
//   500 InternalServerError          a handler threw or built an invalid response (no detail)
//
// Thread safety: plain values.
#ifndef KEYFOUNDRY_HTTP_RESPONSE_H_
#define KEYFOUNDRY_HTTP_RESPONSE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace keyfoundry::http {

inline constexpr char kJsonContentType[] = "application/json; charset=utf-8";

// A response body produced while it is sent, so a download of any size takes bounded memory.
// The server sends Content-Length: size, then calls `read` with a buffer (up to 256 KiB) until
// `size` bytes have come; `read` fills a prefix and returns its length. An error, or a length
// that does not add up to `size`, ends the connection at once, so the client sees a truncated
// body rather than a wrong one. `read` runs on a worker, one buffer at a time.
//
// A body whose size is not known in advance (server-sent events) sets `chunked`: the server
// sends Transfer-Encoding: chunked instead of Content-Length, one chunk per `read`, and ends
// the body when `read` returns 0. An error then ends the connection without the last chunk, so
// the client still sees a truncated body.
struct StreamedBody {
  uint64_t size = 0;  // ignored when chunked
  bool chunked = false;
  std::function<StatusOr<size_t>(std::span<uint8_t>)> read;
};

struct Response {
  int status = 200;  // 200..599; anything else becomes a 500
  // Extra header fields. Names are tokens, values hold no CR, LF or NUL; a response breaking
  // this is replaced by a 500 (a handler bug must not split a response).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = kJsonContentType;
  // Set instead of `body` for a streamed body (`body` must then be empty).
  std::shared_ptr<StreamedBody> stream;
  // See RunOnWorker().
  bool run_on_worker = false;
};

// Returned by a handler running on the I/O thread (Request::on_io_thread) that would block: the
// server calls it again, with the same request, on a worker. Anywhere else it is a handler bug
// and becomes a 500.
Response RunOnWorker();

// `body` serialised as compact JSON, with the JSON content type. Invalid UTF-8 in strings is
// replaced by U+FFFD rather than failing.
Response Json(int status, const nlohmann::json& body);

// The Azure error envelope. `code` is an Azure-style code ("KeyNotFound", "Forbidden");
// `message` is for people and must not hold secrets; `innererror`, when given, is sent as is.
Response AzureError(int status, std::string code, std::string message,
                    std::optional<nlohmann::json> innererror = {});

// A body sent as is with `content_type` (none when empty, e.g. Text(204, "", "")).
Response Text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_RESPONSE_H_
