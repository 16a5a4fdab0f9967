#include "crypto/jwk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

using nlohmann::json;
using testing::HasSubstr;

// Generating RSA keys is slow, so the tests share one (never freed: it outlives OpenSSL's
// cleanup).
const RsaPrivateKey& RsaKey() {
  static const RsaPrivateKey* const key = new RsaPrivateKey(*RsaPrivateKey::Generate(2048));
  return *key;
}

std::string_view Text(const SecretBytes& secret) {
  return AsStringView(secret.Reveal(InsecureSecretAccess()));
}

json Json(std::string_view text) { return json::parse(text); }

// Parses `jwk` and returns the status of the parse alone.
Status ParseStatus(const json& jwk) { return ParseJwk(jwk.dump()).status(); }

template <typename Key>
Key ParseAs(std::string_view text) {
  StatusOr<Jwk> jwk = ParseJwk(text);
  EXPECT_TRUE(jwk.ok()) << jwk.status();
  EXPECT_TRUE(jwk.ok() && std::holds_alternative<Key>(*jwk));
  return std::get<Key>(*std::move(jwk));
}

json RsaPrivateJson() { return Json(Text(*ToJwk(RsaKey()))); }

std::vector<std::string> Members(const json& jwk) {
  std::vector<std::string> names;
  for (const auto& [name, value] : jwk.items()) names.push_back(name);
  return names;
}

TEST(JwkTest, RsaPrivateKeyRoundTrips) {
  const json jwk = RsaPrivateJson();
  EXPECT_THAT(Members(jwk),
              testing::UnorderedElementsAre("kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"));
  EXPECT_EQ(jwk["kty"], "RSA");
  EXPECT_EQ(jwk["e"], "AQAB");
  const RsaPrivateKey parsed = ParseAs<RsaPrivateKey>(jwk.dump());
  const RsaPrivateComponents a = *RsaKey().Components();
  const RsaPrivateComponents b = *parsed.Components();
  EXPECT_EQ(a.n, b.n);
  EXPECT_TRUE(a.d == b.d && a.p == b.p && a.q == b.q && a.dp == b.dp && a.dq == b.dq &&
              a.qi == b.qi);
}

TEST(JwkTest, RsaPublicKeyRoundTripsWithMinimalUnpaddedIntegers) {
  const std::string text = *ToJwk(*RsaKey().PublicKey());
  EXPECT_EQ(text.find('='), std::string::npos);
  const json jwk = Json(text);
  EXPECT_THAT(Members(jwk), testing::UnorderedElementsAre("kty", "n", "e"));
  const Bytes n = *Base64UrlDecode(jwk["n"].get<std::string>());
  EXPECT_EQ(n.size(), 256u);
  EXPECT_NE(n[0], 0);
  const RsaPublicKey parsed = ParseAs<RsaPublicKey>(text);
  EXPECT_EQ(parsed.Components()->n, n);
}

TEST(JwkTest, EcKeysRoundTripWithFixedWidthMembers) {
  for (auto [curve, crv] : {std::pair{EcCurve::kP256, "P-256"}, std::pair{EcCurve::kP384, "P-384"},
                            std::pair{EcCurve::kP521, "P-521"}}) {
    SCOPED_TRACE(crv);
    const EcPrivateKey key = *EcPrivateKey::Generate(curve);
    const json private_jwk = Json(Text(*ToJwk(key)));
    EXPECT_THAT(Members(private_jwk), testing::UnorderedElementsAre("kty", "crv", "x", "y", "d"));
    EXPECT_EQ(private_jwk["crv"], crv);
    const size_t encoded_size = (EcFieldSize(curve) * 4 + 2) / 3;  // base64url, no padding
    for (const char* member : {"x", "y", "d"}) {
      EXPECT_EQ(private_jwk[member].get<std::string>().size(), encoded_size) << member;
    }
    const EcPrivateKey parsed = ParseAs<EcPrivateKey>(private_jwk.dump());
    EXPECT_EQ(parsed.curve(), curve);
    EXPECT_TRUE(*parsed.PrivateScalar() == *key.PrivateScalar());

    const std::string public_text = *ToJwk(*key.PublicKey());
    const json public_jwk = Json(public_text);
    EXPECT_THAT(Members(public_jwk), testing::UnorderedElementsAre("kty", "crv", "x", "y"));
    EXPECT_EQ(public_jwk["x"], private_jwk["x"]);
    const EcPublicKey parsed_public = ParseAs<EcPublicKey>(public_text);
    const Bytes signature = *key.Sign(HashAlgorithm::kSha256, AsBytes("m"));
    EXPECT_TRUE(parsed_public.Verify(HashAlgorithm::kSha256, AsBytes("m"), signature).ok());
  }
}

// RFC 7515 appendix A.3: the ES256 example JWS, verified with the public key of its JWK.
TEST(JwkTest, VerifiesRfc7515Es256Example) {
  const EcPublicKey key = ParseAs<EcPublicKey>(R"({"kty":"EC","crv":"P-256",
      "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})");
  const std::string signing_input =
      "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
      "LmNvbS9pc19yb290Ijp0cnVlfQ";
  const Bytes signature = *Base64UrlDecode(
      "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q");
  EXPECT_TRUE(key.Verify(HashAlgorithm::kSha256, AsBytes(signing_input), signature).ok());
}

