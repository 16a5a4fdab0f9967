#include "common/secret_bytes.h"

#include <string.h>  // explicit_bzero
#include <sys/mman.h>

#include <cstring>
#include <new>
#include <utility>

namespace keyfoundry {

void SecureZero(std::span<uint8_t> data) {
  if (!data.empty()) explicit_bzero(data.data(), data.size());
}

bool ConstantTimeEquals(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  // The accumulator is volatile so the loop cannot be turned into an early-exit memcmp.
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  data_ = new uint8_t[size]();
  locked_ = mlock(data_, size) == 0;
}

SecretBytes::SecretBytes(ByteView data, InsecureSecretAccess) : SecretBytes(data.size()) {
  if (!data.empty()) std::memcpy(data_, data.data(), data.size());
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const {
  return SecretBytes(Reveal(InsecureSecretAccess()), InsecureSecretAccess());
}

void SecretBytes::Release() {
  if (data_ == nullptr) return;
  SecureZero({data_, size_});
  if (locked_) munlock(data_, size_);
  delete[] data_;
  data_ = nullptr;
  size_ = 0;
  locked_ = false;
}

bool operator==(const SecretBytes& a, const SecretBytes& b) {
  return ConstantTimeEquals(a.Reveal(InsecureSecretAccess()), b.Reveal(InsecureSecretAccess()));
}

}  // namespace keyfoundry
