#include "common/secret_bytes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <type_traits>
#include <vector>

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

TEST(SecretBytesTest, SizesAcrossThePoolAndBeyondHoldTheirContents) {
  // Pool size classes (32 .. 4096 bytes) and the separately locked path above them; slots are
  // recycled zeroed, so a fresh secret never shows an old one's bytes.
  for (int round = 0; round < 3; ++round) {
    std::vector<SecretBytes> live;
    for (size_t size : {1, 31, 32, 33, 64, 100, 512, 1000, 2048, 4095, 4096, 4097, 100000}) {
      SecretBytes s(size);
      auto view = s.Reveal(InsecureSecretAccess());
      ASSERT_TRUE(std::all_of(view.begin(), view.end(), [](uint8_t b) { return b == 0; })) << size;
      auto bytes = s.Mutable(InsecureSecretAccess());
      std::fill(bytes.begin(), bytes.end(), static_cast<uint8_t>(size));
      live.push_back(std::move(s));
    }
    for (const SecretBytes& s : live) {
      auto view = s.Reveal(InsecureSecretAccess());
      EXPECT_TRUE(std::all_of(view.begin(), view.end(),
                              [&](uint8_t b) { return b == static_cast<uint8_t>(s.size()); }));
    }
  }
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
