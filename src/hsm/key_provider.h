// KeyProvider: what keyfoundry asks of its hardware security module. The key vault and the
// encryption engine see only this interface; pkcs11/ implements it over any PKCS#11 module
// (SoftHSM2 by default).
//
// Two kinds of key live in the token:
//   - the service root key: one AES-256 key, generated in the token on first start, never
//     extractable. It seals (AES-256-GCM inside the token) what must not rest in clear on disk:
//     the private parts of software vault keys, service-managed account keys.
//   - HSM-protected vault keys (Azure's RSA-HSM and EC-HSM): key pairs generated or imported
//     into the token as sensitive and non-extractable. Private-key operations (decrypt, sign)
//     run in the token; public operations (encrypt, verify) run in software from the public
//     components, as Azure Key Vault does.
//
// Sealed format (SealWithRoot / OpenWithRoot), version 1:
//   byte 0      0x01 (version)
//   bytes 1-12  GCM nonce, 96 random bits drawn for each seal
//   then        ciphertext, then the 16-byte GCM tag
// The caller's associated data binds the sealed bytes to their use (e.g. the key id), so a
// blob moved to another record fails to open. Random nonces under one key are safe for far
// more than 2^32 seals (NIST SP 800-38D 8.3); keyfoundry seals once per key created.
//
// Handles: an HSM key is named by a handle, the hex of a 16-byte random CKA_ID (32 characters)
// given to both token objects of the pair. Handles are stable across restarts and carry no
// secret.
//
// Failure: token errors map to Status (kUnavailable when the token or the module is
// unreachable or not logged in; kNotFound for an unknown handle; kInvalidArgument for a bad
// input, a malformed handle or a key of the wrong type; kDataLoss when a sealed blob or a
// ciphertext does not open: one error whatever the cause, except kUnavailable when the token
// could not be asked at all). Messages name the PKCS#11 function and CKR_ code, never key
// material.
//
// Thread safety: every method may be called from many threads at once.
#ifndef KEYFOUNDRY_HSM_KEY_PROVIDER_H_
#define KEYFOUNDRY_HSM_KEY_PROVIDER_H_

#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ecdsa.h"
#include "crypto/hash_algorithm.h"
#include "crypto/rsa.h"

namespace keyfoundry::hsm {

struct HsmKeyInfo {
  std::string handle;  // 32 lower-case hex characters
  // Exactly one of these is set, by the key's type.
  std::optional<crypto::RsaPublicComponents> rsa;
  std::optional<crypto::EcCurve> ec_curve;
  std::optional<crypto::EcCoordinates> ec_point;
};

class KeyProvider {
 public:
  virtual ~KeyProvider() = default;

  // The platform's name for the module, reported as hsmPlatform ("softhsm2", or the token's
  // manufacturer and model).
  virtual std::string Platform() const = 0;

  // OK when the token answers (a cheap call such as C_GetSessionInfo); for /readyz.
  virtual Status Check() const = 0;

  // --- the root key
  virtual StatusOr<Bytes> SealWithRoot(const SecretBytes& plaintext, ByteView aad) = 0;
  virtual StatusOr<SecretBytes> OpenWithRoot(ByteView sealed, ByteView aad) = 0;

  // --- HSM-protected key pairs
  // modulus_bits: 2048, 3072 or 4096 (e = 65537).
  virtual StatusOr<HsmKeyInfo> GenerateRsa(int modulus_bits) = 0;
  virtual StatusOr<HsmKeyInfo> GenerateEc(crypto::EcCurve curve) = 0;
  // BYOK: the private key is created in the token, sensitive and non-extractable.
  virtual StatusOr<HsmKeyInfo> ImportRsa(const crypto::RsaPrivateComponents& key) = 0;
  virtual StatusOr<HsmKeyInfo> ImportEc(crypto::EcCurve curve, const crypto::EcCoordinates& point,
                                        const SecretBytes& d) = 0;
  // The public half of an existing pair; NotFound when the handle names nothing.
  virtual StatusOr<HsmKeyInfo> Describe(std::string_view handle) = 0;

  // RSA decryption in the token (kOaepSha1, kOaepSha256 or kPkcs1v15). One DataLoss whatever
  // makes the decryption fail. Unimplemented when the token does not offer the padding
  // (SoftHSM2 before 2.7 has no RSA-OAEP with SHA-256), known before any ciphertext is used.
  virtual StatusOr<SecretBytes> RsaDecrypt(std::string_view handle, crypto::RsaPadding padding,
                                           ByteView ciphertext) = 0;
  // Signs a precomputed `digest` of `hash` (its size must match): PKCS#1 v1.5 (DigestInfo
  // added here) or PSS with a salt as long as the hash.
  virtual StatusOr<Bytes> RsaSignDigest(std::string_view handle, crypto::RsaSignatureScheme scheme,
                                        crypto::HashAlgorithm hash, ByteView digest) = 0;
  // ECDSA over a precomputed digest; the signature is raw r || s (each EcFieldSize bytes).
  virtual StatusOr<Bytes> EcSignDigest(std::string_view handle, ByteView digest) = 0;

  // Destroys both objects of the pair (crypto-shredding). NotFound when nothing has the
  // handle, so a repeated purge can tell it already happened.
  virtual Status Destroy(std::string_view handle) = 0;
};

}  // namespace keyfoundry::hsm

#endif  // KEYFOUNDRY_HSM_KEY_PROVIDER_H_
