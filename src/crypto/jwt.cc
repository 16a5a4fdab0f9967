#include "crypto/jwt.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <set>
#include <utility>

#include "common/encoding.h"
#include "common/strings.h"
#include "crypto/hash_algorithm.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxKeyIdSize = 256;
constexpr size_t kEs256SignatureSize = 64;

Status Invalid(JwtFailure reason, JwtFailure* failure) {
  if (failure != nullptr) *failure = reason;
  return UnauthenticatedError("the token is invalid");
}

// Unpadded base64url of a non-empty segment.
bool DecodeSegment(std::string_view segment, Bytes* out) {
  if (segment.find('=') != std::string_view::npos) return false;
  StatusOr<Bytes> bytes = Base64UrlDecode(segment);
  if (!bytes.ok()) return false;
  *out = *std::move(bytes);
  return true;
}

// Parses `text` as a JSON object in which no object (at any depth) repeats a member name:
// nlohmann keeps the last of duplicates silently, which RFC 7515 section 5.2 allows, but a
// header with two "alg" members is never honest. Returns false on anything else.
bool ParseStrictObject(std::string_view text, Json* out) {
  try {
    std::vector<std::set<std::string, std::less<>>> open_objects;
    bool duplicate = false;
    auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
      switch (event) {
        case Json::parse_event_t::object_start:
          open_objects.emplace_back();
          break;
        case Json::parse_event_t::object_end:
          if (!open_objects.empty()) open_objects.pop_back();
          break;
        case Json::parse_event_t::key:
          if (open_objects.empty() || !parsed.is_string() ||
              !open_objects.back().insert(parsed.get_ref<const std::string&>()).second) {
            duplicate = true;
          }
          break;
        case Json::parse_event_t::array_start:
        case Json::parse_event_t::array_end:
        case Json::parse_event_t::value:
          break;
      }
      return true;
    };
    Json json = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
    if (duplicate || json.is_discarded() || !json.is_object()) return false;
    *out = std::move(json);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The checks of the file comment on a parsed header. Returns the key id.
StatusOr<std::string> CheckHeader(const Json& header, JwtFailure* failure) {
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return Invalid(JwtFailure::kAlgNotAllowed, failure);
  const std::string& alg_name = alg->get_ref<const std::string&>();
  if (EqualsIgnoreCase(alg_name, "none")) return Invalid(JwtFailure::kAlgNone, failure);
  if (alg_name != "ES256") return Invalid(JwtFailure::kAlgNotAllowed, failure);
  if (header.contains("crit")) return Invalid(JwtFailure::kCritical, failure);
  auto typ = header.find("typ");
  if (typ != header.end()) {
    if (!typ->is_string()) return Invalid(JwtFailure::kBadType, failure);
    const std::string& type = typ->get_ref<const std::string&>();
    if (!EqualsIgnoreCase(type, "JWT") && !EqualsIgnoreCase(type, "at+jwt")) {
      return Invalid(JwtFailure::kBadType, failure);
    }
  }
  auto kid = header.find("kid");
  if (kid == header.end() || !kid->is_string()) {
    return Invalid(JwtFailure::kMissingKeyId, failure);
  }
  return kid->get<std::string>();
}

// An integer claim that fits int64; nullopt-like through the bool.
enum class IntClaim { kAbsent = 1, kWrongType = 2, kPresent = 3 };

IntClaim GetIntClaim(const Json& claims, const char* name, int64_t* out) {
  auto it = claims.find(name);
  if (it == claims.end()) return IntClaim::kAbsent;
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return IntClaim::kWrongType;
    }
    *out = static_cast<int64_t>(v);
    return IntClaim::kPresent;
  }
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return IntClaim::kPresent;
  }
  return IntClaim::kWrongType;
}

