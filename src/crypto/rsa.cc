#include "crypto/rsa.h"

#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <array>
#include <limits>
#include <mutex>
#include <vector>

#include "crypto/pkey.h"

namespace keyfoundry::crypto {
namespace {

// Components and DER encodings larger than these cannot hold a key we accept; refusing them
// early bounds the work OpenSSL's validation does on hostile input.
constexpr size_t kMaxComponentSize = RsaPublicKey::kMaxModulusBits / 8;
constexpr size_t kMaxDerSize = size_t{16} * 1024;

Status DecryptFailed() { return DataLossError("RSA decryption failed"); }
Status VerifyFailed() { return InvalidArgumentError("RSA signature verification failed"); }

Status CheckModulusBits(const EVP_PKEY* pkey) {
  const int bits = EVP_PKEY_get_bits(pkey);
  if (bits < RsaPublicKey::kMinModulusBits || bits > RsaPublicKey::kMaxModulusBits) {
    return InvalidArgumentError("RSA modulus must be 2048 to 16384 bits");
  }
  return OkStatus();
}

// Multi-prime keys (RFC 8017 section 3.2, JWK "oth") would lose their extra primes in
// Components(), so they are refused on import.
Status CheckTwoPrimes(const EVP_PKEY* pkey) {
  BIGNUM* third = nullptr;
  const bool multi_prime = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3, &third) == 1;
  BN_clear_free(third);
  ClearOsslErrors();
  if (multi_prime) return InvalidArgumentError("multi-prime RSA keys are not supported");
  return OkStatus();
}

Status CheckPublicSizes(ByteView n, ByteView e) {
  if (n.size() > kMaxComponentSize) {
    return InvalidArgumentError("RSA modulus must be 2048 to 16384 bits");
  }
  if (e.size() > n.size()) return InvalidArgumentError("RSA public exponent longer than modulus");
  return OkStatus();
}

StatusOr<RsaPublicComponents> PublicComponents(const EVP_PKEY* pkey) {
  RsaPublicComponents out;
  ASSIGN_OR_RETURN(out.n, GetInteger(pkey, OSSL_PKEY_PARAM_RSA_N));
  ASSIGN_OR_RETURN(out.e, GetInteger(pkey, OSSL_PKEY_PARAM_RSA_E));
  return out;
}

// Sets the encryption padding on a context after EVP_PKEY_{en,de}crypt_init.
Status SetEncryptionPadding(EVP_PKEY_CTX* ctx, RsaPadding padding, ByteView label) {
  const char* oaep_hash = nullptr;
  switch (padding) {
    case RsaPadding::kOaepSha1:
      oaep_hash = "SHA1";
      break;
    case RsaPadding::kOaepSha256:
      oaep_hash = "SHA256";
      break;
    case RsaPadding::kPkcs1v15:
      if (!label.empty()) return InvalidArgumentError("RSA PKCS#1 v1.5 encryption has no label");
      if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) {
        return OsslError(StatusCode::kInternal, "RSA padding setup failed");
      }
      return OkStatus();
  }
  if (oaep_hash == nullptr) return InvalidArgumentError("unknown RSA padding");
  if (label.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return InvalidArgumentError("RSA-OAEP label too long");
  }
  if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, oaep_hash, nullptr) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, oaep_hash, nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "RSA-OAEP setup failed");
  }
  if (!label.empty()) {
    // set0 takes ownership of an OPENSSL_malloc'd copy, but only when it succeeds.
    void* copy = OPENSSL_memdup(label.data(), label.size());
    if (copy == nullptr ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, static_cast<int>(label.size())) != 1) {
      OPENSSL_free(copy);
      return OsslError(StatusCode::kInternal, "RSA-OAEP label setup failed");
    }
  }
  return OkStatus();
}

