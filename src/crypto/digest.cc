#include "crypto/digest.h"

#include "crypto/hash_algorithm.h"

namespace keyfoundry::crypto {

StatusOr<Bytes> Sha256(ByteView data) { return Digest(HashAlgorithm::kSha256, data); }

}  // namespace keyfoundry::crypto
