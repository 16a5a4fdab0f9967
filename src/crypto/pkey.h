// Helpers shared by rsa.cc and ecdsa.cc to move keys in and out of EVP_PKEYs through
// OSSL_PARAM: building a key from big-endian integers (EVP_PKEY_fromdata), reading them back,
// and decoding DER. Every key built or decoded here is validated by OpenSSL before it is
// returned. Internal to crypto/: other folders use the key classes.
//
// Thread safety: a PkeyBuilder is used by one thread; the free functions are thread-safe.
#ifndef KEYFOUNDRY_CRYPTO_PKEY_H_
#define KEYFOUNDRY_CRYPTO_PKEY_H_

#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

class PkeyBuilder {
 public:
  PkeyBuilder();

  // Integers are copied at once; the caller bounds their size (they must fit an int). Strings
  // are read when Build runs, so they must outlive it. An allocation failure here is reported
  // by Build.
  void AddInteger(const char* name, ByteView big_endian);
  // For secrets: the BIGNUM is flagged secure, so OpenSSL copies it into its secure heap (when
  // one is configured) and wipes every copy it frees.
  void AddSecretInteger(const char* name, const SecretBytes& big_endian);
  void AddUtf8String(const char* name, const char* value);
  void AddOctetString(const char* name, ByteView value);

  // Builds a `key_type` ("RSA", "EC") key holding `selection` (EVP_PKEY_PUBLIC_KEY or
  // EVP_PKEY_KEYPAIR) and validates it: EVP_PKEY_public_check for a public key, the full
  // EVP_PKEY_check (which includes a pairwise check) for a key pair. InvalidArgument starting
  // with `error`, plus OpenSSL's reason, when the values do not make a valid key.
  StatusOr<EvpPkeyPtr> Build(const char* key_type, int selection, std::string_view error);

 private:
  OsslParamBldPtr bld_;
  std::vector<BignumClearPtr> bignums_;  // the builder holds pointers to them until Build
  bool ok_ = true;
};

// Decodes and validates (as PkeyBuilder::Build does) a DER `structure` ("SubjectPublicKeyInfo",
// "PrivateKeyInfo") holding a `key_type` key. InvalidArgument starting with `error` on any
// failure, trailing bytes included.
StatusOr<EvpPkeyPtr> DecodeDer(ByteView der, const char* structure, const char* key_type,
                               int selection, std::string_view error);

// Reads the integer parameter `name` of `pkey` big-endian: in its minimal form when `width` is
// 0, else left-padded with zeros to exactly `width` bytes (Internal if it does not fit).
StatusOr<Bytes> GetInteger(const EVP_PKEY* pkey, const char* name, size_t width = 0);
StatusOr<SecretBytes> GetSecretInteger(const EVP_PKEY* pkey, const char* name, size_t width = 0);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_PKEY_H_
