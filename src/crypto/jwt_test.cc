#include "crypto/jwt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <set>

#include "common/encoding.h"
#include "crypto/jwk.h"
#include "crypto/test_util.h"

namespace keyfoundry::crypto {
namespace {

using nlohmann::json;
using std::chrono::seconds;
using std::chrono::system_clock;

// A fixed P-256 key (d = 0x11 repeated) whose public point and RFC 7638 thumbprint were computed
// with Python's `cryptography` and hashlib.
constexpr std::string_view kFixedX =
    "0217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed";
constexpr std::string_view kFixedY =
    "194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794";
constexpr std::string_view kFixedThumbprint = "OEurnbzOGbRad4qOD9lNK8VYMQGvg5cmLnVKeydAqL4";
constexpr std::string_view kKid = "test-key";
constexpr int64_t kNow = 1700000000;

const EcPrivateKey& FixedKey() {
  static const EcPrivateKey* const key = new EcPrivateKey(*EcPrivateKey::FromComponents(
      EcCurve::kP256, Hex(kFixedX), Hex(kFixedY), Secret(Bytes(32, 0x11))));
  return *key;
}

JwtKeySet Keys() {
  JwtKeySet keys;
  EXPECT_TRUE(keys.Add(std::string(kKid), *FixedKey().PublicKey()).ok());
  return keys;
}

json GoodClaims() {
  return {{"iss", "https://issuer.example/t/v2.0"},
          {"aud", "https://vault.localhost"},
          {"sub", "s"},
          {"iat", kNow},
          {"nbf", kNow},
          {"exp", kNow + 3600}};
}

JwtClaimPolicy Policy() {
  return {.issuer = "https://issuer.example/t/v2.0",
          .audiences = {"https://vault.localhost"},
          .clock_skew = seconds(60)};
}

system_clock::time_point At(int64_t unix_seconds) {
  return system_clock::time_point(seconds(unix_seconds));
}

std::string B64(std::string_view text) { return Base64UrlEncode(AsBytes(text)); }

// A token with the given header and claims text, signed (ES256) with the fixed key.
std::string SignRaw(std::string_view header, std::string_view claims) {
  std::string input = B64(header) + "." + B64(claims);
  Bytes sig = *FixedKey().Sign(HashAlgorithm::kSha256, AsBytes(input));
  return input + "." + Base64UrlEncode(sig);
}

// The failure VerifyJwt gives `token` (and a test failure if it is accepted).
JwtFailure FailureOf(std::string_view token) {
  JwtFailure failure{};
  auto verified = VerifyJwt(token, Keys(), &failure);
  EXPECT_FALSE(verified.ok()) << token;
  if (!verified.ok()) EXPECT_EQ(verified.status(), UnauthenticatedError("the token is invalid"));
  return failure;
}

JwtFailure ClaimFailure(const json& claims, int64_t now = kNow) {
  JwtFailure failure{};
  Status status = CheckJwtClaims(claims, Policy(), At(now), &failure);
  EXPECT_FALSE(status.ok()) << claims.dump();
  return failure;
}

TEST(JwtTest, SignVerifyRoundTrip) {
  auto token = SignJwt(FixedKey(), kKid, GoodClaims());
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(std::count(token->begin(), token->end(), '.'), 2);
  auto verified = VerifyJwt(*token, Keys());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->claims, GoodClaims());
  EXPECT_EQ(verified->header, json({{"alg", "ES256"}, {"kid", kKid}, {"typ", "JWT"}}));
  EXPECT_TRUE(CheckJwtClaims(verified->claims, Policy(), At(kNow)).ok());
}

TEST(JwtTest, KeySetRefusesWrongCurveDuplicateAndBadKid) {
  JwtKeySet keys;
  EXPECT_EQ(keys.Add("k", *EcPrivateKey::Generate(EcCurve::kP384)->PublicKey()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(keys.Add("", *FixedKey().PublicKey()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(keys.Add(std::string(257, 'k'), *FixedKey().PublicKey()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(keys.Add("k", *FixedKey().PublicKey()).ok());
  EXPECT_EQ(keys.Add("k", *FixedKey().PublicKey()).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_NE(keys.Find("k"), nullptr);
  EXPECT_EQ(keys.Find("K"), nullptr);
}

TEST(JwtTest, SignRefusesBadInput) {
  EXPECT_EQ(SignJwt(FixedKey(), kKid, json::array()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJwt(FixedKey(), "", GoodClaims()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJwt(*EcPrivateKey::Generate(EcCurve::kP384), kKid, GoodClaims()).status().code(),
            StatusCode::kInvalidArgument);
  json bad_utf8 = GoodClaims();
  bad_utf8["name"] = std::string("\xff\xfe");
  EXPECT_EQ(SignJwt(FixedKey(), kKid, bad_utf8).status().code(), StatusCode::kInvalidArgument);
  json huge = GoodClaims();
  huge["pad"] = std::string(kMaxJwtSize, 'a');
  EXPECT_EQ(SignJwt(FixedKey(), kKid, huge).status().code(), StatusCode::kInvalidArgument);
}

TEST(JwtTest, VerifyFailsWhenAnyCharacterChanged) {
  const std::string token = *SignJwt(FixedKey(), kKid, GoodClaims());
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '.') continue;
    for (char replacement : {'A', 'B', '_'}) {
      if (token[i] == replacement) continue;
      std::string tampered = token;
      tampered[i] = replacement;
      EXPECT_FALSE(VerifyJwt(tampered, Keys()).ok()) << "position " << i;
    }
  }
}

TEST(JwtTest, VerifyFailsWhenHeaderOrClaimsReencodedWithChanges) {
  const std::string token = *SignJwt(FixedKey(), kKid, GoodClaims());
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.find('.', dot1 + 1);
  const std::string signature = token.substr(dot2 + 1);
  json claims = GoodClaims();
  claims["exp"] = kNow + 999999;
  std::string forged = token.substr(0, dot1) + "." + B64(claims.dump()) + "." + signature;
  EXPECT_EQ(FailureOf(forged), JwtFailure::kBadSignature);
  // The same header with whitespace: same meaning, different signed bytes.
  forged = B64(R"({"alg":"ES256", "kid":"test-key","typ":"JWT"})") + token.substr(dot1);
  EXPECT_EQ(FailureOf(forged), JwtFailure::kBadSignature);
  // A valid signature of other bytes, and a signature moved from another token.
  const std::string other = *SignJwt(FixedKey(), kKid, claims);
  EXPECT_EQ(FailureOf(token.substr(0, dot2) + other.substr(other.rfind('.'))),
            JwtFailure::kBadSignature);
}

TEST(JwtTest, VerifyRefusesAlgNone) {
  const std::string claims = GoodClaims().dump();
  for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
    const std::string header = std::string(R"({"alg":")") + alg + R"(","kid":"test-key"})";
    EXPECT_EQ(FailureOf(B64(header) + "." + B64(claims) + "." + B64("x")), JwtFailure::kAlgNone);
    // The unsecured form has an empty signature.
    EXPECT_EQ(FailureOf(B64(header) + "." + B64(claims) + "."), JwtFailure::kMalformed);
  }
}

TEST(JwtTest, VerifyRefusesHs256WithThePublicKeyAsHmacSecret) {
  const std::string claims = GoodClaims().dump();
  const std::string input =
      B64(R"({"alg":"HS256","kid":"test-key","typ":"JWT"})") + "." + B64(claims);
  const std::string jwk = *ToJwk(*FixedKey().PublicKey());
  const EcCoordinates point = *FixedKey().PublicKey()->Coordinates();
  Bytes uncompressed = {0x04};
  uncompressed.insert(uncompressed.end(), point.x.begin(), point.x.end());
  uncompressed.insert(uncompressed.end(), point.y.begin(), point.y.end());
  for (ByteView secret : {AsBytes(jwk), ByteView(uncompressed)}) {
    uint8_t mac[EVP_MAX_MD_SIZE];
    size_t mac_size = 0;
    ASSERT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                        reinterpret_cast<const uint8_t*>(input.data()), input.size(), mac,
                        sizeof(mac), &mac_size),
              nullptr);
    EXPECT_EQ(FailureOf(input + "." + Base64UrlEncode(ByteView(mac, mac_size))),
              JwtFailure::kAlgNotAllowed);
  }
}

TEST(JwtTest, VerifyRefusesEveryOtherAlgorithm) {
  const std::string claims = GoodClaims().dump();
  for (const char* header : {
           R"({"alg":"HS256","kid":"test-key"})",
           R"({"alg":"RS256","kid":"test-key"})",
           R"({"alg":"PS256","kid":"test-key"})",
           R"({"alg":"ES384","kid":"test-key"})",
           R"({"alg":"ES256K","kid":"test-key"})",
           R"({"alg":"es256","kid":"test-key"})",
           R"({"alg":"ES256 ","kid":"test-key"})",
           R"({"alg":["ES256"],"kid":"test-key"})",
           R"({"alg":null,"kid":"test-key"})",
           R"({"kid":"test-key"})",
       }) {
    // Signed with the right key by ES256, so only the header is wrong.
    EXPECT_EQ(FailureOf(SignRaw(header, claims)), JwtFailure::kAlgNotAllowed) << header;
  }
}

TEST(JwtTest, VerifyChecksKidTypAndCrit) {
  const std::string claims = GoodClaims().dump();
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256"})", claims)), JwtFailure::kMissingKeyId);
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256","kid":7})", claims)), JwtFailure::kMissingKeyId);
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256","kid":"other"})", claims)),
            JwtFailure::kUnknownKeyId);
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256","kid":"TEST-KEY"})", claims)),
            JwtFailure::kUnknownKeyId);
  EXPECT_EQ(
      FailureOf(SignRaw(R"({"alg":"ES256","kid":"test-key","crit":["exp"],"exp":1})", claims)),
      JwtFailure::kCritical);
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256","kid":"test-key","typ":"JOSE"})", claims)),
            JwtFailure::kBadType);
  EXPECT_EQ(FailureOf(SignRaw(R"({"alg":"ES256","kid":"test-key","typ":1})", claims)),
            JwtFailure::kBadType);
  for (const char* header :
       {R"({"alg":"ES256","kid":"test-key"})", R"({"alg":"ES256","kid":"test-key","typ":"jwt"})",
        R"({"alg":"ES256","kid":"test-key","typ":"at+jwt"})",
        R"({"alg":"ES256","kid":"test-key","x5u":"https://evil"})"}) {
    EXPECT_TRUE(VerifyJwt(SignRaw(header, claims), Keys()).ok()) << header;
  }
}

