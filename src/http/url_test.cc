#include "http/url.h"

#include <gtest/gtest.h>

namespace keyfoundry::http {
namespace {

TEST(UrlTest, PercentDecodeDecodesEscapesInEitherCase) {
  EXPECT_EQ(*PercentDecode("a%20b%2fc%2Fd", false), "a b/c/d");
  EXPECT_EQ(*PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(*PercentDecode("a+b", true), "a b");
  EXPECT_EQ(*PercentDecode("%00", false), std::string(1, '\0'));
  EXPECT_EQ(*PercentDecode("%C3%A9", false), "\xc3\xa9");
  EXPECT_EQ(*PercentDecode("", false), "");
}

TEST(UrlTest, PercentDecodeRefusesMalformedEscapes) {
  for (const char* bad : {"%", "%2", "a%g0", "%0g", "%%", "abc%"}) {
    EXPECT_EQ(PercentDecode(bad, false).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(UrlTest, PercentEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(PercentEncode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(PercentEncode("a b/c?d=e&f+%"), "a%20b%2Fc%3Fd%3De%26f%2B%25");
  EXPECT_EQ(PercentEncode("\xc3\xa9"), "%C3%A9");
  const std::string all = [] {
    std::string s;
    for (int c = 0; c < 256; ++c) s += static_cast<char>(c);
    return s;
  }();
  EXPECT_EQ(*PercentDecode(PercentEncode(all), false), all);
}

TEST(UrlTest, FormDecodingDecodesNamesAndValues) {
  auto form = ParseFormUrlEncoded("api-version=7.4&a%20b=c+d%26e&flag&&x=");
  ASSERT_TRUE(form.ok()) << form.status();
  const std::map<std::string, std::string> expected = {
      {"api-version", "7.4"}, {"a b", "c d&e"}, {"flag", ""}, {"x", ""}};
  EXPECT_EQ(*form, expected);
  EXPECT_TRUE(ParseFormUrlEncoded("")->empty());
  EXPECT_EQ(ParseFormUrlEncoded("a=b=c")->at("a"), "b=c");
  EXPECT_EQ(ParseFormUrlEncoded("a+b=1")->count("a b"), 1u);
}

TEST(UrlTest, FormDecodingKeepsARepeatedEqualValueAndRefusesADifferentOne) {
  auto same = ParseFormUrlEncoded("api-version=7.4&api-version=7%2E4");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->at("api-version"), "7.4");
  auto different = ParseFormUrlEncoded("scope=a&scope=b");
  EXPECT_EQ(different.status(),
            InvalidArgumentError(
                "the parameter \"scope\" is given more than once with different values"));
  EXPECT_EQ(ParseFormUrlEncoded("a=%zz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseFormUrlEncoded("%zz=1").status().code(), StatusCode::kInvalidArgument);
}

TEST(UrlTest, RequestPathsMustBeAbsoluteWellEncodedAndUnnormalised) {
  for (const char* good :
       {"/", "/keys", "/keys/", "/keys/k1/", "/a%2Fb", "/.well-known/x", "/a/...", "//x"}) {
    EXPECT_TRUE(ValidateRequestPath(good).ok()) << good;
  }
  for (const char* bad : {"", "keys", "*", "/a/../b", "/a/./b", "/..", "/.", "/a/%2e%2E", "/%2e/x",
                          "/a%g1", "/a/%"}) {
    EXPECT_EQ(ValidateRequestPath(bad).code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace keyfoundry::http
