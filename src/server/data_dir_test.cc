#include "server/data_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "support/test_util.h"

namespace keyfoundry::server {
namespace {

namespace fs = std::filesystem;

class DataDirTest : public ::testing::Test {
 protected:
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
  }

  keyfoundry::testutil::ScopedTempDir tmp_;
  fs::path root_ = fs::path(tmp_.path()) / "data";
};

TEST_F(DataDirTest, FirstStartCreatesAndLaterStartsReuse) {
  std::string tenant, subscription;
  {
    auto dir = InitDataDir(root_, std::nullopt);
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_TRUE(dir->created);
    EXPECT_EQ(dir->tenant_id.size(), 36u);
    EXPECT_NE(dir->tenant_id, dir->subscription_id);
    EXPECT_EQ(Read(root_ / "tenant-id"), dir->tenant_id);
    struct stat st;
    ASSERT_EQ(stat((root_ / "admin-password").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(stat(root_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(Read(root_ / "admin-password").size(), dir->admin_password.size());
    tenant = dir->tenant_id;
    subscription = dir->subscription_id;
  }
  auto again = InitDataDir(root_, std::nullopt);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->tenant_id, tenant);
  EXPECT_EQ(again->subscription_id, subscription);
}

TEST_F(DataDirTest, PasswordFromEnvironmentIsNotWritten) {
  {
    auto dir = InitDataDir(root_, "s3cret-from-env");
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_FALSE(fs::exists(root_ / "admin-password"));
    EXPECT_TRUE(dir->admin_password ==
                SecretBytes(AsBytes("s3cret-from-env"), InsecureSecretAccess()));
  }
  EXPECT_EQ(InitDataDir(root_, "").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(DataDirTest, SecondServerOnTheSameDirectoryIsRefused) {
  auto first = InitDataDir(root_, std::nullopt);
  ASSERT_TRUE(first.ok());
  auto second = InitDataDir(root_, std::nullopt);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(DataDirTest, EmptyIdentityFileIsReportedNotReplaced) {
  {
    auto dir = InitDataDir(root_, std::nullopt);
    ASSERT_TRUE(dir.ok());
  }
  std::ofstream(root_ / "tenant-id", std::ios::trunc).close();
  auto dir = InitDataDir(root_, std::nullopt);
  EXPECT_EQ(dir.status().code(), StatusCode::kInternal);
  EXPECT_EQ(Read(root_ / "tenant-id"), "");
}

}  // namespace
}  // namespace keyfoundry::server
