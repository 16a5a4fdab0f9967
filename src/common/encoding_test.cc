#include "common/encoding.h"

#include <gtest/gtest.h>

namespace keyfoundry {
namespace {

// RFC 4648 §10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string, std::string> cases[] = {{"", ""},
                                                       {"f", "Zg=="},
                                                       {"fo", "Zm8="},
                                                       {"foo", "Zm9v"},
                                                       {"foob", "Zm9vYg=="},
                                                       {"fooba", "Zm9vYmE="},
                                                       {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(Base64Encode(AsBytes(plain)), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded.ok()) << encoded;
    EXPECT_EQ(AsStringView(*decoded), plain);
  }
}

TEST(Base64Test, AcceptsUnpaddedInput) {
  EXPECT_EQ(AsStringView(*Base64Decode("Zm9vYg")), "foob");
  EXPECT_EQ(AsStringView(*Base64Decode("Zm9vYmE")), "fooba");
}

TEST(Base64Test, RejectsMalformedInput) {
  for (const char* bad : {"Zm9v!", "Z", "Zm9vY", "Zm=9v", "Zg===", "Zh==", "Zm9 v", "Zm-_"}) {
    EXPECT_FALSE(Base64Decode(bad).ok()) << bad;
  }
}

TEST(Base64UrlTest, UsesUrlAlphabetWithoutPadding) {
  Bytes data = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(Base64UrlEncode(data), "-_-_");
  EXPECT_EQ(Base64Encode(data), "+/+/");
  EXPECT_EQ(Base64UrlEncode(AsBytes("f")), "Zg");
  EXPECT_EQ(*Base64UrlDecode("-_-_"), data);
  EXPECT_EQ(AsStringView(*Base64UrlDecode("Zg==")), "f");
  EXPECT_FALSE(Base64UrlDecode("+/+/").ok());
}

TEST(Base64UrlTest, RoundTripsEveryLength) {
  Bytes data;
  for (int n = 0; n < 70; ++n) {
    auto decoded = Base64UrlDecode(Base64UrlEncode(data));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, data);
    data.push_back(static_cast<uint8_t>(n * 37));
  }
}

TEST(HexTest, EncodesLowerAndDecodesEitherCase) {
  Bytes data = {0x00, 0xab, 0xff};
  EXPECT_EQ(HexEncode(data), "00abff");
  EXPECT_EQ(*HexDecode("00ABff"), data);
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
}

}  // namespace
}  // namespace keyfoundry
