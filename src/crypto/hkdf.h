// HKDF with HMAC-SHA-256 (RFC 5869), through OpenSSL's EVP_KDF "HKDF" in extract-then-expand
// mode.
//
// Thread safety: a free function with no shared state; safe to call concurrently.
#ifndef KEYFOUNDRY_CRYPTO_HKDF_H_
#define KEYFOUNDRY_CRYPTO_HKDF_H_

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

// RFC 5869 caps the output at 255 blocks of the hash.
inline constexpr size_t kHkdfSha256MaxLength = size_t{255} * 32;

// Derives `length` bytes from the input keying material `ikm`. An empty `salt` means RFC 5869's
// default (HashLen zero bytes, which gives the same PRK). InvalidArgument unless
// 1 <= length <= kHkdfSha256MaxLength.
StatusOr<SecretBytes> Hkdf(const SecretBytes& ikm, ByteView salt, ByteView info, size_t length);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_HKDF_H_
