// AES key wrap: RFC 3394 (NIST SP 800-38F "KW") and RFC 5649 (SP 800-38F "KWP", with
// padding), through OpenSSL's "AES-*-WRAP" and "AES-*-WRAP-PAD" ciphers.
//
// Key wrap is a deterministic authenticated encryption for key material: the same key data
// under the same KEK always wraps to the same bytes, and unwrapping checks an integrity value
// (RFC 3394's IV A6A6A6A6A6A6A6A6, RFC 5649's A65959A6 plus the length and zero padding).
//
// Sizes:
//   KEK          16, 24 or 32 bytes (AES-128/192/256)
//   RFC 3394     key data a multiple of 8 bytes, at least 16; wrapped = key data + 8
//   RFC 5649     key data of 1 byte or more; wrapped = key data rounded up to 8, + 8
//   both         key data at most kMaxKeyDataSize bytes (a hard limit of ours: key material is
//                small, and OpenSSL's lengths are ints)
//
// Thread safety: an AesKeyWrap is immutable; Wrap and Unwrap may be called concurrently (each
// call builds its own OpenSSL context).
#ifndef KEYFOUNDRY_CRYPTO_KEY_WRAP_H_
#define KEYFOUNDRY_CRYPTO_KEY_WRAP_H_

#include <memory>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

class AesKeyWrap {
 public:
  enum class Mode {
    kRfc3394 = 1,  // no padding (KW)
    kRfc5649 = 2,  // with padding (KWP)
  };

  static constexpr size_t kMaxKeyDataSize = size_t{64} * 1024;

  // InvalidArgument unless `kek` is 16, 24 or 32 bytes and `mode` is an enumerator. The KEK is
  // copied into the returned object.
  static StatusOr<std::unique_ptr<AesKeyWrap>> New(const SecretBytes& kek, Mode mode);

  // Wraps `key_data`. InvalidArgument when its size breaks the mode's rules above.
  StatusOr<Bytes> Wrap(const SecretBytes& key_data) const;

  // Checks and unwraps `wrapped`. Every failure (a wrong size, a wrong KEK, tampering) gives
  // the same DataLoss error: nothing tells the caller which check failed.
  StatusOr<SecretBytes> Unwrap(ByteView wrapped) const;

 private:
  AesKeyWrap(SecretBytes kek, Mode mode) : kek_(std::move(kek)), mode_(mode) {}

  const SecretBytes kek_;
  const Mode mode_;
};

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_KEY_WRAP_H_
