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
  const char* name = HashName(hash);
  if (name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  EvpMdPtr md(EVP_MD_fetch(nullptr, name, nullptr));
  if (md == nullptr) return OsslError(StatusCode::kInternal, "digest unavailable");
  Bytes out(HashSize(hash));
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &size, md.get(), nullptr) != 1 ||
      size != out.size()) {
    return OsslError(StatusCode::kInternal, "digest failed");
  }
  return out;
}

}  // namespace keyfoundry::crypto