// The largest plaintext `padding` can encrypt under a `modulus_size`-byte key (RFC 8017
// sections 7.1.1 and 7.2.1), or 0 if none fits.
size_t MaxPlaintextSize(RsaPadding padding, size_t modulus_size) {
  size_t overhead = 0;
  switch (padding) {
    case RsaPadding::kOaepSha1:
      overhead = 2 * 20 + 2;
      break;
    case RsaPadding::kOaepSha256:
      overhead = 2 * 32 + 2;
      break;
    case RsaPadding::kPkcs1v15:
      overhead = 11;
      break;
  }
  return modulus_size > overhead ? modulus_size - overhead : 0;
}

// Sets the signature padding on the context of EVP_Digest{Sign,Verify}Init_ex.
Status SetSignaturePadding(EVP_PKEY_CTX* ctx, RsaSignatureScheme scheme, const char* hash_name,
                           size_t pss_salt_length) {
  switch (scheme) {
    case RsaSignatureScheme::kPkcs1v15:
      if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) {
        return OsslError(StatusCode::kInternal, "RSA padding setup failed");
      }
      return OkStatus();
    case RsaSignatureScheme::kPss:
      if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
          EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, static_cast<int>(pss_salt_length)) != 1 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, hash_name, nullptr) != 1) {
        return OsslError(StatusCode::kInternal, "RSA-PSS setup failed");
      }
      return OkStatus();
  }
  return InvalidArgumentError("unknown RSA signature scheme");
}

}  // namespace

// Setting a context up (fetching the algorithm and the OAEP digests from the provider) costs
// about as much as an RSA public-key operation itself, so each key keeps the contexts it has
// set up, per operation and padding, for the next call. A context is used by one thread at a
// time: Take removes it from the pool, Give puts it back after a successful operation (a
// failed one's context is dropped). At most kMaxIdle are kept per slot.
class RsaContextPool {
 public:
  enum class Kind { kEncrypt = 0, kDecrypt = 1 };
  static constexpr size_t kMaxIdle = 16;

  EvpPkeyCtxPtr Take(Kind kind, RsaPadding padding) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<EvpPkeyCtxPtr>& idle = idle_[Slot(kind, padding)];
    if (idle.empty()) return nullptr;
    EvpPkeyCtxPtr ctx = std::move(idle.back());
    idle.pop_back();
    return ctx;
  }

  void Give(Kind kind, RsaPadding padding, EvpPkeyCtxPtr ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<EvpPkeyCtxPtr>& idle = idle_[Slot(kind, padding)];
    if (idle.size() < kMaxIdle) idle.push_back(std::move(ctx));
  }

 private:
  static constexpr size_t kPaddings = 3;
  static size_t Slot(Kind kind, RsaPadding padding) {
    size_t p = 0;
    switch (padding) {
      case RsaPadding::kPkcs1v15:
        p = 0;
        break;
      case RsaPadding::kOaepSha1:
        p = 1;
        break;
      case RsaPadding::kOaepSha256:
        p = 2;
        break;
    }
    return static_cast<size_t>(kind) * kPaddings + p;
  }

  std::mutex mu_;
  std::array<std::vector<EvpPkeyCtxPtr>, 2 * kPaddings> idle_;
};