TEST(JwkTest, AcceptsPaddedBase64UrlAndRsaLeadingZeros) {
  json jwk = Json(*ToJwk(*RsaKey().PublicKey()));
  Bytes n = *Base64UrlDecode(jwk["n"].get<std::string>());
  n.insert(n.begin(), 0);
  jwk["n"] = Base64UrlEncode(n) + "=";  // 257 bytes encode to 343 characters: one pad
  jwk["kid"] = "ignored";
  const RsaPublicKey parsed = ParseAs<RsaPublicKey>(jwk.dump());
  EXPECT_EQ(parsed.Components()->n.size(), 256u);
}

// Each case starts from a good JWK and changes one thing.
TEST(JwkTest, RejectsMalformedRsaJwksWithAClearMessage) {
  struct Case {
    std::function<void(json&)> change;
    std::string message;
  };
  const Case cases[] = {
      {[](json& j) { j.erase("kty"); }, "JWK has no \"kty\""},
      {[](json& j) { j["kty"] = "oct"; }, "JWK \"kty\" must be \"RSA\" or \"EC\""},
      {[](json& j) { j["kty"] = 1; }, "JWK \"kty\" is not a string"},
      {[](json& j) { j.erase("n"); }, "JWK has no \"n\""},
      {[](json& j) { j["n"] = 42; }, "JWK \"n\" is not a string"},
      {[](json& j) { j["e"] = "AQ+B"; }, "JWK \"e\" is not base64url"},
      {[](json& j) { j.erase("qi"); }, "JWK has no \"qi\""},
      {[](json& j) { j.erase("d"); }, "RSA JWK has \"p\" but no \"d\""},
      {[](json& j) { j["oth"] = json::array(); },
       "multi-prime RSA JWKs (\"oth\") are not supported"},
      {[](json& j) { j["dp"] = j["dq"]; }, "invalid RSA private key"},
      {[](json& j) { j["n"] = "AQAB"; }, "RSA private key component larger than the modulus"},
  };
  for (const Case& c : cases) {
    json jwk = RsaPrivateJson();
    c.change(jwk);
    const Status status = ParseStatus(jwk);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(JwkTest, RejectsMalformedEcJwksWithAClearMessage) {
  const EcPrivateKey key = *EcPrivateKey::Generate(EcCurve::kP256);
  const json good = Json(Text(*ToJwk(key)));
  struct Case {
    std::function<void(json&)> change;
    std::string message;
  };
  const Case cases[] = {
      {[](json& j) { j.erase("crv"); }, "JWK has no \"crv\""},
      {[](json& j) { j["crv"] = "P-192"; }, "JWK \"crv\" must be"},
      {[](json& j) { j["crv"] = "P-384"; }, "must be 48 bytes each for P-384"},
      {[](json& j) { j.erase("y"); }, "JWK has no \"y\""},
      {[](json& j) { j["x"] = Base64UrlEncode(Bytes(31, 1)); }, "must be 32 bytes each for P-256"},
      {[](json& j) { j["x"] = Base64UrlEncode(Bytes(32, 1)); }, "is not a point on P-256"},
      {[](json& j) { j["d"] = Base64UrlEncode(Bytes(31, 1)); }, "d must be 32 bytes for P-256"},
      {[](json& j) { j["d"] = Base64UrlEncode(Bytes(32, 1)); }, "does not match the point"},
  };
  for (const Case& c : cases) {
    json jwk = good;
    c.change(jwk);
    const Status status = ParseStatus(jwk);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(JwkTest, RejectsTextThatIsNotAJsonObject) {
  for (std::string_view text : {"", "[]", "\"RSA\"", "{", "{\"kty\":\"EC\"", "null"}) {
    EXPECT_EQ(ParseJwk(text).status(), InvalidArgumentError("JWK is not a JSON object")) << text;
  }
  const std::string huge = "{\"kty\":\"EC\",\"pad\":\"" + std::string(kMaxJwkSize, 'a') + "\"}";
  EXPECT_EQ(ParseJwk(huge).status().code(), StatusCode::kInvalidArgument);
}

// Wycheproof's keys come as JWK and as DER: both imports must give the same key.
TEST(JwkTest, ImportsWycheproofKeysLikeTheirDer) {
  const json oaep = LoadWycheproof("rsa_oaep_2048_sha1_mgf1sha1_test.json")["testGroups"][0];
  const RsaPrivateKey from_jwk = ParseAs<RsaPrivateKey>(oaep["privateKeyJwk"].dump());
  const RsaPrivateComponents a = *from_jwk.Components();
  const RsaPrivateComponents b =
      *RsaPrivateKey::FromPkcs8Der(Secret(Hex(oaep, "privateKeyPkcs8")))->Components();
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.e, b.e);
  EXPECT_TRUE(a.d == b.d && a.p == b.p && a.q == b.q && a.dp == b.dp && a.dq == b.dq &&
              a.qi == b.qi);

  const json pss = LoadWycheproof("rsa_pss_2048_sha256_mgf1_32_test.json")["testGroups"][0];
  EXPECT_EQ(ParseAs<RsaPublicKey>(pss["publicKeyJwk"].dump()).Components()->n,
            RsaPublicKey::FromDer(Hex(pss, "publicKeyDer"))->Components()->n);

  const json ecdsa = LoadWycheproof("ecdsa_secp256r1_sha256_p1363_test.json")["testGroups"][0];
  const EcCoordinates point = *ParseAs<EcPublicKey>(ecdsa["publicKeyJwk"].dump()).Coordinates();
  Bytes uncompressed = {0x04};
  uncompressed.insert(uncompressed.end(), point.x.begin(), point.x.end());
  uncompressed.insert(uncompressed.end(), point.y.begin(), point.y.end());
  EXPECT_EQ(uncompressed, Hex(ecdsa["publicKey"], "uncompressed"));
}

}  // namespace
}  // namespace keyfoundry::crypto
