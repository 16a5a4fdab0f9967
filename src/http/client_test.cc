// The client's failures that need no server; streamed uploads and downloads against the real
// HttpsServer, and against a scripted TLS server for what HttpsServer never sends (chunked
// bodies, stalls, a connection dropped between requests). Plain exchanges with the server are in
// tests/integration/http_server_test.cc.
#include "http/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/encoding.h"
#include "crypto/digest.h"
#include "crypto/ossl_ptr.h"
#include "crypto/x509.h"
#include "http/router.h"
#include "http/server.h"

namespace keyfoundry::http {
namespace {

using Clock = std::chrono::steady_clock;

// A socket listening on 127.0.0.1 that never accepts: connections complete (the kernel's
// backlog) and then nothing ever answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

StatusCode CodeOf(ClientRequest request) { return HttpsRequest(request).status().code(); }

TEST(ClientTest, RefusesMalformedUrls) {
  for (const char* url : {"", "http://localhost/", "https://", "https:///x", "https://h:0/",
                          "https://h:65536/", "https://h:x/", "https://h:/", "https://[::1/",
                          "https://[::1]x/", "https://user@h/", "ftp://h/"}) {
    ClientRequest request;
    request.url = url;
    EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument) << url;
  }
}

TEST(ClientTest, RefusesBadMethodsHeadersConnectAddressesAndCas) {
  SilentListener listener;
  ClientRequest request;
  request.url = "https://localhost:" + std::to_string(listener.port()) + "/";
  request.connect_address = "not-an-ip";
  EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument);
  request.connect_address = "127.0.0.1";
  request.ca_pem = "not a certificate";
  EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument);
  request.ca_pem.clear();
  request.method = "GET /x HTTP/1.1\r\nX:";
  EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument);
  request.method = "get";
  EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument);
  request.method = "GET";
  for (auto header : std::vector<std::pair<std::string, std::string>>{
           {"", "v"}, {"a b", "v"}, {"a:b", "v"}, {"x", "v\r\nInjected: 1"}, {"x", {"\0", 1}}}) {
    request.headers = {header};
    EXPECT_EQ(CodeOf(request), StatusCode::kInvalidArgument) << header.first;
  }
}

TEST(ClientTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    SilentListener listener;  // a port that was free a moment ago, now closed
    port = listener.port();
  }
  ClientRequest request;
  request.url = "https://127.0.0.1:" + std::to_string(port) + "/";
  EXPECT_EQ(CodeOf(request), StatusCode::kUnavailable);
}

TEST(ClientTest, ASilentServerIsADeadlineExceeded) {
  SilentListener listener;
  ClientRequest request;
  request.url = "https://127.0.0.1:" + std::to_string(listener.port()) + "/secret?token=x";
  request.timeout = std::chrono::milliseconds(300);
  const auto start = Clock::now();
  auto response = HttpsRequest(request);
  EXPECT_EQ(response.status().code(), StatusCode::kDeadlineExceeded) << response.status();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  // The message names the server, never the path or query.
  EXPECT_NE(response.status().message().find("127.0.0.1:"), std::string::npos);
  EXPECT_EQ(response.status().message().find("secret"), std::string::npos);
  EXPECT_EQ(response.status().message().find("token"), std::string::npos);
}

// --- Streaming -------------------------------------------------------------------------------

using std::chrono::milliseconds;
using std::chrono::seconds;
using SslCtxPtr = std::unique_ptr<SSL_CTX, crypto::OsslFree<&SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, crypto::OsslFree<&SSL_free>>;

constexpr size_t kMiB = size_t{1} << 20;

// `size` bytes of a fixed pattern that does not repeat with a power-of-two period.
std::string Pattern(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + i / 4099) & 0xff);
  return out;
}

std::string Sha256Hex(std::string_view data) { return HexEncode(*crypto::Sha256(AsBytes(data))); }

// A body_source reading from `data` (which must outlive it) at most `max_piece` bytes a call;
// records the largest buffer it was given.
struct StringSource {
  std::string_view data;
  size_t max_piece = SIZE_MAX;
  size_t offset = 0;
  size_t largest_request = 0;
  int calls_after_end = 0;
  bool ended = false;

