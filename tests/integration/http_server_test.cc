// The HTTPS server over real TLS on a free port: round trips with the client, and raw TLS and
// TCP sockets for what a well-behaved client never does (old TLS versions, oversized or
// malformed requests, slow or idle or too many connections). Timeouts are shortened to about a
// second so each test stays within a few seconds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "crypto/ossl_ptr.h"
#include "crypto/x509.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"
#include "support/raw_tls.h"

namespace keyfoundry::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;
using testutil::ConnectTcp;
using testutil::Eventually;
using testutil::RawResponse;
using testutil::RawTls;
using testutil::SecondsSince;
using testutil::TcpClosedWithin;

constexpr size_t kEchoLimit = 1024;
constexpr size_t kStreamLimit = size_t{64} << 20;

// The byte at `offset` of the test pattern streamed both ways.
uint8_t PatternByte(uint64_t offset) { return static_cast<uint8_t>((offset * 131 + 7) % 251); }

std::string Pattern(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(PatternByte(i));
  return out;
}

// Test-only consumer: checks the body against the pattern as it arrives, answers with what it
// saw; fails with 400 at `fail_at` bytes when set.
class PatternConsumer : public BodyConsumer {
 public:
  explicit PatternConsumer(uint64_t fail_at) : fail_at_(fail_at) {}
  Status Consume(ByteView data) override {
    ++pieces_;
    for (uint8_t b : data) {
      if (b != PatternByte(size_)) mismatches_++;
      if (++size_ == fail_at_) return InvalidArgumentError("refused at " + std::to_string(size_));
    }
    return OkStatus();
  }
  Response Finish() override {
    return Json(200, {{"size", size_}, {"mismatches", mismatches_}, {"pieces", pieces_}});
  }
  Response Fail(const Status& status) override {
    return AzureError(400, "BadBody", status.message());
  }

 private:
  uint64_t fail_at_;
  uint64_t size_ = 0;
  uint64_t mismatches_ = 0;
  uint64_t pieces_ = 0;
};

