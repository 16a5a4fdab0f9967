// The real keyfoundryd under hostile clients (BRIEF §8): oversized headers and bodies, a slow
// client and a connection flood are each bounded, and the server keeps answering others.
// Limits are lowered through the environment so each test takes a second or two.
#include <gtest/gtest.h>

#include "support/keyfoundryd_process.h"
#include "support/raw_tls.h"

namespace keyfoundry {
namespace {

using testutil::KeyfoundrydProcess;
using testutil::RawTls;

class KeyfoundrydLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new KeyfoundrydProcess(KF_KEYFOUNDRYD, {{"KEYFOUNDRY_READ_TIMEOUT_SECONDS", "1"},
                                                      {"KEYFOUNDRY_MAX_CONNECTIONS", "16"},
                                                      {"KEYFOUNDRY_MAX_HEADER_BYTES", "4096"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  static std::unique_ptr<RawTls> Connect() {
    std::string error;
    auto tls = RawTls::Connect(server_->port(), server_->ca_pem(), {}, &error);
    EXPECT_NE(tls, nullptr) << error;
    return tls;
  }

  static bool Healthy() {
    http::ClientRequest request;
    request.url = server_->base_url() + "/healthz";
    request.ca_pem = server_->ca_pem();
    request.timeout = std::chrono::seconds(5);
    auto r = http::HttpsRequest(request);
    return r.ok() && r->status == 200;
  }

  static KeyfoundrydProcess* server_;
};

KeyfoundrydProcess* KeyfoundrydLimitsTest::server_ = nullptr;

TEST_F(KeyfoundrydLimitsTest, OversizedHeaderGets431) {
  auto tls = Connect();
  ASSERT_NE(tls, nullptr);
  ASSERT_TRUE(tls->Write(
      "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(8000, 'x') + "\r\n\r\n"));
  EXPECT_EQ(tls->ReadResponse().status, 431);
  EXPECT_TRUE(Healthy());
}

TEST_F(KeyfoundrydLimitsTest, OversizedTokenRequestBodyGets413BeforeItIsRead) {
  auto tls = Connect();
  ASSERT_NE(tls, nullptr);
  ASSERT_TRUE(
      tls->Write("POST /common/oauth2/v2.0/token HTTP/1.1\r\nHost: localhost\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\n"
                 "Content-Length: 10000000\r\n\r\n"));
  testutil::RawResponse r = tls->ReadResponse();
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("RequestBodyTooLarge"), std::string::npos);
  EXPECT_TRUE(Healthy());
}

TEST_F(KeyfoundrydLimitsTest, SlowClientIsDroppedWhileOthersAreServed) {
  auto slow = Connect();
  ASSERT_NE(slow, nullptr);
  ASSERT_TRUE(slow->Write("GET /healthz HTTP/1.1\r\nHost: loc"));
  EXPECT_TRUE(Healthy());  // served while the slow request is pending
  EXPECT_TRUE(slow->ClosedWithin(std::chrono::seconds(4)));
}

TEST_F(KeyfoundrydLimitsTest, ConnectionFloodIsBoundedAndExistingConnectionsKeepWorking) {
  http::HttpsClient keep_alive;
  http::ClientRequest request;
  request.url = server_->base_url() + "/healthz";
  request.ca_pem = server_->ca_pem();
  request.timeout = std::chrono::seconds(5);
  ASSERT_EQ(keep_alive.Send(request).value_or(http::ClientResponse{}).status, 200);

  std::vector<int> flood;
  for (int i = 0; i < 48; ++i) {
    int fd = testutil::ConnectTcp(server_->port());
    if (fd >= 0) flood.push_back(fd);
  }
  // Connections past the limit are closed at once rather than queued.
  int closed = 0;
  for (int fd : flood) closed += testutil::TcpClosedWithin(fd, std::chrono::milliseconds(200));
  EXPECT_GE(closed, 48 - 16);
  // The established keep-alive connection is still served.
  EXPECT_EQ(keep_alive.Send(request).value_or(http::ClientResponse{}).status, 200);
  for (int fd : flood) ::close(fd);
  EXPECT_TRUE(testutil::Eventually([] { return Healthy(); }, std::chrono::seconds(5)));
}

}  // namespace
}  // namespace keyfoundry
