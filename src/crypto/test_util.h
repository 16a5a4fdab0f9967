// Test-only helpers shared by the crypto tests: reading the Wycheproof vector files and moving
// bytes in and out of SecretBytes. Not part of kf_crypto.
#ifndef KEYFOUNDRY_CRYPTO_TEST_UTIL_H_
#define KEYFOUNDRY_CRYPTO_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/encoding.h"
#include "common/secret_bytes.h"

namespace keyfoundry::crypto {

// Parses ../shared/testdata/wycheproof/`file`; a null JSON (and a test failure) if unreadable.
inline nlohmann::json LoadWycheproof(const std::string& file) {
  const std::string path = std::string(KF_TESTDATA_DIR) + "/wycheproof/" + file;
  std::ifstream in(path);
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    ADD_FAILURE() << "cannot read " << path;
    return nullptr;
  }
  return json;
}

// Decodes a hex string (a test failure and empty bytes if it is not one).
inline Bytes Hex(std::string_view hex) {
  StatusOr<Bytes> bytes = HexDecode(hex);
  EXPECT_TRUE(bytes.ok()) << "bad hex in test data: " << bytes.status();
  return bytes.ok() ? *std::move(bytes) : Bytes();
}
// Decodes the hex string `member` of a Wycheproof JSON object.
inline Bytes Hex(const nlohmann::json& object, const char* member) {
  return Hex(object.at(member).get<std::string>());
}

inline SecretBytes Secret(ByteView bytes) { return SecretBytes(bytes, InsecureSecretAccess()); }

inline Bytes Reveal(const SecretBytes& secret) {
  ByteView view = secret.Reveal(InsecureSecretAccess());
  return Bytes(view.begin(), view.end());
}

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_TEST_UTIL_H_