  std::function<StatusOr<size_t>(std::span<uint8_t>)> Source() {
    return [this](std::span<uint8_t> out) -> StatusOr<size_t> {
      if (ended) ++calls_after_end;
      largest_request = std::max(largest_request, out.size());
      const size_t n = std::min({out.size(), max_piece, data.size() - offset});
      std::memcpy(out.data(), data.data() + offset, n);
      offset += n;
      ended = n == 0;
      return n;
    };
  }
};

// Test-only: a TLS server on 127.0.0.1 that serves the connections it accepts one after
// another, each with `script` (given the connection's index from 0). Stops when destroyed.
class ScriptedTlsServer {
 public:
  using Script = std::function<void(int connection, SSL* ssl)>;

  ScriptedTlsServer(const crypto::CertificateAndKey& leaf, Script script)
      : script_(std::move(script)) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    crypto::BioPtr cert_bio(BIO_new_mem_buf(leaf.certificate_pem.data(),
                                            static_cast<int>(leaf.certificate_pem.size())));
    crypto::X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    const ByteView key_pem = leaf.private_key_pem.Reveal(InsecureSecretAccess());
    crypto::BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    EXPECT_EQ(SSL_CTX_use_certificate(ctx_.get(), cert.get()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx_.get(), key.get()), 1);

    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedTlsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

  uint16_t port() const { return port_; }
  int connections() const { return connections_; }

  // Reads a request's head (up to the empty line; body bytes read with it are dropped). Empty
  // when the connection ends first.
  static std::string ReadHead(SSL* ssl) {
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      const int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0) return {};
      head.append(buf, static_cast<size_t>(n));
    }
    return head;
  }

  static bool Write(SSL* ssl, std::string_view data) {
    while (!data.empty()) {
      const int n = SSL_write(ssl, data.data(), static_cast<int>(data.size()));
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      const int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) continue;
      SslPtr ssl(SSL_new(ctx_.get()));
      SSL_set_fd(ssl.get(), client);
      if (SSL_accept(ssl.get()) == 1) {
        script_(connections_++, ssl.get());
        SSL_shutdown(ssl.get());
      }
      ssl.reset();
      ::close(client);
    }
  }

  Script script_;
  SslCtxPtr ctx_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// `data` as one chunk of a chunked body.
std::string Chunk(std::string_view data) {
  std::ostringstream out;
  out << std::hex << data.size() << "\r\n" << data << "\r\n";
  return out.str();
}

class ClientStreamingTest : public ::testing::Test {
 protected:
  static constexpr size_t kUploadLimit = 32 * kMiB;