Status CheckClaims(const Json& claims, const JwtClaimPolicy& policy,
                   std::chrono::system_clock::time_point now, JwtFailure* failure) {
  if (!claims.is_object()) return Invalid(JwtFailure::kBadClaims, failure);
  int64_t exp = 0;
  int64_t iat = 0;
  int64_t nbf = 0;
  const IntClaim has_exp = GetIntClaim(claims, "exp", &exp);
  const IntClaim has_iat = GetIntClaim(claims, "iat", &iat);
  const IntClaim has_nbf = GetIntClaim(claims, "nbf", &nbf);
  auto iss = claims.find("iss");
  auto aud = claims.find("aud");
  if (has_exp == IntClaim::kAbsent || has_iat == IntClaim::kAbsent || iss == claims.end() ||
      aud == claims.end()) {
    return Invalid(JwtFailure::kMissingClaim, failure);
  }
  if (has_exp == IntClaim::kWrongType || has_iat == IntClaim::kWrongType ||
      has_nbf == IntClaim::kWrongType || !iss->is_string() ||
      !(aud->is_string() || aud->is_array())) {
    return Invalid(JwtFailure::kBadClaimType, failure);
  }

  if (iss->get_ref<const std::string&>() != policy.issuer) {
    return Invalid(JwtFailure::kWrongIssuer, failure);
  }
  bool audience_ok = false;
  auto matches = [&](const Json& value) {
    for (const std::string& expected : policy.audiences) {
      if (value.get_ref<const std::string&>() == expected) return true;
    }
    return false;
  };
  if (aud->is_string()) {
    audience_ok = matches(*aud);
  } else {
    for (const Json& value : *aud) {
      if (!value.is_string()) return Invalid(JwtFailure::kBadClaimType, failure);
      audience_ok = audience_ok || matches(value);
    }
  }
  if (!audience_ok) return Invalid(JwtFailure::kWrongAudience, failure);

  // Skew is clamped to [0, 1 day] so no arithmetic below can overflow: `now` is a real or fake
  // clock reading, far from the int64 limits, and claims are only compared with it.
  const int64_t skew = std::clamp<int64_t>(policy.clock_skew.count(), 0, 86400);
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (now_s - skew >= exp) {
    if (failure != nullptr) *failure = JwtFailure::kExpired;
    return UnauthenticatedError("the token has expired");
  }
  if (has_nbf == IntClaim::kPresent && nbf > now_s + skew) {
    return Invalid(JwtFailure::kNotYetValid, failure);
  }
  if (iat > now_s + skew) return Invalid(JwtFailure::kIssuedInFuture, failure);
  return OkStatus();
}

}  // namespace

std::string_view JwtFailureName(JwtFailure failure) {
  switch (failure) {
    case JwtFailure::kTooLarge:
      return "too_large";
    case JwtFailure::kMalformed:
      return "malformed";
    case JwtFailure::kBadEncoding:
      return "bad_encoding";
    case JwtFailure::kBadHeader:
      return "bad_header";
    case JwtFailure::kAlgNone:
      return "alg_none";
    case JwtFailure::kAlgNotAllowed:
      return "alg_not_allowed";
    case JwtFailure::kBadType:
      return "bad_type";
    case JwtFailure::kCritical:
      return "crit_not_supported";
    case JwtFailure::kMissingKeyId:
      return "missing_kid";
    case JwtFailure::kUnknownKeyId:
      return "unknown_kid";
    case JwtFailure::kBadSignatureSize:
      return "bad_signature_size";
    case JwtFailure::kBadSignature:
      return "bad_signature";
    case JwtFailure::kBadClaims:
      return "bad_claims";
    case JwtFailure::kExpired:
      return "expired";
    case JwtFailure::kNotYetValid:
      return "not_yet_valid";
    case JwtFailure::kIssuedInFuture:
      return "issued_in_future";
    case JwtFailure::kMissingClaim:
      return "missing_claim";
    case JwtFailure::kBadClaimType:
      return "bad_claim_type";
    case JwtFailure::kWrongIssuer:
      return "wrong_issuer";
    case JwtFailure::kWrongAudience:
      return "wrong_audience";
  }
  return "unknown";
}

Status JwtKeySet::Add(std::string kid, EcPublicKey key) {
  if (kid.empty() || kid.size() > kMaxKeyIdSize) {
    return InvalidArgumentError("a JWT key id is 1 to 256 bytes");
  }
  if (key.curve() != EcCurve::kP256) return InvalidArgumentError("ES256 needs a P-256 key");
  if (keys_.count(kid) != 0) return AlreadyExistsError("the JWT key id is already in the set");
  keys_.emplace(std::move(kid), std::move(key));
  return OkStatus();
}

const EcPublicKey* JwtKeySet::Find(std::string_view kid) const {
  auto it = keys_.find(kid);
  return it == keys_.end() ? nullptr : &it->second;
}