TEST(JwtTest, VerifyRefusesHeaderThatIsNotAStrictObject) {
  const std::string claims = GoodClaims().dump();
  for (const char* header : {
           "[]", R"("ES256")", "null", "1", "{", "not json", "",
           R"({"alg":"ES256","kid":"test-key"} x)",
           R"({"alg":"ES256","kid":"test-key","alg":"ES256"})",  // duplicate member
           R"({"alg":"none","alg":"ES256","kid":"test-key"})",
           R"({"alg":"ES256","kid":"test-key","x":{"a":1,"a":2}})",
           "{\"alg\":\"ES256\",\"kid\":\"test-key\",\"n\":\"\xff\"}",  // not UTF-8
       }) {
    const JwtFailure failure = FailureOf(SignRaw(header, claims));
    // An empty header segment is malformed before it is anything else.
    EXPECT_TRUE(failure == JwtFailure::kBadHeader || failure == JwtFailure::kMalformed)
        << header << " " << JwtFailureName(failure);
  }
}

TEST(JwtTest, VerifyRefusesClaimsThatAreNotAStrictObjectEvenWhenSigned) {
  const std::string header = R"({"alg":"ES256","kid":"test-key"})";
  for (const char* claims : {"[]", R"("x")", "null", "{", R"({"exp":1,"exp":2})", "{} {}"}) {
    EXPECT_EQ(FailureOf(SignRaw(header, claims)), JwtFailure::kBadClaims) << claims;
  }
}

