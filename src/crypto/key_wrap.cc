#include "crypto/key_wrap.h"

#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {
namespace {

constexpr size_t kBlockSize = 8;  // the key wrap semiblock; also the size of the integrity value

// Fetched once: an explicit fetch avoids the per-call implicit fetch. Null when `kek_size` is
// not an AES key size, `mode` is not an enumerator, or the provider lacks the cipher.
const EVP_CIPHER* CipherFor(AesKeyWrap::Mode mode, size_t kek_size) {
  static EVP_CIPHER* const kKw[] = {
      EVP_CIPHER_fetch(nullptr, "AES-128-WRAP", nullptr),
      EVP_CIPHER_fetch(nullptr, "AES-192-WRAP", nullptr),
      EVP_CIPHER_fetch(nullptr, "AES-256-WRAP", nullptr),
  };
  static EVP_CIPHER* const kKwp[] = {
      EVP_CIPHER_fetch(nullptr, "AES-128-WRAP-PAD", nullptr),
      EVP_CIPHER_fetch(nullptr, "AES-192-WRAP-PAD", nullptr),
      EVP_CIPHER_fetch(nullptr, "AES-256-WRAP-PAD", nullptr),
  };
  size_t index = 0;
  switch (kek_size) {
    case 16:
      index = 0;
      break;
    case 24:
      index = 1;
      break;
    case 32:
      index = 2;
      break;
    default:
      return nullptr;
  }
  switch (mode) {
    case AesKeyWrap::Mode::kRfc3394:
      return kKw[index];
    case AesKeyWrap::Mode::kRfc5649:
      return kKwp[index];
  }
  return nullptr;  // not an enumerator
}

StatusOr<EvpCipherCtxPtr> NewContext(AesKeyWrap::Mode mode, const SecretBytes& kek, bool wrap) {
  const EVP_CIPHER* cipher = CipherFor(mode, kek.size());
  if (cipher == nullptr) return InternalError("AES key wrap cipher is unavailable");
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OsslError(StatusCode::kResourceExhausted, "EVP_CIPHER_CTX_new failed");
  // No EVP_CIPHER_CTX_FLAG_WRAP_ALLOW: OpenSSL 3 checks it only for legacy (ENGINE) ciphers,
  // never for provider ciphers fetched as above.
  if (EVP_CipherInit_ex2(ctx.get(), cipher, kek.Reveal(InsecureSecretAccess()).data(), nullptr,
                         wrap ? 1 : 0, nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "AES key wrap setup failed");
  }
  return ctx;
}

// Runs the whole input through `ctx` in one update, as wrap ciphers require, into `out` (sized
// by the caller for the longest result). Sets *written, or returns false when OpenSSL refuses
// the input.
bool RunCipher(EVP_CIPHER_CTX* ctx, ByteView in, std::span<uint8_t> out, size_t* written) {
  int len = 0;
  int final_len = 0;
  if (EVP_CipherUpdate(ctx, out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx, out.data() + len, &final_len) != 1) {
    return false;
  }
  *written = static_cast<size_t>(len) + static_cast<size_t>(final_len);
  return true;
}

Status UnwrapFailed() { return DataLossError("AES key unwrap failed"); }

}  // namespace

StatusOr<std::unique_ptr<AesKeyWrap>> AesKeyWrap::New(const SecretBytes& kek, Mode mode) {
  if (kek.size() != 16 && kek.size() != 24 && kek.size() != 32) {
    return InvalidArgumentError("AES key wrap KEKs are 16, 24 or 32 bytes");
  }
  if (mode != Mode::kRfc3394 && mode != Mode::kRfc5649) {
    return InvalidArgumentError("unknown AES key wrap mode");
  }
  return std::unique_ptr<AesKeyWrap>(new AesKeyWrap(kek.Clone(), mode));
}

StatusOr<Bytes> AesKeyWrap::Wrap(const SecretBytes& key_data) const {
  const size_t n = key_data.size();
  if (n > kMaxKeyDataSize) return InvalidArgumentError("key data too large to wrap");
  size_t wrapped_size = 0;
  switch (mode_) {
    case Mode::kRfc3394:
      if (n < 2 * kBlockSize || n % kBlockSize != 0) {
        return InvalidArgumentError(
            "RFC 3394 key wrap takes a multiple of 8 bytes, at least 16 bytes");
      }
      wrapped_size = n + kBlockSize;
      break;
    case Mode::kRfc5649:
      if (n == 0) return InvalidArgumentError("RFC 5649 key wrap takes at least 1 byte");
      wrapped_size = (n + kBlockSize - 1) / kBlockSize * kBlockSize + kBlockSize;
      break;
  }
  ASSIGN_OR_RETURN(EvpCipherCtxPtr ctx, NewContext(mode_, kek_, true));
  Bytes out(wrapped_size);
  size_t written = 0;
  if (!RunCipher(ctx.get(), key_data.Reveal(InsecureSecretAccess()), out, &written) ||
      written != wrapped_size) {
    return OsslError(StatusCode::kInternal, "AES key wrap failed");
  }
  return out;
}

StatusOr<SecretBytes> AesKeyWrap::Unwrap(ByteView wrapped) const {
  // The sizes no wrap can produce are refused before OpenSSL sees them, with the same error
  // as a failed integrity check.
  const size_t min_size = mode_ == Mode::kRfc3394 ? 3 * kBlockSize : 2 * kBlockSize;
  if (wrapped.size() < min_size || wrapped.size() % kBlockSize != 0 ||
      wrapped.size() > kMaxKeyDataSize + 2 * kBlockSize) {
    return UnwrapFailed();
  }
  ASSIGN_OR_RETURN(EvpCipherCtxPtr ctx, NewContext(mode_, kek_, false));
  SecretBytes out(wrapped.size() - kBlockSize);
  size_t written = 0;
  if (!RunCipher(ctx.get(), wrapped, out.Mutable(InsecureSecretAccess()), &written)) {
    ClearOsslErrors();
    return UnwrapFailed();
  }
  if (written == out.size()) return out;
  // RFC 5649: the padding is dropped. The copy is a SecretBytes and `out` is wiped when freed.
  return SecretBytes(out.Reveal(InsecureSecretAccess()).first(written), InsecureSecretAccess());
}

}  // namespace keyfoundry::crypto
