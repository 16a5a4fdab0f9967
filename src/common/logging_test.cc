#include "common/logging.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "support/test_util.h"

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

// Points stderr at a file for the life of the object.
class CapturedStderr {
 public:
  explicit CapturedStderr(const std::string& path) : path_(path) {
    FlushDeferredLog();
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~CapturedStderr() {
    FlushDeferredLog();
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
  }
  std::string Text() const {
    std::string text;
    if (FILE* f = std::fopen(path_.c_str(), "rb")) {
      char buf[4096];
      size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
      (void)std::fclose(f);
    }
    return text;
  }

 private:
  std::string path_;
  int saved_ = -1;
};

TEST(LoggingTest, DeferredLinesAreWrittenByTheBackgroundThreadWithinTheDelay) {
  testutil::ScopedTempDir dir;
  CapturedStderr captured(dir.path() + "/stderr");
  LogDeferred(LogLevel::kInfo, "http.request", {{"path", "/one"}});
  std::string text;
  for (int i = 0; i < 500 && text.find("/one") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = captured.Text();
  }
  EXPECT_NE(text.find("\"event\":\"http.request\",\"path\":\"/one\""), std::string::npos) << text;
}

TEST(LoggingTest, ALogLineComesAfterTheDeferredLinesBeforeIt) {
  testutil::ScopedTempDir dir;
  CapturedStderr captured(dir.path() + "/stderr");
  LogDeferred(LogLevel::kInfo, "http.request", {{"path", "/first"}});
  LogDeferred(LogLevel::kInfo, "http.request", {{"path", "/second"}});
  Log(LogLevel::kError, "disk.full");
  const std::string text = captured.Text();  // Log wrote all three, in order, before returning
  const size_t first = text.find("/first");
  const size_t second = text.find("/second");
  const size_t error = text.find("disk.full");
  ASSERT_NE(first, std::string::npos) << text;
  ASSERT_NE(second, std::string::npos) << text;
  ASSERT_NE(error, std::string::npos) << text;
  EXPECT_LT(first, second);
  EXPECT_LT(second, error);
}

TEST(LoggingTest, AFullBufferIsWrittenAtOnceAndLinesStayWhole) {
  testutil::ScopedTempDir dir;
  CapturedStderr captured(dir.path() + "/stderr");
  const std::string path(200, 'p');
  int lines = 0;
  for (size_t written = 0; written < kDeferredLogBuffer; written += 250, ++lines) {
    LogDeferred(LogLevel::kInfo, "http.request", {{"path", path}});
  }
  FlushDeferredLog();
  const std::string text = captured.Text();
  int count = 0;
  for (size_t at = 0, end = 0; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
    EXPECT_EQ(text.compare(at, 1, "{"), 0);
    EXPECT_EQ(text.compare(end - 1, 1, "}"), 0);
    ++count;
  }
  EXPECT_EQ(count, lines);
}

}  // namespace
}  // namespace keyfoundry