namespace {

// A context of `pkey` for `kind` with `padding` and `label`: from `pool` when there is no label
// and one is idle, else set up here.
StatusOr<EvpPkeyCtxPtr> TakeContext(RsaContextPool& pool, EVP_PKEY* pkey, RsaContextPool::Kind kind,
                                    RsaPadding padding, ByteView label) {
  if (padding != RsaPadding::kOaepSha1 && padding != RsaPadding::kOaepSha256 &&
      padding != RsaPadding::kPkcs1v15) {
    return InvalidArgumentError("unknown RSA padding");
  }
  if (label.empty()) {
    if (EvpPkeyCtxPtr ctx = pool.Take(kind, padding)) return ctx;
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  const bool encrypt = kind == RsaContextPool::Kind::kEncrypt;
  if (!ctx ||
      (encrypt ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1) {
    return OsslError(StatusCode::kInternal,
                     encrypt ? "RSA encryption setup failed" : "RSA decryption setup failed");
  }
  RETURN_IF_ERROR(SetEncryptionPadding(ctx.get(), padding, label));
  return ctx;
}

}  // namespace

RsaPublicKey::RsaPublicKey(EvpPkeyPtr pkey)
    : pkey_(std::move(pkey)), contexts_(std::make_shared<RsaContextPool>()) {}

StatusOr<RsaPublicKey> RsaPublicKey::FromComponents(const RsaPublicComponents& components) {
  RETURN_IF_ERROR(CheckPublicSizes(components.n, components.e));
  PkeyBuilder builder;
  builder.AddInteger(OSSL_PKEY_PARAM_RSA_N, components.n);
  builder.AddInteger(OSSL_PKEY_PARAM_RSA_E, components.e);
  ASSIGN_OR_RETURN(EvpPkeyPtr pkey,
                   builder.Build("RSA", EVP_PKEY_PUBLIC_KEY, "invalid RSA public key"));
  RETURN_IF_ERROR(CheckModulusBits(pkey.get()));
  return RsaPublicKey(std::move(pkey));
}

StatusOr<RsaPublicKey> RsaPublicKey::FromDer(ByteView subject_public_key_info) {
  if (subject_public_key_info.size() > kMaxDerSize) {
    return InvalidArgumentError("RSA public key DER too large");
  }
  ASSIGN_OR_RETURN(EvpPkeyPtr pkey,
                   DecodeDer(subject_public_key_info, "SubjectPublicKeyInfo", "RSA",
                             EVP_PKEY_PUBLIC_KEY, "invalid RSA SubjectPublicKeyInfo"));
  RETURN_IF_ERROR(CheckModulusBits(pkey.get()));
  return RsaPublicKey(std::move(pkey));
}

int RsaPublicKey::ModulusBits() const { return EVP_PKEY_get_bits(pkey_.get()); }

StatusOr<RsaPublicComponents> RsaPublicKey::Components() const {
  return PublicComponents(pkey_.get());
}

StatusOr<Bytes> RsaPublicKey::Encrypt(RsaPadding padding, ByteView plaintext,
                                      ByteView label) const {
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, TakeContext(*contexts_, pkey_.get(),
                                                  RsaContextPool::Kind::kEncrypt, padding, label));
  const size_t modulus_size = static_cast<size_t>(EVP_PKEY_get_size(pkey_.get()));
  if (plaintext.size() > MaxPlaintextSize(padding, modulus_size)) {
    return InvalidArgumentError("plaintext too long for this RSA key and padding");
  }
  Bytes out(modulus_size);
  size_t out_size = out.size();
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &out_size, plaintext.data(), plaintext.size()) != 1) {
    return OsslError(StatusCode::kInternal, "RSA encryption failed");
  }
  if (label.empty()) contexts_->Give(RsaContextPool::Kind::kEncrypt, padding, std::move(ctx));
  out.resize(out_size);
  return out;
}

Status RsaPublicKey::Verify(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView message,
                            ByteView signature, std::optional<size_t> pss_salt_length) const {
  const char* hash_name = HashName(hash);
  if (hash_name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  if (scheme == RsaSignatureScheme::kPkcs1v15 && pss_salt_length.has_value()) {
    return InvalidArgumentError("RSA PKCS#1 v1.5 signatures have no salt");
  }
  const size_t salt_length = pss_salt_length.value_or(HashSize(hash));
  // RFC 8017 8.1.2 and 8.2.2 step 1: a signature is exactly as long as the modulus. No valid
  // salt is longer than the modulus either (which also keeps it within an int).
  const size_t modulus_size = static_cast<size_t>(EVP_PKEY_get_size(pkey_.get()));
  if (signature.size() != modulus_size || salt_length > modulus_size) return VerifyFailed();

  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pkey_ctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), &pkey_ctx, hash_name, nullptr, nullptr,
                                      pkey_.get(), nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "RSA verification setup failed");
  }
  RETURN_IF_ERROR(SetSignaturePadding(pkey_ctx, scheme, hash_name, salt_length));
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                       message.size()) != 1) {
    ClearOsslErrors();
    return VerifyFailed();
  }
  return OkStatus();
}

RsaPrivateKey::RsaPrivateKey(EvpPkeyPtr pkey)
    : pkey_(std::move(pkey)), contexts_(std::make_shared<RsaContextPool>()) {}

