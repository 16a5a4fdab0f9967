// ECDSA (FIPS 186-4) over the NIST curves P-256, P-384 and P-521, through OpenSSL's EVP_PKEY
// interface.
//
// Signature format: IEEE P1363 / JOSE (RFC 7518 section 3.4), r || s with each half
// left-padded to the curve's field size (EcFieldSize: 32, 48 or 66 bytes). OpenSSL speaks DER
// (SEQUENCE { INTEGER r, INTEGER s }); the conversion happens here with ECDSA_SIG.
//
// Keys cross the API as fixed-width big-endian coordinates x, y and private scalar d, each
// EcFieldSize bytes, as JWK wants (RFC 7518 section 6.2.1). Imported points are checked to be
// on the curve (and not the point at infinity); imported private keys are checked against
// their public point.
//
// Failure: verification gives one InvalidArgument error whatever the cause (a wrong length,
// a wrong key, a bad signature).
//
// Thread safety: keys are immutable after construction and may be used from several threads at
// once. Signing draws its nonce from OpenSSL's CSPRNG.
#ifndef KEYFOUNDRY_CRYPTO_ECDSA_H_
#define KEYFOUNDRY_CRYPTO_ECDSA_H_

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/hash_algorithm.h"
#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {

enum class EcCurve {
  kP256 = 1,  // secp256r1 / prime256v1
  kP384 = 2,  // secp384r1
  kP521 = 3,  // secp521r1
};

// The size in bytes of a coordinate, of the private scalar and of each half of a signature:
// 32, 48 or 66; 0 when `curve` is not an enumerator.
size_t EcFieldSize(EcCurve curve);

// The curve's NIST name, which JWK "crv" and OpenSSL use: "P-256", "P-384", "P-521"; nullptr
// when `curve` is not an enumerator.
const char* EcCurveName(EcCurve curve);

struct EcCoordinates {
  Bytes x;  // EcFieldSize bytes each
  Bytes y;
};

class EcPublicKey {
 public:
  // InvalidArgument unless x and y are EcFieldSize(curve) bytes each and name a point on the
  // curve.
  static StatusOr<EcPublicKey> FromCoordinates(EcCurve curve, ByteView x, ByteView y);

  EcCurve curve() const { return curve_; }
  StatusOr<EcCoordinates> Coordinates() const;

  // OK when `signature` (r || s, 2 * EcFieldSize bytes) is valid for `message` hashed with
  // `hash`.
  Status Verify(HashAlgorithm hash, ByteView message, ByteView signature) const;
  // The same over a precomputed digest (1..64 bytes).
  Status VerifyDigest(ByteView digest, ByteView signature) const;

 private:
  EcPublicKey(EcCurve curve, EvpPkeyPtr pkey) : curve_(curve), pkey_(std::move(pkey)) {}

  EcCurve curve_;
  EvpPkeyPtr pkey_;
};

class EcPrivateKey {
 public:
  // InvalidArgument when `curve` is not an enumerator.
  static StatusOr<EcPrivateKey> Generate(EcCurve curve);
  // InvalidArgument unless (x, y) is a point on the curve and d (EcFieldSize bytes) is its
  // private scalar.
  static StatusOr<EcPrivateKey> FromComponents(EcCurve curve, ByteView x, ByteView y,
                                               const SecretBytes& d);

  EcCurve curve() const { return curve_; }
  StatusOr<EcPublicKey> PublicKey() const;
  // The private scalar d, EcFieldSize bytes.
  StatusOr<SecretBytes> PrivateScalar() const;

  // Signs `message` hashed with `hash`; returns r || s.
  StatusOr<Bytes> Sign(HashAlgorithm hash, ByteView message) const;
  // Signs a precomputed digest (1..64 bytes; JOSE pairs ES256/384/512 with P-256/384/521, a
  // check left to the caller), as Azure Key Vault's sign takes it.
  StatusOr<Bytes> SignDigest(ByteView digest) const;

 private:
  EcPrivateKey(EcCurve curve, EvpPkeyPtr pkey) : curve_(curve), pkey_(std::move(pkey)) {}

  EcCurve curve_;
  EvpPkeyPtr pkey_;
};

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_ECDSA_H_
