// The client's failures that need no server; its exchanges with one are in
// tests/integration/http_server_test.cc.
#include "http/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

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

}  // namespace
}  // namespace keyfoundry::http
