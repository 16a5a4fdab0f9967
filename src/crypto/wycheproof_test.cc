// Runs every vector of every Project Wycheproof file in ../shared/testdata/wycheproof/ (its
// README.md lists them) against crypto/, one TEST per file.
//
// A "valid" vector must give the expected result, an "invalid" one must be rejected, and an
// "acceptable" one (legal but dubious input) may go either way: the way it went is printed and
// recorded as a test property. Keys come from the vectors' JWKs through ParseJwk, which tests
// the JWK import on real data.
//
// Every vector is either run or skipped with a reason written here, and each test checks at
// the end that run + skipped equals the file's numberOfTests, so a truncated or reshaped file
// fails instead of passing silently. The only skips: AES-GCM vectors with IVs longer than
// AesGcm::kMaxNonceSize, which AesGcm is asserted to refuse (see AesGcm below).
#include <gtest/gtest.h>

#include <iostream>
#include <optional>
#include <string>

#include "crypto/aes_gcm.h"
#include "crypto/hkdf.h"
#include "crypto/jwk.h"
#include "crypto/key_wrap.h"
#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

using nlohmann::json;

// One file's vectors and the tally of what happened to them.
class VectorFile {
 public:
  explicit VectorFile(std::string name) : name_(std::move(name)), json_(LoadWycheproof(name_)) {}

  // Fails the test unless every vector was run or skipped, and prints the tally.
  ~VectorFile() {
    EXPECT_EQ(ran_ + skipped_, json_.value("numberOfTests", -1))
        << name_ << ": vectors run plus skipped differ from numberOfTests";
    std::cout << "[wycheproof] " << name_ << ": " << ran_ << " run (" << acceptable_
              << " acceptable), " << skipped_ << " skipped, of " << json_.value("numberOfTests", -1)
              << "\n";
  }

  const json& groups() const {
    static const json kNone = json::array();
    return json_.contains("testGroups") ? json_.at("testGroups") : kNone;
  }

  // Checks one vector's outcome: `accepted` is true when our code produced the vector's
  // expected result and false when it refused the input (or produced something else).
  void Check(const json& test, bool accepted) {
    ++ran_;
    const std::string result = test["result"];
    if (result == "valid") {
      EXPECT_TRUE(accepted) << "valid vector rejected";
    } else if (result == "invalid") {
      EXPECT_FALSE(accepted) << "invalid vector accepted";
    } else if (result == "acceptable") {
      ++acceptable_;
      const std::string outcome = accepted ? "accepted" : "rejected";
      testing::Test::RecordProperty("tcId" + std::to_string(test["tcId"].get<int>()), outcome);
      std::cout << "[wycheproof] " << name_ << ": acceptable tcId " << test["tcId"] << " ("
                << test["comment"].get<std::string>() << ") " << outcome << "\n";
    } else {
      ADD_FAILURE() << "unknown result " << result;
    }
  }

  void Skip() { ++skipped_; }

 private:
  const std::string name_;
  const json json_;
  int ran_ = 0;
  int skipped_ = 0;
  int acceptable_ = 0;
};

std::string Trace(const json& test) {
  return "tcId " + std::to_string(test["tcId"].get<int>()) + " " +
         test["comment"].get<std::string>();
}

bool IsValid(const json& test) { return test["result"] == "valid"; }

// Whether an operation with an output accepted the vector. Succeeding with an output other than
// `want` is a failure of its own, not a rejection.
bool Accepted(const StatusOr<Bytes>& got, const Bytes& want) {
  if (got.ok()) EXPECT_EQ(*got, want) << "accepted with the wrong output";
  return got.ok();
}
bool Accepted(const StatusOr<SecretBytes>& got, const Bytes& want) {
  return Accepted(got.ok() ? StatusOr<Bytes>(Reveal(*got)) : StatusOr<Bytes>(got.status()), want);
}

template <typename Key>
std::optional<Key> ImportJwk(const json& jwk) {
  StatusOr<Jwk> parsed = ParseJwk(jwk.dump());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok() || !std::holds_alternative<Key>(*parsed)) return std::nullopt;
  return std::get<Key>(*std::move(parsed));
}

