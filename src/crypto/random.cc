#include "crypto/random.h"

#include <openssl/rand.h>

#include <climits>

#include "common/encoding.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {
namespace {

class OpenSslRandom final : public Random {
 public:
  Status Fill(std::span<uint8_t> out) override {
    while (!out.empty()) {
      size_t n = std::min<size_t>(out.size(), INT_MAX);
      if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
        return OsslError(StatusCode::kInternal, "the CSPRNG failed");
      }
      out = out.subspan(n);
    }
    return OkStatus();
  }
};

}  // namespace

Random& Random::Secure() {
  static OpenSslRandom random;
  return random;
}

StatusOr<Bytes> RandomBytes(size_t n, Random& random) {
  Bytes out(n);
  RETURN_IF_ERROR(random.Fill(out));
  return out;
}

StatusOr<SecretBytes> RandomSecret(size_t n, Random& random) {
  SecretBytes out(n);
  RETURN_IF_ERROR(random.Fill(out.Mutable(InsecureSecretAccess())));
  return out;
}

StatusOr<std::string> NewUuid(Random& random) {
  ASSIGN_OR_RETURN(Bytes b, RandomBytes(16, random));
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string hex = HexEncode(b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

}  // namespace keyfoundry::crypto