  static void SetUpTestSuite() {
    (void)std::signal(SIGPIPE, SIG_IGN);  // the scripted server writes to clients that gave up
    auto ca = crypto::GenerateCa("keyfoundry test CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto leaf = crypto::IssueServerCertificate(*ca, "localhost", {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    ca_ = new crypto::CertificateAndKey(*std::move(ca));
    leaf_ = new crypto::CertificateAndKey(*std::move(leaf));
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete leaf_;
  }

  void SetUp() override {
    auto router = std::make_shared<Router>();
    router->Add("POST", "*", "/upload",
                [this](Request& r) {
                  ++uploads_;
                  return Json(200, {{"size", r.body.size()}, {"sha256", Sha256Hex(r.body)}});
                },
                {.max_body_bytes = kUploadLimit});
    router->Add("GET", "*", "/download", [](Request& r) {
      return Text(200, Pattern(std::stoul(r.query.at("size"))), "application/octet-stream");
    });
    router->Add("GET", "*", "/fail", [](Request&) {
      return AzureError(409, "Conflict", "the download is not ready" + std::string(2000, '.'));
    });
    router->Add("POST", "*", "/echo", [](Request& r) { return Text(200, r.body); });
    ServerOptions options;
    options.certificate_pem = leaf_->certificate_pem;
    options.private_key_pem = leaf_->private_key_pem.Clone();
    auto server = HttpsServer::Start(std::move(options), router);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ClientRequest Req(std::string method, const std::string& path, uint16_t port = 0) {
    ClientRequest r;
    r.method = std::move(method);
    r.url = "https://127.0.0.1:" + std::to_string(port != 0 ? port : server_->port()) + path;
    r.ca_pem = ca_->certificate_pem;
    r.timeout = seconds(10);
    return r;
  }

  // A response_sink appending to *out; records the largest piece.
  static std::function<Status(std::string_view)> SinkTo(std::string* out, size_t* largest) {
    return [out, largest](std::string_view piece) {
      EXPECT_FALSE(piece.empty());
      *largest = std::max(*largest, piece.size());
      out->append(piece);
      return OkStatus();
    };
  }

  static inline crypto::CertificateAndKey* ca_ = nullptr;
  static inline crypto::CertificateAndKey* leaf_ = nullptr;
  std::atomic<int> uploads_{0};
  std::unique_ptr<HttpsServer> server_;
};

TEST_F(ClientStreamingTest, UploadsFromASourceInBoundedPieces) {
  const std::string data = Pattern(20 * kMiB + 12345);
  StringSource source{data};
  ClientRequest request = Req("POST", "/upload");
  request.body_source = source.Source();
  request.body_size = data.size();
  auto response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->status, 200) << response->body;
  const auto json = nlohmann::json::parse(response->body);
  EXPECT_EQ(json["size"], data.size());
  EXPECT_EQ(json["sha256"], Sha256Hex(data));
  EXPECT_LE(source.largest_request, kClientStreamPieceBytes);
  EXPECT_EQ(source.calls_after_end, 0);
}

TEST_F(ClientStreamingTest, UploadsFromASourceGivingSmallPiecesAndFromAnEmptyOne) {
  const std::string data = Pattern(300000);
  StringSource source{data, 1000};
  ClientRequest request = Req("POST", "/upload");
  request.body_source = source.Source();
  request.body_size = data.size();
  auto response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(nlohmann::json::parse(response->body)["sha256"], Sha256Hex(data));

  StringSource empty{""};
  request.body_source = empty.Source();
  request.body_size = 0;
  response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(nlohmann::json::parse(response->body)["size"], 0);
}

TEST_F(ClientStreamingTest, SourceOfTheWrongSizeIsInvalidArgumentAndNeverCompletesTheRequest) {
  const std::string data = Pattern(200000);
  HttpsClient client;
  for (const size_t declared : {data.size() + 1, data.size() - 1, size_t{0}}) {
    StringSource source{data};
    ClientRequest request = Req("POST", "/upload");
    request.body_source = source.Source();
    request.body_size = declared;
    auto response = client.Send(request);
    EXPECT_EQ(response.status().code(), StatusCode::kInvalidArgument) << declared;
    EXPECT_NE(response.status().message().find("body_size"), std::string::npos)
        << response.status();
  }
  // The client still works, and the server never ran the handler for the broken requests.
  auto response = client.Send(Req("POST", "/echo"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(uploads_, 0);
}

TEST_F(ClientStreamingTest, SourceErrorAbortsTheRequest) {
  int calls = 0;
  ClientRequest request = Req("POST", "/upload");
  request.body_size = 10 * kMiB;
  request.body_source = [&calls](std::span<uint8_t> out) -> StatusOr<size_t> {
    if (++calls == 20) return DataLossError("the file could not be read");
    std::memset(out.data(), 'x', out.size());
    return out.size();
  };
  auto response = HttpsRequest(request);
  EXPECT_EQ(response.status(), DataLossError("the file could not be read"));
  EXPECT_EQ(calls, 20);
  EXPECT_EQ(uploads_, 0);

  request.body_source = [](std::span<uint8_t> out) -> StatusOr<size_t> { return out.size() + 1; };
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientStreamingTest, StreamedBodiesNeedConsistentFields) {
  StringSource source{"abc"};
  ClientRequest request = Req("POST", "/upload");
  request.body_source = source.Source();
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kInvalidArgument);  // no size
  request.body_size = 3;
  request.body = "abc";
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kInvalidArgument);  // both
  request.body_source = nullptr;
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kInvalidArgument);  // size only
  EXPECT_EQ(uploads_, 0);
}