TEST(JwtTest, VerifyRefusesSignaturesOfTheWrongSizeOrKey) {
  const std::string token = *SignJwt(FixedKey(), kKid, GoodClaims());
  const std::string input = token.substr(0, token.rfind('.'));
  const Bytes sig = *Base64UrlDecode(token.substr(token.rfind('.') + 1));
  Bytes longer = sig;
  longer.push_back(0);
  for (const Bytes& bad : {Bytes(sig.begin(), sig.end() - 1), longer, Bytes(1, 0), Bytes(72, 1)}) {
    EXPECT_EQ(FailureOf(input + "." + Base64UrlEncode(bad)), JwtFailure::kBadSignatureSize);
  }
  EXPECT_EQ(FailureOf(input + "." + Base64UrlEncode(Bytes(64, 0))), JwtFailure::kBadSignature);
  // Signed by another key under the same kid.
  const EcPrivateKey other = *EcPrivateKey::Generate(EcCurve::kP256);
  EXPECT_EQ(FailureOf(*SignJwt(other, kKid, GoodClaims())), JwtFailure::kBadSignature);
}

TEST(JwtTest, VerifyRefusesBadShapesAndEncodings) {
  const std::string token = *SignJwt(FixedKey(), kKid, GoodClaims());
  const size_t dot1 = token.find('.');
  const std::string h = token.substr(0, dot1);
  EXPECT_EQ(FailureOf(std::string(kMaxJwtSize + 1, 'a')), JwtFailure::kTooLarge);
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("..."),
        std::string("abc"), std::string("a.b"), token + ".", token + ".x", "." + token,
        h + ".." + h, std::string("a.b.c.d")}) {
    EXPECT_EQ(FailureOf(bad), JwtFailure::kMalformed) << bad;
  }
  EXPECT_EQ(FailureOf(h + "=." + token.substr(dot1 + 1)), JwtFailure::kBadEncoding);
  EXPECT_EQ(FailureOf(token + "="), JwtFailure::kBadEncoding);
  EXPECT_EQ(FailureOf(" " + token), JwtFailure::kBadEncoding);
  EXPECT_EQ(FailureOf(token + "\n"), JwtFailure::kBadEncoding);
  std::string standard_alphabet = token;
  standard_alphabet[1] = '+';
  EXPECT_EQ(FailureOf(standard_alphabet), JwtFailure::kBadEncoding);
  for (const char* garbage :
       {"Bearer", "null", "\x01\x02.\x03.\x04", "a.b.c", "eyJ.eyJ.eyJ", "\xff\xff.\xff.\xff"}) {
    EXPECT_FALSE(VerifyJwt(garbage, Keys()).ok()) << garbage;
  }
}

