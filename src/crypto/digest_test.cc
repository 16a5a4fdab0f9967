#include "crypto/digest.h"

#include <gtest/gtest.h>

#include <string>

#include "common/encoding.h"

namespace keyfoundry::crypto {
namespace {

std::string Sha256Hex(std::string_view message) {
  StatusOr<Bytes> digest = Sha256(AsBytes(message));
  EXPECT_TRUE(digest.ok()) << digest.status();
  return digest.ok() ? HexEncode(*digest) : "";
}

// FIPS 180-2 appendix B.1 (the one-block message "abc").
TEST(DigestTest, Sha256MatchesFips180OneBlockVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// FIPS 180-2 appendix B.2 (a 448-bit message, which needs two blocks once padded).
TEST(DigestTest, Sha256MatchesFips180TwoBlockVector) {
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

// FIPS 180-2 appendix B.3 (one million 'a').
TEST(DigestTest, Sha256MatchesFips180MillionAVector) {
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(DigestTest, Sha256OfEmptyInput) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256(ByteView()).value().size(), kSha256Size);
}

}  // namespace
}  // namespace keyfoundry::crypto
