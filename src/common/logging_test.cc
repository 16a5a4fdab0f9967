#include "common/logging.h"

#include <gtest/gtest.h>

namespace keyfoundry {
namespace {

TEST(LoggingTest, FormatsOneJsonObjectPerLine) {
  std::string line = FormatLogLine(LogLevel::kWarning, "disk.slow", {{"dir", "/a\"b"}});
  EXPECT_EQ(line.back(), '\n');
  EXPECT_NE(line.find("\"level\":\"warning\""), std::string::npos);
  EXPECT_NE(line.find("\"event\":\"disk.slow\""), std::string::npos);
  EXPECT_NE(line.find("\"dir\":\"/a\\\"b\""), std::string::npos);
}

TEST(LoggingTest, EscapesControlCharacters) { EXPECT_EQ(JsonEscape("a\nb\x01"), "a\\nb\\u0001"); }

}  // namespace
}  // namespace keyfoundry