TEST(JwtTest, ClaimsAcceptedWithinSkew) {
  EXPECT_TRUE(CheckJwtClaims(GoodClaims(), Policy(), At(kNow + 3600 + 59)).ok());
  EXPECT_TRUE(CheckJwtClaims(GoodClaims(), Policy(), At(kNow - 60)).ok());
  json array_aud = GoodClaims();
  array_aud["aud"] = {"https://other", "https://vault.localhost"};
  EXPECT_TRUE(CheckJwtClaims(array_aud, Policy(), At(kNow)).ok());
  json no_nbf = GoodClaims();
  no_nbf.erase("nbf");
  EXPECT_TRUE(CheckJwtClaims(no_nbf, Policy(), At(kNow)).ok());
}

TEST(JwtTest, ClaimsExpired) {
  JwtFailure failure{};
  Status status = CheckJwtClaims(GoodClaims(), Policy(), At(kNow + 3600 + 60), &failure);
  EXPECT_EQ(status, UnauthenticatedError("the token has expired"));
  EXPECT_EQ(failure, JwtFailure::kExpired);
  JwtClaimPolicy no_skew = Policy();
  no_skew.clock_skew = seconds(0);
  EXPECT_EQ(CheckJwtClaims(GoodClaims(), no_skew, At(kNow + 3600)).message(),
            "the token has expired");
  EXPECT_TRUE(CheckJwtClaims(GoodClaims(), no_skew, At(kNow + 3599)).ok());
}

