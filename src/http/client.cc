// The client runs Beast's asynchronous operations on a private io_context, one at a time, each
// bounded by the request's deadline (beast::tcp_stream closes the socket when it passes): a
// synchronous API with timeouts, which Beast's synchronous calls lack.
//
// Bodies move through one buffer of kClientStreamPieceBytes (piece_): a request body from a
// body_source with a buffer_body serializer, and every response body with a buffer_body parser
// (read header first, then piece by piece into the sink or into ClientResponse::body), so memory
// is bounded by that buffer plus the connection's read buffer whatever the sizes.
#include "http/client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>

#include "http/request.h"

namespace keyfoundry::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxResponseHeaderBytes = 64 * 1024;

struct Url {
  std::string host;         // for SNI and the certificate check: no brackets
  std::string host_header;  // as in the URL: "[::1]:8443"
  uint16_t port = 443;
  std::string target;  // "/path?query"
  bool host_is_ip = false;
};

StatusOr<Url> ParseUrl(std::string_view url) {
  auto invalid = [] {
    return InvalidArgumentError("the URL must look like https://host[:port]/path");
  };
  constexpr std::string_view kScheme = "https://";
  if (url.size() < kScheme.size() || !EqualsIgnoreCase(url.substr(0, kScheme.size()), kScheme)) {
    return invalid();
  }
  url.remove_prefix(kScheme.size());
  const size_t end = url.find_first_of("/?#");
  const std::string_view authority = url.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : url.substr(end);
  if (rest.starts_with('#')) rest = {};
  rest = rest.substr(0, rest.find('#'));

  Url out;
  out.host_header = std::string(authority);
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalid();
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return invalid();
    if (!after.empty()) port = after.substr(1);
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty() || host.find_first_of("@ \t\r\n") != std::string_view::npos) return invalid();
  if (!port.empty() || authority.ends_with(':')) {
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos) {
      return invalid();
    }
    const int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535) return invalid();
    out.port = static_cast<uint16_t>(p);
  }
  out.host = std::string(host);
  beast::error_code ec;
  (void)asio::ip::make_address(out.host, ec);
  out.host_is_ip = !ec;
  out.target = rest.empty()            ? "/"
               : rest.starts_with('?') ? "/" + std::string(rest)
                                       : std::string(rest);
  return out;
}

// Starts the operation `start` (given a completion handler) and runs the io_context until it
// completes. Returns its error.
template <typename Start>
beast::error_code Run(asio::io_context& ioc, Start start) {
  beast::error_code result = asio::error::operation_aborted;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

// Methods are upper-case tokens; header names tokens; header values free of CR, LF and NUL.
Status ValidateRequest(const ClientRequest& request) {
  if (request.method.empty() ||
      request.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
    return InvalidArgumentError("the method must be upper-case letters");
  }
  for (const auto& [name, value] : request.headers) {
    if (name.empty() || name.find_first_of(":\r\n\0 \t", 0, 6) != std::string::npos ||
        value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return InvalidArgumentError("invalid request header \"" + name + "\"");
    }
  }
  return OkStatus();
}

Status ValidateBody(const ClientRequest& request) {
  if (!request.body_source) {
    if (request.body_size.has_value()) {
      return InvalidArgumentError("body_size is only for a request with a body_source");
    }
    return OkStatus();
  }
  if (!request.body_size.has_value()) {
    return InvalidArgumentError("a request with a body_source needs a body_size");
  }
  if (!request.body.empty()) {
    return InvalidArgumentError("a request has either a body or a body_source, not both");
  }
  return OkStatus();
}

bool IsStreamed(const ClientRequest& request) {
  return request.body_source != nullptr || request.response_sink != nullptr;
}

// When the next I/O step must end: by the request's one deadline, or for a streamed request
// `timeout` after the step starts (see client.h).
class Deadline {
 public:
  explicit Deadline(const ClientRequest& request)
      : timeout_(request.timeout),
        per_step_(IsStreamed(request)),
        end_(Clock::now() + request.timeout) {}

  Clock::time_point ForNextStep() const { return per_step_ ? Clock::now() + timeout_ : end_; }

 private:
  std::chrono::milliseconds timeout_;
  bool per_step_;
  Clock::time_point end_;
};

// Fills `out` from `source` until it is full or the source ends (returns 0); returns how many
// bytes it holds. Does not call the source for an empty `out`.
StatusOr<size_t> Fill(const std::function<StatusOr<size_t>(std::span<uint8_t>)>& source,
                      std::span<uint8_t> out) {
  size_t filled = 0;
  while (filled < out.size()) {
    ASSIGN_OR_RETURN(const size_t n, source(out.subspan(filled)));
    if (n > out.size() - filled) {
      return InvalidArgumentError("the body source returned more bytes than it was asked for");
    }
    if (n == 0) break;
    filled += n;
  }
  return filled;
}

template <typename Body>
void SetRequestHead(const Url& url, const ClientRequest& request, bhttp::request<Body>& message) {
  message.method_string(request.method);
  message.target(url.target);
  message.version(11);
  message.set(bhttp::field::host, url.host_header);
  for (const auto& [name, value] : request.headers) message.insert(name, value);
  message.keep_alive(true);
}

bool IsIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS";
}

}  // namespace

