#include "crypto/hash_algorithm.h"

#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

const char* HashName(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return "SHA256";
    case HashAlgorithm::kSha384:
      return "SHA384";
    case HashAlgorithm::kSha512:
      return "SHA512";
  }
  return nullptr;
}

size_t HashSize(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return 32;
    case HashAlgorithm::kSha384:
      return 48;
    case HashAlgorithm::kSha512:
      return 64;
  }
  return 0;
}

StatusOr<Bytes> Digest(HashAlgorithm hash, ByteView data) {
  // Each algorithm is fetched once: an explicit fetch avoids OpenSSL's implicit fetch (a lookup
  // under a lock) on every call, which matters on hot paths (the audit log's hash chain, token
  // caching). Never freed, like any static.
  static EVP_MD* const kFetched[] = {EVP_MD_fetch(nullptr, "SHA256", nullptr),
                                     EVP_MD_fetch(nullptr, "SHA384", nullptr),
                                     EVP_MD_fetch(nullptr, "SHA512", nullptr)};
  if (HashName(hash) == nullptr) return InvalidArgumentError("unknown hash algorithm");
  EVP_MD* md = kFetched[static_cast<int>(hash) - 1];
  if (md == nullptr) return OsslError(StatusCode::kInternal, "digest unavailable");
  Bytes out(HashSize(hash));
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &size, md, nullptr) != 1 ||
      size != out.size()) {
    return OsslError(StatusCode::kInternal, "digest failed");
  }
  return out;
}

}  // namespace keyfoundry::crypto
