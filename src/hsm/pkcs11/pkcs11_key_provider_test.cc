// Pkcs11KeyProvider against the real SoftHSM2 module (STYLE habit 11: no fake). Each test gets
// a fresh token directory and its own softhsm2.conf, named by SOFTHSM2_CONF before the first
// provider opens: SoftHSM2 reads it at C_Initialize, which the provider calls when the first
// provider of the process opens the module and undoes (C_Finalize) when the last one closes.
// So every test also checks that the module can be initialised again in the same process.
#include "hsm/pkcs11/pkcs11_key_provider.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/encoding.h"
#include "crypto/ecdsa.h"
#include "crypto/hash_algorithm.h"
#include "crypto/random.h"
#include "crypto/rsa.h"
#include "hsm/pkcs11/pkcs11_module.h"
#include "support/test_util.h"

namespace keyfoundry::hsm {
namespace {

using crypto::EcCurve;
using crypto::HashAlgorithm;
using crypto::RsaPadding;
using crypto::RsaSignatureScheme;
using ObjectForTest = Pkcs11KeyProvider::ObjectForTest;

constexpr char kUserPin[] = "user-pin-1234";
constexpr char kSoPin[] = "so-pin-5678";

SecretBytes Secret(std::string_view text) {
  return SecretBytes(AsBytes(text), InsecureSecretAccess());
}

Bytes Reveal(const SecretBytes& secret) {
  ByteView view = secret.Reveal(InsecureSecretAccess());
  return Bytes(view.begin(), view.end());
}

class Pkcs11KeyProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() + "/tokens");
    const std::string conf_path = dir_.path() + "/softhsm2.conf";
    std::ofstream conf(conf_path);
    conf << "directories.tokendir = " << dir_.path() << "/tokens\n"
         << "objectstore.backend = file\n"
         << "log.level = ERROR\n";
    conf.close();
    ASSERT_TRUE(conf.good());
    ASSERT_EQ(::setenv("SOFTHSM2_CONF", conf_path.c_str(), 1), 0);
  }

  static Pkcs11Options Options(std::string_view user_pin = kUserPin) {
    Pkcs11Options options;
    options.user_pin = Secret(user_pin);
    options.so_pin = Secret(kSoPin);
    options.initialize_if_missing = true;
    return options;
  }

  static std::unique_ptr<Pkcs11KeyProvider> OpenProvider(const Pkcs11Options& options = Options()) {
    StatusOr<std::unique_ptr<Pkcs11KeyProvider>> provider = Pkcs11KeyProvider::Open(options);
    EXPECT_TRUE(provider.ok()) << provider.status();
    return provider.ok() ? std::move(provider).value() : nullptr;
  }

  testutil::ScopedTempDir dir_;
};

// SoftHSM2 before 2.7 does RSA-OAEP with SHA-1 only.
bool TokenDoesOaepSha256(const Pkcs11KeyProvider& provider) {
  return provider.Platform() != "softhsm2" || provider.LibraryVersionForTest() >= std::pair(2, 7);
}

// --- opening

TEST_F(Pkcs11KeyProviderTest, FirstOpenInitialisesTokenAndRootKey) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  EXPECT_EQ(provider->Platform(), "softhsm2");
  EXPECT_TRUE(provider->Check().ok());
  // The root key stays in the token.
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kRootKey, "", CKA_VALUE).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(*provider->GetAttributeForTest(ObjectForTest::kRootKey, "", CKA_SENSITIVE),
            Bytes{CK_TRUE});
  EXPECT_EQ(*provider->GetAttributeForTest(ObjectForTest::kRootKey, "", CKA_EXTRACTABLE),
            Bytes{CK_FALSE});
  EXPECT_EQ(*provider->GetAttributeForTest(ObjectForTest::kRootKey, "", CKA_TOKEN), Bytes{CK_TRUE});
}

