#include "crypto/jwk.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/encoding.h"

namespace keyfoundry::crypto {
namespace {

// Wipes memory before freeing it, so the JSON values and the parser's string buffer that held
// private key members leave no copies behind.
template <typename T>
struct WipingAllocator {
  using value_type = T;

  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) {}  // NOLINT(google-explicit-constructor)

  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) {
    SecureZero({reinterpret_cast<uint8_t*>(p), n * sizeof(T)});
    std::allocator<T>().deallocate(p, n);
  }

  friend bool operator==(const WipingAllocator&, const WipingAllocator&) { return true; }
};

using WipingString = std::basic_string<char, std::char_traits<char>, WipingAllocator<char>>;
using Json = nlohmann::basic_json<std::map, std::vector, WipingString, bool, int64_t, uint64_t,
                                  double, WipingAllocator>;

StatusOr<std::string_view> GetString(const Json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return InvalidArgumentError(std::string("JWK has no \"") + name + "\"");
  if (!it->is_string()) {
    return InvalidArgumentError(std::string("JWK \"") + name + "\" is not a string");
  }
  const WipingString& value = it->get_ref<const WipingString&>();
  return std::string_view(value.data(), value.size());
}

StatusOr<Bytes> GetBytes(const Json& jwk, const char* name) {
  ASSIGN_OR_RETURN(std::string_view text, GetString(jwk, name));
  StatusOr<Bytes> bytes = Base64UrlDecode(text);
  if (!bytes.ok()) {
    return InvalidArgumentError(std::string("JWK \"") + name + "\" is not base64url");
  }
  return bytes;
}

StatusOr<SecretBytes> GetSecret(const Json& jwk, const char* name) {
  ASSIGN_OR_RETURN(Bytes bytes, GetBytes(jwk, name));
  SecretBytes secret(bytes, InsecureSecretAccess());
  SecureZero(bytes);
  return secret;
}

void SetBytes(Json& jwk, const char* name, ByteView value) {
  const std::string encoded = Base64UrlEncode(value);
  jwk[name] = WipingString(encoded.data(), encoded.size());
}

void SetSecret(Json& jwk, const char* name, const SecretBytes& value) {
  std::string encoded = Base64UrlEncode(value.Reveal(InsecureSecretAccess()));
  jwk[name] = WipingString(encoded.data(), encoded.size());
  SecureZero({reinterpret_cast<uint8_t*>(encoded.data()), encoded.size()});
}

std::string DumpPublic(const Json& jwk) {
  const WipingString text = jwk.dump();
  return std::string(text.data(), text.size());
}

SecretBytes DumpSecret(const Json& jwk) {
  const WipingString text = jwk.dump();
  return SecretBytes(AsBytes(std::string_view(text.data(), text.size())), InsecureSecretAccess());
}

StatusOr<Jwk> ParseRsa(const Json& jwk) {
  if (jwk.contains("oth")) {
    return InvalidArgumentError("multi-prime RSA JWKs (\"oth\") are not supported");
  }
  if (!jwk.contains("d")) {
    for (const char* name : {"p", "q", "dp", "dq", "qi"}) {
      if (jwk.contains(name)) {
        return InvalidArgumentError(std::string("RSA JWK has \"") + name + "\" but no \"d\"");
      }
    }
    RsaPublicComponents components;
    ASSIGN_OR_RETURN(components.n, GetBytes(jwk, "n"));
    ASSIGN_OR_RETURN(components.e, GetBytes(jwk, "e"));
    ASSIGN_OR_RETURN(RsaPublicKey key, RsaPublicKey::FromComponents(components));
    return Jwk(std::move(key));
  }
  RsaPrivateComponents components;
  ASSIGN_OR_RETURN(components.n, GetBytes(jwk, "n"));
  ASSIGN_OR_RETURN(components.e, GetBytes(jwk, "e"));
  ASSIGN_OR_RETURN(components.d, GetSecret(jwk, "d"));
  ASSIGN_OR_RETURN(components.p, GetSecret(jwk, "p"));
  ASSIGN_OR_RETURN(components.q, GetSecret(jwk, "q"));
  ASSIGN_OR_RETURN(components.dp, GetSecret(jwk, "dp"));
  ASSIGN_OR_RETURN(components.dq, GetSecret(jwk, "dq"));
  ASSIGN_OR_RETURN(components.qi, GetSecret(jwk, "qi"));
  ASSIGN_OR_RETURN(RsaPrivateKey key, RsaPrivateKey::FromComponents(components));
  return Jwk(std::move(key));
}

