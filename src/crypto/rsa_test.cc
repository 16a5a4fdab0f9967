#include "crypto/rsa.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

constexpr HashAlgorithm kHashes[] = {HashAlgorithm::kSha256, HashAlgorithm::kSha384,
                                     HashAlgorithm::kSha512};
constexpr RsaPadding kPaddings[] = {RsaPadding::kOaepSha1, RsaPadding::kOaepSha256,
                                    RsaPadding::kPkcs1v15};

// Generating keys is slow, so the tests share one (never freed: it outlives OpenSSL's cleanup).
const RsaPrivateKey& TestKey() {
  static const RsaPrivateKey* const key = new RsaPrivateKey(*RsaPrivateKey::Generate(2048));
  return *key;
}

RsaPublicKey TestPublicKey() { return *TestKey().PublicKey(); }

RsaPrivateComponents Clone(const RsaPrivateComponents& c) {
  return {c.n,         c.e,          c.d.Clone(),  c.p.Clone(),
          c.q.Clone(), c.dp.Clone(), c.dq.Clone(), c.qi.Clone()};
}

TEST(RsaTest, GeneratesOnlySupportedSizes) {
  EXPECT_EQ(TestKey().ModulusBits(), 2048);
  auto components = *TestKey().Components();
  EXPECT_EQ(components.e, (Bytes{0x01, 0x00, 0x01}));
  for (int bits : {0, 1024, 2047, 2049, 8192}) {
    EXPECT_EQ(RsaPrivateKey::Generate(bits).status().code(), StatusCode::kInvalidArgument) << bits;
  }
}

TEST(RsaTest, EncryptDecryptRoundTripsForEveryPadding) {
  for (RsaPadding padding : kPaddings) {
    SCOPED_TRACE(static_cast<int>(padding));
    auto ciphertext = TestPublicKey().Encrypt(padding, AsBytes("a data key"));
    ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
    EXPECT_EQ(ciphertext->size(), 256u);
    auto plaintext = TestKey().Decrypt(padding, *ciphertext);
    ASSERT_TRUE(plaintext.ok()) << plaintext.status();
    EXPECT_EQ(Reveal(*plaintext), ToBytes("a data key"));
  }
}

TEST(RsaTest, OaepLabelIsBound) {
  auto ciphertext = TestPublicKey().Encrypt(RsaPadding::kOaepSha256, AsBytes("k"), AsBytes("L1"));
  ASSERT_TRUE(ciphertext.ok());
  EXPECT_TRUE(TestKey().Decrypt(RsaPadding::kOaepSha256, *ciphertext, AsBytes("L1")).ok());
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha256, *ciphertext, AsBytes("L2")).status(),
            DataLossError("RSA decryption failed"));
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha256, *ciphertext).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(
      TestPublicKey().Encrypt(RsaPadding::kPkcs1v15, AsBytes("k"), AsBytes("L")).status().code(),
      StatusCode::kInvalidArgument);
}