TEST_F(Pkcs11KeyProviderTest, SecondOpenFindsTheTokenAndOpensWhatTheFirstSealed) {
  StatusOr<Bytes> sealed = DataLossError("unset");
  {
    auto first = OpenProvider();
    ASSERT_NE(first, nullptr);
    sealed = first->SealWithRoot(Secret("the account key"), AsBytes("account-1"));
    ASSERT_TRUE(sealed.ok()) << sealed.status();
  }  // finalises the module
  Pkcs11Options options = Options();
  options.initialize_if_missing = false;
  options.so_pin = SecretBytes();
  auto second = OpenProvider(options);
  ASSERT_NE(second, nullptr);
  StatusOr<SecretBytes> opened = second->OpenWithRoot(*sealed, AsBytes("account-1"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(Reveal(*opened), ToBytes("the account key"));
}

TEST_F(Pkcs11KeyProviderTest, MissingTokenIsNotFoundUnlessInitialisationIsAllowed) {
  Pkcs11Options options = Options();
  options.initialize_if_missing = false;
  EXPECT_EQ(Pkcs11KeyProvider::Open(options).status().code(), StatusCode::kNotFound);
  options.initialize_if_missing = true;
  options.so_pin = SecretBytes();
  EXPECT_EQ(Pkcs11KeyProvider::Open(options).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11KeyProviderTest, WrongPinIsPermissionDenied) {
  ASSERT_NE(OpenProvider(), nullptr);
  StatusOr<std::unique_ptr<Pkcs11KeyProvider>> wrong =
      Pkcs11KeyProvider::Open(Options("not-the-pin"));
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied) << wrong.status();
  // The failed open left the module usable.
  EXPECT_NE(OpenProvider(), nullptr);
}

TEST_F(Pkcs11KeyProviderTest, InvalidOptionsAreRefused) {
  Pkcs11Options relative = Options();
  relative.module_path = "libsofthsm2.so";
  EXPECT_EQ(Pkcs11KeyProvider::Open(relative).status().code(), StatusCode::kInvalidArgument);
  Pkcs11Options no_pin = Options();
  no_pin.user_pin = SecretBytes();
  EXPECT_EQ(Pkcs11KeyProvider::Open(no_pin).status().code(), StatusCode::kInvalidArgument);
  Pkcs11Options long_label = Options();
  long_label.token_label = std::string(33, 'k');
  EXPECT_EQ(Pkcs11KeyProvider::Open(long_label).status().code(), StatusCode::kInvalidArgument);
  Pkcs11Options no_sessions = Options();
  no_sessions.max_sessions = 0;
  EXPECT_EQ(Pkcs11KeyProvider::Open(no_sessions).status().code(), StatusCode::kInvalidArgument);
  Pkcs11Options missing_module = Options();
  missing_module.module_path = dir_.path() + "/no-such-module.so";
  EXPECT_EQ(Pkcs11KeyProvider::Open(missing_module).status().code(), StatusCode::kUnavailable);
}

TEST_F(Pkcs11KeyProviderTest, TwoProvidersShareTheModule) {
  auto first = OpenProvider();
  auto second = OpenProvider();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  StatusOr<Bytes> sealed = first->SealWithRoot(Secret("shared"), {});
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  first.reset();  // must not finalise the module or end the second provider's sessions
  EXPECT_TRUE(second->Check().ok());
  StatusOr<SecretBytes> opened = second->OpenWithRoot(*sealed, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(Reveal(*opened), ToBytes("shared"));
}

// A crash between C_InitToken and C_InitPIN leaves a token without user PIN; the next Open
// finishes the job.
TEST_F(Pkcs11KeyProviderTest, OpenFinishesATokenLeftWithoutUserPin) {
  {
    StatusOr<Pkcs11Module> module = Pkcs11Module::Acquire(Pkcs11Options().module_path);
    ASSERT_TRUE(module.ok()) << module.status();
    CK_FUNCTION_LIST* f = module->functions();
    CK_SLOT_ID slots[8];
    CK_ULONG count = 8;
    ASSERT_EQ(f->C_GetSlotList(CK_TRUE, slots, &count), CKR_OK);
    ASSERT_GE(count, 1u);
    CK_UTF8CHAR label[32];
    std::fill(std::begin(label), std::end(label), ' ');
    const std::string_view name = "keyfoundry";
    std::copy(name.begin(), name.end(), label);
    std::string so_pin = kSoPin;
    ASSERT_EQ(f->C_InitToken(slots[0], reinterpret_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size(),
                             label),
              CKR_OK);
  }
  Pkcs11Options options = Options();
  options.initialize_if_missing = false;
  EXPECT_EQ(Pkcs11KeyProvider::Open(options).status().code(), StatusCode::kFailedPrecondition);
  auto provider = OpenProvider();  // initialize_if_missing, with the SO PIN
  ASSERT_NE(provider, nullptr);
  EXPECT_TRUE(provider->SealWithRoot(Secret("x"), {}).ok());
}

// --- the root key

TEST_F(Pkcs11KeyProviderTest, SealOpenRoundTrip) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  for (size_t size : {size_t{0}, size_t{1}, size_t{32}, size_t{4000}}) {
    StatusOr<SecretBytes> plaintext = crypto::RandomSecret(size);
    ASSERT_TRUE(plaintext.ok());
    for (std::string_view aad : {"", "key-7"}) {
      StatusOr<Bytes> sealed = provider->SealWithRoot(*plaintext, AsBytes(aad));
      ASSERT_TRUE(sealed.ok()) << sealed.status();
      ASSERT_EQ(sealed->size(), 1 + 12 + size + 16);
      EXPECT_EQ((*sealed)[0], 0x01);
      StatusOr<SecretBytes> opened = provider->OpenWithRoot(*sealed, AsBytes(aad));
      ASSERT_TRUE(opened.ok()) << opened.status();
      EXPECT_TRUE(*opened == *plaintext);
    }
  }
}

TEST_F(Pkcs11KeyProviderTest, SealDrawsAFreshNonceEachTime) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<Bytes> a = provider->SealWithRoot(Secret("same"), {});
  StatusOr<Bytes> b = provider->SealWithRoot(Secret("same"), {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST_F(Pkcs11KeyProviderTest, OpenFailsWhenAadDiffers) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<Bytes> sealed = provider->SealWithRoot(Secret("secret"), AsBytes("key-1"));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(provider->OpenWithRoot(*sealed, AsBytes("key-2")).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(provider->OpenWithRoot(*sealed, {}).status().code(), StatusCode::kDataLoss);
}

TEST_F(Pkcs11KeyProviderTest, EveryFlippedByteIsOneDataLoss) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  for (std::string_view text : {"", "sixteen bytes!!!"}) {
    StatusOr<Bytes> sealed = provider->SealWithRoot(Secret(text), AsBytes("aad"));
    ASSERT_TRUE(sealed.ok());
    Status first;
    for (size_t i = 0; i < sealed->size(); ++i) {
      Bytes changed = *sealed;
      changed[i] ^= 0x01;
      Status status = provider->OpenWithRoot(changed, AsBytes("aad")).status();
      ASSERT_EQ(status.code(), StatusCode::kDataLoss) << "byte " << i;
      if (i == 0) first = status;
      EXPECT_EQ(status, first) << "byte " << i << " gives a different message";
    }
  }
  // The session pool is still healthy after all those failures.
  StatusOr<Bytes> sealed = provider->SealWithRoot(Secret("after"), {});
  ASSERT_TRUE(sealed.ok());
  EXPECT_TRUE(provider->OpenWithRoot(*sealed, {}).ok());
}

TEST_F(Pkcs11KeyProviderTest, TruncatedOrExtendedSealedDataIsDataLoss) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<Bytes> sealed = provider->SealWithRoot(Secret("truncate me"), {});
  ASSERT_TRUE(sealed.ok());
  for (size_t size = 0; size < sealed->size(); ++size) {
    ByteView prefix = ByteView(*sealed).first(size);
    EXPECT_EQ(provider->OpenWithRoot(prefix, {}).status().code(), StatusCode::kDataLoss)
        << "size " << size;
  }
  Bytes extended = *sealed;
  extended.push_back(0);
  EXPECT_EQ(provider->OpenWithRoot(extended, {}).status().code(), StatusCode::kDataLoss);
}

TEST_F(Pkcs11KeyProviderTest, UnknownVersionIsDataLoss) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<Bytes> sealed = provider->SealWithRoot(Secret("versioned"), {});
  ASSERT_TRUE(sealed.ok());
  for (uint8_t version : {0x00, 0x02, 0xff}) {
    Bytes changed = *sealed;
    changed[0] = version;
    EXPECT_EQ(provider->OpenWithRoot(changed, {}).status().code(), StatusCode::kDataLoss);
  }
}

TEST_F(Pkcs11KeyProviderTest, SealRefusesOversizedInput) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  EXPECT_EQ(provider->SealWithRoot(SecretBytes(Pkcs11KeyProvider::kMaxSealPlaintext + 1), {})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  Bytes big_aad(Pkcs11KeyProvider::kMaxSealAad + 1);
  EXPECT_EQ(provider->SealWithRoot(Secret("x"), big_aad).status().code(),
            StatusCode::kInvalidArgument);
}

// --- RSA

TEST_F(Pkcs11KeyProviderTest, GeneratedRsaDecryptsWhatSoftwareEncrypts) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateRsa(2048);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->handle.size(), 32u);
  ASSERT_TRUE(key->rsa.has_value());
  EXPECT_FALSE(key->ec_curve.has_value());
  EXPECT_EQ(key->rsa->n.size(), 256u);
  EXPECT_NE(key->rsa->n[0], 0);
  EXPECT_EQ(key->rsa->e, (Bytes{0x01, 0x00, 0x01}));
  StatusOr<crypto::RsaPublicKey> public_key = crypto::RsaPublicKey::FromComponents(*key->rsa);
  ASSERT_TRUE(public_key.ok()) << public_key.status();
  EXPECT_EQ(public_key->ModulusBits(), 2048);

  for (RsaPadding padding :
       {RsaPadding::kOaepSha1, RsaPadding::kOaepSha256, RsaPadding::kPkcs1v15}) {
    SCOPED_TRACE(static_cast<int>(padding));
    StatusOr<Bytes> ciphertext = public_key->Encrypt(padding, AsBytes("a data key"));
    ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
    StatusOr<SecretBytes> plaintext = provider->RsaDecrypt(key->handle, padding, *ciphertext);
    if (padding == RsaPadding::kOaepSha256 && !TokenDoesOaepSha256(*provider)) {
      EXPECT_EQ(plaintext.status().code(), StatusCode::kUnimplemented) << plaintext.status();
      continue;
    }
    ASSERT_TRUE(plaintext.ok()) << plaintext.status();
    EXPECT_EQ(Reveal(*plaintext), ToBytes("a data key"));
  }
}

