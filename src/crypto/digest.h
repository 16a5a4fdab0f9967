// Message digests: SHA-256 (FIPS 180-4) of a byte string, through OpenSSL's EVP interface.
// For tamper evidence (the audit log's hash chain) and content addressing, never for
// passwords (see password_hash.h) or for keys (see hkdf.h).
//
// Thread safety: free functions with no mutable shared state; safe to call concurrently.
#ifndef KEYFOUNDRY_CRYPTO_DIGEST_H_
#define KEYFOUNDRY_CRYPTO_DIGEST_H_

#include <cstddef>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

inline constexpr size_t kSha256Size = 32;

// The SHA-256 digest of `data` (kSha256Size bytes). Fails only if OpenSSL cannot provide
// SHA-256 (Internal) or runs out of memory.
StatusOr<Bytes> Sha256(ByteView data);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_DIGEST_H_
