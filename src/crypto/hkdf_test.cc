#include "crypto/hkdf.h"

#include <gtest/gtest.h>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

SecretBytes Ikm() { return Secret(Bytes(22, 0x0b)); }
std::string HexOf(const SecretBytes& secret) { return HexEncode(Reveal(secret)); }

// RFC 5869 appendix A.1.
TEST(HkdfTest, MatchesRfc5869TestCase1) {
  auto okm = Hkdf(Ikm(), Hex("000102030405060708090a0b0c"), Hex("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(HexOf(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

// RFC 5869 appendix A.3: no salt, no info.
TEST(HkdfTest, MatchesRfc5869TestCase3WithEmptySaltAndInfo) {
  auto okm = Hkdf(Ikm(), {}, {}, 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(HexOf(*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(HkdfTest, OutputDependsOnInfoAndIsAPrefixOfLongerOutput) {
  auto a = Hkdf(Ikm(), AsBytes("salt"), AsBytes("purpose a"), 64);
  auto b = Hkdf(Ikm(), AsBytes("salt"), AsBytes("purpose b"), 64);
  auto a_short = Hkdf(Ikm(), AsBytes("salt"), AsBytes("purpose a"), 16);
  ASSERT_TRUE(a.ok() && b.ok() && a_short.ok());
  EXPECT_FALSE(*a == *b);
  EXPECT_EQ(HexOf(*a).substr(0, 32), HexOf(*a_short));
}

TEST(HkdfTest, AcceptsEmptyIkm) {
  auto okm = Hkdf(SecretBytes(), AsBytes("salt"), AsBytes("info"), 32);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(okm->size(), 32u);
}

TEST(HkdfTest, RefusesLengthsOutsideRfc5869) {
  EXPECT_EQ(Hkdf(Ikm(), {}, {}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Hkdf(Ikm(), {}, {}, kHkdfSha256MaxLength + 1).status().code(),
            StatusCode::kInvalidArgument);
  auto longest = Hkdf(Ikm(), {}, {}, kHkdfSha256MaxLength);
  ASSERT_TRUE(longest.ok()) << longest.status();
  EXPECT_EQ(longest->size(), kHkdfSha256MaxLength);
}

}  // namespace
}  // namespace keyfoundry::crypto
