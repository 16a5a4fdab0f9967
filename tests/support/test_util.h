// Test-only helpers shared by unit and integration tests: temporary directories and crash
// simulation.
#ifndef KEYFOUNDRY_TESTS_SUPPORT_TEST_UTIL_H_
#define KEYFOUNDRY_TESTS_SUPPORT_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

namespace keyfoundry::testutil {

// A fresh directory under the test temp dir, removed with everything in it at scope exit.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string pattern = ::testing::TempDir() + "kf_test_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Ends this process as a crash would: SIGKILL runs no destructor and flushes nothing.
[[noreturn]] inline void KillSelf() {
  (void)::raise(SIGKILL);
  ::_exit(2);  // not reached
}

// Runs `body` in a forked child, which is expected to end by KillSelf(). Returns true when it
// did; a child that returns from `body` instead exits with status 1. Call only while the test
// runs no other thread.
inline bool RunInChildUntilKilled(const std::function<void()>& body) {
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    body();
    ::_exit(1);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

}  // namespace keyfoundry::testutil

#endif  // KEYFOUNDRY_TESTS_SUPPORT_TEST_UTIL_H_
