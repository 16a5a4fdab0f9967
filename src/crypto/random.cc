#include "crypto/random.h"

#include <openssl/rand.h>

#include <climits>

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

}  // namespace keyfoundry::crypto