std::optional<std::string_view> ClientResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return std::nullopt;
}

class HttpsClient::Impl {
 public:
  StatusOr<ClientResponse> Send(const ClientRequest& request) {
    ASSIGN_OR_RETURN(Url url, ParseUrl(request.url));
    RETURN_IF_ERROR(ValidateRequest(request));
    RETURN_IF_ERROR(ValidateBody(request));
    const Deadline deadline(request);
    std::string key = url.host + "\n" + std::to_string(url.port) + "\n" +
                      request.connect_address.value_or("") + "\n" + request.ca_pem;
    const bool reuse = stream_.has_value() && key == key_ && !ClosedByPeer();
    if (!reuse) {
      Disconnect();
      RETURN_IF_ERROR(Connect(url, request, deadline));
      key_ = std::move(key);
    }
    bool retryable = false;
    auto response = Exchange(url, request, deadline, &retryable);
    if (!response.ok() && reuse && retryable && !request.body_source &&
        IsIdempotent(request.method)) {
      Disconnect();
      RETURN_IF_ERROR(Connect(url, request, deadline));
      response = Exchange(url, request, deadline, &retryable);
    }
    if (!response.ok()) Disconnect();
    return response;
  }

 private:
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(*stream_); }

  std::string Where(const Url& url) const { return url.host + ":" + std::to_string(url.port); }

  Status Connect(const Url& url, const ClientRequest& request, const Deadline& deadline) {
    beast::error_code ec;
    context_.emplace(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(context_->native_handle(), TLS1_2_VERSION);
    context_->set_verify_mode(ssl::verify_peer);
    if (request.ca_pem.empty()) {
      context_->set_default_verify_paths(ec);
    } else {
      context_->add_certificate_authority(asio::buffer(request.ca_pem), ec);
    }
    if (ec) return InvalidArgumentError("the CA certificate is not usable: " + ec.message());

    stream_.emplace(ioc_, *context_);
    SSL* ssl = stream_->native_handle();
    const bool named =
        url.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str()) == 1
                       : SSL_set_tlsext_host_name(ssl, url.host.c_str()) == 1 &&
                             SSL_set1_host(ssl, url.host.c_str()) == 1;
    if (!named) return InvalidArgumentError("cannot check a certificate for " + url.host);

    std::vector<tcp::endpoint> endpoints;
    if (request.connect_address.has_value()) {
      const auto address = asio::ip::make_address(*request.connect_address, ec);
      if (ec) return InvalidArgumentError("connect_address must be an IP address");
      endpoints.emplace_back(address, url.port);
    } else {
      tcp::resolver resolver(ioc_);
      for (const auto& entry : resolver.resolve(url.host, std::to_string(url.port), ec)) {
        endpoints.push_back(entry.endpoint());
      }
      if (ec || endpoints.empty()) return UnavailableError("cannot resolve " + url.host);
    }

    tcp().expires_at(deadline.ForNextStep());
    ec = Run(ioc_, [&](auto handler) { tcp().async_connect(endpoints, std::move(handler)); });
    if (ec) return Failed("connecting to", url, ec);
    tcp().socket().set_option(tcp::no_delay(true), ec);  // requests are written whole
    tcp().expires_at(deadline.ForNextStep());
    ec = Run(ioc_, [&](auto handler) {
      stream_->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (ec) return Failed("TLS handshake with", url, ec);
    return OkStatus();
  }

  StatusOr<ClientResponse> Exchange(const Url& url, const ClientRequest& request,
                                    const Deadline& deadline, bool* retryable) {
    *retryable = false;
    beast::error_code ec;
    if (request.body_source) {
      RETURN_IF_ERROR(WriteStreamedRequest(url, request, deadline, &ec));
    } else {
      bhttp::request<bhttp::string_body> message;
      SetRequestHead(url, request, message);
      message.body() = request.body;
      message.prepare_payload();
      tcp().expires_at(deadline.ForNextStep());
      ec = Run(ioc_,
               [&](auto handler) { bhttp::async_write(*stream_, message, std::move(handler)); });
    }
    if (ec) {
      if (ec != beast::error::timeout) {
        // A server may answer before it has read the whole request and stop reading (413 or 401
        // to a large upload): that answer is what the caller needs, not "broken pipe".
        bool ignored;
        auto early = ReadResponse(url, request, deadline, &ignored);
        if (early.ok()) {
          Disconnect();
          return early;
        }
      }
      *retryable = ec != beast::error::timeout;
      return Failed("sending a request to", url, ec);
    }
    return ReadResponse(url, request, deadline, retryable);
  }

  // Sends the head and then the body from request.body_source, a piece at a time. The last
  // piece goes out only once the source has said it is at its end, so a source that yields too
  // much never completes a request on the wire. A source's failure is returned; a transport
  // error is left in *error.
  Status WriteStreamedRequest(const Url& url, const ClientRequest& request,
                              const Deadline& deadline, beast::error_code* error) {
    bhttp::request<bhttp::buffer_body> message;
    SetRequestHead(url, request, message);
    message.content_length(*request.body_size);
    bhttp::request_serializer<bhttp::buffer_body> serializer(message);
    std::span<uint8_t> piece = Piece();
    uint64_t remaining = *request.body_size;
    for (;;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, piece.size()));
      ASSIGN_OR_RETURN(const size_t n, Fill(request.body_source, piece.first(want)));
      if (n < want) {
        return InvalidArgumentError(
            "the body source ended after " + std::to_string(*request.body_size - remaining + n) +
            " bytes of the " + std::to_string(*request.body_size) + " given as body_size");
      }
      remaining -= n;
      if (remaining == 0) {
        uint8_t extra;
        ASSIGN_OR_RETURN(const size_t more, Fill(request.body_source, std::span(&extra, 1)));
        if (more != 0) {
          return InvalidArgumentError("the body source yields more than the " +
                                      std::to_string(*request.body_size) +
                                      " bytes given as body_size");
        }
      }
      message.body().data = n == 0 ? nullptr : piece.data();
      message.body().size = n;
      message.body().more = remaining > 0;
      beast::error_code ec;
      do {  // one write at a time, each within the deadline for a step
        tcp().expires_at(deadline.ForNextStep());
        ec = Run(ioc_, [&](auto handler) {
          bhttp::async_write_some(*stream_, serializer, std::move(handler));
        });
      } while (!ec && !serializer.is_done());
      if (ec == bhttp::error::need_buffer) ec = {};  // the piece is sent; the serializer wants more
      if (ec || remaining == 0) {
        *error = ec;
        return OkStatus();
      }
    }
  }

  // Reads the head, then the body a piece at a time into request.response_sink (2xx with a
  // sink) or into ClientResponse::body (bounded by max_response_bytes).
  StatusOr<ClientResponse> ReadResponse(const Url& url, const ClientRequest& request,
                                        const Deadline& deadline, bool* retryable) {
    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.header_limit(kMaxResponseHeaderBytes);
    parser.body_limit(boost::none);  // max_response_bytes applies to kept bodies only: below
    if (request.method == "HEAD") parser.skip(true);
    tcp().expires_at(deadline.ForNextStep());
    beast::error_code ec = Run(ioc_, [&](auto handler) {
      bhttp::async_read_header(*stream_, buffer_, parser, std::move(handler));
    });
    if (ec) {
      *retryable = !parser.got_some() && ec != beast::error::timeout;
      return Failed("reading the response from", url, ec);
    }

    ClientResponse response;
    const auto& head = parser.get();
    response.status = static_cast<int>(head.result_int());
    for (const auto& field : head) {
      response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    const bool sunk = request.response_sink && response.status / 100 == 2;
    const auto too_large = [&] {
      return ResourceExhaustedError("the response from " + Where(url) + " exceeds " +
                                    std::to_string(request.max_response_bytes) + " bytes");
    };
    if (!sunk && parser.content_length().has_value()) {
      if (*parser.content_length() > request.max_response_bytes) return too_large();
      response.body.reserve(static_cast<size_t>(*parser.content_length()));
    }

    std::span<uint8_t> piece = Piece();
    while (!parser.is_done()) {
      parser.get().body().data = piece.data();
      parser.get().body().size = piece.size();
      tcp().expires_at(deadline.ForNextStep());
      ec = Run(ioc_, [&](auto handler) {  // one read (or what buffer_ holds already)
        bhttp::async_read_some(*stream_, buffer_, parser, std::move(handler));
      });
      if (ec == bhttp::error::need_buffer) ec = {};  // the piece is full
      if (ec) return Failed("reading the response from", url, ec);
      const std::string_view got(reinterpret_cast<const char*>(piece.data()),
                                 piece.size() - parser.get().body().size);
      if (got.empty()) continue;
      if (sunk) {
        RETURN_IF_ERROR(request.response_sink(got));
      } else {
        if (got.size() > request.max_response_bytes - response.body.size()) return too_large();
        response.body.append(got);
      }
    }
    if (!parser.get().keep_alive()) Disconnect();
    return response;
  }

  // The buffer bodies move through, allocated on first use and kept with the client.
  std::span<uint8_t> Piece() {
    if (piece_.empty()) piece_.resize(kClientStreamPieceBytes);
    return piece_;
  }

  // True when the server has closed an idle connection (end of stream, or a pending TLS alert:
  // nothing else arrives between responses).
  bool ClosedByPeer() {
    char byte;
    const ssize_t n = ::recv(tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }

  Status Failed(const char* what, const Url& url, const beast::error_code& ec) {
    Disconnect();
    const std::string message = std::string(what) + " " + Where(url) + " failed: " + ec.message();
    return ec == beast::error::timeout ? Status(StatusCode::kDeadlineExceeded, message)
                                       : UnavailableError(message);
  }

  void Disconnect() {
    stream_.reset();
    context_.reset();
    buffer_.clear();
    key_.clear();
  }

  asio::io_context ioc_;
  std::optional<ssl::context> context_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;  // uses *context_
  beast::flat_buffer buffer_;
  std::vector<uint8_t> piece_;  // see Piece()
  std::string key_;             // what the open connection was made for
};

HttpsClient::HttpsClient() : impl_(std::make_unique<Impl>()) {}
HttpsClient::~HttpsClient() = default;

StatusOr<ClientResponse> HttpsClient::Send(const ClientRequest& request) {
  try {
    return impl_->Send(request);
  } catch (const std::exception& e) {
    return InternalError(std::string("HTTPS request failed: ") + e.what());
  }
}

StatusOr<ClientResponse> HttpsRequest(const ClientRequest& request) {
  HttpsClient client;
  return client.Send(request);
}

}  // namespace keyfoundry::http
