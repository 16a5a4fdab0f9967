#include "crypto/ecdsa.h"

#include <gtest/gtest.h>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

constexpr EcCurve kCurves[] = {EcCurve::kP256, EcCurve::kP384, EcCurve::kP521};
constexpr HashAlgorithm kHashes[] = {HashAlgorithm::kSha256, HashAlgorithm::kSha384,
                                     HashAlgorithm::kSha512};

EcPrivateKey Generate(EcCurve curve) {
  auto key = EcPrivateKey::Generate(curve);
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

TEST(EcdsaTest, DigestSignaturesMatchMessageSignatures) {
  for (size_t i = 0; i < 3; ++i) {
    const EcCurve curve = kCurves[i];
    const HashAlgorithm hash = kHashes[i];  // JOSE's pairing: ES256/P-256, ES384/P-384, ...
    SCOPED_TRACE(EcCurveName(curve));
    EcPrivateKey key = Generate(curve);
    EcPublicKey pub = *key.PublicKey();
    auto digest = Digest(hash, AsBytes("message"));
    ASSERT_TRUE(digest.ok());
    auto signature = key.SignDigest(*digest);
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_EQ(signature->size(), 2 * EcFieldSize(curve));
    EXPECT_TRUE(pub.Verify(hash, AsBytes("message"), *signature).ok());
    auto from_message = key.Sign(hash, AsBytes("message"));
    ASSERT_TRUE(from_message.ok());
    EXPECT_TRUE(pub.VerifyDigest(*digest, *from_message).ok());
    Bytes other = *digest;
    other[3] ^= 0x80;
    EXPECT_FALSE(pub.VerifyDigest(other, *from_message).ok());
    EXPECT_FALSE(pub.VerifyDigest({}, *from_message).ok());
  }
}

TEST(EcdsaTest, FieldSizes) {
  EXPECT_EQ(EcFieldSize(EcCurve::kP256), 32u);
  EXPECT_EQ(EcFieldSize(EcCurve::kP384), 48u);
  EXPECT_EQ(EcFieldSize(EcCurve::kP521), 66u);
  EXPECT_EQ(EcFieldSize(EcCurve{}), 0u);
  EXPECT_EQ(EcPrivateKey::Generate(EcCurve{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, SignVerifyRoundTripsOnEveryCurveAndHash) {
  for (EcCurve curve : kCurves) {
    const EcPrivateKey key = Generate(curve);
    const EcPublicKey public_key = *key.PublicKey();
    EXPECT_EQ(public_key.curve(), curve);
    for (HashAlgorithm hash : kHashes) {
      SCOPED_TRACE(testing::Message() << static_cast<int>(curve) << "/" << static_cast<int>(hash));
      auto signature = key.Sign(hash, AsBytes("message"));
      ASSERT_TRUE(signature.ok()) << signature.status();
      EXPECT_EQ(signature->size(), 2 * EcFieldSize(curve));
      EXPECT_TRUE(public_key.Verify(hash, AsBytes("message"), *signature).ok());
      EXPECT_EQ(public_key.Verify(hash, AsBytes("messagE"), *signature),
                InvalidArgumentError("ECDSA signature verification failed"));
    }
  }
}

TEST(EcdsaTest, VerifyFailsOnTamperedOrWrongLengthSignature) {
  const EcPrivateKey key = Generate(EcCurve::kP256);
  const EcPublicKey public_key = *key.PublicKey();
  const Bytes signature = *key.Sign(HashAlgorithm::kSha256, AsBytes("m"));
  auto verify = [&](ByteView sig) {
    return public_key.Verify(HashAlgorithm::kSha256, AsBytes("m"), sig).code();
  };
  ASSERT_EQ(verify(signature), StatusCode::kOk);
  for (size_t i = 0; i < signature.size(); ++i) {
    Bytes bad = signature;
    bad[i] ^= 0x01;
    EXPECT_EQ(verify(bad), StatusCode::kInvalidArgument) << i;
  }
  // The same r and s with a leading zero, truncated, empty, or swapped.
  Bytes longer = signature;
  longer.insert(longer.begin(), 0);
  EXPECT_EQ(verify(longer), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify(ByteView(signature).first(63)), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify({}), StatusCode::kInvalidArgument);
  Bytes swapped(signature.begin() + 32, signature.end());
  swapped.insert(swapped.end(), signature.begin(), signature.begin() + 32);
  EXPECT_EQ(verify(swapped), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify(Bytes(64, 0)), StatusCode::kInvalidArgument);
  // Under another hash or another key.
  EXPECT_FALSE(public_key.Verify(HashAlgorithm::kSha384, AsBytes("m"), signature).ok());
  EXPECT_FALSE(Generate(EcCurve::kP256)
                   .PublicKey()
                   ->Verify(HashAlgorithm::kSha256, AsBytes("m"), signature)
                   .ok());
}

TEST(EcdsaTest, CoordinatesAndScalarAreFixedWidthAndRoundTrip) {
  for (EcCurve curve : kCurves) {
    const EcPrivateKey key = Generate(curve);
    const EcCoordinates point = *key.PublicKey()->Coordinates();
    const SecretBytes d = *key.PrivateScalar();
    EXPECT_EQ(point.x.size(), EcFieldSize(curve));
    EXPECT_EQ(point.y.size(), EcFieldSize(curve));
    EXPECT_EQ(d.size(), EcFieldSize(curve));

    auto rebuilt = EcPrivateKey::FromComponents(curve, point.x, point.y, d);
    ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
    EXPECT_TRUE(*rebuilt->PrivateScalar() == d);
    const Bytes signature = *rebuilt->Sign(HashAlgorithm::kSha256, AsBytes("m"));
    auto public_key = EcPublicKey::FromCoordinates(curve, point.x, point.y);
    ASSERT_TRUE(public_key.ok()) << public_key.status();
    EXPECT_TRUE(public_key->Verify(HashAlgorithm::kSha256, AsBytes("m"), signature).ok());
  }
}

TEST(EcdsaTest, FromCoordinatesRefusesWrongSizesAndPointsOffTheCurve) {
  const EcCoordinates point = *Generate(EcCurve::kP256).PublicKey()->Coordinates();
  auto code = [](EcCurve curve, ByteView x, ByteView y) {
    return EcPublicKey::FromCoordinates(curve, x, y).status().code();
  };
  Bytes short_x(point.x.begin() + 1, point.x.end());
  Bytes long_x = point.x;
  long_x.insert(long_x.begin(), 0);
  EXPECT_EQ(code(EcCurve::kP256, short_x, point.y), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(EcCurve::kP256, long_x, point.y), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(EcCurve::kP384, point.x, point.y), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(EcCurve{}, point.x, point.y), StatusCode::kInvalidArgument);

  Bytes off_curve = point.y;
  off_curve.back() ^= 1;
  EXPECT_EQ(
      EcPublicKey::FromCoordinates(EcCurve::kP256, point.x, off_curve).status(),
      InvalidArgumentError("EC public key (x, y) is not a point on P-256 (point is not on curve)"));
  EXPECT_EQ(code(EcCurve::kP256, Bytes(32, 0), Bytes(32, 0)), StatusCode::kInvalidArgument);
  // Coordinates at or above the field prime p are not reduced for the caller.
  EXPECT_EQ(code(EcCurve::kP256, Bytes(32, 0xFF), point.y), StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, FromComponentsRefusesAScalarThatDoesNotMatch) {
  const EcPrivateKey key = Generate(EcCurve::kP384);
  const EcCoordinates point = *key.PublicKey()->Coordinates();
  const SecretBytes other_d = *Generate(EcCurve::kP384).PrivateScalar();
  auto code = [&](const SecretBytes& d) {
    return EcPrivateKey::FromComponents(EcCurve::kP384, point.x, point.y, d).status().code();
  };
  EXPECT_EQ(code(other_d), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Secret(Bytes(48, 0))), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Secret(Bytes(48, 0xFF))), StatusCode::kInvalidArgument);  // above the order
  Bytes short_d = Reveal(*key.PrivateScalar());
  short_d.erase(short_d.begin());
  EXPECT_EQ(code(Secret(short_d)), StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, RefusesUnknownHash) {
  const EcPrivateKey key = Generate(EcCurve::kP256);
  EXPECT_EQ(key.Sign(HashAlgorithm{}, AsBytes("m")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(key.PublicKey()->Verify(HashAlgorithm{}, AsBytes("m"), Bytes(64, 1)).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::crypto
