// Test-only: runs the real keyfoundryd binary on a free port with a fresh data directory, and
// calls it over HTTPS as a client would. Used by the integration tests.
#ifndef KEYFOUNDRY_TESTS_SUPPORT_KEYFOUNDRYD_PROCESS_H_
#define KEYFOUNDRY_TESTS_SUPPORT_KEYFOUNDRYD_PROCESS_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/encoding.h"
#include "common/file_util.h"
#include "http/client.h"
#include "support/test_util.h"

namespace keyfoundry::testutil {

// ---------------------------------------------------------------- answers

// The JSON body of a response (discarded when it is not JSON).
inline nlohmann::json Body(const http::ClientResponse& r) {
  return nlohmann::json::parse(r.body, nullptr, false);
}

// A member of the Azure error envelope {"error": {"code", "message", "innererror": {"code"}}},
// or "" when the body has none.
inline std::string ErrorField(const http::ClientResponse& r, const char* field) {
  nlohmann::json b = Body(r);
  if (!b.is_object() || !b.contains("error") || !b["error"].is_object()) return "";
  const nlohmann::json& v = b["error"][field];
  return v.is_string() ? v.get<std::string>() : "";
}
inline std::string ErrorCode(const http::ClientResponse& r) { return ErrorField(r, "code"); }
inline std::string ErrorMessage(const http::ClientResponse& r) { return ErrorField(r, "message"); }
inline std::string InnerCode(const http::ClientResponse& r) {
  nlohmann::json b = Body(r);
  if (!b.is_object() || !b.contains("error") || !b["error"].is_object() ||
      !b["error"].contains("innererror") || !b["error"]["innererror"].is_object()) {
    return "";
  }
  return b["error"]["innererror"].value("code", "");
}

// The claims of a JWT (unverified: tests read what the server issued).
inline nlohmann::json Claims(const std::string& token) {
  const size_t a = token.find('.');
  const size_t b = token.find('.', a + 1);
  if (a == std::string::npos || b == std::string::npos) return nlohmann::json();
  StatusOr<Bytes> payload = Base64UrlDecode(token.substr(a + 1, b - a - 1));
  return payload.ok() ? nlohmann::json::parse(AsStringView(*payload), nullptr, false)
                      : nlohmann::json();
}

class KeyfoundrydProcess {
 public:
  // Starts `binary` with `env` added to the environment; waits (up to 20 s) for DIR/port.
  // The admin password is fixed so tests can sign in.
  explicit KeyfoundrydProcess(const std::string& binary,
                              std::map<std::string, std::string> env = {})
      : binary_(binary), env_(std::move(env)), data_(dir_.path() + "/data") {
    env_["KEYFOUNDRY_ADMIN_PASSWORD"] = kAdminPassword;
    Launch("127.0.0.1:0");
    ca_ = ReadFile(data_ + "/tls/ca.pem").value_or("");
    tenant_ = Trim(ReadFile(data_ + "/tenant-id").value_or(""));
    subscription_ = Trim(ReadFile(data_ + "/subscription-id").value_or(""));
  }

  // Ends the server with `signal` (SIGKILL: as a crash would) and starts it again on the same
  // data directory and port; waits for it as the constructor does.
  void Restart(int signal) {
    if (pid_ > 0) {
      ::kill(pid_, signal);
      ::waitpid(pid_, &status_, 0);
      pid_ = -1;
    }
    const uint16_t port = port_;
    ::unlink((data_ + "/port").c_str());
    Launch("127.0.0.1:" + std::to_string(port));
  }

  ~KeyfoundrydProcess() { Stop(); }

  // SIGTERM, then the exit status (as waitpid gives it).
  int Stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, &status_, 0);
    pid_ = -1;
    return status_;
  }

  std::string Log() const { return ReadFile(dir_.path() + "/stderr.log").value_or(""); }

  uint16_t port() const { return port_; }
  const std::string& data_dir() const { return data_; }
  const std::string& ca_pem() const { return ca_; }
  const std::string& tenant() const { return tenant_; }
  const std::string& subscription() const { return subscription_; }
  std::string base_url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  // The URL of vault `name`'s data plane (connect to 127.0.0.1 whatever it resolves to).
  std::string vault_url(const std::string& name) const {
    return "https://" + name + ".vault.localhost:" + std::to_string(port_);
  }

  // One HTTPS request: `url` is a full URL, or a path on the base URL.
  http::ClientResponse Call(const std::string& method, const std::string& url,
                            std::vector<std::pair<std::string, std::string>> headers = {},
                            const std::string& body = "") const {
    http::ClientRequest request;
    request.method = method;
    request.url = url.rfind("https://", 0) == 0 ? url : base_url() + url;
    request.headers = std::move(headers);
    request.body = body;
    request.ca_pem = ca_;
    request.connect_address = "127.0.0.1";
    request.timeout = std::chrono::seconds(10);
    StatusOr<http::ClientResponse> response = http::HttpsRequest(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *std::move(response) : http::ClientResponse{};
  }

  // A token from the password or client_credentials grant for `scope`.
  std::string Token(const std::string& form) const {
    http::ClientResponse r = Call("POST", "/" + tenant_ + "/oauth2/v2.0/token",
                                  {{"Content-Type", "application/x-www-form-urlencoded"}}, form);
    EXPECT_EQ(r.status, 200) << r.body;
    return nlohmann::json::parse(r.body, nullptr, false).value("access_token", "");
  }
  std::string AdminToken(const std::string& resource = "management") const {
    return Token("grant_type=password&username=admin&password=" + std::string(kAdminPassword) +
                 "&scope=https%3A%2F%2F" + resource + ".localhost%2F.default");
  }

  static constexpr const char* kAdminPassword = "correct-horse-battery-staple";

 private:
  // Forks `binary_ serve` on `listen` (stderr appended to the log) and waits for DIR/port.
  void Launch(const std::string& listen) {
    const std::string log = dir_.path() + "/stderr.log";
    port_ = 0;
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, STDERR_FILENO);
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDOUT_FILENO);
      for (const auto& [k, v] : env_) ::setenv(k.c_str(), v.c_str(), 1);
      ::execl(binary_.c_str(), binary_.c_str(), "serve", "--data-dir", data_.c_str(), "--listen",
              listen.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 400 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      StatusOr<std::string> port = ReadFile(data_ + "/port");
      if (port.ok() && !port->empty()) port_ = static_cast<uint16_t>(std::stoi(*port));
    }
    if (port_ == 0) ADD_FAILURE() << "keyfoundryd did not start: " << Log();
  }

  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  std::string binary_;
  std::map<std::string, std::string> env_;
  ScopedTempDir dir_;
  std::string data_;
  pid_t pid_ = -1;
  int status_ = 0;
  uint16_t port_ = 0;
  std::string ca_, tenant_, subscription_;
};

}  // namespace keyfoundry::testutil

#endif  // KEYFOUNDRY_TESTS_SUPPORT_KEYFOUNDRYD_PROCESS_H_