// A key keeps the contexts it set up for reuse: each must keep its own padding, never take a
// label from an earlier call, and survive a failed call, alone and across threads.
TEST(RsaTest, ReusedContextsKeepPaddingsAndLabelsApartAcrossCallsAndThreads) {
  const RsaPublicKey public_key = TestPublicKey();  // one object: its contexts are reused
  for (int round = 0; round < 3; ++round) {
    for (RsaPadding padding : kPaddings) {
      SCOPED_TRACE(static_cast<int>(padding));
      auto ciphertext = public_key.Encrypt(padding, AsBytes("dk"));
      ASSERT_TRUE(ciphertext.ok());
      EXPECT_EQ(Reveal(*TestKey().Decrypt(padding, *ciphertext)), ToBytes("dk"));
      // A failure (the wrong padding, a tampered ciphertext) leaves later calls working.
      for (RsaPadding other : kPaddings) {
        if (other != padding && other != RsaPadding::kPkcs1v15) {
          EXPECT_FALSE(TestKey().Decrypt(other, *ciphertext).ok());
        }
      }
      Bytes tampered = *ciphertext;
      tampered[7] ^= 1;
      EXPECT_FALSE(TestKey().Decrypt(padding, tampered).ok() && padding != RsaPadding::kPkcs1v15);
    }
    // A labelled call between unlabelled ones: the label binds only its own ciphertext.
    auto labelled = public_key.Encrypt(RsaPadding::kOaepSha256, AsBytes("k"), AsBytes("L"));
    ASSERT_TRUE(labelled.ok());
    EXPECT_FALSE(TestKey().Decrypt(RsaPadding::kOaepSha256, *labelled).ok());
    EXPECT_TRUE(TestKey().Decrypt(RsaPadding::kOaepSha256, *labelled, AsBytes("L")).ok());
    auto plain = public_key.Encrypt(RsaPadding::kOaepSha256, AsBytes("k"));
    ASSERT_TRUE(plain.ok());
    EXPECT_TRUE(TestKey().Decrypt(RsaPadding::kOaepSha256, *plain).ok());
    EXPECT_FALSE(TestKey().Decrypt(RsaPadding::kOaepSha256, *plain, AsBytes("L")).ok());
  }

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        const RsaPadding padding = kPaddings[(t + i) % 3];
        const Bytes message = ToBytes("key " + std::to_string(t) + "/" + std::to_string(i));
        auto ciphertext = public_key.Encrypt(padding, message);
        auto plaintext = ciphertext.ok() ? TestKey().Decrypt(padding, *ciphertext)
                                         : StatusOr<SecretBytes>(ciphertext.status());
        if (!plaintext.ok() || Reveal(*plaintext) != message) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(RsaTest, DecryptFailsOpaquelyOnTamperingWrongLengthOrWrongPadding) {
  const Bytes ciphertext = *TestPublicKey().Encrypt(RsaPadding::kOaepSha1, AsBytes("key"));
  const Status failed = DataLossError("RSA decryption failed");
  for (size_t i : {size_t{0}, size_t{100}, size_t{255}}) {
    Bytes bad = ciphertext;
    bad[i] ^= 0x01;
    EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha1, bad).status(), failed) << i;
  }
  Bytes longer = ciphertext;
  longer.insert(longer.begin(), 0);
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha1, longer).status(), failed);
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha1, ByteView(ciphertext).first(255)).status(),
            failed);
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha1, {}).status(), failed);
  EXPECT_EQ(TestKey().Decrypt(RsaPadding::kOaepSha256, ciphertext).status(), failed);
}

TEST(RsaTest, EncryptRefusesPlaintextTooLongForThePadding) {
  // 2048-bit key: OAEP-SHA-1 fits 256 - 42, OAEP-SHA-256 256 - 66, PKCS#1 v1.5 256 - 11 bytes.
  for (auto [padding, max] : {std::pair{RsaPadding::kOaepSha1, size_t{214}},
                              std::pair{RsaPadding::kOaepSha256, size_t{190}},
                              std::pair{RsaPadding::kPkcs1v15, size_t{245}}}) {
    EXPECT_TRUE(TestPublicKey().Encrypt(padding, Bytes(max, 1)).ok()) << max;
    EXPECT_EQ(TestPublicKey().Encrypt(padding, Bytes(max + 1, 1)).status().code(),
              StatusCode::kInvalidArgument)
        << max;
  }
}