TEST_F(Pkcs11KeyProviderTest, RsaDecryptFailuresAreOneDataLoss) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateRsa(2048);
  ASSERT_TRUE(key.ok()) << key.status();
  StatusOr<crypto::RsaPublicKey> public_key = crypto::RsaPublicKey::FromComponents(*key->rsa);
  ASSERT_TRUE(public_key.ok());
  StatusOr<Bytes> ciphertext = public_key->Encrypt(RsaPadding::kOaepSha1, AsBytes("data key"));
  ASSERT_TRUE(ciphertext.ok());

  Bytes flipped = *ciphertext;
  flipped[100] ^= 0x40;
  Bytes short_ciphertext(ciphertext->begin(), ciphertext->end() - 1);
  Bytes long_ciphertext = *ciphertext;
  long_ciphertext.push_back(0);
  Status expected = provider->RsaDecrypt(key->handle, RsaPadding::kOaepSha1, flipped).status();
  EXPECT_EQ(expected.code(), StatusCode::kDataLoss);
  for (const Bytes& bad : {short_ciphertext, long_ciphertext, Bytes()}) {
    EXPECT_EQ(provider->RsaDecrypt(key->handle, RsaPadding::kOaepSha1, bad).status(), expected);
  }
  // OAEP ciphertext under the PKCS#1 v1.5 padding: one error too.
  EXPECT_EQ(provider->RsaDecrypt(key->handle, RsaPadding::kPkcs1v15, *ciphertext).status(),
            expected);
  // And the good one still decrypts.
  EXPECT_TRUE(provider->RsaDecrypt(key->handle, RsaPadding::kOaepSha1, *ciphertext).ok());
}