TEST(JwtTest, ClaimsNotYetValidOrIssuedInFuture) {
  EXPECT_EQ(ClaimFailure(GoodClaims(), kNow - 61), JwtFailure::kNotYetValid);
  json iat_future = GoodClaims();
  iat_future["nbf"] = kNow - 1000;
  iat_future["iat"] = kNow + 61;
  EXPECT_EQ(ClaimFailure(iat_future), JwtFailure::kIssuedInFuture);
}

TEST(JwtTest, ClaimsWrongIssuerOrAudience) {
  json claims = GoodClaims();
  claims["iss"] = "https://issuer.example/other/v2.0";
  EXPECT_EQ(ClaimFailure(claims), JwtFailure::kWrongIssuer);
  claims = GoodClaims();
  claims["aud"] = "https://management.localhost";
  EXPECT_EQ(ClaimFailure(claims), JwtFailure::kWrongAudience);
  claims["aud"] = json::array();
  EXPECT_EQ(ClaimFailure(claims), JwtFailure::kWrongAudience);
  claims["aud"] = {"https://vault.localhost", 7};
  EXPECT_EQ(ClaimFailure(claims), JwtFailure::kBadClaimType);
  claims["aud"] = "https://VAULT.localhost";  // exact comparison here
  EXPECT_EQ(ClaimFailure(claims), JwtFailure::kWrongAudience);
}

TEST(JwtTest, ClaimsMissingOrMistyped) {
  for (const char* name : {"exp", "iat", "iss", "aud"}) {
    json claims = GoodClaims();
    claims.erase(name);
    EXPECT_EQ(ClaimFailure(claims), JwtFailure::kMissingClaim) << name;
  }
  const std::pair<const char*, json> mistyped[] = {
      {"exp", "1700003600"},  {"exp", 1.7e9}, {"exp", json(UINT64_MAX)}, {"nbf", true},
      {"iat", json::array()}, {"iss", 1},     {"aud", json::object()},
  };
  for (const auto& [name, value] : mistyped) {
    json claims = GoodClaims();
    claims[name] = value;
    EXPECT_EQ(ClaimFailure(claims), JwtFailure::kBadClaimType) << name << "=" << value.dump();
  }
  EXPECT_EQ(ClaimFailure(json::array()), JwtFailure::kBadClaims);
}

TEST(JwtTest, FailureNamesAreDistinct) {
  std::set<std::string_view> names;
  for (int i = 1; i <= 20; ++i) names.insert(JwtFailureName(static_cast<JwtFailure>(i)));
  EXPECT_EQ(names.size(), 20u);
  EXPECT_EQ(names.count("unknown"), 0u);
  EXPECT_EQ(JwtFailureName(JwtFailure{}), "unknown");
}

TEST(JwtTest, ThumbprintMatchesRfc7638ComputedElsewhere) {
  auto thumbprint = JwkThumbprint(*FixedKey().PublicKey());
  ASSERT_TRUE(thumbprint.ok()) << thumbprint.status();
  EXPECT_EQ(*thumbprint, kFixedThumbprint);
  EXPECT_NE(*JwkThumbprint(*EcPrivateKey::Generate(EcCurve::kP256)->PublicKey()), kFixedThumbprint);
}

}  // namespace
}  // namespace keyfoundry::crypto
