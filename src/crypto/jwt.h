// JSON Web Tokens (RFC 7519) in the JWS compact serialization (RFC 7515 section 7.1), signed
// with ES256 (ECDSA P-256 with SHA-256, RFC 7518 section 3.4) and nothing else.
//
//   token = BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(r || s)
//
// The signature covers the ASCII bytes of the first two segments and the dot between them; r
// and s are 32 bytes each, big-endian (crypto/ecdsa.h).
//
// Verification is the usual place where JWT libraries go wrong, so the rules are fixed here
// and every failure has its own JwtFailure (for logs and the audit trail) while the Status
// seen by callers says only "the token is invalid" or, for an expired token, "the token has
// expired":
//   - a token longer than kMaxJwtSize, or not exactly three non-empty dot-separated segments
//     of unpadded base64url, is refused before any JSON is parsed;
//   - the algorithm is PINNED: the header's "alg" must be the string "ES256". "none" (in any
//     case), HS256 (the "public key as HMAC secret" confusion), RS256, PS256 and every other
//     value are refused whatever the key set holds;
//   - the header must be a JSON object with no duplicate member, with a string "kid" naming a
//     key in the verifier's key set; "typ", when present, must be "JWT" or "at+jwt"; a "crit"
//     member is refused, as we implement no extension (RFC 7515 section 4.1.11). Headers that
//     would point to other keys ("jku", "jwk", "x5u", "x5c") are never followed: the key comes
//     from the key set only;
//   - the signature must decode to exactly 64 bytes and verify under that key;
//   - only then is the claims segment parsed, and it must be a JSON object without duplicate
//     members. Header and claims are returned only after all of this.
// Claim checks (CheckJwtClaims) are a separate step because the expected issuer and audiences
// belong to the caller; TokenVerifier in identity/ does both.
//
// ECDSA signatures are malleable ((r, s) and (r, n - s) both verify), so two different strings
// can carry the same verified claims: never use the token text as a unique id (use a claim).
//
// Exceptions: nlohmann::json throws on some misuse; this file catches everything it could
// throw and returns a Status, so no exception leaves it.
//
// Thread safety: JwtKeySet is immutable once built and may be shared between threads; the free
// functions have no shared state.
#ifndef KEYFOUNDRY_CRYPTO_JWT_H_
#define KEYFOUNDRY_CRYPTO_JWT_H_

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/ecdsa.h"

namespace keyfoundry::crypto {

// A hard limit on the token text: ours are about 1 KiB; HTTP servers limit headers to 8 KiB.
inline constexpr size_t kMaxJwtSize = size_t{8} * 1024;
// The clock skew allowed on "exp", "nbf" and "iat" by default: one minute. Our issuer and our
// verifiers run in one deployment (often one process), so clocks agree closely; Azure AD
// allows five minutes for clocks across the internet, which is longer than needed here.
inline constexpr std::chrono::seconds kDefaultJwtClockSkew{60};

// Why a token was refused: for logs and audit records, never for the client (which gets the
// generic message).
enum class JwtFailure {
  kTooLarge = 1,           // longer than kMaxJwtSize
  kMalformed = 2,          // not three non-empty segments
  kBadEncoding = 3,        // a segment is not unpadded base64url
  kBadHeader = 4,          // header is not a JSON object, or has duplicate or mistyped members
  kAlgNone = 5,            // "alg": "none" (unsecured JWT)
  kAlgNotAllowed = 6,      // "alg" missing or anything but "ES256"
  kBadType = 7,            // "typ" present and not "JWT" / "at+jwt"
  kCritical = 8,           // "crit" present
  kMissingKeyId = 9,       // no string "kid"
  kUnknownKeyId = 10,      // "kid" not in the key set
  kBadSignatureSize = 11,  // signature not 64 bytes
  kBadSignature = 12,      // signature does not verify
  kBadClaims = 13,         // claims not a JSON object, or duplicate members
  kExpired = 14,           // now >= exp + skew
  kNotYetValid = 15,       // now < nbf - skew
  kIssuedInFuture = 16,    // iat > now + skew
  kMissingClaim = 17,      // exp, iat, iss or aud absent
  kBadClaimType = 18,      // a checked claim of the wrong JSON type
  kWrongIssuer = 19,
  kWrongAudience = 20,
};

// A stable lower-case name for logs ("alg_none", "expired", ...); "unknown" when `failure` is
// not an enumerator.
std::string_view JwtFailureName(JwtFailure failure);

// The ES256 verification keys, by key id. Build it, then share it read-only.
class JwtKeySet {
 public:
  JwtKeySet() = default;
  JwtKeySet(JwtKeySet&&) = default;
  JwtKeySet& operator=(JwtKeySet&&) = default;

  // InvalidArgument unless `kid` is 1..256 bytes and `key` is a P-256 key; AlreadyExists when
  // `kid` is taken.
  Status Add(std::string kid, EcPublicKey key);

  // The key for `kid`, or nullptr. The pointer lives as long as the set.
  const EcPublicKey* Find(std::string_view kid) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, EcPublicKey, std::less<>> keys_;
};

struct VerifiedJwt {
  nlohmann::json header;  // a JSON object
  nlohmann::json claims;  // a JSON object
};

// Signs `claims` (a JSON object) with `key` (a P-256 key) under the header
// {"alg":"ES256","kid":kid,"typ":"JWT"}. InvalidArgument when `claims` is not an object, holds
// a string that is not valid UTF-8, `kid` is empty, the key is not P-256, or the token would
// exceed kMaxJwtSize.
StatusOr<std::string> SignJwt(const EcPrivateKey& key, std::string_view kid,
                              const nlohmann::json& claims);

// Parses `token` and verifies its signature under `keys` with the rules of the file comment.
// Unauthenticated("the token is invalid") on any failure; *failure (when not null) is set to
// the reason. Claims are not checked: call CheckJwtClaims.
StatusOr<VerifiedJwt> VerifyJwt(std::string_view token, const JwtKeySet& keys,
                                JwtFailure* failure = nullptr);

struct JwtClaimPolicy {
  std::string issuer;                  // "iss" must equal it exactly
  std::vector<std::string> audiences;  // "aud" (a string, or an array of strings) must hold one
  std::chrono::seconds clock_skew = kDefaultJwtClockSkew;
};

// Checks verified claims at time `now`: "exp" and "iat" (integers, seconds since the epoch)
// must be present, "nbf" is checked when present; exp > now - skew, nbf <= now + skew,
// iat <= now + skew; "iss" and "aud" as `policy` says (audiences compared exactly; normalise
// them before if needed). Unauthenticated("the token has expired") for an expired token,
// Unauthenticated("the token is invalid") otherwise; *failure gets the reason.
Status CheckJwtClaims(const nlohmann::json& claims, const JwtClaimPolicy& policy,
                      std::chrono::system_clock::time_point now, JwtFailure* failure = nullptr);

// The RFC 7638 JWK thumbprint of an EC public key: base64url(SHA-256 of
// {"crv":"P-256","kty":"EC","x":"...","y":"..."}), 43 characters. A stable key id.
StatusOr<std::string> JwkThumbprint(const EcPublicKey& key);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_JWT_H_
