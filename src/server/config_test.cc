#include "server/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/test_util.h"

namespace keyfoundry::server {
namespace {

using Env = std::map<std::string, std::string>;

std::function<std::optional<std::string>(const char*)> EnvOf(Env env) {
  return [env = std::move(env)](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

class ConfigTest : public ::testing::Test {
 protected:
  std::string WriteFile(const std::string& text) {
    std::string path = tmp_.path() + "/config.json";
    std::ofstream(path) << text;
    return path;
  }
  testutil::ScopedTempDir tmp_;
};

TEST_F(ConfigTest, DefaultsNeedOnlyADataDirectory) {
  auto config = LoadConfig(std::nullopt, EnvOf({}), {{"data_dir", "/d"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->data_dir, "/d");
  EXPECT_EQ(config->listen_host, "127.0.0.1");
  EXPECT_EQ(config->listen_port, 8443);
  EXPECT_EQ(config->domain, "localhost");
  EXPECT_EQ(config->limits.max_body_bytes, 1024 * 1024);
  EXPECT_EQ(LoadConfig(std::nullopt, EnvOf({}), {}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ConfigTest, FlagsOverrideEnvironmentOverrideFile) {
  std::string path = WriteFile(R"({"data_dir": "/file", "listen": "0.0.0.0:1000",
      "domain": "file.test", "limits": {"max_connections": 10, "read_timeout_seconds": 5}})");
  auto config = LoadConfig(path,
                           EnvOf({{"KEYFOUNDRY_LISTEN", "127.0.0.1:2000"},
                                  {"KEYFOUNDRY_DOMAIN", "env.test"},
                                  {"KEYFOUNDRY_MAX_CONNECTIONS", "20"}}),
                           {{"listen", "[::1]:0"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->data_dir, "/file");
  EXPECT_EQ(config->listen_host, "::1");
  EXPECT_EQ(config->listen_port, 0);
  EXPECT_EQ(config->domain, "env.test");
  EXPECT_EQ(config->limits.max_connections, 20);
  EXPECT_EQ(config->limits.read_timeout_seconds, 5);
}

TEST_F(ConfigTest, BadValuesAreRefusedNamingKeyAndSource) {
  auto unknown = LoadConfig(WriteFile(R"({"data_dir": "/d", "listne": "x"})"), EnvOf({}), {});
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("listne"), std::string::npos);

  auto range = LoadConfig(std::nullopt, EnvOf({{"KEYFOUNDRY_THREADS", "0"}}), {{"data_dir", "/d"}});
  EXPECT_NE(range.status().message().find("KEYFOUNDRY_THREADS"), std::string::npos);

  auto port = LoadConfig(std::nullopt, EnvOf({}), {{"data_dir", "/d"}, {"listen", "h:99999"}});
  EXPECT_NE(port.status().message().find("--listen"), std::string::npos);

  auto type = LoadConfig(WriteFile(R"({"data_dir": "/d", "threads": 1.5})"), EnvOf({}), {});
  EXPECT_EQ(type.status().code(), StatusCode::kInvalidArgument);

  auto syntax = LoadConfig(WriteFile("{not json"), EnvOf({}), {});
  EXPECT_EQ(syntax.status().code(), StatusCode::kInvalidArgument);

  auto storage = LoadConfig(std::nullopt, EnvOf({}), {{"data_dir", "/d"}, {"storage", "mysql"}});
  EXPECT_EQ(storage.status().code(), StatusCode::kInvalidArgument);
}

TEST(ParseListenTest, AcceptsHostPortAndBracketedIpv6) {
  std::string host;
  uint16_t port = 1;
  ASSERT_TRUE(ParseListen("localhost:0", &host, &port).ok());
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(ParseListen("[::1]:443", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  for (const char* bad : {"8443", ":8443", "h:", "h:-1", "h:65536", "[::1:1"}) {
    EXPECT_FALSE(ParseListen(bad, &host, &port).ok()) << bad;
  }
}

}  // namespace
}  // namespace keyfoundry::server