TEST_F(ClientStreamingTest, SlowSourceIsBoundedPerStepNotOverall) {
  const std::string data = Pattern(5 * kClientStreamPieceBytes);
  StringSource inner{data};
  auto read = inner.Source();
  ClientRequest request = Req("POST", "/upload");
  request.timeout = milliseconds(400);
  request.body_size = data.size();
  request.body_source = [&read](std::span<uint8_t> out) {
    std::this_thread::sleep_for(milliseconds(120));
    return read(out);
  };
  auto response = HttpsRequest(request);  // about 6 x 120 ms in all
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(nlohmann::json::parse(response->body)["sha256"], Sha256Hex(data));
}

TEST_F(ClientStreamingTest, DownloadsToASinkInBoundedPieces) {
  const size_t size = 20 * kMiB + 777;
  HttpsClient client;
  for (int round = 0; round < 2; ++round) {  // the connection is kept and reused
    std::string got;
    size_t largest = 0;
    ClientRequest request = Req("GET", "/download?size=" + std::to_string(size));
    request.max_response_bytes = 1024;  // does not apply to a sunk body
    request.response_sink = SinkTo(&got, &largest);
    auto response = client.Send(request);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_TRUE(response->body.empty());
    EXPECT_EQ(response->Header("content-length"), std::to_string(size));
    EXPECT_EQ(got.size(), size);
    EXPECT_TRUE(got == Pattern(size));
    EXPECT_LE(largest, kClientStreamPieceBytes);
  }
}

TEST_F(ClientStreamingTest, SinkErrorAbortsTheRequest) {
  HttpsClient client;
  int pieces = 0;
  ClientRequest request = Req("GET", "/download?size=" + std::to_string(8 * kMiB));
  request.response_sink = [&pieces](std::string_view) {
    return ++pieces == 3 ? ResourceExhaustedError("the disk is full") : OkStatus();
  };
  auto response = client.Send(request);
  EXPECT_EQ(response.status(), ResourceExhaustedError("the disk is full"));
  EXPECT_EQ(pieces, 3);
  // The connection was closed mid-body; the next request gets a new one.
  response = client.Send(Req("GET", "/download?size=10"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->body, Pattern(10));
}

TEST_F(ClientStreamingTest, ErrorResponsesAreKeptWholeNotSunk) {
  int pieces = 0;
  ClientRequest request = Req("GET", "/fail");
  request.response_sink = [&pieces](std::string_view) {
    ++pieces;
    return OkStatus();
  };
  auto response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 409);
  EXPECT_EQ(nlohmann::json::parse(response->body)["error"]["code"], "Conflict");
  EXPECT_EQ(pieces, 0);

  request.max_response_bytes = 1000;  // still applies to bodies that are kept
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kResourceExhausted);
  request.url = Req("GET", "/missing").url;
  response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 404);
  EXPECT_FALSE(response->body.empty());
}

TEST_F(ClientStreamingTest, UploadAndDownloadTogether) {
  const std::string data = Pattern(24 * kMiB);
  StringSource source{data};
  std::string got;
  size_t largest = 0;
  ClientRequest request = Req("POST", "/echo");
  request.body_source = source.Source();
  request.body_size = data.size();
  request.response_sink = SinkTo(&got, &largest);
  // /echo takes 1 MiB: the server refuses the body before reading it and stops reading; the
  // client's write fails, and it returns the 413 that came before (kept whole: not a 2xx).
  auto response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 413);
  EXPECT_TRUE(got.empty());

  StringSource small{std::string_view(data).substr(0, 100000)};
  request.body_source = small.Source();
  request.body_size = 100000;
  response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(got == data.substr(0, 100000));
}

