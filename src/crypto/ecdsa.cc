#include "crypto/ecdsa.h"

#include <openssl/core_names.h>

#include <string>

#include "crypto/pkey.h"

namespace keyfoundry::crypto {
namespace {

// The point in the uncompressed encoding OpenSSL takes: 04 || x || y (SEC 1 section 2.3.3).
Bytes UncompressedPoint(ByteView x, ByteView y) {
  ByteWriter point(1 + x.size() + y.size());
  point.WriteU8(0x04);
  point.WriteBytes(x);
  point.WriteBytes(y);
  return point.Take();
}

Status VerifyFailed() { return InvalidArgumentError("ECDSA signature verification failed"); }

StatusOr<EcCoordinates> GetCoordinates(const EVP_PKEY* pkey, EcCurve curve) {
  EcCoordinates out;
  ASSIGN_OR_RETURN(out.x, GetInteger(pkey, OSSL_PKEY_PARAM_EC_PUB_X, EcFieldSize(curve)));
  ASSIGN_OR_RETURN(out.y, GetInteger(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, EcFieldSize(curve)));
  return out;
}

// r || s (two halves of `field_size` bytes) to DER. The caller has checked the size.
StatusOr<Bytes> P1363ToDer(ByteView signature, size_t field_size) {
  const int half = static_cast<int>(field_size);
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BignumPtr r(BN_bin2bn(signature.data(), half, nullptr));
  BignumPtr s(BN_bin2bn(signature.data() + field_size, half, nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return OsslError(StatusCode::kResourceExhausted, "building ECDSA_SIG failed");
  }
  // ECDSA_SIG_set0 took ownership of r and s.
  (void)r.release();
  (void)s.release();
  const int der_size = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (der_size <= 0) return OsslError(StatusCode::kInternal, "encoding ECDSA_SIG failed");
  Bytes der(static_cast<size_t>(der_size));
  uint8_t* cursor = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &cursor) != der_size) {
    return OsslError(StatusCode::kInternal, "encoding ECDSA_SIG failed");
  }
  return der;
}

// DER (from OpenSSL's signer) to r || s, each half left-padded to `field_size` bytes.
StatusOr<Bytes> DerToP1363(ByteView der, size_t field_size) {
  const uint8_t* cursor = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())));
  if (!sig) return OsslError(StatusCode::kInternal, "decoding ECDSA_SIG failed");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  const int half = static_cast<int>(field_size);
  Bytes out(2 * field_size);
  if (BN_bn2binpad(r, out.data(), half) != half ||
      BN_bn2binpad(s, out.data() + field_size, half) != half) {
    return OsslError(StatusCode::kInternal, "ECDSA signature wider than the curve");
  }
  return out;
}

}  // namespace

const char* EcCurveName(EcCurve curve) {
  switch (curve) {
    case EcCurve::kP256:
      return "P-256";
    case EcCurve::kP384:
      return "P-384";
    case EcCurve::kP521:
      return "P-521";
  }
  return nullptr;
}

size_t EcFieldSize(EcCurve curve) {
  switch (curve) {
    case EcCurve::kP256:
      return 32;
    case EcCurve::kP384:
      return 48;
    case EcCurve::kP521:
      return 66;
  }
  return 0;
}

StatusOr<EcPublicKey> EcPublicKey::FromCoordinates(EcCurve curve, ByteView x, ByteView y) {
  const char* group = EcCurveName(curve);
  if (group == nullptr) return InvalidArgumentError("unknown EC curve");
  const size_t field_size = EcFieldSize(curve);
  if (x.size() != field_size || y.size() != field_size) {
    return InvalidArgumentError("EC coordinates x and y must be " + std::to_string(field_size) +
                                " bytes each for " + group);
  }
  const Bytes point = UncompressedPoint(x, y);
  PkeyBuilder builder;
  builder.AddUtf8String(OSSL_PKEY_PARAM_GROUP_NAME, group);
  builder.AddOctetString(OSSL_PKEY_PARAM_PUB_KEY, point);
  ASSIGN_OR_RETURN(EvpPkeyPtr pkey,
                   builder.Build("EC", EVP_PKEY_PUBLIC_KEY,
                                 std::string("EC public key (x, y) is not a point on ") + group));
  return EcPublicKey(curve, std::move(pkey));
}

StatusOr<EcCoordinates> EcPublicKey::Coordinates() const {
  return GetCoordinates(pkey_.get(), curve_);
}

