// What the JWT fuzzer and its seed generator share: the fixed verification key, its key id,
// the claim policy and the clock reading, and the input layout.
//
// Input: one mode byte, then the rest.
//   mode % 3 == 0  the rest is a token: VerifyJwt, then CheckJwtClaims when it verifies
//   mode % 3 == 1  the rest is claims JSON: CheckJwtClaims on it unsigned, and a SignJwt ->
//                  VerifyJwt round trip that must give the same claims back
//   mode % 3 == 2  the rest is header JSON: a token with that header, fixed claims and an
//                  all-zero signature, which must never verify
#ifndef KEYFOUNDRY_TESTS_FUZZ_JWT_FUZZ_COMMON_H_
#define KEYFOUNDRY_TESTS_FUZZ_JWT_FUZZ_COMMON_H_

#include <chrono>

#include "common/encoding.h"
#include "crypto/jwt.h"

namespace keyfoundry::fuzz {

inline constexpr std::string_view kJwtFuzzKid = "fuzz-key";
inline constexpr std::string_view kJwtFuzzIssuer = "https://localhost:8443/fuzz/v2.0";
inline constexpr std::string_view kJwtFuzzAudience = "https://vault.localhost";
inline constexpr int64_t kJwtFuzzNow = 1700000000;

// A fixed, public P-256 key (d = 0x11 repeated): the seeds must verify under it.
inline const crypto::EcPrivateKey& JwtFuzzKey() {
  static const crypto::EcPrivateKey* const key = [] {
    Bytes x = *HexDecode("0217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed");
    Bytes y = *HexDecode("194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794");
    return new crypto::EcPrivateKey(*crypto::EcPrivateKey::FromComponents(
        crypto::EcCurve::kP256, x, y, SecretBytes(Bytes(32, 0x11), InsecureSecretAccess())));
  }();
  return *key;
}

inline const crypto::JwtKeySet& JwtFuzzKeys() {
  static const crypto::JwtKeySet* const keys = [] {
    auto* set = new crypto::JwtKeySet();
    (void)set->Add(std::string(kJwtFuzzKid), *JwtFuzzKey().PublicKey());
    return set;
  }();
  return *keys;
}

inline crypto::JwtClaimPolicy JwtFuzzPolicy() {
  return {.issuer = std::string(kJwtFuzzIssuer), .audiences = {std::string(kJwtFuzzAudience)}};
}

inline std::chrono::system_clock::time_point JwtFuzzNow() {
  return std::chrono::system_clock::time_point(std::chrono::seconds(kJwtFuzzNow));
}

}  // namespace keyfoundry::fuzz

#endif  // KEYFOUNDRY_TESTS_FUZZ_JWT_FUZZ_COMMON_H_
