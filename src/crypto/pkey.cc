#include "crypto/pkey.h"

#include <string>

namespace keyfoundry::crypto {
namespace {

Status CheckKey(EVP_PKEY* pkey, int selection, std::string_view error) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx) return OsslError(StatusCode::kResourceExhausted, "EVP_PKEY_CTX_new failed");
  const int ok = selection == EVP_PKEY_PUBLIC_KEY ? EVP_PKEY_public_check(ctx.get())
                                                  : EVP_PKEY_check(ctx.get());
  if (ok != 1) return OsslError(StatusCode::kInvalidArgument, std::string(error));
  return OkStatus();
}

// Reads the integer parameter `name`; cleared when freed, as it may be secret.
StatusOr<BignumClearPtr> GetBignum(const EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
    return OsslError(StatusCode::kInternal, std::string("reading key parameter ") + name);
  }
  return BignumClearPtr(bn);
}

// The size GetInteger writes `bn` in.
StatusOr<size_t> IntegerSize(const BIGNUM* bn, size_t width) {
  const size_t size = static_cast<size_t>(BN_num_bytes(bn));
  if (width == 0) return size;
  if (size > width) return InternalError("key parameter is wider than its field");
  return width;
}

}  // namespace

PkeyBuilder::PkeyBuilder() : bld_(OSSL_PARAM_BLD_new()) { ok_ = bld_ != nullptr; }

void PkeyBuilder::AddInteger(const char* name, ByteView big_endian) {
  BignumClearPtr bn(BN_bin2bn(big_endian.data(), static_cast<int>(big_endian.size()), nullptr));
  ok_ = ok_ && bn && OSSL_PARAM_BLD_push_BN(bld_.get(), name, bn.get()) == 1;
  bignums_.push_back(std::move(bn));
}

void PkeyBuilder::AddSecretInteger(const char* name, const SecretBytes& big_endian) {
  ByteView value = big_endian.Reveal(InsecureSecretAccess());
  BignumClearPtr bn(BN_secure_new());
  ok_ = ok_ && bn && BN_bin2bn(value.data(), static_cast<int>(value.size()), bn.get()) &&
        OSSL_PARAM_BLD_push_BN(bld_.get(), name, bn.get()) == 1;
  bignums_.push_back(std::move(bn));
}

void PkeyBuilder::AddUtf8String(const char* name, const char* value) {
  ok_ = ok_ && OSSL_PARAM_BLD_push_utf8_string(bld_.get(), name, value, 0) == 1;
}

void PkeyBuilder::AddOctetString(const char* name, ByteView value) {
  ok_ = ok_ && OSSL_PARAM_BLD_push_octet_string(bld_.get(), name, value.data(), value.size()) == 1;
}

StatusOr<EvpPkeyPtr> PkeyBuilder::Build(const char* key_type, int selection,
                                        std::string_view error) {
  if (!ok_) return OsslError(StatusCode::kResourceExhausted, "building key parameters failed");
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld_.get()));
  if (!params) return OsslError(StatusCode::kResourceExhausted, "OSSL_PARAM_BLD_to_param failed");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, key_type, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OsslError(StatusCode::kInternal, "EVP_PKEY_fromdata_init failed");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, selection, params.get()) != 1) {
    return OsslError(StatusCode::kInvalidArgument, std::string(error));
  }
  EvpPkeyPtr pkey(raw);
  RETURN_IF_ERROR(CheckKey(pkey.get(), selection, error));
  return pkey;
}

StatusOr<EvpPkeyPtr> DecodeDer(ByteView der, const char* structure, const char* key_type,
                               int selection, std::string_view error) {
  EVP_PKEY* raw = nullptr;
  OsslDecoderCtxPtr decoder(
      OSSL_DECODER_CTX_new_for_pkey(&raw, "DER", structure, key_type, selection, nullptr, nullptr));
  if (!decoder) return OsslError(StatusCode::kInternal, "OSSL_DECODER_CTX_new_for_pkey failed");
  const uint8_t* data = der.data();
  size_t remaining = der.size();
  const bool decoded = OSSL_DECODER_from_data(decoder.get(), &data, &remaining) == 1;
  EvpPkeyPtr pkey(raw);
  if (!decoded || !pkey || remaining != 0) {
    return OsslError(StatusCode::kInvalidArgument, std::string(error));
  }
  RETURN_IF_ERROR(CheckKey(pkey.get(), selection, error));
  return pkey;
}

StatusOr<Bytes> GetInteger(const EVP_PKEY* pkey, const char* name, size_t width) {
  ASSIGN_OR_RETURN(BignumClearPtr bn, GetBignum(pkey, name));
  ASSIGN_OR_RETURN(size_t size, IntegerSize(bn.get(), width));
  Bytes out(size);
  BN_bn2binpad(bn.get(), out.data(), static_cast<int>(size));
  return out;
}

StatusOr<SecretBytes> GetSecretInteger(const EVP_PKEY* pkey, const char* name, size_t width) {
  ASSIGN_OR_RETURN(BignumClearPtr bn, GetBignum(pkey, name));
  ASSIGN_OR_RETURN(size_t size, IntegerSize(bn.get(), width));
  SecretBytes out(size);
  BN_bn2binpad(bn.get(), out.Mutable(InsecureSecretAccess()).data(), static_cast<int>(size));
  return out;
}

}  // namespace keyfoundry::crypto
