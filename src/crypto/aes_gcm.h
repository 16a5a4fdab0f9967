// AES-GCM (NIST SP 800-38D) through OpenSSL's EVP interface.
//
// Keys of 16, 24 or 32 bytes (keyfoundry itself uses 32: AES-256); nonces of 1..128 bytes
// (keyfoundry uses 12, the size GCM is designed for; other sizes exist for interoperability
// and the test vectors); tags are always 16 bytes. The caller owns nonce uniqueness: a nonce
// must never repeat under one key (the envelope format explains how it guarantees that).
//
// Thread safety: an AesGcm keeps OpenSSL contexts with the expanded key, so one instance must
// not be used by two threads at once. Build one per thread or per object; New() is cheap.
#ifndef KEYFOUNDRY_CRYPTO_AES_GCM_H_
#define KEYFOUNDRY_CRYPTO_AES_GCM_H_

#include <memory>
#include <span>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

class AesGcm {
 public:
  static constexpr size_t kNonceSize = 12;  // the recommended size
  static constexpr size_t kMaxNonceSize = 128;
  static constexpr size_t kTagSize = 16;
  // One call seals at most this many bytes (OpenSSL's int lengths).
  static constexpr size_t kMaxMessageSize = (size_t{1} << 31) - 1;

  // InvalidArgument unless the key is 16, 24 or 32 bytes.
  static StatusOr<std::unique_ptr<AesGcm>> New(const SecretBytes& key);

  // Writes ciphertext || tag into `out`, which must be exactly plaintext.size() + kTagSize
  // bytes. `out` may start at plaintext.data() (in place).
  Status Seal(ByteView nonce, ByteView aad, ByteView plaintext, std::span<uint8_t> out);

  // Verifies and decrypts ciphertext || tag into `out` (exactly ciphertext_and_tag.size() -
  // kTagSize bytes; may start at the input). On failure returns DataLoss and zeroes `out`:
  // unauthenticated plaintext is never returned.
  Status Open(ByteView nonce, ByteView aad, ByteView ciphertext_and_tag, std::span<uint8_t> out);

  // Convenience forms that allocate.
  StatusOr<Bytes> Seal(ByteView nonce, ByteView aad, ByteView plaintext);
  StatusOr<Bytes> Open(ByteView nonce, ByteView aad, ByteView ciphertext_and_tag);

 private:
  AesGcm(const EVP_CIPHER* cipher, SecretBytes key) : cipher_(cipher), key_(std::move(key)) {}
  // The context for one direction, keyed on first use: most instances only seal or only open.
  StatusOr<EVP_CIPHER_CTX*> Context(bool encrypt);
  Status SetNonce(EVP_CIPHER_CTX* ctx, ByteView nonce, bool encrypt);

  const EVP_CIPHER* cipher_;
  SecretBytes key_;
  EvpCipherCtxPtr enc_;
  EvpCipherCtxPtr dec_;
};

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_AES_GCM_H_