Status EcPublicKey::Verify(HashAlgorithm hash, ByteView message, ByteView signature) const {
  const char* hash_name = HashName(hash);
  if (hash_name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  const size_t field_size = EcFieldSize(curve_);
  if (signature.size() != 2 * field_size) return VerifyFailed();
  ASSIGN_OR_RETURN(Bytes der, P1363ToDer(signature, field_size));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, hash_name, nullptr, nullptr, pkey_.get(),
                                      nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA verification setup failed");
  }
  if (EVP_DigestVerify(ctx.get(), der.data(), der.size(), message.data(), message.size()) != 1) {
    ClearOsslErrors();
    return VerifyFailed();
  }
  return OkStatus();
}

StatusOr<EcPrivateKey> EcPrivateKey::Generate(EcCurve curve) {
  const char* group = EcCurveName(curve);
  if (group == nullptr) return InvalidArgumentError("unknown EC curve");
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group));
  if (!pkey) return OsslError(StatusCode::kInternal, "EC key generation failed");
  return EcPrivateKey(curve, std::move(pkey));
}

StatusOr<EcPrivateKey> EcPrivateKey::FromComponents(EcCurve curve, ByteView x, ByteView y,
                                                    const SecretBytes& d) {
  // Checks the curve, the sizes of x and y and the point first, for a precise error.
  RETURN_IF_ERROR(EcPublicKey::FromCoordinates(curve, x, y).status());
  const char* group = EcCurveName(curve);
  if (d.size() != EcFieldSize(curve)) {
    return InvalidArgumentError("EC private key d must be " + std::to_string(EcFieldSize(curve)) +
                                " bytes for " + group);
  }
  const Bytes point = UncompressedPoint(x, y);
  PkeyBuilder builder;
  builder.AddUtf8String(OSSL_PKEY_PARAM_GROUP_NAME, group);
  builder.AddOctetString(OSSL_PKEY_PARAM_PUB_KEY, point);
  builder.AddSecretInteger(OSSL_PKEY_PARAM_PRIV_KEY, d);
  ASSIGN_OR_RETURN(
      EvpPkeyPtr pkey,
      builder.Build("EC", EVP_PKEY_KEYPAIR,
                    "EC private key d is out of range or does not match the point (x, y)"));
  return EcPrivateKey(curve, std::move(pkey));
}

StatusOr<EcPublicKey> EcPrivateKey::PublicKey() const {
  ASSIGN_OR_RETURN(EcCoordinates point, GetCoordinates(pkey_.get(), curve_));
  return EcPublicKey::FromCoordinates(curve_, point.x, point.y);
}

StatusOr<SecretBytes> EcPrivateKey::PrivateScalar() const {
  return GetSecretInteger(pkey_.get(), OSSL_PKEY_PARAM_PRIV_KEY, EcFieldSize(curve_));
}

StatusOr<Bytes> EcPrivateKey::Sign(HashAlgorithm hash, ByteView message) const {
  const char* hash_name = HashName(hash);
  if (hash_name == nullptr) return InvalidArgumentError("unknown hash algorithm");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, hash_name, nullptr, nullptr, pkey_.get(),
                                    nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA signing setup failed");
  }
  Bytes der(static_cast<size_t>(EVP_PKEY_get_size(pkey_.get())));  // the largest DER signature
  size_t der_size = der.size();
  if (EVP_DigestSign(ctx.get(), der.data(), &der_size, message.data(), message.size()) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA signing failed");
  }
  return DerToP1363(ByteView(der).first(der_size), EcFieldSize(curve_));
}

StatusOr<Bytes> EcPrivateKey::SignDigest(ByteView digest) const {
  if (digest.empty() || digest.size() > 64) {
    return InvalidArgumentError("an ECDSA digest is 1 to 64 bytes");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_.get(), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA signing setup failed");
  }
  Bytes der(static_cast<size_t>(EVP_PKEY_get_size(pkey_.get())));
  size_t der_size = der.size();
  if (EVP_PKEY_sign(ctx.get(), der.data(), &der_size, digest.data(), digest.size()) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA signing failed");
  }
  return DerToP1363(ByteView(der).first(der_size), EcFieldSize(curve_));
}

Status EcPublicKey::VerifyDigest(ByteView digest, ByteView signature) const {
  const size_t field_size = EcFieldSize(curve_);
  if (digest.empty() || digest.size() > 64 || signature.size() != 2 * field_size) {
    return VerifyFailed();
  }
  ASSIGN_OR_RETURN(Bytes der, P1363ToDer(signature, field_size));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_.get(), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return OsslError(StatusCode::kInternal, "ECDSA verification setup failed");
  }
  if (EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size()) != 1) {
    ClearOsslErrors();
    return VerifyFailed();
  }
  return OkStatus();
}

}  // namespace keyfoundry::crypto
