#include "crypto/hash_algorithm.h"

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

}  // namespace keyfoundry::crypto
