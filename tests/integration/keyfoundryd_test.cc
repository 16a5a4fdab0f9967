// Starts the real keyfoundryd binary on a fresh data directory, as `make run` does, and checks
// what the first and a later start leave there, and that SIGTERM stops it cleanly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "support/test_util.h"

namespace {

namespace fs = std::filesystem;

class KeyfoundrydTest : public ::testing::Test {
 protected:
  // Runs `keyfoundryd serve` until it says it is waiting, then stops it with SIGTERM.
  // Returns the exit status and fills *log with its stderr.
  int ServeAndStop(std::string* log, const char* admin_password = nullptr) {
    fs::path log_path = root_ / "stderr.log";
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, STDERR_FILENO);
      if (admin_password) setenv("KEYFOUNDRY_ADMIN_PASSWORD", admin_password, 1);
      execl(KF_KEYFOUNDRYD, KF_KEYFOUNDRYD, "serve", "--data-dir", data_.c_str(), "--listen",
            "127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    bool waiting = false;
    for (int i = 0; i < 200 && !waiting; ++i) {  // up to 10 s
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      waiting = Read(log_path).find("\"event\":\"server.ready\"") != std::string::npos;
    }
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    *log = Read(log_path);
    EXPECT_TRUE(waiting) << *log;
    return status;
  }

  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  keyfoundry::testutil::ScopedTempDir tmp_;
  fs::path root_ = tmp_.path();
  fs::path data_ = root_ / "data";
};

TEST_F(KeyfoundrydTest, FirstStartInitialisesTheDataDirectoryAndSigtermStopsCleanly) {
  std::string log;
  int status = ServeAndStop(&log);
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_NE(log.find("data_dir.created"), std::string::npos);
  EXPECT_NE(log.find("server.stopped"), std::string::npos);
  for (const char* name : {"tenant-id", "subscription-id", "admin-password", "metadata.db"}) {
    EXPECT_TRUE(fs::exists(data_ / name)) << name;
  }
  EXPECT_TRUE(fs::is_directory(data_ / "blobs"));
  // The password never reaches the log.
  std::string password = Read(data_ / "admin-password");
  password.erase(password.find_last_not_of('\n') + 1);
  EXPECT_EQ(log.find(password), std::string::npos);

  std::string tenant = Read(data_ / "tenant-id");
  status = ServeAndStop(&log);
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_NE(log.find("data_dir.opened"), std::string::npos);
  EXPECT_EQ(Read(data_ / "tenant-id"), tenant);
}

TEST_F(KeyfoundrydTest, AdminPasswordFromTheEnvironmentIsNeitherWrittenNorLogged) {
  std::string log;
  int status = ServeAndStop(&log, "env-password-123");
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_FALSE(fs::exists(data_ / "admin-password"));
  EXPECT_EQ(log.find("env-password-123"), std::string::npos);
}

TEST_F(KeyfoundrydTest, UnusableDataDirectoryFailsWithAClearMessage) {
  std::ofstream(root_ / "file").put('x');
  data_ = root_ / "file" / "data";
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    execl(KF_KEYFOUNDRYD, KF_KEYFOUNDRYD, "serve", "--data-dir", data_.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

}  // namespace
