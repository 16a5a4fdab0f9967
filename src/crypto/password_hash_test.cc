#include "crypto/password_hash.h"

#include <gtest/gtest.h>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

SecretBytes Password(std::string_view text) { return Secret(AsBytes(text)); }

constexpr uint32_t kFast = kMinPasswordIterations;

// RFC 7914 section 11 gives two PBKDF2-HMAC-SHA-256 vectors (RFC 6070 has SHA-1 only).
TEST(PasswordHashTest, Pbkdf2MatchesRfc7914Vectors) {
  auto dk1 = Pbkdf2HmacSha256(Password("passwd"), AsBytes("salt"), 1, 64);
  ASSERT_TRUE(dk1.ok()) << dk1.status();
  EXPECT_EQ(Reveal(*dk1), Hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
                              "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"));
  auto dk2 = Pbkdf2HmacSha256(Password("Password"), AsBytes("NaCl"), 80000, 64);
  ASSERT_TRUE(dk2.ok()) << dk2.status();
  EXPECT_EQ(Reveal(*dk2), Hex("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
                              "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"));
}

TEST(PasswordHashTest, Pbkdf2RefusesZeroIterationsAndBadLengths) {
  EXPECT_EQ(Pbkdf2HmacSha256(Password("p"), AsBytes("salt"), 0, 32).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Pbkdf2HmacSha256(Password("p"), AsBytes("salt"), 1, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Pbkdf2HmacSha256(Password("p"), AsBytes("salt"), 1, 1025).status().code(),
            StatusCode::kInvalidArgument);
}

// An encoding made by another implementation (Python's hashlib.pbkdf2_hmac, salt 00..0f).
TEST(PasswordHashTest, VerifiesAnEncodingMadeElsewhere) {
  const std::string encoded =
      "pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4";
  EXPECT_TRUE(VerifyPassword(Password("correct horse battery staple"), encoded).ok());
  EXPECT_EQ(VerifyPassword(Password("correct horse battery stapl"), encoded).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(*PasswordHashIterations(encoded), 1000u);
}

TEST(PasswordHashTest, RoundTripsAndSaltsEachHash) {
  auto a = HashPassword(Password("hunter2!"), kFast);
  auto b = HashPassword(Password("hunter2!"), kFast);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);  // fresh salt
  EXPECT_EQ(a->rfind("pbkdf2-sha256$1000$", 0), 0u);
  EXPECT_TRUE(VerifyPassword(Password("hunter2!"), *a).ok());
  EXPECT_TRUE(VerifyPassword(Password("hunter2!"), *b).ok());
  EXPECT_EQ(VerifyPassword(Password("hunter2?"), *a), PermissionDeniedError("password mismatch"));
  EXPECT_EQ(VerifyPassword(Password("Hunter2!"), *a).code(), StatusCode::kPermissionDenied);
}

TEST(PasswordHashTest, DefaultIterationCountIsOwasps) {
  EXPECT_EQ(kDefaultPasswordIterations, 600000u);
}

TEST(PasswordHashTest, HashRefusesBadInput) {
  EXPECT_EQ(HashPassword(Password(""), kFast).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword(Password(std::string(kMaxPasswordSize + 1, 'a')), kFast).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(HashPassword(Password(std::string(kMaxPasswordSize, 'a')), kFast).ok());
  EXPECT_EQ(HashPassword(Password("p"), kMinPasswordIterations - 1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword(Password("p"), kMaxPasswordIterations + 1).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(PasswordHashTest, VerifyRefusesMalformedEncodings) {
  const std::string good = *HashPassword(Password("pw"), kFast);
  ASSERT_TRUE(VerifyPassword(Password("pw"), good).ok());
  const size_t d1 = good.find('$');
  const size_t d2 = good.find('$', d1 + 1);
  const size_t d3 = good.find('$', d2 + 1);
  const std::string salt = good.substr(d2 + 1, d3 - d2 - 1);
  const std::string hash = good.substr(d3 + 1);
  auto with = [&](std::string scheme, std::string count, std::string s, std::string h) {
    return scheme + "$" + count + "$" + s + "$" + h;
  };
  const std::string bad[] = {
      "",
      "pbkdf2-sha256",
      with("pbkdf2-sha1", "1000", salt, hash),
      with("PBKDF2-SHA256", "1000", salt, hash),
      with("pbkdf2-sha256", "999", salt, hash),         // below the minimum
      with("pbkdf2-sha256", "100000001", salt, hash),   // above the maximum
      with("pbkdf2-sha256", "4294967297", salt, hash),  // beyond uint32
      with("pbkdf2-sha256", "01000", salt, hash),       // leading zero
      with("pbkdf2-sha256", "+1000", salt, hash),
      with("pbkdf2-sha256", "-1000", salt, hash),
      with("pbkdf2-sha256", "1000 ", salt, hash),
      with("pbkdf2-sha256", "", salt, hash),
      with("pbkdf2-sha256", "1000", salt + "AA", hash),  // 17-byte salt
      with("pbkdf2-sha256", "1000", salt.substr(1), hash),
      with("pbkdf2-sha256", "1000", salt, hash.substr(0, 42)),
      with("pbkdf2-sha256", "1000", salt, hash + "="),  // padding
      with("pbkdf2-sha256", "1000", salt, hash + "$"),  // extra field
      with("pbkdf2-sha256", "1000", salt, "!" + hash.substr(1)),
      good + "$",
      "$" + good,
  };
  for (const std::string& encoded : bad) {
    EXPECT_EQ(VerifyPassword(Password("pw"), encoded).code(), StatusCode::kInvalidArgument)
        << encoded;
  }
  EXPECT_EQ(VerifyPassword(Password(""), good).code(), StatusCode::kInvalidArgument);
}

TEST(PasswordHashTest, VerifyFailsWhenHashOrSaltByteChanged) {
  const std::string good = *HashPassword(Password("pw"), kFast);
  // Change one character of the salt field and one of the hash field (keeping valid base64url
  // of the same size: the last character of each carries unused bits, so change the first).
  const size_t d2 = good.find('$', good.find('$') + 1);
  const size_t d3 = good.find('$', d2 + 1);
  for (size_t pos : {d2 + 1, d3 + 1}) {
    std::string tampered = good;
    tampered[pos] = tampered[pos] == 'A' ? 'B' : 'A';
    EXPECT_EQ(VerifyPassword(Password("pw"), tampered).code(), StatusCode::kPermissionDenied);
  }
}

}  // namespace
}  // namespace keyfoundry::crypto
