#include "common/secret_bytes.h"

#include <gtest/gtest.h>

#include <type_traits>

namespace keyfoundry {
namespace {

TEST(SecretBytesTest, HoldsACopyAndComparesByContent) {
  Bytes raw = {1, 2, 3, 4};
  SecretBytes a(raw, InsecureSecretAccess());
  SecretBytes b(raw, InsecureSecretAccess());
  raw[0] = 9;
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a.Reveal(InsecureSecretAccess())[0], 1);
  EXPECT_TRUE(a == b);
  b.Mutable(InsecureSecretAccess())[3] = 0;
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(a == SecretBytes(3));
}

TEST(SecretBytesTest, MoveLeavesSourceEmptyAndCloneIsIndependent) {
  SecretBytes a(Bytes{5, 6}, InsecureSecretAccess());
  SecretBytes clone = a.Clone();
  SecretBytes moved = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(moved == clone);
  clone.Mutable(InsecureSecretAccess())[0] = 0;
  EXPECT_EQ(moved.Reveal(InsecureSecretAccess())[0], 5);
}

TEST(SecretBytesTest, IsNotCopyable) {
  static_assert(!std::is_copy_constructible_v<SecretBytes>);
  static_assert(!std::is_copy_assignable_v<SecretBytes>);
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  Bytes a = {1, 2, 3}, b = {1, 2, 3}, c = {1, 2, 4}, d = {1, 2};
  EXPECT_TRUE(ConstantTimeEquals(a, b));
  EXPECT_FALSE(ConstantTimeEquals(a, c));
  EXPECT_FALSE(ConstantTimeEquals(a, d));
  EXPECT_TRUE(ConstantTimeEquals({}, {}));
}

TEST(SecureZeroTest, ZeroesTheBuffer) {
  Bytes a = {1, 2, 3};
  SecureZero(a);
  EXPECT_EQ(a, Bytes(3, 0));
}

}  // namespace
}  // namespace keyfoundry
