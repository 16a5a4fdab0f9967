#include "crypto/hkdf.h"

#include <openssl/core_names.h>

#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {
namespace {

// OSSL_PARAM takes non-const pointers; OpenSSL only reads (and copies) these values. It
// refuses a null pointer even with size 0, so empty values point at a dummy byte.
OSSL_PARAM OctetParam(const char* name, ByteView value) {
  static const uint8_t kEmpty = 0;
  const uint8_t* data = value.empty() ? &kEmpty : value.data();
  return OSSL_PARAM_construct_octet_string(name, const_cast<uint8_t*>(data), value.size());
}

}  // namespace

StatusOr<SecretBytes> Hkdf(const SecretBytes& ikm, ByteView salt, ByteView info, size_t length) {
  if (length == 0 || length > kHkdfSha256MaxLength) {
    return InvalidArgumentError("HKDF-SHA-256 output is 1 to 8160 bytes");
  }
  // Fetched once: an explicit fetch avoids the per-call implicit fetch.
  static EVP_KDF* const kHkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kHkdf == nullptr) return InternalError("HKDF is unavailable");
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(kHkdf));
  if (!ctx) return OsslError(StatusCode::kResourceExhausted, "EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OctetParam(OSSL_KDF_PARAM_KEY, ikm.Reveal(InsecureSecretAccess())),
      OctetParam(OSSL_KDF_PARAM_SALT, salt),
      OctetParam(OSSL_KDF_PARAM_INFO, info),
      OSSL_PARAM_construct_end(),
  };
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.Mutable(InsecureSecretAccess()).data(), length, params) != 1) {
    return OsslError(StatusCode::kInternal, "HKDF-SHA-256 derivation failed");
  }
  return out;
}

}  // namespace keyfoundry::crypto
