#include "common/secret_bytes.h"

#include <string.h>  // explicit_bzero
#include <sys/mman.h>

#include <array>
#include <cstring>
#include <new>
#include <utility>

#include "common/mutex.h"

namespace keyfoundry {
namespace {

// Small secrets (keys, passwords: up to kMaxPooled bytes) live in a pool of pages that are
// mlock'd once and excluded from core dumps. Locking each allocation on its own costs two
// system calls and splits the process's memory map; measured, that was most of the time
// needed to seal a 4 KiB object. Slots come in power-of-two size classes, are zeroed when
// freed and reused; the pool's pages are never returned (its size is the peak of live
// secrets). Larger secrets get their own allocation, locked alone.
class LockedPool {
 public:
  static constexpr size_t kMinSlot = 32;
  static constexpr size_t kMaxPooled = 4096;
  static constexpr size_t kChunkSize = size_t{256} * 1024;

  static LockedPool& Get() {
    static LockedPool* pool = new LockedPool();  // never destroyed: secrets may outlive main
    return *pool;
  }

  // Returns a zeroed slot of at least `size` (<= kMaxPooled) bytes, or nullptr.
  uint8_t* Allocate(size_t size) {
    size_t cls = ClassOf(size);
    MutexLock lock(&mu_);
    if (FreeSlot* slot = free_[cls]) {
      free_[cls] = slot->next;
      std::memset(slot, 0, sizeof(FreeSlot));
      return reinterpret_cast<uint8_t*>(slot);
    }
    size_t slot_size = kMinSlot << cls;
    if (chunk_ == nullptr || chunk_used_ + slot_size > kChunkSize) {
      void* chunk =
          mmap(nullptr, kChunkSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (chunk == MAP_FAILED) return nullptr;
      mlock(chunk, kChunkSize);  // best effort: RLIMIT_MEMLOCK may refuse
      madvise(chunk, kChunkSize, MADV_DONTDUMP);
      chunk_ = static_cast<uint8_t*>(chunk);
      chunk_used_ = 0;
    }
    uint8_t* slot = chunk_ + chunk_used_;
    chunk_used_ += slot_size;
    return slot;  // fresh anonymous pages are zero
  }

  // Zeroes and recycles a slot from Allocate(size).
  void Free(uint8_t* slot, size_t size) {
    size_t cls = ClassOf(size);
    SecureZero({slot, kMinSlot << cls});
    MutexLock lock(&mu_);
    auto* free_slot = reinterpret_cast<FreeSlot*>(slot);
    free_slot->next = free_[cls];
    free_[cls] = free_slot;
  }

 private:
  struct FreeSlot {
    FreeSlot* next;
  };
  static constexpr size_t kClasses = 8;  // 32 .. 4096
  static size_t ClassOf(size_t size) {
    size_t cls = 0;
    while ((kMinSlot << cls) < size) ++cls;
    return cls;
  }

  Mutex mu_;
  std::array<FreeSlot*, kClasses> free_ GUARDED_BY(mu_){};
  uint8_t* chunk_ GUARDED_BY(mu_) = nullptr;
  size_t chunk_used_ GUARDED_BY(mu_) = 0;
};

}  // namespace

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
  if (size <= LockedPool::kMaxPooled) {
    data_ = LockedPool::Get().Allocate(size);
    if (data_ == nullptr) throw std::bad_alloc();
    pooled_ = true;
    return;
  }
  data_ = new uint8_t[size]();
  locked_ = mlock(data_, size) == 0;
}

SecretBytes::SecretBytes(ByteView data, InsecureSecretAccess) : SecretBytes(data.size()) {
  if (data_ != nullptr) std::memcpy(data_, data.data(), data.size());
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      locked_(std::exchange(other.locked_, false)),
      pooled_(std::exchange(other.pooled_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    locked_ = std::exchange(other.locked_, false);
    pooled_ = std::exchange(other.pooled_, false);
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const {
  return SecretBytes(Reveal(InsecureSecretAccess()), InsecureSecretAccess());
}

void SecretBytes::Release() {
  if (data_ == nullptr) return;
  if (pooled_) {
    LockedPool::Get().Free(data_, size_);
  } else {
    SecureZero({data_, size_});
    if (locked_) munlock(data_, size_);
    delete[] data_;
  }
  data_ = nullptr;
  size_ = 0;
  locked_ = false;
  pooled_ = false;
}

bool operator==(const SecretBytes& a, const SecretBytes& b) {
  return ConstantTimeEquals(a.Reveal(InsecureSecretAccess()), b.Reveal(InsecureSecretAccess()));
}

}  // namespace keyfoundry
