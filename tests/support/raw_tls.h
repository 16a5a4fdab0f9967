// Test-only: raw TCP and TLS connections driven byte by byte, for what a well-behaved client
// never does (old TLS versions, oversized, malformed, slow or too many requests).
#ifndef KEYFOUNDRY_TESTS_SUPPORT_RAW_TLS_H_
#define KEYFOUNDRY_TESTS_SUPPORT_RAW_TLS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "crypto/ossl_ptr.h"

namespace keyfoundry::testutil {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;
using SslCtxPtr = std::unique_ptr<SSL_CTX, crypto::OsslFree<&SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, crypto::OsslFree<&SSL_free>>;

// Polls `condition` every 10 ms for up to `timeout`: for state the test can only observe.
inline bool Eventually(const std::function<bool()>& condition, milliseconds timeout = seconds(3)) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!condition()) {
    if (SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

inline double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// A TCP connection to 127.0.0.1:port; -1 when refused.
inline int ConnectTcp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True when the peer closes `fd` (end of stream or reset) within `timeout`.
inline bool TcpClosedWithin(int fd, milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

struct RawResponse {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

// A TLS connection driven byte by byte with OpenSSL, on a non-blocking socket.
class RawTls {
 public:
  struct Options {
    int min_version = TLS1_2_VERSION;
    int max_version = TLS1_3_VERSION;
    const char* tls12_ciphers = nullptr;  // OpenSSL's default when null
  };

  // Connects and handshakes (trusting `ca_pem`); null with *error set on failure.
  static std::unique_ptr<RawTls> Connect(uint16_t port, const std::string& ca_pem,
                                         const Options& options, std::string* error) {
    auto tls = std::unique_ptr<RawTls>(new RawTls);
    tls->ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX* ctx = tls->ctx_.get();
    SSL_CTX_set_min_proto_version(ctx, options.min_version);
    SSL_CTX_set_max_proto_version(ctx, options.max_version);
    if (options.tls12_ciphers != nullptr) SSL_CTX_set_cipher_list(ctx, options.tls12_ciphers);
    BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
    X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    X509_free(ca);
    BIO_free(bio);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);

    tls->fd_ = ConnectTcp(port);
    if (tls->fd_ < 0) {
      *error = "connection refused";
      return nullptr;
    }
    ::fcntl(tls->fd_, F_SETFL, ::fcntl(tls->fd_, F_GETFL) | O_NONBLOCK);
    tls->ssl_.reset(SSL_new(ctx));
    SSL_set_fd(tls->ssl_.get(), tls->fd_);
    SSL_set_tlsext_host_name(tls->ssl_.get(), "localhost");
    SSL_set1_host(tls->ssl_.get(), "localhost");
    const auto deadline = SteadyClock::now() + seconds(5);
    while (true) {
      ERR_clear_error();
      const int r = SSL_connect(tls->ssl_.get());
      if (r == 1) return tls;
      if (!tls->Wait(SSL_get_error(tls->ssl_.get(), r), deadline)) {
        const unsigned long e = ERR_get_error();
        *error = e != 0 ? ERR_reason_error_string(e) : "handshake failed";
        return nullptr;
      }
    }
  }

  ~RawTls() {
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
  }

  std::string version() const { return SSL_get_version(ssl_.get()); }

  bool Write(std::string_view data) {
    const auto deadline = SteadyClock::now() + seconds(5);
    while (!data.empty()) {
      const int r = SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size()));
      if (r > 0) {
        data.remove_prefix(static_cast<size_t>(r));
      } else if (!Wait(SSL_get_error(ssl_.get(), r), deadline)) {
        return false;
      }
    }
    return true;
  }

  // Bytes read (> 0), 0 when the connection was closed, -1 on timeout.
  int ReadSome(char* buf, int size, SteadyClock::time_point deadline) {
    while (true) {
      const int r = SSL_read(ssl_.get(), buf, size);
      if (r > 0) return r;
      const int err = SSL_get_error(ssl_.get(), r);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return 0;
      if (!Wait(err, deadline)) return -1;
    }
  }

  // True when the server closes the connection within `timeout` (anything it sends first is
  // discarded).
  bool ClosedWithin(milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    char buf[4096];
    while (true) {
      const int n = ReadSome(buf, sizeof(buf), deadline);
      if (n == 0) return true;
      if (n < 0) return false;
    }
  }

  // Reads one response with a Content-Length body; status 0 if the connection ended first.
  // `no_body`: the response to a HEAD request (Content-Length without a body).
  RawResponse ReadResponse(milliseconds timeout = seconds(5), bool no_body = false) {
    const auto deadline = SteadyClock::now() + timeout;
    RawResponse response;
    size_t head_end;
    while ((head_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return response;
    }
    response.head = pending_.substr(0, head_end + 2);
    pending_.erase(0, head_end + 4);
    response.status = std::stoi(response.head.substr(9, 3));
    size_t length = 0;
    if (no_body) return response;
    if (auto at = Lower(response.head).find("content-length: "); at != std::string::npos) {
      length = std::stoul(response.head.substr(at + 16));
    }
    while (pending_.size() < length) {
      if (!Fill(deadline)) return RawResponse();
    }
    response.body = pending_.substr(0, length);
    pending_.erase(0, length);
    return response;
  }

 private:
  RawTls() = default;

  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool Fill(SteadyClock::time_point deadline) {
    char buf[16384];
    const int n = ReadSome(buf, sizeof(buf), deadline);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  // Waits for the socket as OpenSSL asks; false on another error or at the deadline.
  bool Wait(int ssl_error, SteadyClock::time_point deadline) {
    if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) return false;
    const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, static_cast<short>(ssl_error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    return ::poll(&p, 1, static_cast<int>(left)) == 1;
  }

  SslCtxPtr ctx_;
  SslPtr ssl_;
  int fd_ = -1;
  std::string pending_;
};

}  // namespace keyfoundry::testutil

#endif  // KEYFOUNDRY_TESTS_SUPPORT_RAW_TLS_H_