TEST(WycheproofTest, AesGcm) {
  VectorFile file("aes_gcm_test.json");
  for (const json& group : file.groups()) {
    ASSERT_EQ(group["tagSize"], 128);  // the only tag size AesGcm has
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      auto aead = AesGcm::New(Secret(Hex(test, "key")));
      ASSERT_TRUE(aead.ok()) << aead.status();
      const Bytes iv = Hex(test, "iv");
      const Bytes aad = Hex(test, "aad");
      const Bytes msg = Hex(test, "msg");
      Bytes ct_and_tag = Hex(test, "ct");
      const Bytes tag = Hex(test, "tag");
      ct_and_tag.insert(ct_and_tag.end(), tag.begin(), tag.end());

      if (iv.size() > AesGcm::kMaxNonceSize) {
        // Skipped: OpenSSL's GCM provider caps IVs at 128 bytes, so AesGcm refuses longer ones
        // up front. That these (valid) vectors are refused, with InvalidArgument and not a
        // wrong result, is asserted instead.
        EXPECT_EQ((*aead)->Seal(iv, aad, msg).status().code(), StatusCode::kInvalidArgument);
        EXPECT_EQ((*aead)->Open(iv, aad, ct_and_tag).status().code(), StatusCode::kInvalidArgument);
        file.Skip();
        continue;
      }
      if (IsValid(test)) {
        auto sealed = (*aead)->Seal(iv, aad, msg);
        EXPECT_TRUE(sealed.ok() && *sealed == ct_and_tag) << "Seal does not give ct || tag";
      }
      file.Check(test, Accepted((*aead)->Open(iv, aad, ct_and_tag), msg));
    }
  }
}

// Valid vectors must wrap to `ct` and unwrap back; invalid ones must fail to unwrap.
void RunKeyWrap(const std::string& name, AesKeyWrap::Mode mode) {
  VectorFile file(name);
  for (const json& group : file.groups()) {
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      auto kw = AesKeyWrap::New(Secret(Hex(test, "key")), mode);
      ASSERT_TRUE(kw.ok()) << kw.status();
      const Bytes msg = Hex(test, "msg");
      const Bytes ct = Hex(test, "ct");
      if (IsValid(test)) {
        auto wrapped = (*kw)->Wrap(Secret(msg));
        EXPECT_TRUE(wrapped.ok() && *wrapped == ct) << "Wrap does not give ct";
      }
      file.Check(test, Accepted((*kw)->Unwrap(ct), msg));
    }
  }
}

// The acceptable vectors wrap 8-byte keys, which RFC 3394 section 2 allows as a single block
// but NIST SP 800-38F does not; AesKeyWrap requires 16 bytes or more and so rejects them.
TEST(WycheproofTest, AesKeyWrapRfc3394) {
  RunKeyWrap("aes_wrap_test.json", AesKeyWrap::Mode::kRfc3394);
}

TEST(WycheproofTest, AesKeyWrapRfc5649) {
  RunKeyWrap("aes_kwp_test.json", AesKeyWrap::Mode::kRfc5649);
}

TEST(WycheproofTest, HkdfSha256) {
  VectorFile file("hkdf_sha256_test.json");
  for (const json& group : file.groups()) {
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      auto okm = Hkdf(Secret(Hex(test, "ikm")), Hex(test, "salt"), Hex(test, "info"),
                      test["size"].get<size_t>());
      file.Check(test, Accepted(okm, Hex(test, "okm")));
    }
  }
}

// Valid vectors must decrypt to `msg` (and `msg` must survive a round trip through the public
// key); invalid ones must fail to decrypt.
void RunRsaOaep(const std::string& name, RsaPadding padding, const std::string& sha) {
  VectorFile file(name);
  for (const json& group : file.groups()) {
    ASSERT_EQ(group["sha"], sha);
    ASSERT_EQ(group["mgf"], "MGF1");
    ASSERT_EQ(group["mgfSha"], sha);
    std::optional<RsaPrivateKey> key = ImportJwk<RsaPrivateKey>(group["privateKeyJwk"]);
    ASSERT_TRUE(key.has_value());
    const RsaPublicKey public_key = *key->PublicKey();
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      const Bytes msg = Hex(test, "msg");
      const Bytes label = Hex(test, "label");
      if (IsValid(test)) {
        auto ciphertext = public_key.Encrypt(padding, msg, label);
        ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
        EXPECT_TRUE(Accepted(key->Decrypt(padding, *ciphertext, label), msg));
      }
      file.Check(test, Accepted(key->Decrypt(padding, Hex(test, "ct"), label), msg));
    }
  }
}