// A streamed response of the pattern, whose source fails after `fail_after` bytes.
Response PatternStream(uint64_t size, uint64_t fail_after) {
  Response response = Text(200, "", "application/octet-stream");
  response.stream = std::make_shared<StreamedBody>();
  response.stream->size = size;
  response.stream->read = [offset = uint64_t{0},
                           fail_after](std::span<uint8_t> out) mutable -> StatusOr<size_t> {
    if (offset >= fail_after) return DataLossError("the stored bytes are corrupt");
    for (uint8_t& b : out) b = PatternByte(offset++);
    return out.size();
  };
  return response;
}

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto ca = crypto::GenerateCa("keyfoundry test CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto leaf = crypto::IssueServerCertificate(*ca, "localhost", {"localhost", "*.vault.localhost"},
                                               {"127.0.0.1", "::1"});
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    ca_ = new crypto::CertificateAndKey(*std::move(ca));
    leaf_ = new crypto::CertificateAndKey(*std::move(leaf));
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete leaf_;
  }

  void SetUp() override {
    router_ = std::make_shared<Router>();
    router_->Add("GET", "*", "/hello", [](Request&) { return Text(200, "hello"); });
    router_->Add("GET", "{vault}.vault.localhost", "/keys/{name}", [](Request& r) {
      return Json(200, {{"vault", r.params.at("vault")},
                        {"name", r.params.at("name")},
                        {"host", r.host},
                        {"path", r.path},
                        {"target", r.target},
                        {"query", r.query},
                        {"remote", r.remote_address},
                        {"request_id", r.request_id},
                        {"header", r.Header("X-CUSTOM").value_or("")}});
    });
    router_->Add("POST", "*", "/echo", [](Request& r) { return Text(200, r.body); },
                 {.max_body_bytes = kEchoLimit});
    router_->Add("POST", "*", "/echo-large", [](Request& r) { return Text(200, r.body); });
    router_->Add("DELETE", "*", "/hello", [](Request&) { return Text(204, "", ""); });
    router_->Add("GET", "*", "/throw",
                 [](Request&) -> Response { throw std::runtime_error("internal detail"); });
    router_->Add("GET", "*", "/bad-header", [](Request&) {
      Response r = Text(200, "x");
      r.headers.emplace_back("X-Split", "a\r\nSet-Cookie: evil=1");
      return r;
    });
    router_->AddStreaming("PUT", "*", "/upload",
                          [](Request& r) -> std::variant<Response, std::unique_ptr<BodyConsumer>> {
                            if (r.Header("X-Refuse").has_value())
                              return AzureError(401, "Refused", "no");
                            const uint64_t fail_at =
                                std::stoull(std::string(r.Header("X-Fail-At").value_or("0")));
                            return std::make_unique<PatternConsumer>(fail_at);
                          },
                          {.max_body_bytes = kStreamLimit});
    router_->Add("GET", "*", "/download/{size}", [](Request& r) {
      const uint64_t size = std::stoull(r.params.at("size"));
      const uint64_t fail_after = std::stoull(r.query.count("fail") ? r.query.at("fail") : "-1");
      return PatternStream(size, fail_after);
    });
    // The same from a runs_inline route: its first piece is read on the I/O thread, the
    // others on workers while the piece before is written.
    router_->Add("GET", "*", "/inline-download/{size}",
                 [](Request& r) {
                   const uint64_t size = std::stoull(r.params.at("size"));
                   const uint64_t fail_after =
                       std::stoull(r.query.count("fail") ? r.query.at("fail") : "-1");
                   return PatternStream(size, fail_after);
                 },
                 {.runs_inline = true});
    // `n` server-sent events of unknown total size, one chunk each; ?fail=k fails the k-th.
    router_->Add("GET", "*", "/events/{n}", [](Request& r) {
      Response response = Text(200, "", "text/event-stream");
      response.stream = std::make_shared<StreamedBody>();
      response.stream->chunked = true;
      const int n = std::stoi(r.params.at("n"));
      const int fail = r.query.count("fail") ? std::stoi(r.query.at("fail")) : -1;
      response.stream->read = [i = 0, n, fail](std::span<uint8_t> out) mutable -> StatusOr<size_t> {
        if (i == fail) return DataLossError("the model is gone");
        if (i == n) return size_t{0};
        const std::string event = "data: " + std::to_string(i++) + "\n\n";
        std::copy(event.begin(), event.end(), out.begin());
        return event.size();
      };
      return response;
    });
    router_->Add("GET", "*", "/inline", [](Request&) { return Text(200, "inline"); },
                 {.runs_inline = true});
    router_->Add(
        "GET", "*", "/inline-or-worker",
        [](Request& r) {
          if (r.on_io_thread && r.query.count("block")) return RunOnWorker();
          return Text(200, r.on_io_thread ? "io thread" : "worker");
        },
        {.runs_inline = true});
    router_->Add("GET", "*", "/misuse", [](Request&) { return RunOnWorker(); });
    router_->Add("GET", "*", "/held", [this](Request&) {
      held_entered_.set_value();
      (void)released_.wait_for(seconds(10));  // until the test releases it
      return Text(200, "held");
    });
    router_->Add("GET", "*", "/slow", [this](Request&) {
      slow_entered_.set_value();
      std::this_thread::sleep_for(milliseconds(300));
      return Text(200, "slow");
    });
  }

  // Starts a server on 127.0.0.1:0 with `adjust` applied to the default options.
  void StartServer(const std::function<void(ServerOptions&)>& adjust = {}) {
    ServerOptions options;
    options.certificate_pem = leaf_->certificate_pem;
    options.private_key_pem = leaf_->private_key_pem.Clone();
    if (adjust) adjust(options);
    auto server = HttpsServer::Start(std::move(options), router_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ClientRequest Req(std::string method, std::string path) {
    ClientRequest r;
    r.method = std::move(method);
    r.url = "https://127.0.0.1:" + std::to_string(server_->port()) + path;
    r.ca_pem = ca_->certificate_pem;
    r.timeout = seconds(5);
    return r;
  }

  ClientResponse Send(const ClientRequest& request) {
    auto response = HttpsRequest(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *std::move(response) : ClientResponse();
  }

  std::unique_ptr<RawTls> Raw(const RawTls::Options& options = {}) {
    std::string error;
    auto tls = RawTls::Connect(server_->port(), ca_->certificate_pem, options, &error);
    EXPECT_NE(tls, nullptr) << error;
    return tls;
  }

  static nlohmann::json ErrorOf(const ClientResponse& r) {
    return nlohmann::json::parse(r.body, nullptr, false)["error"];
  }

  static inline crypto::CertificateAndKey* ca_ = nullptr;
  static inline crypto::CertificateAndKey* leaf_ = nullptr;
  std::shared_ptr<Router> router_;
  std::promise<void> slow_entered_;
  std::promise<void> held_entered_;
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
  std::unique_ptr<HttpsServer> server_;
};

TEST_F(HttpServerTest, RoundTripCarriesRequestIdsAndEchoesTheClientRequestId) {
  StartServer();
  ClientRequest request = Req("GET", "/hello");
  request.headers = {{"x-ms-client-request-id", "client-id-1"}};
  const ClientResponse a = Send(request);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "hello");
  EXPECT_EQ(a.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(a.Header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(a.Header("x-ms-client-request-id"), "client-id-1");
  ASSERT_TRUE(a.Header("x-ms-request-id").has_value());
  EXPECT_EQ(a.Header("x-ms-request-id")->size(), 36u);
  EXPECT_TRUE(a.Header("date").has_value());

  const ClientResponse b = Send(Req("GET", "/hello"));
  EXPECT_FALSE(b.Header("x-ms-client-request-id").has_value());
  EXPECT_NE(a.Header("x-ms-request-id"), b.Header("x-ms-request-id"));

  const ClientResponse deleted = Send(Req("DELETE", "/hello"));
  EXPECT_EQ(deleted.status, 204);
  EXPECT_EQ(deleted.body, "");

  // A body of exactly the default limit, in many TLS records.
  ClientRequest large = Req("POST", "/echo-large");
  large.body = std::string(kDefaultMaxBodyBytes, 'x');
  EXPECT_EQ(Send(large).body.size(), kDefaultMaxBodyBytes);
}

TEST_F(HttpServerTest, VaultHostRouteSeesHostParamsDecodedQueryAndPeer) {
  StartServer();
  ClientRequest request = Req("GET", "");
  request.url = "https://MyVault.vault.localhost:" + std::to_string(server_->port()) +
                "/keys/k%201/?api-version=7.4&x=a+b%26c";
  request.connect_address = "127.0.0.1";
  request.headers = {{"x-custom", "v"}};
  const ClientResponse response = Send(request);
  ASSERT_EQ(response.status, 200) << response.body;
  const auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["vault"], "myvault");
  EXPECT_EQ(body["name"], "k 1");
  EXPECT_EQ(body["host"], "myvault.vault.localhost");
  EXPECT_EQ(body["path"], "/keys/k%201/");
  EXPECT_EQ(body["target"], "/keys/k%201/?api-version=7.4&x=a+b%26c");
  EXPECT_EQ(body["query"], (nlohmann::json{{"api-version", "7.4"}, {"x", "a b&c"}}));
  EXPECT_EQ(body["remote"], "127.0.0.1");
  EXPECT_EQ(body["request_id"], *response.Header("x-ms-request-id"));
  EXPECT_EQ(body["header"], "v");
}

TEST_F(HttpServerTest, ErrorsUseTheAzureEnvelope) {
  StartServer();
  const ClientResponse not_found = Send(Req("GET", "/nothing"));
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(ErrorOf(not_found)["code"], "NotFound");
  EXPECT_TRUE(not_found.Header("x-ms-request-id").has_value());
  EXPECT_EQ(not_found.Header("content-type"), "application/json; charset=utf-8");

  const ClientResponse not_allowed = Send(Req("PUT", "/hello"));
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ(ErrorOf(not_allowed)["code"], "MethodNotAllowed");
  EXPECT_EQ(not_allowed.Header("allow"), "DELETE, GET");

  // The vault route exists only on vault hosts.
  EXPECT_EQ(Send(Req("GET", "/keys/k1")).status, 404);

  const ClientResponse bad_query = Send(Req("GET", "/hello?a=1&a=2"));
  EXPECT_EQ(bad_query.status, 400);
  EXPECT_EQ(ErrorOf(bad_query)["code"], "BadRequest");
  EXPECT_EQ(Send(Req("GET", "/hello?a=%zz")).status, 400);
  EXPECT_EQ(Send(Req("GET", "/a/../hello")).status, 400);
  EXPECT_EQ(Send(Req("GET", "/hello?a=1&a=1")).status, 200);

  const ClientResponse thrown = Send(Req("GET", "/throw"));
  EXPECT_EQ(thrown.status, 500);
  EXPECT_EQ(ErrorOf(thrown)["code"], "InternalServerError");
  EXPECT_EQ(thrown.body.find("internal detail"), std::string::npos);

  const ClientResponse split = Send(Req("GET", "/bad-header"));
  EXPECT_EQ(split.status, 500);
  EXPECT_FALSE(split.Header("set-cookie").has_value());
}

TEST_F(HttpServerTest, OnlyTls12AndTls13WithModernSuitesAreAccepted) {
  StartServer();
  auto tls12 = Raw({.min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION});
  ASSERT_NE(tls12, nullptr);
  EXPECT_EQ(tls12->version(), "TLSv1.2");
  auto tls13 = Raw({.min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION});
  ASSERT_NE(tls13, nullptr);
  EXPECT_EQ(tls13->version(), "TLSv1.3");
  auto preferred = Raw();
  ASSERT_NE(preferred, nullptr);
  EXPECT_EQ(preferred->version(), "TLSv1.3");

  // TLS 1.1 (the client allows it at security level 0): the server answers with an alert.
  std::string error;
  EXPECT_EQ(RawTls::Connect(server_->port(), ca_->certificate_pem,
                            {.min_version = TLS1_1_VERSION,
                             .max_version = TLS1_1_VERSION,
                             .tls12_ciphers = "DEFAULT:@SECLEVEL=0"},
                            &error),
            nullptr);
  EXPECT_NE(error.find("protocol version"), std::string::npos) << error;
  // TLS 1.2 with a CBC suite only, or without forward secrecy.
  for (const char* suites : {"ECDHE-ECDSA-AES128-SHA256", "AES128-GCM-SHA256"}) {
    EXPECT_EQ(
        RawTls::Connect(
            server_->port(), ca_->certificate_pem,
            {.min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION, .tls12_ciphers = suites},
            &error),
        nullptr)
        << suites;
    EXPECT_NE(error.find("handshake failure"), std::string::npos) << error;
  }
  // The server still serves.
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, ClientRefusesAnUntrustedOrMisnamedCertificate) {
  StartServer();
  ClientRequest other_ca = Req("GET", "/hello");
  other_ca.ca_pem = crypto::GenerateCa("another CA")->certificate_pem;
  auto response = HttpsRequest(other_ca);
  EXPECT_EQ(response.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(response.status().message().find("certificate verify failed"), std::string::npos)
      << response.status();

  ClientRequest misnamed = Req("GET", "/hello");
  misnamed.url = "https://evil.localhost:" + std::to_string(server_->port()) + "/hello";
  misnamed.connect_address = "127.0.0.1";
  EXPECT_EQ(HttpsRequest(misnamed).status().code(), StatusCode::kUnavailable);

  ClientRequest by_ip = Req("GET", "/hello");
  by_ip.url = "https://[::1]:" + std::to_string(server_->port()) + "/hello";
  by_ip.connect_address = "127.0.0.1";  // the server listens on IPv4; the name is checked
  EXPECT_EQ(Send(by_ip).status, 200);
}

TEST_F(HttpServerTest, OversizedHeaderGets431) {
  StartServer();
  ClientRequest request = Req("GET", "/hello");
  request.headers = {{"x-big", std::string(20 * 1024, 'a')}};
  const ClientResponse response = Send(request);
  EXPECT_EQ(response.status, 431);
  EXPECT_EQ(ErrorOf(response)["code"], "RequestHeaderFieldsTooLarge");
  EXPECT_EQ(response.Header("connection"), "close");

  request.headers = {{"x-big", std::string(15 * 1024, 'a')}};
  EXPECT_EQ(Send(request).status, 200);
}

TEST_F(HttpServerTest, BodyOverTheRouteLimitGets413WhileOthersAreServed) {
  StartServer();
  HttpsClient other;  // a connection of its own, kept alive throughout
  ClientRequest small = Req("POST", "/echo");
  small.body = std::string(kEchoLimit, 's');
  ASSERT_EQ(other.Send(small)->status, 200);

  // Content-Length over the limit: refused before the body is read.
  ClientRequest big = Req("POST", "/echo");
  big.body = std::string(kEchoLimit + 1, 'b');
  const ClientResponse refused = Send(big);
  EXPECT_EQ(refused.status, 413);
  EXPECT_EQ(ErrorOf(refused)["code"], "RequestBodyTooLarge");

  // Content-Length of 100 MiB with no body sent: answered at once.
  auto raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(
      raw->Write("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 104857600\r\n\r\n"));
  EXPECT_EQ(raw->ReadResponse().status, 413);
  EXPECT_TRUE(raw->ClosedWithin(seconds(2)));

  // Chunked: refused once the limit is crossed.
  auto chunked = Raw();
  ASSERT_NE(chunked, nullptr);
  ASSERT_TRUE(chunked->Write(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "200\r\n" + std::string(0x200, 'c') + "\r\n";
  ASSERT_TRUE(chunked->Write(chunk + chunk + chunk));
  EXPECT_EQ(chunked->ReadResponse().status, 413);

  // A chunked body within the limit is fine, and the other connection never noticed.
  auto fine = Raw();
  ASSERT_NE(fine, nullptr);
  ASSERT_TRUE(
      fine->Write("POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
  const RawResponse echoed = fine->ReadResponse();
  EXPECT_EQ(echoed.status, 200);
  EXPECT_EQ(echoed.body, "hello");
  EXPECT_EQ(other.Send(small)->status, 200);
}

TEST_F(HttpServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  StartServer();
  auto raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(
      raw->Write("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(raw->ReadResponse().status, 100);
  ASSERT_TRUE(raw->Write("hello"));
  const RawResponse response = raw->ReadResponse();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "hello");

  // Over the limit: 413 instead of 100.
  ASSERT_TRUE(
      raw->Write("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(raw->ReadResponse().status, 413);
}

TEST_F(HttpServerTest, StreamedUploadsReachTheConsumerInPiecesOnAKeptAliveConnection) {
  StartServer();
  HttpsClient client;
  for (size_t size : {size_t{0}, size_t{1}, size_t{3} << 20, size_t{20} << 20}) {
    ClientRequest request = Req("PUT", "/upload");
    request.body = Pattern(size);
    auto response = client.Send(request);
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->status, 200) << response->body;
    const auto seen = nlohmann::json::parse(response->body);
    EXPECT_EQ(seen["size"], size);
    EXPECT_EQ(seen["mismatches"], 0);
    if (size > (size_t{1} << 20)) EXPECT_GT(seen["pieces"].get<int>(), 1);
  }
}

TEST_F(HttpServerTest, StreamedUploadOverTheLimitOrRefusedMidwayIsAnswered) {
  StartServer();
  auto over = Raw();
  ASSERT_NE(over, nullptr);
  ASSERT_TRUE(over->Write("PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                          std::to_string(kStreamLimit + 1) + "\r\n\r\n"));
  EXPECT_EQ(over->ReadResponse().status, 413);

  ClientRequest failing = Req("PUT", "/upload");
  failing.body = Pattern(size_t{4} << 20);
  failing.headers.emplace_back("X-Fail-At", "1000000");
  const ClientResponse failed = Send(failing);
  EXPECT_EQ(failed.status, 400);
  EXPECT_EQ(ErrorOf(failed)["message"], "refused at 1000000");

  // Refused by the handler while the body is on its way: drained, answered, kept alive.
  HttpsClient client;
  ClientRequest refused = Req("PUT", "/upload");
  refused.body = Pattern(size_t{2} << 20);
  refused.headers.emplace_back("X-Refuse", "1");
  auto answer = client.Send(refused);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 401);
  ClientRequest next = Req("PUT", "/upload");
  next.body = Pattern(100);
  auto after = client.Send(next);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, 200);
}

TEST_F(HttpServerTest, SmallStreamedBodiesAreReadWholeAndStillRefusedOrAnswered) {
  StartServer();
  HttpsClient client;  // one kept-alive connection throughout
  ClientRequest failing = Req("PUT", "/upload");
  failing.body = Pattern(1000);
  failing.headers.emplace_back("X-Fail-At", "10");
  auto failed = client.Send(failing);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->status, 400);
  EXPECT_EQ(nlohmann::json::parse(failed->body)["error"]["message"], "refused at 10");

  ClientRequest refused = Req("PUT", "/upload");
  refused.body = Pattern(1000);
  refused.headers.emplace_back("X-Refuse", "1");
  auto answer = client.Send(refused);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 401);

  ClientRequest whole = Req("PUT", "/upload");
  whole.body = Pattern(200 * 1024);
  auto ok = client.Send(whole);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->status, 200) << ok->body;
  const auto seen = nlohmann::json::parse(ok->body);
  EXPECT_EQ(seen["size"], 200 * 1024);
  EXPECT_EQ(seen["mismatches"], 0);
  EXPECT_EQ(seen["pieces"], 1);  // one call with the whole body
}

TEST_F(HttpServerTest, InlineRoutesAnswerWhileEveryWorkerIsBusy) {
  StartServer([](ServerOptions& o) { o.threads = 1; });
  std::future<ClientResponse> held =
      std::async(std::launch::async, [this] { return Send(Req("GET", "/held")); });
  ASSERT_EQ(held_entered_.get_future().wait_for(seconds(5)), std::future_status::ready);
  // The only worker is held: an inline route needs none, a plain one waits for it.
  EXPECT_EQ(Send(Req("GET", "/inline")).body, "inline");
  std::future<ClientResponse> plain =
      std::async(std::launch::async, [this] { return Send(Req("GET", "/hello")); });
  EXPECT_EQ(plain.wait_for(milliseconds(300)), std::future_status::timeout);
  release_.set_value();
  EXPECT_EQ(held.get().body, "held");
  EXPECT_EQ(plain.get().body, "hello");
}

TEST_F(HttpServerTest, AnInlineHandlerThatWouldBlockIsCalledAgainOnAWorker) {
  StartServer();
  EXPECT_EQ(Send(Req("GET", "/inline-or-worker")).body, "io thread");
  EXPECT_EQ(Send(Req("GET", "/inline-or-worker?block=1")).body, "worker");
  // Only an inline handler may ask for a worker: elsewhere it is a bug, answered with a 500.
  EXPECT_EQ(Send(Req("GET", "/misuse")).status, 500);
}

TEST_F(HttpServerTest, StreamingHandlerRefusesBeforeTheContinueSoTheBodyIsNeverSent) {
  StartServer();
  auto raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(
      raw->Write("PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                 "X-Refuse: 1\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_EQ(raw->ReadResponse().status, 401);

  auto accepted = Raw();
  ASSERT_NE(accepted, nullptr);
  ASSERT_TRUE(
      accepted->Write("PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                      "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(accepted->ReadResponse().status, 100);
  ASSERT_TRUE(accepted->Write(Pattern(3)));
  const RawResponse done = accepted->ReadResponse();
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(nlohmann::json::parse(done.body)["size"], 3);
}

TEST_F(HttpServerTest, StreamedDownloadsCarryTheirLength) {
  StartServer();
  HttpsClient client;
  for (uint64_t size : {uint64_t{0}, uint64_t{10}, uint64_t{5} << 20}) {
    auto response = client.Send(Req("GET", "/download/" + std::to_string(size)));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->Header("Content-Length").value_or(""), std::to_string(size));
    EXPECT_TRUE(response->body == Pattern(size)) << "size " << size;
  }
}

TEST_F(HttpServerTest, StreamedDownloadWhoseSourceFailsIsCutShortNeverCompleted) {
  StartServer();
  auto response = HttpsRequest(Req("GET", "/download/3000000?fail=1000000"));
  EXPECT_FALSE(response.ok());  // the connection ends before Content-Length bytes
  // The server serves the next request as usual.
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, StreamedDownloadsOfInlineRoutesInterleaveWorkersAndStayWhole) {
  StartServer();
  HttpsClient client;  // one kept-alive connection throughout
  for (int round = 0; round < 3; ++round) {
    for (uint64_t size : {uint64_t{0}, uint64_t{10}, (uint64_t{1} << 20) + 3}) {
      auto response = client.Send(Req("GET", "/inline-download/" + std::to_string(size)));
      ASSERT_TRUE(response.ok()) << response.status();
      EXPECT_EQ(response->status, 200);
      EXPECT_EQ(response->Header("Content-Length").value_or(""), std::to_string(size));
      EXPECT_TRUE(response->body == Pattern(size)) << "size " << size;
    }
  }
  // A source failing in its first piece (read before anything was sent) or a later one.
  EXPECT_FALSE(HttpsRequest(Req("GET", "/inline-download/3000000?fail=0")).ok());
  EXPECT_FALSE(HttpsRequest(Req("GET", "/inline-download/3000000?fail=1000000")).ok());
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, StreamsOfUnknownSizeAreSentChunkedAndEndWhenTheSourceDoes) {
  StartServer();
  HttpsClient client;  // one kept-alive connection throughout
  for (int n : {0, 1, 200}) {
    auto response = client.Send(Req("GET", "/events/" + std::to_string(n)));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->Header("Transfer-Encoding").value_or(""), "chunked");
    EXPECT_FALSE(response->Header("Content-Length").has_value());
    std::string expected;
    for (int i = 0; i < n; ++i) expected += "data: " + std::to_string(i) + "\n\n";
    EXPECT_EQ(response->body, expected);
  }
  // A source that fails ends the connection before the last chunk: never a complete body.
  EXPECT_FALSE(HttpsRequest(Req("GET", "/events/5?fail=3")).ok());
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndTheConnectionIsClosed) {
  StartServer();
  const char* malformed[] = {
      "GARBAGE\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
      "GET /hello HTTP/9.9\r\nHost: localhost\r\n\r\n",
      "GET /hello HTTP/1.1\r\n\r\n",                        // no Host
      "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two Hosts
      "GET /hello HTTP/1.1\r\nHost: bad/host\r\n\r\n",      // invalid Host
      "GET hello HTTP/1.1\r\nHost: localhost\r\n\r\n",      // not origin-form
      "GET /hello%zz HTTP/1.1\r\nHost: localhost\r\n\r\n",  // bad escape
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const char* request : malformed) {
    auto raw = Raw();
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->Write(request));
    const RawResponse response = raw->ReadResponse();
    EXPECT_EQ(response.status, 400) << request;
    EXPECT_NE(response.body.find(R"("code":"BadRequest")"), std::string::npos) << response.body;
    EXPECT_NE(response.head.find("x-ms-request-id: "), std::string::npos);
    EXPECT_TRUE(raw->ClosedWithin(seconds(2))) << request;
  }
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, KeepAliveServesPipelinedRequestsThenIdleTimeoutCloses) {
  StartServer([](ServerOptions& o) { o.idle_timeout = seconds(1); });
  auto raw = Raw();
  ASSERT_NE(raw, nullptr);
  const std::string get = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
  ASSERT_TRUE(raw->Write(get + get));  // pipelined
  EXPECT_EQ(raw->ReadResponse().body, "hello");
  EXPECT_EQ(raw->ReadResponse().body, "hello");
  ASSERT_TRUE(raw->Write(get));
  EXPECT_EQ(raw->ReadResponse().body, "hello");
  const auto idle_since = Clock::now();
  EXPECT_TRUE(raw->ClosedWithin(seconds(3)));
  EXPECT_GT(SecondsSince(idle_since), 0.8);
}

TEST_F(HttpServerTest, PersistentClientReusesItsConnectionAndSurvivesAnIdleClose) {
  StartServer([](ServerOptions& o) { o.idle_timeout = milliseconds(500); });
  HttpsClient client;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(client.Send(Req("GET", "/hello"))->status, 200);
  EXPECT_EQ(server_->metrics().open_connections(), 1);
  // The server closes the idle connection; the next request, even a POST, reconnects.
  ASSERT_TRUE(Eventually([&] { return server_->metrics().open_connections() == 0; }));
  ClientRequest post = Req("POST", "/echo");
  post.body = "again";
  auto response = client.Send(post);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->body, "again");
}

TEST_F(HttpServerTest, SlowClientIsDroppedAfterTheReadTimeoutWhileOthersAreServed) {
  StartServer([](ServerOptions& o) { o.read_timeout = seconds(1); });
  auto slow = Raw();
  ASSERT_NE(slow, nullptr);
  const auto start = Clock::now();
  ASSERT_TRUE(slow->Write("GET /hello HTTP/1.1\r\nHost: localhost\r\n"));
  // Dribble a header byte every 100 ms: activity does not extend the deadline.
  bool closed = false;
  int served = 0;
  while (!closed && SecondsSince(start) < 4) {
    if (!slow->Write("x")) break;
    closed = slow->ClosedWithin(milliseconds(100));
    if (served < 3 && Send(Req("GET", "/hello")).status == 200) ++served;
  }
  const double elapsed = SecondsSince(start);
  EXPECT_TRUE(closed || !slow->Write("x"));
  EXPECT_GT(elapsed, 0.8);
  EXPECT_LT(elapsed, 2.5);
  EXPECT_EQ(served, 3);

  // A connection that never sends a request, and one that never finishes the handshake.
  auto silent = Raw();
  ASSERT_NE(silent, nullptr);
  EXPECT_TRUE(silent->ClosedWithin(seconds(3)));
  int tcp = ConnectTcp(server_->port());
  ASSERT_GE(tcp, 0);
  EXPECT_FALSE(TcpClosedWithin(tcp, milliseconds(300)));  // handshake_timeout is 10 s
  ::close(tcp);
}

TEST_F(HttpServerTest, UnfinishedHandshakeIsDroppedAfterTheHandshakeTimeout) {
  StartServer([](ServerOptions& o) { o.handshake_timeout = seconds(1); });
  int tcp = ConnectTcp(server_->port());
  ASSERT_GE(tcp, 0);
  const auto start = Clock::now();
  EXPECT_TRUE(TcpClosedWithin(tcp, seconds(3)));
  EXPECT_GT(SecondsSince(start), 0.8);
  ::close(tcp);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreRefusedAndServiceResumes) {
  constexpr int kMax = 8;
  StartServer([](ServerOptions& o) { o.max_connections = kMax; });
  std::vector<std::unique_ptr<RawTls>> open;
  const std::string get = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
  for (int i = 0; i < kMax; ++i) {
    open.push_back(Raw());
    ASSERT_NE(open.back(), nullptr);
    ASSERT_TRUE(open.back()->Write(get));
    ASSERT_EQ(open.back()->ReadResponse().status, 200);
  }
  // A flood of new connections: each is closed at once, before any TLS.
  std::vector<int> flood;
  for (int i = 0; i < 3 * kMax; ++i) {
    const int fd = ConnectTcp(server_->port());
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  for (int fd : flood) {
    EXPECT_TRUE(TcpClosedWithin(fd, seconds(2)));
    ::close(fd);
  }
  EXPECT_EQ(server_->metrics().open_connections(), kMax);
  EXPECT_NE(server_->metrics().Render().find("kf_http_connections_refused_total 24\n"),
            std::string::npos);
  // The open connections keep working.
  for (auto& c : open) {
    ASSERT_TRUE(c->Write(get));
    EXPECT_EQ(c->ReadResponse().status, 200);
  }
  // Once some close, new connections are served.
  open.resize(kMax / 2);
  ASSERT_TRUE(Eventually([&] { return server_->metrics().open_connections() == kMax / 2; }));
  EXPECT_EQ(Send(Req("GET", "/hello")).status, 200);
}

TEST_F(HttpServerTest, StopDrainsARequestInProgressThenRefusesConnections) {
  StartServer();
  auto idle = Raw();
  ASSERT_NE(idle, nullptr);
  auto slow = std::async(std::launch::async, [&] { return HttpsRequest(Req("GET", "/slow")); });
  ASSERT_EQ(slow_entered_.get_future().wait_for(seconds(5)), std::future_status::ready);

  const auto start = Clock::now();
  server_->Stop(seconds(5));
  EXPECT_LT(SecondsSince(start), 2.0);
  auto response = slow.get();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "slow");
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_TRUE(idle->ClosedWithin(seconds(1)));
  EXPECT_LT(ConnectTcp(server_->port()), 0);
  server_->Stop(seconds(5));  // idempotent
}

TEST_F(HttpServerTest, StopEndsWhenTheDrainTimeIsOver) {
  StartServer();
  auto slow = std::async(std::launch::async, [&] { return HttpsRequest(Req("GET", "/slow")); });
  ASSERT_EQ(slow_entered_.get_future().wait_for(seconds(5)), std::future_status::ready);
  const auto start = Clock::now();
  server_->Stop(milliseconds(50));
  // The handler cannot be interrupted; Stop waits for it (300 ms), not for the client.
  EXPECT_LT(SecondsSince(start), 1.5);
  (void)slow.get();
}

TEST_F(HttpServerTest, MetricsCountRequestsByRouteMethodAndStatus) {
  // As keyfoundryd does: the metrics exist before the server, so a route can render them.
  auto metrics = std::make_shared<Metrics>();
  router_->Add("GET", "*", "/metrics", [metrics](struct Request&) {
    return Text(200, metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  StartServer([&](ServerOptions& o) { o.metrics = metrics; });
  EXPECT_EQ(&server_->metrics(), metrics.get());
  Send(Req("GET", "/hello"));
  Send(Req("GET", "/hello"));
  Send(Req("GET", "/nothing"));
  ClientRequest post = Req("POST", "/echo");
  post.body = "x";
  Send(post);
  const ClientResponse response = Send(Req("GET", "/metrics"));
  EXPECT_EQ(response.status, 200);
  const std::string& text = response.body;
  EXPECT_NE(text.find(R"(kf_http_requests_total{route="/hello",method="GET",status="200"} 2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(kf_http_requests_total{route="unmatched",method="GET",status="404"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(kf_http_requests_total{route="/echo",method="POST",status="200"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(kf_http_request_duration_seconds_count{route="/hello"} 2)"),
            std::string::npos);
  EXPECT_NE(text.find("kf_http_open_connections 1\n"), std::string::npos);
}

TEST_F(HttpServerTest, StartRefusesBadOptionsOrAKeyThatDoesNotMatchTheCertificate) {
  ServerOptions options;
  options.certificate_pem = leaf_->certificate_pem;
  options.private_key_pem = ca_->private_key_pem.Clone();
  EXPECT_EQ(HttpsServer::Start(std::move(options), router_).status().code(),
            StatusCode::kInvalidArgument);
  ServerOptions no_cert;
  EXPECT_EQ(HttpsServer::Start(std::move(no_cert), router_).status().code(),
            StatusCode::kInvalidArgument);
  ServerOptions no_timeout;
  no_timeout.certificate_pem = leaf_->certificate_pem;
  no_timeout.private_key_pem = leaf_->private_key_pem.Clone();
  no_timeout.read_timeout = milliseconds(0);
  EXPECT_EQ(HttpsServer::Start(std::move(no_timeout), router_).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(HttpServerTest, StartFailsWhenThePortIsTaken) {
  StartServer();
  ServerOptions options;
  options.certificate_pem = leaf_->certificate_pem;
  options.private_key_pem = leaf_->private_key_pem.Clone();
  options.listen_port = server_->port();
  EXPECT_EQ(HttpsServer::Start(std::move(options), router_).status().code(),
            StatusCode::kUnavailable);
}

// CORS (server.h): the portal's origin may call a vault's host; nobody else gets the headers.
constexpr char kPortalOrigin[] = "https://portal.localhost:8443";

void AllowPortalOrigin(ServerOptions& options) {
  options.cors.allow_origin = [](std::string_view origin) { return origin == kPortalOrigin; };
}

ClientRequest OnVaultHost(ClientRequest request, uint16_t port, std::string path) {
  request.url = "https://myvault.vault.localhost:" + std::to_string(port) + path;
  request.connect_address = "127.0.0.1";
  return request;
}

TEST_F(HttpServerTest, CorsPreflightForARoutedMethodIsAnsweredBeforeAnyHandler) {
  StartServer(AllowPortalOrigin);
  ClientRequest preflight = OnVaultHost(Req("OPTIONS", ""), server_->port(), "/keys/k1");
  preflight.headers = {{"Origin", kPortalOrigin},
                       {"Access-Control-Request-Method", "GET"},
                       {"Access-Control-Request-Headers", "authorization,x-ms-client-request-id"}};
  const ClientResponse response = Send(preflight);
  EXPECT_EQ(response.status, 204) << response.body;
  EXPECT_EQ(response.body, "");
  EXPECT_EQ(response.Header("Access-Control-Allow-Origin"), kPortalOrigin);
  EXPECT_EQ(response.Header("Access-Control-Allow-Methods"), "GET");
  const std::string allowed(response.Header("Access-Control-Allow-Headers").value_or(""));
  for (const char* name : {"Authorization", "Content-Type", "x-ms-client-request-id"}) {
    EXPECT_NE(allowed.find(name), std::string::npos) << name;
  }
  EXPECT_EQ(response.Header("Access-Control-Max-Age"), "600");
  EXPECT_EQ(response.Header("Vary"), "Origin");
  EXPECT_FALSE(response.Header("Access-Control-Allow-Credentials").has_value());
  EXPECT_TRUE(response.Header("x-ms-request-id").has_value());
}

TEST_F(HttpServerTest, CorsPreflightForNoRouteOrAnUnroutedMethodIsRoutedAsUsual) {
  StartServer(AllowPortalOrigin);
  ClientRequest nothing = Req("OPTIONS", "/nothing");
  nothing.headers = {{"Origin", kPortalOrigin}, {"Access-Control-Request-Method", "GET"}};
  const ClientResponse not_found = Send(nothing);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(ErrorOf(not_found)["code"], "NotFound");

  ClientRequest put = Req("OPTIONS", "/hello");
  put.headers = {{"Origin", kPortalOrigin}, {"Access-Control-Request-Method", "PUT"}};
  const ClientResponse not_allowed = Send(put);
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_FALSE(not_allowed.Header("Access-Control-Allow-Methods").has_value());

  // Without Access-Control-Request-Method it is no preflight.
  ClientRequest plain = Req("OPTIONS", "/hello");
  plain.headers = {{"Origin", kPortalOrigin}};
  EXPECT_EQ(Send(plain).status, 405);
}

TEST_F(HttpServerTest, CorsResponsesToAnAllowedOriginNameItAndExposeAzureHeaders) {
  StartServer(AllowPortalOrigin);
  ClientRequest request = OnVaultHost(Req("GET", ""), server_->port(), "/keys/k1");
  request.headers = {{"Origin", kPortalOrigin}};
  const ClientResponse response = Send(request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("Access-Control-Allow-Origin"), kPortalOrigin);
  const std::string exposed(response.Header("Access-Control-Expose-Headers").value_or(""));
  for (const char* name :
       {"x-ms-request-id", "WWW-Authenticate", "Azure-AsyncOperation", "Location"}) {
    EXPECT_NE(exposed.find(name), std::string::npos) << name;
  }
  EXPECT_EQ(response.Header("Vary"), "Origin");

  // Errors too, so a page can show the API's message.
  ClientRequest missing = Req("GET", "/nothing");
  missing.headers = {{"Origin", kPortalOrigin}};
  const ClientResponse not_found = Send(missing);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.Header("Access-Control-Allow-Origin"), kPortalOrigin);

  // A request without Origin (not from a browser page) gets none of it.
  const ClientResponse plain = Send(Req("GET", "/hello"));
  EXPECT_FALSE(plain.Header("Access-Control-Allow-Origin").has_value());
}

TEST_F(HttpServerTest, CorsGivesADisallowedOriginNoHeadersAndNoPreflight) {
  StartServer(AllowPortalOrigin);
  for (const char* origin : {"https://evil.example", "https://portal.localhost:8444", "null",
                             "https://portal.localhost:8443.evil.example"}) {
    ClientRequest preflight = OnVaultHost(Req("OPTIONS", ""), server_->port(), "/keys/k1");
    preflight.headers = {{"Origin", origin}, {"Access-Control-Request-Method", "GET"}};
    const ClientResponse refused = Send(preflight);
    EXPECT_EQ(refused.status, 405) << origin;
    EXPECT_FALSE(refused.Header("Access-Control-Allow-Origin").has_value()) << origin;
    EXPECT_FALSE(refused.Header("Access-Control-Allow-Methods").has_value()) << origin;

    ClientRequest get = OnVaultHost(Req("GET", ""), server_->port(), "/keys/k1");
    get.headers = {{"Origin", origin}};
    const ClientResponse served = Send(get);
    EXPECT_EQ(served.status, 200) << origin;
    EXPECT_FALSE(served.Header("Access-Control-Allow-Origin").has_value()) << origin;
    EXPECT_FALSE(served.Header("Access-Control-Expose-Headers").has_value()) << origin;
  }
}

TEST_F(HttpServerTest, CorsIsOffByDefault) {
  StartServer();
  ClientRequest preflight = OnVaultHost(Req("OPTIONS", ""), server_->port(), "/keys/k1");
  preflight.headers = {{"Origin", kPortalOrigin}, {"Access-Control-Request-Method", "GET"}};
  const ClientResponse response = Send(preflight);
  EXPECT_EQ(response.status, 405);
  EXPECT_FALSE(response.Header("Access-Control-Allow-Origin").has_value());
  EXPECT_FALSE(response.Header("Vary").has_value());
}

}  // namespace
}  // namespace keyfoundry::http
