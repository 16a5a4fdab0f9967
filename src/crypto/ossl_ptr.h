// Owned OpenSSL objects: every OpenSSL type we hold is a unique_ptr with its free function,
// all declared here (STYLE habit 5). crypto/ is the only folder that includes <openssl/*>,
// TLS setup in http/ aside.
#ifndef KEYFOUNDRY_CRYPTO_OSSL_PTR_H_
#define KEYFOUNDRY_CRYPTO_OSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace keyfoundry::crypto {

template <auto FreeFn>
struct OsslFree {
  template <typename T>
  void operator()(T* p) const {
    FreeFn(p);
  }
};

using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OsslFree<&EVP_CIPHER_CTX_free>>;
using EvpCipherPtr = std::unique_ptr<EVP_CIPHER, OsslFree<&EVP_CIPHER_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OsslFree<&EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslFree<&EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslFree<&EVP_MD_CTX_free>>;
using EvpMdPtr = std::unique_ptr<EVP_MD, OsslFree<&EVP_MD_free>>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, OsslFree<&EVP_KDF_free>>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OsslFree<&EVP_KDF_CTX_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OsslFree<&BN_free>>;
using BignumClearPtr = std::unique_ptr<BIGNUM, OsslFree<&BN_clear_free>>;  // secret values
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, OsslFree<&OSSL_PARAM_free>>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OsslFree<&OSSL_PARAM_BLD_free>>;
using OsslDecoderCtxPtr = std::unique_ptr<OSSL_DECODER_CTX, OsslFree<&OSSL_DECODER_CTX_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OsslFree<&ECDSA_SIG_free>>;
using X509Ptr = std::unique_ptr<X509, OsslFree<&X509_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, OsslFree<&X509_EXTENSION_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OsslFree<&X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OsslFree<&X509_STORE_CTX_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslFree<&GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, OsslFree<&GENERAL_NAME_free>>;
using Asn1Ia5StringPtr = std::unique_ptr<ASN1_IA5STRING, OsslFree<&ASN1_IA5STRING_free>>;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, OsslFree<&ASN1_OCTET_STRING_free>>;
using BioPtr = std::unique_ptr<BIO, OsslFree<&BIO_free>>;

// An error status carrying `what` and the name of OpenSSL's most recent error reason (never
// any data). Clears OpenSSL's thread-local error queue so errors don't leak between calls.
Status OsslError(StatusCode code, std::string what);

// Clears OpenSSL's thread-local error queue (after an expected failure).
void ClearOsslErrors();

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_OSSL_PTR_H_
