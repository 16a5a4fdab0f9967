// What the envelope fuzzer and its seed generator share: the fixed key and object id, and
// the input layout (a key block followed by the stored content).
#ifndef KEYFOUNDRY_TESTS_FUZZ_ENVELOPE_FUZZ_COMMON_H_
#define KEYFOUNDRY_TESTS_FUZZ_ENVELOPE_FUZZ_COMMON_H_

#include "encryption/envelope.h"

namespace keyfoundry::fuzz {

inline constexpr std::string_view kFuzzObjectId = "fuzz-object";

// A fixed, public key: the fuzzer must be able to get past authentication for inputs derived
// from valid seeds.
inline const encryption::GenerationKey& FuzzGenerationKey() {
  static const encryption::GenerationKey key =
      *encryption::GenerationKey::New(1, SecretBytes(Bytes(32, 0x42), InsecureSecretAccess()));
  return key;
}

}  // namespace keyfoundry::fuzz

#endif  // KEYFOUNDRY_TESTS_FUZZ_ENVELOPE_FUZZ_COMMON_H_
