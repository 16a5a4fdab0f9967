#include "crypto/x509.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "crypto/ossl_ptr.h"
#include "crypto/random.h"

namespace keyfoundry::crypto {
namespace {

// The X.509 types only this file holds. They belong with the others in ossl_ptr.h; they are
// here until that header gains them.

constexpr size_t kMaxCommonName = 64;  // ub-common-name, RFC 5280 appendix A.1
constexpr size_t kMaxDnsName = 253;
constexpr size_t kMaxDnsLabel = 63;
constexpr size_t kSerialBytes = 16;
constexpr size_t kMaxPem = size_t{64} * 1024;  // far above any certificate or key we read
constexpr long kBackdateSeconds = 3600;        // tolerate clients whose clock is a little behind

Status CheckCommonName(std::string_view common_name) {
  if (common_name.empty() || common_name.size() > kMaxCommonName) {
    return InvalidArgumentError("a certificate common name must have 1 to 64 characters");
  }
  return OkStatus();
}

// Letters, digits and '-' in labels of 1 to 63 characters, an optional "*." prefix, at most
// 253 characters in all.
Status CheckDnsName(std::string_view name) {
  auto invalid = [name] {
    return InvalidArgumentError("invalid DNS name for a certificate: \"" +
                                std::string(name.substr(0, kMaxDnsName)) + "\"");
  };
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.empty() || name.size() > kMaxDnsName) return invalid();
  size_t label = 0;
  for (char c : rest) {
    if (c == '.') {
      if (label == 0) return invalid();
      label = 0;
      continue;
    }
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || ++label > kMaxDnsLabel) return invalid();
  }
  return label == 0 ? invalid() : OkStatus();
}

StatusOr<EvpPkeyPtr> GenerateP256Key() {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OsslError(StatusCode::kInternal, "generating a P-256 key failed");
  return key;
}

// A version 3 certificate for `key` named CN=`common_name`, with a random serial number and
// validity from an hour ago for `validity`. The issuer, extensions and signature come later.
StatusOr<X509Ptr> NewCertificate(EVP_PKEY* key, std::string_view common_name,
                                 std::chrono::days validity) {
  X509Ptr cert(X509_new());
  if (!cert) return OsslError(StatusCode::kInternal, "X509_new failed");

  ASSIGN_OR_RETURN(Bytes serial, RandomBytes(kSerialBytes));
  serial[0] &= 0x7f;  // positive
  serial[0] |= 0x40;  // and exactly 16 bytes long, never zero
  BignumPtr serial_bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  const long days = static_cast<long>(validity.count());
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !serial_bn ||
      BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, -kBackdateSeconds, nullptr) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(days), 0, nullptr) ==
          nullptr ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return OsslError(StatusCode::kInternal, "building a certificate failed");
  }
  return cert;
}

// Adds the extension `nid` = `value` (OpenSSL's configuration syntax, a constant of ours) to
// `cert`, issued by `issuer` (`cert` itself for a self-signed certificate).
Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OsslError(StatusCode::kInternal,
                     std::string("adding certificate extension ") + OBJ_nid2sn(nid) + " failed");
  }
  return OkStatus();
}

// The subjectAltName extension, built from GENERAL_NAMEs rather than a configuration string
// so that no name can smuggle in OpenSSL syntax.
Status AddSubjectAltNames(X509* cert, const std::vector<std::string>& dns_names,
                          const std::vector<std::string>& ip_addresses) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return OsslError(StatusCode::kInternal, "allocating subjectAltName failed");
  auto push = [&](int type, void* value) -> Status {
    GeneralNamePtr name(GENERAL_NAME_new());
    if (!name) return OsslError(StatusCode::kInternal, "allocating a GENERAL_NAME failed");
    GENERAL_NAME_set0_value(name.get(), type, value);  // takes `value`
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) {
      return OsslError(StatusCode::kInternal, "building subjectAltName failed");
    }
    (void)name.release();  // now owned by `names`
    return OkStatus();
  };
  for (const std::string& dns : dns_names) {
    RETURN_IF_ERROR(CheckDnsName(dns));
    Asn1Ia5StringPtr ia5(ASN1_IA5STRING_new());
    if (!ia5 || ASN1_STRING_set(ia5.get(), dns.data(), static_cast<int>(dns.size())) != 1) {
      return OsslError(StatusCode::kInternal, "allocating a DNS name failed");
    }
    RETURN_IF_ERROR(push(GEN_DNS, ia5.release()));
  }
  for (const std::string& ip : ip_addresses) {
    Asn1OctetStringPtr octets(ip.find('\0') == std::string::npos ? a2i_IPADDRESS(ip.c_str())
                                                                 : nullptr);
    if (!octets) {
      ClearOsslErrors();
      return InvalidArgumentError("invalid IP address for a certificate: \"" + ip + "\"");
    }
    RETURN_IF_ERROR(push(GEN_IPADD, octets.release()));
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return OsslError(StatusCode::kInternal, "adding subjectAltName failed");
  }
  return OkStatus();
}

