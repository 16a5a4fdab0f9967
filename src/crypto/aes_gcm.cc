#include "crypto/aes_gcm.h"

#include <openssl/core_names.h>

#include <algorithm>

namespace keyfoundry::crypto {
namespace {

// Fetched once: an explicit fetch avoids the per-call implicit fetch of EVP_aes_256_gcm().
const EVP_CIPHER* CipherForKeySize(size_t key_size) {
  static EVP_CIPHER* const k128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static EVP_CIPHER* const k192 = EVP_CIPHER_fetch(nullptr, "AES-192-GCM", nullptr);
  static EVP_CIPHER* const k256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  switch (key_size) {
    case 16:
      return k128;
    case 24:
      return k192;
    case 32:
      return k256;
    default:
      return nullptr;
  }
}

StatusOr<EvpCipherCtxPtr> NewContext(const EVP_CIPHER* cipher, const SecretBytes& key,
                                     bool encrypt) {
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OsslError(StatusCode::kResourceExhausted, "EVP_CIPHER_CTX_new failed");
  if (EVP_CipherInit_ex2(ctx.get(), cipher, key.Reveal(InsecureSecretAccess()).data(), nullptr,
                         encrypt ? 1 : 0, nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "AES-GCM key setup failed");
  }
  return ctx;
}

}  // namespace

StatusOr<std::unique_ptr<AesGcm>> AesGcm::New(const SecretBytes& key) {
  const EVP_CIPHER* cipher = CipherForKeySize(key.size());
  if (cipher == nullptr) {
    return InvalidArgumentError("AES-GCM keys are 16, 24 or 32 bytes");
  }
  return std::unique_ptr<AesGcm>(new AesGcm(cipher, key.Clone()));
}

StatusOr<EVP_CIPHER_CTX*> AesGcm::Context(bool encrypt) {
  EvpCipherCtxPtr& ctx = encrypt ? enc_ : dec_;
  if (!ctx) {
    ASSIGN_OR_RETURN(ctx, NewContext(cipher_, key_, encrypt));
  }
  return ctx.get();
}

Status AesGcm::SetNonce(EVP_CIPHER_CTX* ctx, ByteView nonce, bool encrypt) {
  if (nonce.empty() || nonce.size() > kMaxNonceSize) {
    return InvalidArgumentError("AES-GCM nonces are 1 to 128 bytes");
  }
  if (static_cast<size_t>(EVP_CIPHER_CTX_get_iv_length(ctx)) != nonce.size() &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) !=
          1) {
    return OsslError(StatusCode::kInternal, "AES-GCM nonce length rejected");
  }
  if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, nonce.data(), encrypt ? 1 : 0, nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "AES-GCM nonce setup failed");
  }
  return OkStatus();
}

Status AesGcm::Seal(ByteView nonce, ByteView aad, ByteView plaintext, std::span<uint8_t> out) {
  if (plaintext.size() > kMaxMessageSize || aad.size() > kMaxMessageSize) {
    return InvalidArgumentError("AES-GCM message too large for one call");
  }
  if (out.size() != plaintext.size() + kTagSize) {
    return InvalidArgumentError("AES-GCM output buffer has the wrong size");
  }
  ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, Context(/*encrypt=*/true));
  RETURN_IF_ERROR(SetNonce(ctx, nonce, true));
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return OsslError(StatusCode::kInternal, "AES-GCM associated data rejected");
  }
  int written = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx, out.data(), &len, plaintext.data(),
                          static_cast<int>(plaintext.size())) != 1) {
      return OsslError(StatusCode::kInternal, "AES-GCM encryption failed");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx, out.data() + written, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagSize, out.data() + plaintext.size()) !=
          1) {
    return OsslError(StatusCode::kInternal, "AES-GCM finalisation failed");
  }
  return OkStatus();
}

Status AesGcm::Open(ByteView nonce, ByteView aad, ByteView ciphertext_and_tag,
                    std::span<uint8_t> out) {
  if (ciphertext_and_tag.size() < kTagSize) {
    return DataLossError("AES-GCM ciphertext is shorter than its tag");
  }
  const size_t ct_size = ciphertext_and_tag.size() - kTagSize;
  if (ct_size > kMaxMessageSize || aad.size() > kMaxMessageSize) {
    return InvalidArgumentError("AES-GCM message too large for one call");
  }
  if (out.size() != ct_size)
    return InvalidArgumentError("AES-GCM output buffer has the wrong size");
  // The tag is copied first: decrypting in place overwrites nothing past ct_size, but a copy
  // keeps the contract simple.
  uint8_t tag[kTagSize];
  std::copy_n(ciphertext_and_tag.data() + ct_size, kTagSize, tag);
  ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, Context(/*encrypt=*/false));
  RETURN_IF_ERROR(SetNonce(ctx, nonce, false));
  int len = 0;
  bool ok = aad.empty() ||
            EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1;
  int written = 0;
  if (ok && ct_size > 0) {
    ok = EVP_DecryptUpdate(ctx, out.data(), &len, ciphertext_and_tag.data(),
                           static_cast<int>(ct_size)) == 1;
    written = len;
  }
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagSize, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx, out.data() + written, &len) == 1;
  if (!ok) {
    SecureZero(out);
    ClearOsslErrors();
    return DataLossError("AES-GCM authentication failed");
  }
  return OkStatus();
}

StatusOr<Bytes> AesGcm::Seal(ByteView nonce, ByteView aad, ByteView plaintext) {
  Bytes out(plaintext.size() + kTagSize);
  RETURN_IF_ERROR(Seal(nonce, aad, plaintext, out));
  return out;
}

StatusOr<Bytes> AesGcm::Open(ByteView nonce, ByteView aad, ByteView ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kTagSize) {
    return DataLossError("AES-GCM ciphertext is shorter than its tag");
  }
  Bytes out(ciphertext_and_tag.size() - kTagSize);
  RETURN_IF_ERROR(Open(nonce, aad, ciphertext_and_tag, out));
  return out;
}

}  // namespace keyfoundry::crypto