StatusOr<RsaPrivateKey> RsaPrivateKey::Generate(int modulus_bits) {
  if (modulus_bits != 2048 && modulus_bits != 3072 && modulus_bits != 4096) {
    return InvalidArgumentError("RSA keys are generated with 2048, 3072 or 4096 bits");
  }
  // OpenSSL's default public exponent is 65537.
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(modulus_bits)));
  if (!pkey) return OsslError(StatusCode::kInternal, "RSA key generation failed");
  return RsaPrivateKey(std::move(pkey));
}

StatusOr<RsaPrivateKey> RsaPrivateKey::FromComponents(const RsaPrivateComponents& c) {
  RETURN_IF_ERROR(CheckPublicSizes(c.n, c.e));
  for (const SecretBytes* secret : {&c.d, &c.p, &c.q, &c.dp, &c.dq, &c.qi}) {
    if (secret->size() > c.n.size()) {
      return InvalidArgumentError("RSA private key component larger than the modulus");
    }
  }
  PkeyBuilder builder;
  builder.AddInteger(OSSL_PKEY_PARAM_RSA_N, c.n);
  builder.AddInteger(OSSL_PKEY_PARAM_RSA_E, c.e);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_D, c.d);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_FACTOR1, c.p);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_FACTOR2, c.q);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_EXPONENT1, c.dp);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_EXPONENT2, c.dq);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_RSA_COEFFICIENT1, c.qi);
  ASSIGN_OR_RETURN(EvpPkeyPtr pkey,
                   builder.Build("RSA", EVP_PKEY_KEYPAIR, "invalid RSA private key"));
  RETURN_IF_ERROR(CheckModulusBits(pkey.get()));
  return RsaPrivateKey(std::move(pkey));
}

StatusOr<RsaPrivateKey> RsaPrivateKey::FromPkcs8Der(const SecretBytes& private_key_info) {
  if (private_key_info.size() > kMaxDerSize) {
    return InvalidArgumentError("RSA private key DER too large");
  }
  ASSIGN_OR_RETURN(EvpPkeyPtr pkey,
                   DecodeDer(private_key_info.Reveal(InsecureSecretAccess()), "PrivateKeyInfo",
                             "RSA", EVP_PKEY_KEYPAIR, "invalid RSA PKCS#8 private key"));
  RETURN_IF_ERROR(CheckModulusBits(pkey.get()));
  RETURN_IF_ERROR(CheckTwoPrimes(pkey.get()));
  return RsaPrivateKey(std::move(pkey));
}

int RsaPrivateKey::ModulusBits() const { return EVP_PKEY_get_bits(pkey_.get()); }

StatusOr<RsaPublicKey> RsaPrivateKey::PublicKey() const {
  ASSIGN_OR_RETURN(RsaPublicComponents components, PublicComponents(pkey_.get()));
  return RsaPublicKey::FromComponents(components);
}

StatusOr<RsaPrivateComponents> RsaPrivateKey::Components() const {
  const EVP_PKEY* pkey = pkey_.get();
  RsaPrivateComponents out;
  ASSIGN_OR_RETURN(out.n, GetInteger(pkey, OSSL_PKEY_PARAM_RSA_N));
  ASSIGN_OR_RETURN(out.e, GetInteger(pkey, OSSL_PKEY_PARAM_RSA_E));
  ASSIGN_OR_RETURN(out.d, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_D));
  ASSIGN_OR_RETURN(out.p, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1));
  ASSIGN_OR_RETURN(out.q, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_FACTOR2));
  ASSIGN_OR_RETURN(out.dp, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1));
  ASSIGN_OR_RETURN(out.dq, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2));
  ASSIGN_OR_RETURN(out.qi, GetSecretInteger(pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1));
  return out;
}