TEST_F(Pkcs11KeyProviderTest, RsaSignaturesVerifyInSoftware) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateRsa(2048);
  ASSERT_TRUE(key.ok()) << key.status();
  StatusOr<crypto::RsaPublicKey> public_key = crypto::RsaPublicKey::FromComponents(*key->rsa);
  ASSERT_TRUE(public_key.ok());
  const ByteView message = AsBytes("the message to sign");
  for (RsaSignatureScheme scheme : {RsaSignatureScheme::kPkcs1v15, RsaSignatureScheme::kPss}) {
    for (HashAlgorithm hash :
         {HashAlgorithm::kSha256, HashAlgorithm::kSha384, HashAlgorithm::kSha512}) {
      SCOPED_TRACE(std::string(HashName(hash)) +
                   (scheme == RsaSignatureScheme::kPss ? " PSS" : ""));
      StatusOr<Bytes> digest = crypto::Digest(hash, message);
      ASSERT_TRUE(digest.ok());
      StatusOr<Bytes> signature = provider->RsaSignDigest(key->handle, scheme, hash, *digest);
      ASSERT_TRUE(signature.ok()) << signature.status();
      EXPECT_EQ(signature->size(), 256u);
      EXPECT_TRUE(public_key->Verify(scheme, hash, message, *signature).ok());
      EXPECT_FALSE(public_key->Verify(scheme, hash, AsBytes("another message"), *signature).ok());
    }
  }
}

