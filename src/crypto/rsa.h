// RSA keys (RFC 8017) for key wrapping (RSAES-OAEP, RSAES-PKCS1-v1_5) and signatures
// (RSASSA-PKCS1-v1_5, RSASSA-PSS), through OpenSSL's EVP_PKEY interface.
//
// Keys: generated keys are 2048, 3072 or 4096 bits with e = 65537. Imported keys (components,
// DER, JWK) may have a modulus of kMinModulusBits to kMaxModulusBits bits and any odd e >= 3
// (e = 3 is legal and still met in the wild; it is safe with OAEP and PSS and with a correct
// PKCS#1 v1.5 verifier such as OpenSSL's). Every imported key is validated by OpenSSL; a private
// key fully (primes, CRT values, pairwise consistency), which takes milliseconds. Private keys
// need both primes and the CRT values; multi-prime keys are refused.
//
// Integers cross the API big-endian and unsigned; exported ones have no leading zero bytes,
// private ones travel in SecretBytes.
//
// Failure: decryption gives one DataLoss error and signature verification one InvalidArgument
// error, whatever the cause (a wrong length, wrong key, bad padding): nothing tells the caller
// which check failed. Misuse (an unknown enumerator, a plaintext too long for the key) gives
// InvalidArgument with a message.
//
// Thread safety: keys are immutable after construction and may be used from several threads at
// once (each operation builds its own OpenSSL context). Randomness (padding, blinding) comes
// from OpenSSL's CSPRNG.
#ifndef KEYFOUNDRY_CRYPTO_RSA_H_
#define KEYFOUNDRY_CRYPTO_RSA_H_

#include <memory>
#include <optional>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/hash_algorithm.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

// Encryption padding; the JOSE / Azure Key Vault algorithm names in brackets.
enum class RsaPadding {
  kOaepSha1 = 1,    // RSAES-OAEP, SHA-1 and MGF1-SHA-1 ("RSA-OAEP")
  kOaepSha256 = 2,  // RSAES-OAEP, SHA-256 and MGF1-SHA-256 ("RSA-OAEP-256")
  // RSAES-PKCS1-v1_5 ("RSA1_5"), for compatibility only. Its decryption is a padding oracle
  // (Bleichenbacher 1998, Marvin 2023) whenever a caller can tell success from failure, by the
  // result or by timing. OpenSSL 3.0 makes the padding check constant-time; from 3.2 it also
  // applies implicit rejection (bad padding yields a random-looking plaintext, not an error).
  // Never offer it on a path where an attacker can submit ciphertexts and observe the outcome.
  kPkcs1v15 = 3,
};

enum class RsaSignatureScheme {
  kPkcs1v15 = 1,  // RSASSA-PKCS1-v1_5 ("RS256", "RS384", "RS512")
  kPss = 2,       // RSASSA-PSS, MGF1 with the message hash ("PS256", "PS384", "PS512")
};

struct RsaPublicComponents {
  Bytes n;  // modulus
  Bytes e;  // public exponent
};

struct RsaPrivateComponents {
  Bytes n;
  Bytes e;
  SecretBytes d;   // private exponent
  SecretBytes p;   // first prime factor
  SecretBytes q;   // second prime factor
  SecretBytes dp;  // d mod (p - 1)
  SecretBytes dq;  // d mod (q - 1)
  SecretBytes qi;  // q^-1 mod p
};

// Set-up encryption contexts kept for reuse (see rsa.cc); shared by copies of a key.
class RsaContextPool;

class RsaPublicKey {
 public:
  static constexpr int kMinModulusBits = 2048;
  static constexpr int kMaxModulusBits = 16384;  // OpenSSL's own limit

  // InvalidArgument (with the reason) unless the components make a valid public key.
  static StatusOr<RsaPublicKey> FromComponents(const RsaPublicComponents& components);
  // From a DER SubjectPublicKeyInfo with the rsaEncryption algorithm.
  static StatusOr<RsaPublicKey> FromDer(ByteView subject_public_key_info);

  int ModulusBits() const;
  StatusOr<RsaPublicComponents> Components() const;

  // Encrypts `plaintext`; `label` is the OAEP label (InvalidArgument if set for kPkcs1v15).
  // InvalidArgument when the plaintext is too long for the key and padding.
  StatusOr<Bytes> Encrypt(RsaPadding padding, ByteView plaintext, ByteView label = {}) const;

  // OK when `signature` is `scheme`'s signature with `hash` over `message`. For PSS,
  // `pss_salt_length` is the salt length to require (by default the hash's size, which is what
  // Sign uses); it must be unset for PKCS#1 v1.5.
  Status Verify(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView message, ByteView signature,
                std::optional<size_t> pss_salt_length = std::nullopt) const;

  // Verify over a precomputed `digest` of `hash` (HashSize bytes, else InvalidArgument), as
  // Azure Key Vault's verify takes it. PSS requires a salt as long as the hash.
  Status VerifyDigest(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView digest,
                      ByteView signature) const;

 private:
  friend class RsaPrivateKey;
  explicit RsaPublicKey(EvpPkeyPtr pkey);

  EvpPkeyPtr pkey_;
  std::shared_ptr<RsaContextPool> contexts_;
};

class RsaPrivateKey {
 public:
  // InvalidArgument unless `modulus_bits` is 2048, 3072 or 4096.
  static StatusOr<RsaPrivateKey> Generate(int modulus_bits);
  // InvalidArgument (with the reason) unless the components make a valid, consistent key.
  static StatusOr<RsaPrivateKey> FromComponents(const RsaPrivateComponents& components);
  // From an unencrypted DER PKCS#8 PrivateKeyInfo with the rsaEncryption algorithm.
  static StatusOr<RsaPrivateKey> FromPkcs8Der(const SecretBytes& private_key_info);

  int ModulusBits() const;
  StatusOr<RsaPublicKey> PublicKey() const;
  StatusOr<RsaPrivateComponents> Components() const;

  // Decrypts `ciphertext` (exactly the modulus size). Every failure gives the same DataLoss
  // error. See RsaPadding::kPkcs1v15 before using it.
  StatusOr<SecretBytes> Decrypt(RsaPadding padding, ByteView ciphertext, ByteView label = {}) const;

  // Signs `message` (hashed here with `hash`). PSS uses a salt as long as the hash.
  StatusOr<Bytes> Sign(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView message) const;
  // Signs a precomputed `digest` of `hash` (HashSize bytes, else InvalidArgument), as Azure Key
  // Vault's sign takes it.
  StatusOr<Bytes> SignDigest(RsaSignatureScheme scheme, HashAlgorithm hash, ByteView digest) const;

 private:
  explicit RsaPrivateKey(EvpPkeyPtr pkey);

  EvpPkeyPtr pkey_;
  std::shared_ptr<RsaContextPool> contexts_;
};

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_RSA_H_
