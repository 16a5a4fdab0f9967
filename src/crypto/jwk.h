// JSON Web Keys (RFC 7517) holding RSA or EC keys (RFC 7518 section 6): import and export.
//
//   kty "RSA"   n, e; a private key adds d, p, q, dp, dq, qi (all of them: RSA private keys
//               with only d, or with "oth" primes, are refused)
//   kty "EC"    crv ("P-256", "P-384", "P-521"), x, y; a private key adds d
//
// Import accepts base64url with or without padding. RSA integers may carry leading zero bytes;
// EC x, y and d must be exactly the curve's field size, as RFC 7518 6.2.1.2 requires. Members
// this code does not use ("kid", "alg", "use", "key_ops", ...) are ignored. Keys are validated
// as the key classes do (rsa.h, ecdsa.h): points on the curve, consistent private keys. Every
// problem gives InvalidArgument with a message naming it (never any key material).
//
// Export writes base64url without padding; RSA integers in their minimal form, EC x, y and d
// at the curve's field size. Exported members are "kty", the key's members, and nothing else.
//
// Secrets: a JWK holding a private key is itself a secret, so private exports return
// SecretBytes, and the JSON values, the parser's string buffer and the output text here live
// on an allocator that wipes memory before freeing it. That is best effort: nlohmann's lexer
// also keeps the raw text of its latest token, and its serializer a chunk of each string, in
// buffers of their own that are not wiped. Callers should keep private JWK text in SecretBytes
// and pass it as AsStringView(secret.Reveal(InsecureSecretAccess())).
//
// Thread safety: free functions with no shared state.
#ifndef KEYFOUNDRY_CRYPTO_JWK_H_
#define KEYFOUNDRY_CRYPTO_JWK_H_

#include <string>
#include <string_view>
#include <variant>

#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ecdsa.h"
#include "crypto/rsa.h"

namespace keyfoundry::crypto {

// A hard limit on the JSON text: a JWK of the largest key we accept (RSA-16384 with its private
// members) is about 13 KiB.
inline constexpr size_t kMaxJwkSize = size_t{64} * 1024;

// A parsed JWK: a private key when "d" is present.
using Jwk = std::variant<RsaPublicKey, RsaPrivateKey, EcPublicKey, EcPrivateKey>;

StatusOr<Jwk> ParseJwk(std::string_view json);

StatusOr<std::string> ToJwk(const RsaPublicKey& key);
StatusOr<SecretBytes> ToJwk(const RsaPrivateKey& key);  // the JSON text, a secret
StatusOr<std::string> ToJwk(const EcPublicKey& key);
StatusOr<SecretBytes> ToJwk(const EcPrivateKey& key);  // the JSON text, a secret

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_JWK_H_
