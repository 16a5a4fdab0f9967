// The CSPRNG: OpenSSL's DRBG (RAND_bytes). Injected as an interface so tests can make
// deterministic runs (STYLE habit 10).
#ifndef KEYFOUNDRY_CRYPTO_RANDOM_H_
#define KEYFOUNDRY_CRYPTO_RANDOM_H_

#include <span>
#include <string>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

// Thread-safe.
class Random {
 public:
  virtual ~Random() = default;
  // Fills `out` with cryptographically secure random bytes, or fails (never returns weak bytes).
  [[nodiscard]] virtual Status Fill(std::span<uint8_t> out) = 0;

  // The process-wide OpenSSL CSPRNG.
  static Random& Secure();
};

StatusOr<Bytes> RandomBytes(size_t n, Random& random = Random::Secure());
StatusOr<SecretBytes> RandomSecret(size_t n, Random& random = Random::Secure());

// A random (version 4) UUID in its lower-case 8-4-4-4-12 text form, as Azure uses for tenant,
// subscription and object ids.
StatusOr<std::string> NewUuid(Random& random = Random::Secure());

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_RANDOM_H_
