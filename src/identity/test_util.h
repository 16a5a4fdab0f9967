// Test-only helpers shared by the identity tests: a real SQLite MetadataStore in a temporary
// directory, a fake clock, and a directory with fast password hashing. Not part of kf_identity.
#ifndef KEYFOUNDRY_IDENTITY_TEST_UTIL_H_
#define KEYFOUNDRY_IDENTITY_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/secret_bytes.h"
#include "identity/directory.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/test_util.h"

namespace keyfoundry::identity {

inline constexpr std::string_view kTestTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
inline constexpr std::string_view kTestSubscription = "00000000-1111-2222-3333-444444444444";
inline constexpr int64_t kTestStart = 1700000000;

inline SecretBytes Secret(std::string_view text) {
  return SecretBytes(AsBytes(text), InsecureSecretAccess());
}

inline std::string Reveal(const SecretBytes& secret) {
  return std::string(AsStringView(secret.Reveal(InsecureSecretAccess())));
}

// The claims of a JWT, decoded without verification (for assertions on what was issued).
inline nlohmann::json UnverifiedClaims(std::string_view token) {
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.find('.', dot1 + 1);
  StatusOr<Bytes> claims = Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  EXPECT_TRUE(claims.ok());
  return claims.ok() ? nlohmann::json::parse(AsStringView(*claims)) : nlohmann::json();
}

// A fixture with an open store, a fake clock at kTestStart and a directory hashing with the
// minimum iteration count.
class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto directory = Directory::New(*store_, std::string(kTestTenant), clock_, FastOptions());
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
  }

  static DirectoryOptions FastOptions() {
    return {.password_iterations = crypto::kMinPasswordIterations,
            .secret_iterations = crypto::kMinPasswordIterations};
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(std::chrono::seconds(kTestStart))};
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<Directory> directory_;
};

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_TEST_UTIL_H_