StatusOr<std::string> SignJwt(const EcPrivateKey& key, std::string_view kid,
                              const nlohmann::json& claims) {
  if (key.curve() != EcCurve::kP256) return InvalidArgumentError("ES256 needs a P-256 key");
  if (kid.empty() || kid.size() > kMaxKeyIdSize) {
    return InvalidArgumentError("a JWT key id is 1 to 256 bytes");
  }
  if (!claims.is_object()) return InvalidArgumentError("JWT claims must be a JSON object");
  std::string signing_input;
  try {
    Json header = {{"alg", "ES256"}, {"kid", std::string(kid)}, {"typ", "JWT"}};
    signing_input =
        Base64UrlEncode(AsBytes(header.dump())) + "." + Base64UrlEncode(AsBytes(claims.dump()));
  } catch (const std::exception&) {
    // dump() throws on strings that are not UTF-8.
    return InvalidArgumentError("JWT header or claims are not valid UTF-8");
  }
  ASSIGN_OR_RETURN(Bytes signature, key.Sign(HashAlgorithm::kSha256, AsBytes(signing_input)));
  std::string token = signing_input + "." + Base64UrlEncode(signature);
  if (token.size() > kMaxJwtSize) return InvalidArgumentError("the JWT would exceed 8 KiB");
  return token;
}

StatusOr<VerifiedJwt> VerifyJwt(std::string_view token, const JwtKeySet& keys,
                                JwtFailure* failure) {
  if (token.size() > kMaxJwtSize) return Invalid(JwtFailure::kTooLarge, failure);
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Invalid(JwtFailure::kMalformed, failure);
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view claims_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_b64 = token.substr(dot2 + 1);
  if (header_b64.empty() || claims_b64.empty() || signature_b64.empty()) {
    return Invalid(JwtFailure::kMalformed, failure);
  }
  Bytes header_bytes;
  Bytes claims_bytes;
  Bytes signature;
  if (!DecodeSegment(header_b64, &header_bytes) || !DecodeSegment(claims_b64, &claims_bytes) ||
      !DecodeSegment(signature_b64, &signature)) {
    return Invalid(JwtFailure::kBadEncoding, failure);
  }

  VerifiedJwt out;
  if (!ParseStrictObject(AsStringView(header_bytes), &out.header)) {
    return Invalid(JwtFailure::kBadHeader, failure);
  }
  ASSIGN_OR_RETURN(std::string kid, CheckHeader(out.header, failure));
  const EcPublicKey* key = keys.Find(kid);
  if (key == nullptr) return Invalid(JwtFailure::kUnknownKeyId, failure);
  if (signature.size() != kEs256SignatureSize) {
    return Invalid(JwtFailure::kBadSignatureSize, failure);
  }
  const std::string_view signing_input = token.substr(0, dot2);
  if (!key->Verify(HashAlgorithm::kSha256, AsBytes(signing_input), signature).ok()) {
    return Invalid(JwtFailure::kBadSignature, failure);
  }
  if (!ParseStrictObject(AsStringView(claims_bytes), &out.claims)) {
    return Invalid(JwtFailure::kBadClaims, failure);
  }
  return out;
}

Status CheckJwtClaims(const nlohmann::json& claims, const JwtClaimPolicy& policy,
                      std::chrono::system_clock::time_point now, JwtFailure* failure) {
  try {
    return CheckClaims(claims, policy, now, failure);
  } catch (const std::exception&) {
    return Invalid(JwtFailure::kBadClaimType, failure);
  }
}

StatusOr<std::string> JwkThumbprint(const EcPublicKey& key) {
  ASSIGN_OR_RETURN(EcCoordinates point, key.Coordinates());
  const char* crv = EcCurveName(key.curve());
  if (crv == nullptr) return InternalError("EC key on an unknown curve");
  // RFC 7638 section 3.2: the required members in lexicographic order, no whitespace. Every
  // value is ASCII, so no escaping is needed.
  const std::string canonical = std::string(R"({"crv":")") + crv + R"(","kty":"EC","x":")" +
                                Base64UrlEncode(point.x) + R"(","y":")" + Base64UrlEncode(point.y) +
                                R"("})";
  uint8_t digest[EVP_MAX_MD_SIZE];
  size_t digest_size = 0;
  if (EVP_Q_digest(nullptr, "SHA256", nullptr, canonical.data(), canonical.size(), digest,
                   &digest_size) != 1 ||
      digest_size != 32) {
    return OsslError(StatusCode::kInternal, "SHA-256 failed");
  }
  return Base64UrlEncode(ByteView(digest, digest_size));
}

}  // namespace keyfoundry::crypto
