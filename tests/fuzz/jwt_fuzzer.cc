// Fuzzes the JWT parser and verifier (crypto/jwt.h) with a fixed key set: the token splitter,
// base64url decoding, the strict JSON parsing of header and claims, the header rules, the
// signature check and the claim checks. Input layout: jwt_fuzz_common.h.
#include <string>

#include "jwt_fuzz_common.h"

using namespace keyfoundry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const crypto::JwtKeySet& keys = fuzz::JwtFuzzKeys();

  if (mode == 0) {
    crypto::JwtFailure failure{};
    auto verified = crypto::VerifyJwt(rest, keys, &failure);
    if (!verified.ok()) {
      // A refusal always carries the generic message and a named reason.
      if (verified.status().message() != "the token is invalid") __builtin_trap();
      if (crypto::JwtFailureName(failure) == "unknown") __builtin_trap();
      return 0;
    }
    if (!verified->header.is_object() || !verified->claims.is_object()) __builtin_trap();
    if (verified->header["alg"] != "ES256") __builtin_trap();
    (void)crypto::CheckJwtClaims(verified->claims, fuzz::JwtFuzzPolicy(), fuzz::JwtFuzzNow());
    return 0;
  }

  if (mode == 1) {
    nlohmann::json claims = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
    if (claims.is_discarded()) return 0;
    (void)crypto::CheckJwtClaims(claims, fuzz::JwtFuzzPolicy(), fuzz::JwtFuzzNow());
    auto token = crypto::SignJwt(fuzz::JwtFuzzKey(), fuzz::kJwtFuzzKid, claims);
    if (!token.ok()) return 0;
    auto verified = crypto::VerifyJwt(*token, keys);
    // Our own signed object must verify and give back what was signed (duplicates cannot
    // occur: the parsed object has none).
    if (!verified.ok() || verified->claims != claims) __builtin_trap();
    return 0;
  }

  const std::string token = Base64UrlEncode(AsBytes(rest)) + "." +
                            Base64UrlEncode(AsBytes(R"({"exp":1700003600,"iat":1700000000})")) +
                            "." + Base64UrlEncode(Bytes(64, 0));
  if (crypto::VerifyJwt(token, keys).ok()) __builtin_trap();
  return 0;
}