StatusOr<EcCurve> ParseCurve(std::string_view crv) {
  if (crv == "P-256") return EcCurve::kP256;
  if (crv == "P-384") return EcCurve::kP384;
  if (crv == "P-521") return EcCurve::kP521;
  return InvalidArgumentError("JWK \"crv\" must be \"P-256\", \"P-384\" or \"P-521\"");
}

StatusOr<Jwk> ParseEc(const Json& jwk) {
  ASSIGN_OR_RETURN(std::string_view crv, GetString(jwk, "crv"));
  ASSIGN_OR_RETURN(EcCurve curve, ParseCurve(crv));
  ASSIGN_OR_RETURN(Bytes x, GetBytes(jwk, "x"));
  ASSIGN_OR_RETURN(Bytes y, GetBytes(jwk, "y"));
  if (!jwk.contains("d")) {
    ASSIGN_OR_RETURN(EcPublicKey key, EcPublicKey::FromCoordinates(curve, x, y));
    return Jwk(std::move(key));
  }
  ASSIGN_OR_RETURN(SecretBytes d, GetSecret(jwk, "d"));
  ASSIGN_OR_RETURN(EcPrivateKey key, EcPrivateKey::FromComponents(curve, x, y, d));
  return Jwk(std::move(key));
}

StatusOr<Json> EcPublicJson(const EcPublicKey& key) {
  const char* crv = EcCurveName(key.curve());
  if (crv == nullptr) return InternalError("EC key has an unknown curve");
  ASSIGN_OR_RETURN(EcCoordinates point, key.Coordinates());
  Json jwk;
  jwk["kty"] = "EC";
  jwk["crv"] = crv;
  SetBytes(jwk, "x", point.x);
  SetBytes(jwk, "y", point.y);
  return jwk;
}

}  // namespace

StatusOr<Jwk> ParseJwk(std::string_view json) {
  if (json.size() > kMaxJwkSize) return InvalidArgumentError("JWK larger than 64 KiB");
  const Json jwk = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!jwk.is_object()) return InvalidArgumentError("JWK is not a JSON object");
  ASSIGN_OR_RETURN(std::string_view kty, GetString(jwk, "kty"));
  if (kty == "RSA") return ParseRsa(jwk);
  if (kty == "EC") return ParseEc(jwk);
  return InvalidArgumentError("JWK \"kty\" must be \"RSA\" or \"EC\"");
}

StatusOr<std::string> ToJwk(const RsaPublicKey& key) {
  ASSIGN_OR_RETURN(RsaPublicComponents components, key.Components());
  Json jwk;
  jwk["kty"] = "RSA";
  SetBytes(jwk, "n", components.n);
  SetBytes(jwk, "e", components.e);
  return DumpPublic(jwk);
}

StatusOr<SecretBytes> ToJwk(const RsaPrivateKey& key) {
  ASSIGN_OR_RETURN(RsaPrivateComponents components, key.Components());
  Json jwk;
  jwk["kty"] = "RSA";
  SetBytes(jwk, "n", components.n);
  SetBytes(jwk, "e", components.e);
  SetSecret(jwk, "d", components.d);
  SetSecret(jwk, "p", components.p);
  SetSecret(jwk, "q", components.q);
  SetSecret(jwk, "dp", components.dp);
  SetSecret(jwk, "dq", components.dq);
  SetSecret(jwk, "qi", components.qi);
  return DumpSecret(jwk);
}

StatusOr<std::string> ToJwk(const EcPublicKey& key) {
  ASSIGN_OR_RETURN(Json jwk, EcPublicJson(key));
  return DumpPublic(jwk);
}

StatusOr<SecretBytes> ToJwk(const EcPrivateKey& key) {
  ASSIGN_OR_RETURN(EcPublicKey public_key, key.PublicKey());
  ASSIGN_OR_RETURN(Json jwk, EcPublicJson(public_key));
  ASSIGN_OR_RETURN(SecretBytes d, key.PrivateScalar());
  SetSecret(jwk, "d", d);
  return DumpSecret(jwk);
}

}  // namespace keyfoundry::crypto
