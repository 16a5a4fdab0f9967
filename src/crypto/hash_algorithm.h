// The hash functions keyfoundry signs with, shared by RSA and ECDSA, and a one-shot digest
// for callers that sign a precomputed digest (the HSM signs digests, not messages).
//
// Thread safety: constants and pure functions.
#ifndef KEYFOUNDRY_CRYPTO_HASH_ALGORITHM_H_
#define KEYFOUNDRY_CRYPTO_HASH_ALGORITHM_H_

#include <cstddef>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

enum class HashAlgorithm {
  kSha256 = 1,
  kSha384 = 2,
  kSha512 = 3,
};

// OpenSSL's name for `hash` ("SHA256", ...), or nullptr when `hash` is not an enumerator:
// callers fail closed on it.
const char* HashName(HashAlgorithm hash);

// The digest size in bytes (32, 48, 64), or 0 when `hash` is not an enumerator.
size_t HashSize(HashAlgorithm hash);

// The digest of `data` with `hash` (HashSize(hash) bytes). InvalidArgument when `hash` is not
// an enumerator; Internal if OpenSSL cannot compute it.
StatusOr<Bytes> Digest(HashAlgorithm hash, ByteView data);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_HASH_ALGORITHM_H_
