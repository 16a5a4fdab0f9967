// Writes JWT fuzzer inputs (layout: jwt_fuzz_common.h) into the directory given: valid tokens
// signed with the fuzzer's fixed key (they verify, so mutations start past the signature),
// claims objects and headers.
#include <fstream>
#include <string>
#include <vector>

#include "jwt_fuzz_common.h"

using namespace keyfoundry;
using nlohmann::json;

namespace {

bool Write(const std::string& dir, const std::string& name, char mode, std::string_view body) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.put(mode);
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const json base = {{"iss", fuzz::kJwtFuzzIssuer},
                     {"aud", fuzz::kJwtFuzzAudience},
                     {"sub", "00000000-0000-0000-0000-000000000001"},
                     {"oid", "00000000-0000-0000-0000-000000000001"},
                     {"tid", "00000000-0000-0000-0000-000000000002"},
                     {"iat", fuzz::kJwtFuzzNow},
                     {"nbf", fuzz::kJwtFuzzNow},
                     {"exp", fuzz::kJwtFuzzNow + 3600},
                     {"idtyp", "user"},
                     {"upn", "admin"}};
  std::vector<json> claims_sets = {base};
  json expired = base;
  expired["exp"] = fuzz::kJwtFuzzNow - 3600;
  claims_sets.push_back(expired);
  json array_aud = base;
  array_aud["aud"] = {"https://other", fuzz::kJwtFuzzAudience};
  claims_sets.push_back(array_aud);
  json nested = base;
  nested["x"] = {{"a", {1, 2.5, nullptr, true, "s"}}, {"b", json::object()}};
  claims_sets.push_back(nested);

  int n = 0;
  for (const json& claims : claims_sets) {
    auto token = crypto::SignJwt(fuzz::JwtFuzzKey(), fuzz::kJwtFuzzKid, claims);
    if (!token.ok() || !crypto::VerifyJwt(*token, fuzz::JwtFuzzKeys()).ok()) return 1;
    const std::string suffix = std::to_string(n++);
    if (!Write(dir, "token-" + suffix, 0, *token) ||
        !Write(dir, "claims-" + suffix, 1, claims.dump())) {
      return 1;
    }
  }
  const char* headers[] = {
      R"({"alg":"ES256","kid":"fuzz-key","typ":"JWT"})",
      R"({"alg":"none","kid":"fuzz-key"})",
      R"({"alg":"HS256","kid":"fuzz-key"})",
      R"({"alg":"ES256","kid":"fuzz-key","crit":["b64"],"b64":false})",
  };
  for (const char* header : headers) {
    if (!Write(dir, "header-" + std::to_string(n++), 2, header)) return 1;
  }
  return 0;
}