TEST_F(Pkcs11KeyProviderTest, RsaSignDigestChecksTheDigestSize) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateRsa(2048);
  ASSERT_TRUE(key.ok());
  Bytes sha256_sized(32);
  EXPECT_EQ(provider
                ->RsaSignDigest(key->handle, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha384,
                                sha256_sized)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(provider
                ->RsaSignDigest(key->handle, RsaSignatureScheme::kPss, HashAlgorithm::kSha512,
                                sha256_sized)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(provider->GenerateRsa(1024).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11KeyProviderTest, GeneratedPrivateKeysStayInTheToken) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> rsa = provider->GenerateRsa(2048);
  StatusOr<HsmKeyInfo> ec = provider->GenerateEc(EcCurve::kP256);
  ASSERT_TRUE(rsa.ok() && ec.ok());
  for (CK_ATTRIBUTE_TYPE secret : {CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_COEFFICIENT}) {
    EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPrivateKey, rsa->handle, secret)
                  .status()
                  .code(),
              StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPrivateKey, ec->handle, CKA_VALUE)
                .status()
                .code(),
            StatusCode::kPermissionDenied);
  for (const HsmKeyInfo* key : {&*rsa, &*ec}) {
    auto attribute = [&](CK_ATTRIBUTE_TYPE type) {
      return provider->GetAttributeForTest(ObjectForTest::kPrivateKey, key->handle, type)
          .value_or(Bytes{0xee});
    };
    EXPECT_EQ(attribute(CKA_SENSITIVE), Bytes{CK_TRUE});
    EXPECT_EQ(attribute(CKA_EXTRACTABLE), Bytes{CK_FALSE});
    EXPECT_EQ(attribute(CKA_PRIVATE), Bytes{CK_TRUE});
    EXPECT_EQ(attribute(CKA_TOKEN), Bytes{CK_TRUE});
    EXPECT_EQ(attribute(CKA_ALWAYS_SENSITIVE), Bytes{CK_TRUE});
    EXPECT_EQ(attribute(CKA_NEVER_EXTRACTABLE), Bytes{CK_TRUE});
  }
  // The public half is readable, as it should be.
  StatusOr<Bytes> modulus =
      provider->GetAttributeForTest(ObjectForTest::kPublicKey, rsa->handle, CKA_MODULUS);
  ASSERT_TRUE(modulus.ok());
  EXPECT_EQ(*modulus, rsa->rsa->n);
}

