#include "crypto/digest.h"

#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

StatusOr<Bytes> Sha256(ByteView data) {
  // Fetched once: an explicit fetch avoids OpenSSL's implicit fetch (a lookup under a lock) on
  // every call, which matters on the audit log's hot path. Never freed, like any static.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (kSha256 == nullptr) return OsslError(StatusCode::kInternal, "SHA-256 is unavailable");
  Bytes out(kSha256Size);
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &size, kSha256, nullptr) != 1 ||
      size != kSha256Size) {
    return OsslError(StatusCode::kInternal, "SHA-256 failed");
  }
  return out;
}

}  // namespace keyfoundry::crypto
