// Password hashing with PBKDF2-HMAC-SHA-256 (RFC 8018 section 5.2; NIST SP 800-132), through
// OpenSSL's EVP_KDF "PBKDF2". PBKDF2 is the FIPS-approved password KDF; scrypt and Argon2 are
// stronger against GPUs but not approved, and the brief allows FIPS algorithms only.
//
// Encoded form, self-describing so that the iteration count can be raised later without
// invalidating stored hashes (a hash keeps the count it was made with):
//
//   pbkdf2-sha256$<iterations>$<salt>$<hash>
//
//   iterations  decimal, no sign, no leading zero, kMinPasswordIterations..kMaxPasswordIterations
//   salt        base64url without padding of kPasswordSaltSize (16) random bytes
//   hash        base64url without padding of the kPasswordHashSize (32) byte PBKDF2 output
//
// base64url (not base64) so that no character of an encoding is '$'. Anything else (another
// scheme, a count out of bounds, a salt or hash of another size, padding, trailing text) is
// refused: VerifyPassword never runs PBKDF2 on an encoding it did not fully accept, so a
// corrupted or planted record cannot make it spin for hours.
//
// Verification recomputes the hash and compares it with ConstantTimeEquals.
//
// Thread safety: free functions with no shared state; safe to call concurrently.
#ifndef KEYFOUNDRY_CRYPTO_PASSWORD_HASH_H_
#define KEYFOUNDRY_CRYPTO_PASSWORD_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/random.h"

namespace keyfoundry::crypto {

// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA-256.
inline constexpr uint32_t kDefaultPasswordIterations = 600000;
// SP 800-132 section 5.2 asks for at least 1,000; tests and high-entropy secrets use it.
inline constexpr uint32_t kMinPasswordIterations = 1000;
// About 30 s of CPU: anything above is a corrupt or hostile record, not a policy.
inline constexpr uint32_t kMaxPasswordIterations = 100000000;
inline constexpr size_t kPasswordSaltSize = 16;
inline constexpr size_t kPasswordHashSize = 32;
// Longer passwords are refused (HMAC would hash them first; the bound keeps the work fixed).
inline constexpr size_t kMaxPasswordSize = 4096;

// The raw KDF: `length` (1..1024) bytes of PBKDF2-HMAC-SHA-256 of `password` and `salt` with
// `iterations` (>= 1) rounds. No policy bounds beyond these; used by the encoded form below and
// by known-answer tests. InvalidArgument on a bad length or a zero count.
StatusOr<SecretBytes> Pbkdf2HmacSha256(const SecretBytes& password, ByteView salt,
                                       uint32_t iterations, size_t length);

// Hashes `password` (1..kMaxPasswordSize bytes) with a fresh random salt from `random` and
// `iterations` rounds (kMinPasswordIterations..kMaxPasswordIterations), returning the encoded
// form. InvalidArgument on an empty or oversized password or a count out of bounds.
StatusOr<std::string> HashPassword(const SecretBytes& password,
                                   uint32_t iterations = kDefaultPasswordIterations,
                                   Random& random = Random::Secure());

// OK when `password` matches `encoded`. PermissionDenied("password mismatch") when it does not;
// InvalidArgument when `encoded` is not a well-formed encoding (see the file comment) or the
// password is empty or oversized. Callers should answer all of these the same way to the user.
Status VerifyPassword(const SecretBytes& password, std::string_view encoded);

// The iteration count of a well-formed encoding (so that a caller can rehash old records with a
// higher count after a successful login); InvalidArgument as VerifyPassword.
StatusOr<uint32_t> PasswordHashIterations(std::string_view encoded);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_PASSWORD_HASH_H_