TEST(WycheproofTest, RsaOaepSha1) {
  RunRsaOaep("rsa_oaep_2048_sha1_mgf1sha1_test.json", RsaPadding::kOaepSha1, "SHA-1");
}

TEST(WycheproofTest, RsaOaepSha256) {
  RunRsaOaep("rsa_oaep_2048_sha256_mgf1sha256_test.json", RsaPadding::kOaepSha256, "SHA-256");
}

TEST(WycheproofTest, RsaPssSha256) {
  VectorFile file("rsa_pss_2048_sha256_mgf1_32_test.json");
  for (const json& group : file.groups()) {
    ASSERT_EQ(group["sha"], "SHA-256");
    ASSERT_EQ(group["mgf"], "MGF1");
    ASSERT_EQ(group["mgfSha"], "SHA-256");
    std::optional<RsaPublicKey> key = ImportJwk<RsaPublicKey>(group["publicKeyJwk"]);
    ASSERT_TRUE(key.has_value());
    const size_t salt_length = group["sLen"];
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      file.Check(test, key->Verify(RsaSignatureScheme::kPss, HashAlgorithm::kSha256,
                                   Hex(test, "msg"), Hex(test, "sig"), salt_length)
                           .ok());
    }
  }
}

// The acceptable vector omits the NULL parameters of the hash's AlgorithmIdentifier in the
// DigestInfo, a form some verifiers tolerate; OpenSSL 3.0 rejects it.
TEST(WycheproofTest, RsaPkcs1v15SignatureSha256) {
  VectorFile file("rsa_signature_2048_sha256_test.json");
  for (const json& group : file.groups()) {
    ASSERT_EQ(group["sha"], "SHA-256");
    std::optional<RsaPublicKey> key = ImportJwk<RsaPublicKey>(group["keyJwk"]);
    ASSERT_TRUE(key.has_value());
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      file.Check(test, key->Verify(RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256,
                                   Hex(test, "msg"), Hex(test, "sig"))
                           .ok());
    }
  }
}

// `value` (a big-endian integer that may carry a leading zero or be short) at exactly `width`
// bytes.
Bytes FixedWidth(Bytes value, size_t width) {
  while (value.size() > width && value.front() == 0) value.erase(value.begin());
  value.insert(value.begin(), width - std::min(width, value.size()), 0);
  return value;
}

TEST(WycheproofTest, EcdsaP256Sha256P1363) {
  VectorFile file("ecdsa_secp256r1_sha256_p1363_test.json");
  for (const json& group : file.groups()) {
    ASSERT_EQ(group["sha"], "SHA-256");
    ASSERT_EQ(group["publicKey"]["curve"], "secp256r1");
    std::optional<EcPublicKey> key;
    if (group.contains("publicKeyJwk")) {
      key = ImportJwk<EcPublicKey>(group["publicKeyJwk"]);
    } else {
      // Some groups of edge-case keys have no JWK; their coordinates wx and wy are ASN.1-style
      // integers (a leading zero when the top bit is set).
      auto imported = EcPublicKey::FromCoordinates(EcCurve::kP256,
                                                   FixedWidth(Hex(group["publicKey"], "wx"), 32),
                                                   FixedWidth(Hex(group["publicKey"], "wy"), 32));
      ASSERT_TRUE(imported.ok()) << imported.status();
      key = *std::move(imported);
    }
    ASSERT_TRUE(key.has_value());
    for (const json& test : group["tests"]) {
      SCOPED_TRACE(Trace(test));
      file.Check(test,
                 key->Verify(HashAlgorithm::kSha256, Hex(test, "msg"), Hex(test, "sig")).ok());
    }
  }
}

}  // namespace
}  // namespace keyfoundry::crypto