TEST_F(Pkcs11KeyProviderTest, ImportedRsaKeyDecryptsAndSignsAndStaysInTheToken) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<crypto::RsaPrivateKey> software = crypto::RsaPrivateKey::Generate(2048);
  ASSERT_TRUE(software.ok());
  StatusOr<crypto::RsaPrivateComponents> components = software->Components();
  ASSERT_TRUE(components.ok());
  StatusOr<HsmKeyInfo> key = provider->ImportRsa(*components);
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_TRUE(key->rsa.has_value());
  EXPECT_EQ(key->rsa->n, components->n);
  EXPECT_EQ(key->rsa->e, components->e);

  StatusOr<crypto::RsaPublicKey> public_key = software->PublicKey();
  ASSERT_TRUE(public_key.ok());
  StatusOr<Bytes> ciphertext = public_key->Encrypt(RsaPadding::kOaepSha1, AsBytes("byok"));
  ASSERT_TRUE(ciphertext.ok());
  StatusOr<SecretBytes> plaintext =
      provider->RsaDecrypt(key->handle, RsaPadding::kOaepSha1, *ciphertext);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(Reveal(*plaintext), ToBytes("byok"));

  StatusOr<Bytes> digest = crypto::Digest(HashAlgorithm::kSha256, AsBytes("imported"));
  ASSERT_TRUE(digest.ok());
  StatusOr<Bytes> signature = provider->RsaSignDigest(key->handle, RsaSignatureScheme::kPss,
                                                      HashAlgorithm::kSha256, *digest);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(public_key
                  ->Verify(RsaSignatureScheme::kPss, HashAlgorithm::kSha256, AsBytes("imported"),
                           *signature)
                  .ok());

  EXPECT_EQ(
      provider->GetAttributeForTest(ObjectForTest::kPrivateKey, key->handle, CKA_PRIVATE_EXPONENT)
          .status()
          .code(),
      StatusCode::kPermissionDenied);
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPrivateKey, key->handle, CKA_EXTRACTABLE)
                .value_or(Bytes()),
            Bytes{CK_FALSE});
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPrivateKey, key->handle, CKA_SENSITIVE)
                .value_or(Bytes()),
            Bytes{CK_TRUE});
}

TEST_F(Pkcs11KeyProviderTest, ImportRsaRefusesAnInconsistentKey) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<crypto::RsaPrivateKey> software = crypto::RsaPrivateKey::Generate(2048);
  ASSERT_TRUE(software.ok());
  StatusOr<crypto::RsaPrivateComponents> components = software->Components();
  ASSERT_TRUE(components.ok());
  components->n.back() ^= 0x02;  // n no longer p * q
  EXPECT_EQ(provider->ImportRsa(*components).status().code(), StatusCode::kInvalidArgument);
}

// --- EC

TEST_F(Pkcs11KeyProviderTest, GeneratedEcKeysSignDigestsThatVerifyInSoftware) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  struct Case {
    EcCurve curve;
    HashAlgorithm hash;
  };
  for (const Case& c :
       {Case{EcCurve::kP256, HashAlgorithm::kSha256}, Case{EcCurve::kP384, HashAlgorithm::kSha384},
        Case{EcCurve::kP521, HashAlgorithm::kSha512}}) {
    SCOPED_TRACE(crypto::EcCurveName(c.curve));
    StatusOr<HsmKeyInfo> key = provider->GenerateEc(c.curve);
    ASSERT_TRUE(key.ok()) << key.status();
    ASSERT_EQ(key->ec_curve, c.curve);
    ASSERT_TRUE(key->ec_point.has_value());
    EXPECT_FALSE(key->rsa.has_value());
    const size_t field = crypto::EcFieldSize(c.curve);
    EXPECT_EQ(key->ec_point->x.size(), field);
    EXPECT_EQ(key->ec_point->y.size(), field);
    StatusOr<crypto::EcPublicKey> public_key =
        crypto::EcPublicKey::FromCoordinates(c.curve, key->ec_point->x, key->ec_point->y);
    ASSERT_TRUE(public_key.ok()) << public_key.status();

    const ByteView message = AsBytes("an EC-signed message");
    StatusOr<Bytes> digest = crypto::Digest(c.hash, message);
    ASSERT_TRUE(digest.ok());
    StatusOr<Bytes> signature = provider->EcSignDigest(key->handle, *digest);
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_EQ(signature->size(), 2 * field);
    EXPECT_TRUE(public_key->Verify(c.hash, message, *signature).ok());
    EXPECT_FALSE(public_key->Verify(c.hash, AsBytes("something else"), *signature).ok());

    StatusOr<HsmKeyInfo> described = provider->Describe(key->handle);
    ASSERT_TRUE(described.ok()) << described.status();
    EXPECT_EQ(described->ec_curve, c.curve);
    EXPECT_EQ(described->ec_point->x, key->ec_point->x);
    EXPECT_EQ(described->ec_point->y, key->ec_point->y);
  }
}

