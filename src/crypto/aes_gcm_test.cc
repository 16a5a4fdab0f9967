#include "crypto/aes_gcm.h"

#include <gtest/gtest.h>

#include "crypto/random.h"

namespace keyfoundry::crypto {
namespace {

SecretBytes Key(uint8_t fill, size_t n = 32) {
  return SecretBytes(Bytes(n, fill), InsecureSecretAccess());
}

TEST(AesGcmTest, RoundTripsAndBindsAad) {
  auto aead = AesGcm::New(Key(1));
  ASSERT_TRUE(aead.ok());
  Bytes nonce(12, 7);
  auto sealed = (*aead)->Seal(nonce, AsBytes("aad"), AsBytes("hello"));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), 5 + AesGcm::kTagSize);
  auto opened = (*aead)->Open(nonce, AsBytes("aad"), *sealed);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(AsStringView(*opened), "hello");
  EXPECT_EQ((*aead)->Open(nonce, AsBytes("aae"), *sealed).status().code(), StatusCode::kDataLoss);
}

TEST(AesGcmTest, OpenFailsAndZeroesOutputWhenCiphertextFlipped) {
  auto aead = *AesGcm::New(Key(2));
  Bytes nonce(12, 1);
  Bytes sealed = *aead->Seal(nonce, {}, AsBytes("secret text"));
  for (size_t i = 0; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= 0x01;
    Bytes out(bad.size() - AesGcm::kTagSize, 0xAA);
    EXPECT_EQ(aead->Open(nonce, {}, bad, out).code(), StatusCode::kDataLoss) << i;
    EXPECT_EQ(out, Bytes(out.size(), 0)) << i;
  }
}

TEST(AesGcmTest, SealsInPlace) {
  auto aead = *AesGcm::New(Key(3));
  Bytes nonce(12, 9);
  Bytes buf = ToBytes("in place please");
  const size_t n = buf.size();
  buf.resize(n + AesGcm::kTagSize);
  ASSERT_TRUE(aead->Seal(nonce, {}, ByteView(buf.data(), n), buf).ok());
  ASSERT_TRUE(aead->Open(nonce, {}, buf, std::span<uint8_t>(buf.data(), n)).ok());
  EXPECT_EQ(AsStringView(ByteView(buf.data(), n)), "in place please");
}

TEST(AesGcmTest, RejectsBadKeyAndNonceSizes) {
  EXPECT_EQ(AesGcm::New(Key(0, 31)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(AesGcm::New(SecretBytes()).status().code(), StatusCode::kInvalidArgument);
  auto aead = *AesGcm::New(Key(0, 16));
  EXPECT_EQ(aead->Seal({}, {}, AsBytes("x")).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::crypto
