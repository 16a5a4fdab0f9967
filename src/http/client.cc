// The client runs Beast's asynchronous operations on a private io_context, one at a time, each
// bounded by the request's deadline (beast::tcp_stream closes the socket when it passes): a
// synchronous API with timeouts, which Beast's synchronous calls lack.
#include "http/client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

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
    const auto deadline = Clock::now() + request.timeout;
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
    if (!response.ok() && reuse && retryable && IsIdempotent(request.method)) {
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

  Status Connect(const Url& url, const ClientRequest& request, Clock::time_point deadline) {
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

    tcp().expires_at(deadline);
    ec = Run(ioc_, [&](auto handler) { tcp().async_connect(endpoints, std::move(handler)); });
    if (ec) return Failed("connecting to", url, ec);
    tcp().socket().set_option(tcp::no_delay(true), ec);  // requests are written whole
    ec = Run(ioc_, [&](auto handler) {
      stream_->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (ec) return Failed("TLS handshake with", url, ec);
    return OkStatus();
  }

  StatusOr<ClientResponse> Exchange(const Url& url, const ClientRequest& request,
                                    Clock::time_point deadline, bool* retryable) {
    *retryable = false;
    bhttp::request<bhttp::string_body> message;
    message.method_string(request.method);
    message.target(url.target);
    message.version(11);
    message.set(bhttp::field::host, url.host_header);
    for (const auto& [name, value] : request.headers) message.insert(name, value);
    message.body() = request.body;
    message.keep_alive(true);
    message.prepare_payload();

    tcp().expires_at(deadline);
    beast::error_code ec =
        Run(ioc_, [&](auto handler) { bhttp::async_write(*stream_, message, std::move(handler)); });
    if (ec) {
      *retryable = ec != beast::error::timeout;
      return Failed("sending a request to", url, ec);
    }

    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(kMaxResponseHeaderBytes);
    parser.body_limit(request.max_response_bytes);
    if (request.method == "HEAD") parser.skip(true);
    ec = Run(ioc_, [&](auto handler) {
      bhttp::async_read(*stream_, buffer_, parser, std::move(handler));
    });
    if (ec == bhttp::error::body_limit) {
      return ResourceExhaustedError("the response from " + Where(url) + " exceeds " +
                                    std::to_string(request.max_response_bytes) + " bytes");
    }
    if (ec) {
      *retryable = !parser.got_some() && ec != beast::error::timeout;
      return Failed("reading the response from", url, ec);
    }

    ClientResponse response;
    auto& result = parser.get();
    response.status = static_cast<int>(result.result_int());
    for (const auto& field : result) {
      response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    response.body = std::move(result.body());
    if (!result.keep_alive()) Disconnect();
    return response;
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
  std::string key_;  // what the open connection was made for
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
