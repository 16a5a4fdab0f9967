// SecretBytes: key material and other secrets (STYLE habit 4).
//
// - The buffer is mlock'd where the system allows it (best effort: RLIMIT_MEMLOCK may refuse,
//   which is not an error) so it is not swapped out, kept out of core dumps where it is small
//   enough for the locked pool (4 KiB), and zeroized before it is freed.
// - Equality is constant-time in the contents (the length is not secret).
// - There is no operator<<, no implicit conversion and no way to print it. Reading or writing
//   the raw bytes takes an InsecureSecretAccess token, so every such place is found by
//   `grep -rn InsecureSecretAccess src/`.
//
// Thread safety: like a std::vector; const methods may be called concurrently.
#ifndef KEYFOUNDRY_COMMON_SECRET_BYTES_H_
#define KEYFOUNDRY_COMMON_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/bytes.h"

namespace keyfoundry {

// The token that unlocks a secret's raw bytes. Pass `InsecureSecretAccess()`.
struct InsecureSecretAccess {
  explicit InsecureSecretAccess() = default;
};

class SecretBytes {
 public:
  SecretBytes() = default;
  // `size` zero bytes.
  explicit SecretBytes(size_t size);
  // A copy of `data`; the caller remains responsible for wiping its own copy.
  SecretBytes(ByteView data, InsecureSecretAccess);
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // An explicit copy, so that duplicating a secret is visible at the call site.
  SecretBytes Clone() const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  ByteView Reveal(InsecureSecretAccess) const { return {data_, size_}; }
  std::span<uint8_t> Mutable(InsecureSecretAccess) { return {data_, size_}; }

  // Constant-time in the contents; different lengths compare unequal at once.
  friend bool operator==(const SecretBytes& a, const SecretBytes& b);

 private:
  void Release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool locked_ = false;  // a large secret, mlock'd on its own
  bool pooled_ = false;  // a small secret, in the locked pool
};

// Constant-time equality of two byte strings of equal length (false when lengths differ).
// Use it for MACs, tags, tokens and anything compared against a secret.
bool ConstantTimeEquals(ByteView a, ByteView b);

// Overwrites `data` with zeros in a way the compiler may not elide.
void SecureZero(std::span<uint8_t> data);

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_SECRET_BYTES_H_
