// Pkcs11KeyProvider: the KeyProvider over a PKCS#11 module (SoftHSM2 by default). The design
// (token set-up, the root key, sessions, object templates, error mapping) is described at the
// top of pkcs11_key_provider.cc.
//
// Process-wide state: a PKCS#11 module is initialised once per process (Pkcs11Module counts
// its users). Providers may be opened, destroyed and opened again; several may be open at once
// on one module (they then share its configuration: SoftHSM2 reads SOFTHSM2_CONF when the
// first of them opens).
//
// Thread safety: every KeyProvider method may be called from many threads at once. All calls
// must have returned before the provider is destroyed.
#ifndef KEYFOUNDRY_HSM_PKCS11_PKCS11_KEY_PROVIDER_H_
#define KEYFOUNDRY_HSM_PKCS11_PKCS11_KEY_PROVIDER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/bytes.h"
#include "common/mutex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "hsm/key_provider.h"

namespace keyfoundry::hsm {

class Pkcs11Module;
class Pkcs11SessionPool;

struct Pkcs11Options {
  // An absolute path: a bare file name would be looked up in the library search path.
  std::string module_path = "/usr/lib/softhsm/libsofthsm2.so";
  // The token's label (CK_TOKEN_INFO.label): 1 to 32 bytes, without trailing spaces.
  std::string token_label = "keyfoundry";
  SecretBytes user_pin;  // required
  // Used only when the token is initialised here (initialize_if_missing); never kept.
  SecretBytes so_pin;
  // When no token has the label: initialise a free slot's token with it (SO PIN, then the
  // user PIN). When false, a missing token is NotFound.
  bool initialize_if_missing = false;
  // Sessions open at once (1..256); a thread waits when all are in use.
  size_t max_sessions = 8;
};

class Pkcs11KeyProvider final : public KeyProvider {
 public:
  // Loads the module, finds the token by label (initialising one if missing and allowed),
  // logs in as the user and finds the root key (generating it on first use).
  //   InvalidArgument     bad options
  //   NotFound            no token has the label and initialize_if_missing is false
  //   PermissionDenied    the user (or SO) PIN is wrong
  //   FailedPrecondition  two tokens have the label; the token has two root keys, or one whose
  //                       attributes are weaker than this code creates (extractable, ...)
  //   Unavailable         the module cannot be loaded or the token does not answer
  static StatusOr<std::unique_ptr<Pkcs11KeyProvider>> Open(const Pkcs11Options& options);
  // Closes this provider's sessions; finalises the module when no other provider uses it.
  ~Pkcs11KeyProvider() override;

  std::string Platform() const override { return platform_; }
  Status Check() const override;

  StatusOr<Bytes> SealWithRoot(const SecretBytes& plaintext, ByteView aad) override;
  StatusOr<SecretBytes> OpenWithRoot(ByteView sealed, ByteView aad) override;

  StatusOr<HsmKeyInfo> GenerateRsa(int modulus_bits) override;
  StatusOr<HsmKeyInfo> GenerateEc(crypto::EcCurve curve) override;
  StatusOr<HsmKeyInfo> ImportRsa(const crypto::RsaPrivateComponents& key) override;
  StatusOr<HsmKeyInfo> ImportEc(crypto::EcCurve curve, const crypto::EcCoordinates& point,
                                const SecretBytes& d) override;
  StatusOr<HsmKeyInfo> Describe(std::string_view handle) override;

  StatusOr<SecretBytes> RsaDecrypt(std::string_view handle, crypto::RsaPadding padding,
                                   ByteView ciphertext) override;
  StatusOr<Bytes> RsaSignDigest(std::string_view handle, crypto::RsaSignatureScheme scheme,
                                crypto::HashAlgorithm hash, ByteView digest) override;
  StatusOr<Bytes> EcSignDigest(std::string_view handle, ByteView digest) override;

  Status Destroy(std::string_view handle) override;

  // Hard limits of SealWithRoot: larger inputs are InvalidArgument (and larger sealed blobs
  // DataLoss in OpenWithRoot).
  static constexpr size_t kMaxSealPlaintext = 1 << 20;
  static constexpr size_t kMaxSealAad = 1 << 16;

  // --- test hooks
  enum class ObjectForTest {
    kRootKey = 1,
    kPrivateKey = 2,  // of the pair named by the handle
    kPublicKey = 3,
  };
  // The raw value of attribute `attribute` (a CKA_* number) of an object, or the token's
  // refusal (PermissionDenied for CKR_ATTRIBUTE_SENSITIVE). `handle` is ignored for the root
  // key.
  StatusOr<Bytes> GetAttributeForTest(ObjectForTest object, std::string_view handle,
                                      unsigned long attribute);
  // C_CloseAllSessions on the token, as a token reset would: the pool must recover.
  Status CloseAllSessionsForTest();
  // The module's CK_INFO.libraryVersion, e.g. {2, 6}.
  std::pair<int, int> LibraryVersionForTest() const { return library_version_; }

 private:
  struct Internal;  // helpers in the .cc that need the PKCS#11 types

  Pkcs11KeyProvider(std::unique_ptr<Pkcs11Module> module, std::unique_ptr<Pkcs11SessionPool> pool,
                    std::string platform, std::pair<int, int> library_version,
                    unsigned long root_key, uint64_t root_key_login);

  // Declared first so that it is destroyed last, after the pool has closed its sessions.
  const std::unique_ptr<Pkcs11Module> module_;
  const std::unique_ptr<Pkcs11SessionPool> pool_;
  const std::string platform_;
  const std::pair<int, int> library_version_;

  // The root key's object handle (a CK_OBJECT_HANDLE), valid while the login that found it
  // lasts: a token may renumber private objects after a logout (SoftHSM2 does), so it is looked
  // up again after the pool had to log in afresh, or when the token calls it invalid.
  Mutex root_key_mu_;
  unsigned long root_key_ GUARDED_BY(root_key_mu_);
  uint64_t root_key_login_ GUARDED_BY(root_key_mu_);  // pool_->logins() when found
};

}  // namespace keyfoundry::hsm

#endif  // KEYFOUNDRY_HSM_PKCS11_PKCS11_KEY_PROVIDER_H_
