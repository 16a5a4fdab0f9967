#include "encryption/vault_client.h"

#include <gtest/gtest.h>

#include <string>

namespace keyfoundry::encryption {
namespace {

constexpr char kVersion[] = "0123456789abcdef0123456789abcdef";
const std::string kGood =
    std::string("https://myvault.vault.localhost:8443/keys/cmk-1/") + kVersion;

TEST(ParseKidTest, SplitsAGoodKid) {
  StatusOr<KeyReference> ref = ParseKid(kGood);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->vault_uri, "https://myvault.vault.localhost:8443/");
  EXPECT_EQ(ref->name, "cmk-1");
  EXPECT_EQ(ref->version, kVersion);
}

TEST(ParseKidTest, AcceptsNoPortUpperCaseSchemeAndHexAndLongestName) {
  StatusOr<KeyReference> ref = ParseKid(std::string("https://kv.vault.example/keys/k/") + kVersion);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->vault_uri, "https://kv.vault.example/");

  ref = ParseKid(std::string("HTTPS://kv.vault.example/keys/k/") + kVersion);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->vault_uri, "https://kv.vault.example/");

  ref = ParseKid("https://kv.vault.example/keys/k/0123456789ABCDEF0123456789ABCDEF");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->version, "0123456789ABCDEF0123456789ABCDEF");

  const std::string name(127, 'a');
  ref = ParseKid("https://kv.vault.example/keys/" + name + "/" + kVersion);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->name, name);

  ref = ParseKid(std::string("https://kv.vault.example:65535/keys/k/") + kVersion);
  EXPECT_TRUE(ref.ok()) << ref.status();
}

// Each case is the good kid with one part changed.
TEST(ParseKidTest, RefusesEverythingElseAsBadParameter) {
  const std::string v = kVersion;
  const std::string bad[] = {
      "",
      "http://myvault.vault.localhost:8443/keys/cmk-1/" + v,      // not https
      "https:/myvault.vault.localhost:8443/keys/cmk-1/" + v,      // scheme malformed
      "https://:8443/keys/cmk-1/" + v,                            // no host
      "https:///keys/cmk-1/" + v,                                 // no host
      "https://user@myvault.vault.localhost/keys/cmk-1/" + v,     // user info
      "https://my_vault.vault.localhost:8443/keys/cmk-1/" + v,    // bad host character
      "https://myvault..localhost:8443/keys/cmk-1/" + v,          // empty label
      "https://.myvault.localhost:8443/keys/cmk-1/" + v,          // leading dot
      "https://[::1]:8443/keys/cmk-1/" + v,                       // IP literal
      "https://myvault.vault.localhost:/keys/cmk-1/" + v,         // empty port
      "https://myvault.vault.localhost:0/keys/cmk-1/" + v,        // port 0
      "https://myvault.vault.localhost:65536/keys/cmk-1/" + v,    // port too large
      "https://myvault.vault.localhost:84a3/keys/cmk-1/" + v,     // port not digits
      "https://myvault.vault.localhost:8443",                     // no path
      "https://myvault.vault.localhost:8443/",                    // no keys
      "https://myvault.vault.localhost:8443/secrets/cmk-1/" + v,  // not a key
      "https://myvault.vault.localhost:8443/Keys/cmk-1/" + v,     // case of "keys"
      "https://myvault.vault.localhost:8443//keys/cmk-1/" + v,    // extra slash
      "https://myvault.vault.localhost:8443/keys/cmk-1",          // no version
      "https://myvault.vault.localhost:8443/keys/cmk-1/",         // empty version
      "https://myvault.vault.localhost:8443/keys//" + v,          // empty name
      "https://myvault.vault.localhost:8443/keys/cmk_1/" + v,     // bad name character
      "https://myvault.vault.localhost:8443/keys/cmk%2D1/" + v,   // escaped name
      "https://myvault.vault.localhost:8443/keys/" + std::string(128, 'a') + "/" + v,
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v.substr(1),        // 31 digits
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v + "0",            // 33 digits
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v.substr(1) + "g",  // not hex
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v + "/",            // trailing slash
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v + "?x=1",         // query
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v + "#f",           // fragment
      "https://myvault.vault.localhost:8443/keys/cmk-1/" + v + "/wrapkey",     // an operation
      "https://myvault.vault.localhost:8443/keys/a/b/" + v,     // a name with a slash
      "https://" + std::string(254, 'h') + "/keys/cmk-1/" + v,  // host too long
      " " + kGood,
  };
  for (const std::string& kid : bad) {
    SCOPED_TRACE(kid);
    StatusOr<KeyReference> ref = ParseKid(kid);
    ASSERT_FALSE(ref.ok());
    EXPECT_EQ(ref.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ref.status().reason(), "BadParameter");
  }
}

TEST(ParseKidTest, MessageNamesTheKidButBoundsItsLength) {
  StatusOr<KeyReference> ref = ParseKid("https://kv.example/keys/k/short");
  ASSERT_FALSE(ref.ok());
  EXPECT_NE(ref.status().message().find("https://kv.example/keys/k/short"), std::string::npos)
      << ref.status();
  ref = ParseKid("https://kv.example/keys/k/" + std::string(5000, 'x'));
  ASSERT_FALSE(ref.ok());
  EXPECT_LT(ref.status().message().size(), 400u);
}

}  // namespace
}  // namespace keyfoundry::encryption