TEST_F(ClientStreamingTest, ChunkedResponsesAreSunkOrKept) {
  const std::string data = Pattern(3 * kMiB + 5);
  ScriptedTlsServer chunked(*leaf_, [&data](int, SSL* ssl) {
    for (int i = 0; i < 2; ++i) {
      if (ScriptedTlsServer::ReadHead(ssl).empty()) return;
      std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      // Chunks larger and smaller than the client's pieces.
      out += Chunk(std::string_view(data).substr(0, 200000));
      for (size_t at = 200000; at < data.size(); at += 70001) {
        out += Chunk(std::string_view(data).substr(at, 70001));
      }
      out += "0\r\n\r\n";
      if (!ScriptedTlsServer::Write(ssl, out)) return;
    }
  });
  HttpsClient client;
  std::string got;
  size_t largest = 0;
  ClientRequest request = Req("GET", "/", chunked.port());
  request.response_sink = SinkTo(&got, &largest);
  auto response = client.Send(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->body.empty());
  EXPECT_TRUE(got == data);
  EXPECT_LE(largest, kClientStreamPieceBytes);

  request.response_sink = nullptr;  // kept whole, on the same connection
  response = client.Send(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->body == data);
  EXPECT_EQ(chunked.connections(), 1);
}

TEST_F(ClientStreamingTest, StreamedDownloadMayOutlastTheTimeoutButNotStall) {
  // Five pieces 150 ms apart: 600 ms in all, each step well within the 400 ms timeout.
  auto trickle = [](int, SSL* ssl) {
    if (ScriptedTlsServer::ReadHead(ssl).empty()) return;
    if (!ScriptedTlsServer::Write(ssl, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")) {
      return;
    }
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(milliseconds(150));
      if (!ScriptedTlsServer::Write(ssl, Chunk("piece"))) return;
    }
    (void)ScriptedTlsServer::Write(ssl, "0\r\n\r\n");
  };
  ScriptedTlsServer server(*leaf_, trickle);
  std::string got;
  size_t largest = 0;
  ClientRequest request = Req("GET", "/", server.port());
  request.timeout = milliseconds(400);
  request.response_sink = SinkTo(&got, &largest);
  auto response = HttpsRequest(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(got, "piecepiecepiecepiecepiece");

  // Without a sink the timeout bounds the whole request.
  request.response_sink = nullptr;
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kDeadlineExceeded);

  // A stall longer than the timeout fails a streamed download too.
  ScriptedTlsServer stalling(*leaf_, [](int, SSL* ssl) {
    if (ScriptedTlsServer::ReadHead(ssl).empty()) return;
    (void)ScriptedTlsServer::Write(
        ssl, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(10, 'x'));
    std::this_thread::sleep_for(milliseconds(1000));
  });
  request.url = Req("GET", "/", stalling.port()).url;
  request.response_sink = SinkTo(&got, &largest);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpsRequest(request).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(900));
}

TEST_F(ClientStreamingTest, RequestWithASourceIsNotRetriedOnABrokenConnection) {
  // Answers a connection's first request, then drops it when the second arrives; the next
  // connection is answered.
  auto script = [](int connection, SSL* ssl) {
    if (ScriptedTlsServer::ReadHead(ssl).empty()) return;
    if (connection == 0) {
      if (!ScriptedTlsServer::Write(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) return;
      (void)ScriptedTlsServer::ReadHead(ssl);
      return;  // closed without an answer
    }
    (void)ScriptedTlsServer::Write(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nretried");
  };
  {
    ScriptedTlsServer server(*leaf_, script);
    HttpsClient client;
    ASSERT_TRUE(client.Send(Req("GET", "/", server.port())).ok());
    StringSource source{"hello"};
    ClientRequest put = Req("PUT", "/", server.port());
    put.body_source = source.Source();
    put.body_size = 5;
    EXPECT_EQ(client.Send(put).status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(server.connections(), 1);
  }
  {
    // The same PUT with its body in memory is retried.
    ScriptedTlsServer server(*leaf_, script);
    HttpsClient client;
    ASSERT_TRUE(client.Send(Req("GET", "/", server.port())).ok());
    ClientRequest put = Req("PUT", "/", server.port());
    put.body = "hello";
    auto response = client.Send(put);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->body, "retried");
  }
}

}  // namespace
}  // namespace keyfoundry::http