StatusOr<SecretBytes> RsaPrivateKey::Decrypt(RsaPadding padding, ByteView ciphertext,
                                             ByteView label) const {
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, TakeContext(*contexts_, pkey_.get(),
                                                  RsaContextPool::Kind::kDecrypt, padding, label));
  // RFC 8017 7.1.2 and 7.2.2 step 1: a ciphertext is exactly as long as the modulus.
  const size_t modulus_size = static_cast<size_t>(EVP_PKEY_get_size(pkey_.get()));
  if (ciphertext.size() != modulus_size) return DecryptFailed();
  SecretBytes out(modulus_size);
  size_t out_size = out.size();
  if (EVP_PKEY_decrypt(ctx.get(), out.Mutable(InsecureSecretAccess()).data(), &out_size,
                       ciphertext.data(), ciphertext.size()) != 1) {
    ClearOsslErrors();
    return DecryptFailed();
  }
  if (label.empty()) contexts_->Give(RsaContextPool::Kind::kDecrypt, padding, std::move(ctx));
  return SecretBytes(out.Reveal(InsecureSecretAccess()).first(out_size), InsecureSecretAccess());
}

StatusOr<Bytes> RsaPrivateKey::Sign(RsaSignatureScheme scheme, HashAlgorithm hash,
                                    ByteView message) const {
  const char* hash_name = HashName(hash);
  if (hash_name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pkey_ctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestSignInit_ex(ctx.get(), &pkey_ctx, hash_name, nullptr, nullptr, pkey_.get(),
                                    nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "RSA signing setup failed");
  }
  RETURN_IF_ERROR(SetSignaturePadding(pkey_ctx, scheme, hash_name, HashSize(hash)));
  Bytes signature(static_cast<size_t>(EVP_PKEY_get_size(pkey_.get())));
  size_t size = signature.size();
  if (EVP_DigestSign(ctx.get(), signature.data(), &size, message.data(), message.size()) != 1) {
    return OsslError(StatusCode::kInternal, "RSA signing failed");
  }
  signature.resize(size);
  return signature;
}

namespace {

// A context for EVP_PKEY_sign / EVP_PKEY_verify over a digest of `hash` with `scheme`.
StatusOr<EvpPkeyCtxPtr> DigestContext(EVP_PKEY* pkey, bool sign, RsaSignatureScheme scheme,
                                      HashAlgorithm hash, ByteView digest) {
  const char* hash_name = HashName(hash);
  if (hash_name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  if (digest.size() != HashSize(hash)) {
    return InvalidArgumentError("the digest must be " + std::to_string(HashSize(hash)) +
                                " bytes for " + hash_name);
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx || (sign ? EVP_PKEY_sign_init(ctx.get()) : EVP_PKEY_verify_init(ctx.get())) != 1) {
    return OsslError(StatusCode::kInternal, "RSA signature setup failed");
  }
  RETURN_IF_ERROR(SetSignaturePadding(ctx.get(), scheme, hash_name, HashSize(hash)));
  EvpMdPtr md(EVP_MD_fetch(nullptr, hash_name, nullptr));
  if (!md || EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1) {
    return OsslError(StatusCode::kInternal, "RSA signature digest setup failed");
  }
  return ctx;
}

}  // namespace

StatusOr<Bytes> RsaPrivateKey::SignDigest(RsaSignatureScheme scheme, HashAlgorithm hash,
                                          ByteView digest) const {
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, DigestContext(pkey_.get(), true, scheme, hash, digest));
  Bytes signature(static_cast<size_t>(EVP_PKEY_get_size(pkey_.get())));
  size_t size = signature.size();
  if (EVP_PKEY_sign(ctx.get(), signature.data(), &size, digest.data(), digest.size()) != 1) {
    return OsslError(StatusCode::kInternal, "RSA signing failed");
  }
  signature.resize(size);
  return signature;
}

Status RsaPublicKey::VerifyDigest(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView digest,
                                  ByteView signature) const {
  const size_t modulus_size = static_cast<size_t>(EVP_PKEY_get_size(pkey_.get()));
  if (signature.size() != modulus_size) return VerifyFailed();
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, DigestContext(pkey_.get(), false, scheme, hash, digest));
  if (EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(),
                      digest.size()) != 1) {
    ClearOsslErrors();
    return VerifyFailed();
  }
  return OkStatus();
}

}  // namespace keyfoundry::crypto
