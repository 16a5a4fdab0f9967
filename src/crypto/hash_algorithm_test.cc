#include "crypto/hash_algorithm.h"

#include <gtest/gtest.h>

#include "common/encoding.h"

namespace keyfoundry::crypto {
namespace {

// FIPS 180-4 example "abc" (NIST CSRC example values).
TEST(HashAlgorithmDigestTest, KnownAnswersForAbc) {
  struct Case {
    HashAlgorithm hash;
    const char* hex;
  };
  const Case cases[] = {
      {HashAlgorithm::kSha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {HashAlgorithm::kSha384,
       "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca1"
       "34c825a7"},
      {HashAlgorithm::kSha512,
       "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23"
       "a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
  };
  for (const Case& c : cases) {
    StatusOr<Bytes> digest = Digest(c.hash, AsBytes("abc"));
    ASSERT_TRUE(digest.ok()) << digest.status();
    EXPECT_EQ(digest->size(), HashSize(c.hash));
    EXPECT_EQ(HexEncode(*digest), c.hex) << HashName(c.hash);
  }
}

TEST(HashAlgorithmDigestTest, EmptyInput) {
  StatusOr<Bytes> digest = Digest(HashAlgorithm::kSha256, {});
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(HexEncode(*digest), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HashAlgorithmDigestTest, UnknownAlgorithmIsInvalidArgument) {
  EXPECT_EQ(Digest(static_cast<HashAlgorithm>(0), AsBytes("abc")).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::crypto