TEST(RsaTest, RefusesUnknownEnumerators) {
  EXPECT_EQ(TestPublicKey().Encrypt(RsaPadding{}, AsBytes("k")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TestKey().Decrypt(RsaPadding{}, Bytes(256)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TestKey().Sign(RsaSignatureScheme{}, HashAlgorithm::kSha256, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TestKey().Sign(RsaSignatureScheme::kPss, HashAlgorithm{}, {}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RsaTest, SignVerifyRoundTripsForEverySchemeAndHash) {
  for (RsaSignatureScheme scheme : {RsaSignatureScheme::kPkcs1v15, RsaSignatureScheme::kPss}) {
    for (HashAlgorithm hash : kHashes) {
      SCOPED_TRACE(testing::Message() << static_cast<int>(scheme) << "/" << static_cast<int>(hash));
      auto signature = TestKey().Sign(scheme, hash, AsBytes("message"));
      ASSERT_TRUE(signature.ok()) << signature.status();
      EXPECT_EQ(signature->size(), 256u);
      EXPECT_TRUE(TestPublicKey().Verify(scheme, hash, AsBytes("message"), *signature).ok());
      EXPECT_EQ(TestPublicKey().Verify(scheme, hash, AsBytes("messagE"), *signature),
                InvalidArgumentError("RSA signature verification failed"));
    }
  }
}

// Azure Key Vault's sign and verify take a digest: signing a digest must give what signing the
// message gives, in both directions.
TEST(RsaTest, DigestSignaturesMatchMessageSignatures) {
  for (RsaSignatureScheme scheme : {RsaSignatureScheme::kPkcs1v15, RsaSignatureScheme::kPss}) {
    for (HashAlgorithm hash : kHashes) {
      SCOPED_TRACE(testing::Message() << static_cast<int>(scheme) << "/" << static_cast<int>(hash));
      auto digest = Digest(hash, AsBytes("message"));
      ASSERT_TRUE(digest.ok()) << digest.status();
      auto signature = TestKey().SignDigest(scheme, hash, *digest);
      ASSERT_TRUE(signature.ok()) << signature.status();
      EXPECT_TRUE(TestPublicKey().Verify(scheme, hash, AsBytes("message"), *signature).ok());
      auto from_message = TestKey().Sign(scheme, hash, AsBytes("message"));
      ASSERT_TRUE(from_message.ok());
      EXPECT_TRUE(TestPublicKey().VerifyDigest(scheme, hash, *digest, *from_message).ok());
      Bytes other = *digest;
      other[0] ^= 1;
      EXPECT_FALSE(TestPublicKey().VerifyDigest(scheme, hash, other, *from_message).ok());
    }
  }
}

TEST(RsaTest, DigestSignaturesRefuseADigestOfTheWrongSize) {
  Bytes short_digest(31, 0x11);
  EXPECT_EQ(TestKey()
                .SignDigest(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256, short_digest)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  Bytes signature(256, 0);
  EXPECT_FALSE(
      TestPublicKey()
          .VerifyDigest(RsaSignatureScheme::kPss, HashAlgorithm::kSha384, short_digest, signature)
          .ok());
}

TEST(RsaTest, VerifyFailsOnTamperedOrWrongLengthSignature) {
  const Bytes signature =
      *TestKey().Sign(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256, AsBytes("m"));
  auto verify = [](ByteView sig) {
    return TestPublicKey().Verify(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256,
                                  AsBytes("m"), sig);
  };
  ASSERT_TRUE(verify(signature).ok());
  for (size_t i : {size_t{0}, size_t{128}, size_t{255}}) {
    Bytes bad = signature;
    bad[i] ^= 0x01;
    EXPECT_EQ(verify(bad).code(), StatusCode::kInvalidArgument) << i;
  }
  Bytes longer = signature;
  longer.insert(longer.begin(), 0);  // numerically the same signature
  EXPECT_EQ(verify(longer).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify({}).code(), StatusCode::kInvalidArgument);
  // Verified under the other scheme or hash.
  EXPECT_FALSE(
      TestPublicKey()
          .Verify(RsaSignatureScheme::kPss, HashAlgorithm::kSha256, AsBytes("m"), signature)
          .ok());
  EXPECT_FALSE(
      TestPublicKey()
          .Verify(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha384, AsBytes("m"), signature)
          .ok());
}

TEST(RsaTest, PssVerifyTakesTheSaltLength) {
  const Bytes signature =
      *TestKey().Sign(RsaSignatureScheme::kPss, HashAlgorithm::kSha384, AsBytes("m"));
  auto verify = [&](std::optional<size_t> salt) {
    return TestPublicKey().Verify(RsaSignatureScheme::kPss, HashAlgorithm::kSha384, AsBytes("m"),
                                  signature, salt);
  };
  EXPECT_TRUE(verify(std::nullopt).ok());
  EXPECT_TRUE(verify(48).ok());
  EXPECT_EQ(verify(32).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify(0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(verify(size_t{1} << 40).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TestPublicKey()
                .Verify(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha384, AsBytes("m"),
                        signature, 48)
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(RsaTest, ComponentsRoundTripWithoutLeadingZeros) {
  RsaPrivateComponents components = *TestKey().Components();
  EXPECT_EQ(components.n.size(), 256u);
  EXPECT_NE(components.n[0], 0);
  EXPECT_EQ(components.p.size(), 128u);
  auto rebuilt = RsaPrivateKey::FromComponents(Clone(components));
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  RsaPrivateComponents again = *rebuilt->Components();
  EXPECT_EQ(again.n, components.n);
  EXPECT_TRUE(again.d == components.d && again.p == components.p && again.q == components.q &&
              again.dp == components.dp && again.dq == components.dq && again.qi == components.qi);
  // The rebuilt key decrypts what the original's public key encrypted.
  const Bytes ciphertext = *TestPublicKey().Encrypt(RsaPadding::kOaepSha256, AsBytes("x"));
  EXPECT_TRUE(rebuilt->Decrypt(RsaPadding::kOaepSha256, ciphertext).ok());

  auto public_key = RsaPublicKey::FromComponents({components.n, components.e});
  ASSERT_TRUE(public_key.ok()) << public_key.status();
  EXPECT_EQ(public_key->Components()->n, components.n);
}

TEST(RsaTest, FromComponentsAcceptsLeadingZeros) {
  RsaPublicComponents components = *TestPublicKey().Components();
  components.n.insert(components.n.begin(), 0);
  auto key = RsaPublicKey::FromComponents(components);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->Components()->n.size(), 256u);
}

TEST(RsaTest, FromComponentsRefusesInconsistentPrivateKeys) {
  const RsaPrivateComponents good = *TestKey().Components();
  const auto flip_last_bit = [](SecretBytes& value) {
    value.Mutable(InsecureSecretAccess()).back() ^= 0x02;
  };
  for (SecretBytes RsaPrivateComponents::*member :
       {&RsaPrivateComponents::d, &RsaPrivateComponents::p, &RsaPrivateComponents::q,
        &RsaPrivateComponents::dp, &RsaPrivateComponents::dq, &RsaPrivateComponents::qi}) {
    RsaPrivateComponents bad = Clone(good);
    flip_last_bit(bad.*member);
    EXPECT_EQ(RsaPrivateKey::FromComponents(bad).status().code(), StatusCode::kInvalidArgument);
  }
  RsaPrivateComponents swapped = Clone(good);
  std::swap(swapped.p, swapped.q);  // qi is then the wrong inverse
  EXPECT_EQ(RsaPrivateKey::FromComponents(swapped).status().code(), StatusCode::kInvalidArgument);
}

TEST(RsaTest, FromComponentsRefusesBadPublicKeys) {
  const RsaPublicComponents good = *TestPublicKey().Components();
  auto code = [](RsaPublicComponents c) { return RsaPublicKey::FromComponents(c).status().code(); };
  RsaPublicComponents even_n = good;
  even_n.n.back() ^= 1;
  EXPECT_EQ(code(even_n), StatusCode::kInvalidArgument);
  for (Bytes e : {Bytes{}, Bytes{1}, Bytes{2}, Bytes{1, 0, 0}}) {
    EXPECT_EQ(code({good.n, e}), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(code({Bytes(good.n.begin() + 1, good.n.end()), good.e}),
            StatusCode::kInvalidArgument);  // 2040 bits: too short
  EXPECT_EQ(code({Bytes(RsaPublicKey::kMaxModulusBits / 8 + 1, 0xFF), good.e}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code({good.n, Bytes(257, 1)}), StatusCode::kInvalidArgument);
  // e = 3 is accepted (see rsa.h).
  EXPECT_TRUE(RsaPublicKey::FromComponents({good.n, Bytes{3}}).ok());
}

TEST(RsaTest, RefusesKeysBelow2048Bits) {
  EvpPkeyPtr small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  ASSERT_TRUE(small);
  const int der_size = i2d_PUBKEY(small.get(), nullptr);
  Bytes der(static_cast<size_t>(der_size));
  uint8_t* cursor = der.data();
  ASSERT_EQ(i2d_PUBKEY(small.get(), &cursor), der_size);
  EXPECT_EQ(RsaPublicKey::FromDer(der).status(),
            InvalidArgumentError("RSA modulus must be 2048 to 16384 bits"));
}

TEST(RsaTest, ReadsDerFromWycheproofAndRefusesTrailingBytes) {
  const auto oaep = LoadWycheproof("rsa_oaep_2048_sha256_mgf1sha256_test.json");
  const Bytes pkcs8 = Hex(oaep["testGroups"][0], "privateKeyPkcs8");
  auto private_key = RsaPrivateKey::FromPkcs8Der(Secret(pkcs8));
  ASSERT_TRUE(private_key.ok()) << private_key.status();
  EXPECT_EQ(private_key->ModulusBits(), 2048);
  const auto pss = LoadWycheproof("rsa_pss_2048_sha256_mgf1_32_test.json");
  const Bytes spki = Hex(pss["testGroups"][0], "publicKeyDer");
  auto public_key = RsaPublicKey::FromDer(spki);
  ASSERT_TRUE(public_key.ok()) << public_key.status();
  EXPECT_EQ(public_key->ModulusBits(), 2048);

  Bytes longer = pkcs8;
  longer.push_back(0);
  EXPECT_EQ(RsaPrivateKey::FromPkcs8Der(Secret(longer)).status().code(),
            StatusCode::kInvalidArgument);
  longer = spki;
  longer.push_back(0);
  EXPECT_EQ(RsaPublicKey::FromDer(longer).status().code(), StatusCode::kInvalidArgument);
  // A public key where a private one is expected, and the other way round.
  EXPECT_EQ(RsaPrivateKey::FromPkcs8Der(Secret(spki)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RsaPublicKey::FromDer(pkcs8).status().code(), StatusCode::kInvalidArgument);
}

TEST(RsaTest, FromDerRefusesGarbageAndOtherKeyTypes) {
  EXPECT_EQ(RsaPublicKey::FromDer({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RsaPublicKey::FromDer(AsBytes("not DER")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RsaPrivateKey::FromPkcs8Der(Secret(Bytes(64, 0x30))).status().code(),
            StatusCode::kInvalidArgument);
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Bytes der(static_cast<size_t>(i2d_PUBKEY(ec.get(), nullptr)));
  uint8_t* cursor = der.data();
  ASSERT_EQ(i2d_PUBKEY(ec.get(), &cursor), static_cast<int>(der.size()));
  EXPECT_EQ(RsaPublicKey::FromDer(der).status().code(), StatusCode::kInvalidArgument);
}

// OpenSSL's error queue is per thread: an error left behind would be blamed on a later call.
TEST(RsaTest, FailuresLeaveNoOpenSslErrorsBehind) {
  EXPECT_FALSE(TestKey().Decrypt(RsaPadding::kOaepSha256, Bytes(256, 1)).ok());
  EXPECT_FALSE(TestKey().Decrypt(RsaPadding::kPkcs1v15, Bytes(256, 1)).ok());
  EXPECT_FALSE(TestPublicKey()
                   .Verify(RsaSignatureScheme::kPss, HashAlgorithm::kSha256, {}, Bytes(256, 1))
                   .ok());
  EXPECT_FALSE(RsaPublicKey::FromDer(Bytes(64, 0x30)).ok());
  EXPECT_FALSE(RsaPublicKey::FromComponents({Bytes(256, 0xFF), Bytes{3}}).ok());
  EXPECT_EQ(ERR_peek_error(), 0u);
}

}  // namespace
}  // namespace keyfoundry::crypto
