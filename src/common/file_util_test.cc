#include "common/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "support/test_util.h"

namespace keyfoundry {
namespace {

TEST(FileUtilTest, WritesAtomicallyWithModeAndReadsBack) {
  testutil::ScopedTempDir dir;
  const std::string path = dir.path() + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "one", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(path, "two", 0600).ok());
  EXPECT_EQ(*ReadFile(path), "two");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  struct stat tmp;
  EXPECT_NE(stat((path + ".tmp").c_str(), &tmp), 0);
}

TEST(FileUtilTest, MissingFileIsNotFoundAndUnwritableDirectoryFails) {
  testutil::ScopedTempDir dir;
  EXPECT_EQ(ReadFile(dir.path() + "/none").status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomically(dir.path() + "/no/such/dir/f", "x", 0600).ok());
}

}  // namespace
}  // namespace keyfoundry