Status Sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) {
    return OsslError(StatusCode::kInternal, "signing the certificate failed");
  }
  return OkStatus();
}

StatusOr<CertificateAndKey> ToPem(X509* cert, EVP_PKEY* key) {
  CertificateAndKey out;
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  // The key is written to OpenSSL's secure heap where one is configured; the memory BIO wipes
  // its buffer when freed either way.
  BioPtr key_bio(BIO_new(BIO_s_secmem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OsslError(StatusCode::kInternal, "writing PEM failed");
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(cert_bio.get(), &data);
  out.certificate_pem.assign(data, static_cast<size_t>(size));
  size = BIO_get_mem_data(key_bio.get(), &data);
  out.private_key_pem =
      SecretBytes(ByteView(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(size)),
                  InsecureSecretAccess());
  return out;
}

// Refuses to prompt on a terminal for the password of an encrypted PEM key.
int NoPassword(char*, int, int, void*) { return 0; }

StatusOr<X509Ptr> ParseCertificate(std::string_view pem) {
  if (pem.size() > kMaxPem) return InvalidArgumentError("the CA certificate is too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, &NoPassword, nullptr) : nullptr);
  if (!cert) {
    ClearOsslErrors();
    return InvalidArgumentError("the CA certificate is not a PEM certificate");
  }
  return cert;
}

StatusOr<EvpPkeyPtr> ParsePrivateKey(const SecretBytes& pem) {
  const ByteView bytes = pem.Reveal(InsecureSecretAccess());
  if (bytes.size() > kMaxPem) return InvalidArgumentError("the CA key is too large");
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  EvpPkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, &NoPassword, nullptr) : nullptr);
  if (!key) {
    ClearOsslErrors();
    return InvalidArgumentError("the CA key is not an unencrypted PEM private key");
  }
  return key;
}

}  // namespace

StatusOr<CertificateAndKey> GenerateCa(std::string_view common_name) {
  RETURN_IF_ERROR(CheckCommonName(common_name));
  ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
  ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, kCaValidity));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) {
    return OsslError(StatusCode::kInternal, "setting the CA issuer failed");
  }
  RETURN_IF_ERROR(AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExtension(c, c, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(Sign(c, key.get()));
  return ToPem(c, key.get());
}

StatusOr<CertificateAndKey> IssueServerCertificate(const CertificateAndKey& ca,
                                                   std::string_view common_name,
                                                   const std::vector<std::string>& dns_names,
                                                   const std::vector<std::string>& ip_addresses,
                                                   std::chrono::days validity) {
  RETURN_IF_ERROR(CheckCommonName(common_name));
  if (dns_names.empty() && ip_addresses.empty()) {
    return InvalidArgumentError("a server certificate needs at least one DNS name or IP address");
  }
  if (validity.count() <= 0 || validity > kCaValidity) {
    return InvalidArgumentError("a server certificate's validity must be 1 day to 10 years");
  }
  ASSIGN_OR_RETURN(X509Ptr ca_cert, ParseCertificate(ca.certificate_pem));
  ASSIGN_OR_RETURN(EvpPkeyPtr ca_key, ParsePrivateKey(ca.private_key_pem));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ClearOsslErrors();
    return InvalidArgumentError("the CA key does not match the CA certificate");
  }
  if (X509_check_ca(ca_cert.get()) < 1) {
    return InvalidArgumentError("the CA certificate is not a CA certificate");
  }

  ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
  ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, validity));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert.get())) != 1) {
    return OsslError(StatusCode::kInternal, "setting the certificate issuer failed");
  }
  RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_ext_key_usage, "serverAuth"));
  RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  RETURN_IF_ERROR(AddSubjectAltNames(c, dns_names, ip_addresses));
  RETURN_IF_ERROR(Sign(c, ca_key.get()));
  return ToPem(c, key.get());
}

}  // namespace keyfoundry::crypto