TEST_F(Pkcs11KeyProviderTest, ImportedEcKeySignsAndStaysInTheToken) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<crypto::EcPrivateKey> software = crypto::EcPrivateKey::Generate(EcCurve::kP384);
  ASSERT_TRUE(software.ok());
  StatusOr<crypto::EcPublicKey> public_key = software->PublicKey();
  ASSERT_TRUE(public_key.ok());
  StatusOr<crypto::EcCoordinates> point = public_key->Coordinates();
  StatusOr<SecretBytes> d = software->PrivateScalar();
  ASSERT_TRUE(point.ok() && d.ok());

  StatusOr<HsmKeyInfo> key = provider->ImportEc(EcCurve::kP384, *point, *d);
  ASSERT_TRUE(key.ok()) << key.status();
  StatusOr<HsmKeyInfo> described = provider->Describe(key->handle);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->ec_point->x, point->x);
  EXPECT_EQ(described->ec_point->y, point->y);

  StatusOr<Bytes> digest = crypto::Digest(HashAlgorithm::kSha384, AsBytes("imported EC"));
  ASSERT_TRUE(digest.ok());
  StatusOr<Bytes> signature = provider->EcSignDigest(key->handle, *digest);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(public_key->Verify(HashAlgorithm::kSha384, AsBytes("imported EC"), *signature).ok());
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPrivateKey, key->handle, CKA_VALUE)
                .status()
                .code(),
            StatusCode::kPermissionDenied);

  // A point that is not d's is refused before it reaches the token.
  crypto::EcCoordinates other = *point;
  other.y.back() ^= 0x01;
  EXPECT_EQ(provider->ImportEc(EcCurve::kP384, other, *d).status().code(),
            StatusCode::kInvalidArgument);
  // Coordinates of the wrong width.
  EXPECT_EQ(provider->ImportEc(EcCurve::kP256, *point, *d).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11KeyProviderTest, EcSignDigestRefusesOddDigestSizes) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateEc(EcCurve::kP256);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(provider->EcSignDigest(key->handle, Bytes(31)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(provider->GenerateEc(static_cast<EcCurve>(0)).status().code(),
            StatusCode::kInvalidArgument);
  // An EC key cannot make an RSA signature.
  Status rsa_signature = provider
                             ->RsaSignDigest(key->handle, RsaSignatureScheme::kPkcs1v15,
                                             HashAlgorithm::kSha256, Bytes(32))
                             .status();
  EXPECT_EQ(rsa_signature.code(), StatusCode::kInvalidArgument) << rsa_signature;
}

// --- handles

TEST_F(Pkcs11KeyProviderTest, DestroyShredsThePairOnce) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> key = provider->GenerateEc(EcCurve::kP256);
  ASSERT_TRUE(key.ok());
  StatusOr<HsmKeyInfo> other = provider->GenerateEc(EcCurve::kP256);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(provider->Destroy(key->handle).ok());
  EXPECT_EQ(provider->Describe(key->handle).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(provider->Destroy(key->handle).code(), StatusCode::kNotFound);
  EXPECT_EQ(provider->EcSignDigest(key->handle, Bytes(32)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(provider->GetAttributeForTest(ObjectForTest::kPublicKey, key->handle, CKA_EC_POINT)
                .status()
                .code(),
            StatusCode::kNotFound);
  // The other pair is untouched.
  EXPECT_TRUE(provider->Describe(other->handle).ok());
}

TEST_F(Pkcs11KeyProviderTest, HandlesAreCheckedBeforeUse) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  const std::string unknown(32, 'a');
  EXPECT_EQ(provider->Describe(unknown).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(provider->Destroy(unknown).code(), StatusCode::kNotFound);
  for (std::string_view bad :
       {"", "abc", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    EXPECT_EQ(provider->Describe(bad).status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(provider->Destroy(bad).code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(Pkcs11KeyProviderTest, HandlesSurviveAReopen) {
  StatusOr<HsmKeyInfo> rsa = NotFoundError("unset");
  StatusOr<HsmKeyInfo> ec = NotFoundError("unset");
  {
    auto provider = OpenProvider();
    ASSERT_NE(provider, nullptr);
    rsa = provider->GenerateRsa(2048);
    ec = provider->GenerateEc(EcCurve::kP256);
    ASSERT_TRUE(rsa.ok() && ec.ok());
  }
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<HsmKeyInfo> rsa_again = provider->Describe(rsa->handle);
  ASSERT_TRUE(rsa_again.ok()) << rsa_again.status();
  EXPECT_EQ(rsa_again->rsa->n, rsa->rsa->n);
  EXPECT_EQ(rsa_again->rsa->e, rsa->rsa->e);

  StatusOr<crypto::RsaPublicKey> rsa_public = crypto::RsaPublicKey::FromComponents(*rsa->rsa);
  ASSERT_TRUE(rsa_public.ok());
  StatusOr<Bytes> ciphertext = rsa_public->Encrypt(RsaPadding::kOaepSha1, AsBytes("later"));
  ASSERT_TRUE(ciphertext.ok());
  StatusOr<SecretBytes> plaintext =
      provider->RsaDecrypt(rsa->handle, RsaPadding::kOaepSha1, *ciphertext);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(Reveal(*plaintext), ToBytes("later"));

  StatusOr<Bytes> digest = crypto::Digest(HashAlgorithm::kSha256, AsBytes("reopened"));
  ASSERT_TRUE(digest.ok());
  StatusOr<Bytes> signature = provider->EcSignDigest(ec->handle, *digest);
  ASSERT_TRUE(signature.ok()) << signature.status();
  StatusOr<crypto::EcPublicKey> ec_public =
      crypto::EcPublicKey::FromCoordinates(EcCurve::kP256, ec->ec_point->x, ec->ec_point->y);
  ASSERT_TRUE(ec_public.ok());
  EXPECT_TRUE(ec_public->Verify(HashAlgorithm::kSha256, AsBytes("reopened"), *signature).ok());
}

// --- sessions

TEST_F(Pkcs11KeyProviderTest, RecoversWhenTheTokenDropsEverySession) {
  auto provider = OpenProvider();
  ASSERT_NE(provider, nullptr);
  StatusOr<Bytes> sealed = provider->SealWithRoot(Secret("before"), {});
  ASSERT_TRUE(sealed.ok());
  ASSERT_TRUE(provider->CloseAllSessionsForTest().ok());  // also logs the user out
  StatusOr<SecretBytes> opened = provider->OpenWithRoot(*sealed, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(Reveal(*opened), ToBytes("before"));
  EXPECT_TRUE(provider->Check().ok());
}

void RunConcurrently(Pkcs11KeyProvider& provider, const std::string& handle,
                     const Bytes& ciphertext) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        std::string text = "thread " + std::to_string(t) + " round " + std::to_string(i);
        StatusOr<Bytes> sealed = provider.SealWithRoot(Secret(text), AsBytes(text));
        StatusOr<SecretBytes> opened = sealed.ok() ? provider.OpenWithRoot(*sealed, AsBytes(text))
                                                   : StatusOr<SecretBytes>(sealed.status());
        if (!opened.ok() || Reveal(*opened) != ToBytes(text)) ++failures;
        StatusOr<SecretBytes> decrypted =
            provider.RsaDecrypt(handle, RsaPadding::kOaepSha1, ciphertext);
        if (!decrypted.ok() || Reveal(*decrypted) != ToBytes("shared data key")) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(Pkcs11KeyProviderTest, EightThreadsShareOneProvider) {
  for (size_t max_sessions : {size_t{8}, size_t{2}}) {  // with and without waiting for sessions
    SCOPED_TRACE(max_sessions);
    Pkcs11Options options = Options();
    options.max_sessions = max_sessions;
    auto provider = OpenProvider(options);
    ASSERT_NE(provider, nullptr);
    StatusOr<HsmKeyInfo> key = provider->GenerateRsa(2048);
    ASSERT_TRUE(key.ok());
    StatusOr<crypto::RsaPublicKey> public_key = crypto::RsaPublicKey::FromComponents(*key->rsa);
    ASSERT_TRUE(public_key.ok());
    StatusOr<Bytes> ciphertext =
        public_key->Encrypt(RsaPadding::kOaepSha1, AsBytes("shared data key"));
    ASSERT_TRUE(ciphertext.ok());
    RunConcurrently(*provider, key->handle, *ciphertext);
  }
}

}  // namespace
}  // namespace keyfoundry::hsm
