// X.509 certificates for the server's TLS: a private CA and server certificates it signs, so
// that a fresh deployment serves HTTPS at once and clients trust it by trusting one CA file
// (BRIEF §9: DIR/tls/ca.pem).
//
// What is generated:
// - CA: ECDSA P-256 key, self-signed with SHA-256, version 3, valid from one hour ago (clock
//   skew) for 10 years; basicConstraints critical CA:TRUE, pathlen:0; keyUsage critical
//   keyCertSign, cRLSign; subjectKeyIdentifier.
// - Server certificate: a new ECDSA P-256 key, signed by the CA with SHA-256, valid from one
//   hour ago for `validity` (397 days by default: within the 398 days that browsers accept,
//   so renewal is yearly); basicConstraints critical CA:FALSE; keyUsage critical
//   digitalSignature; extendedKeyUsage serverAuth; subjectAltName with the given DNS names
//   (a wildcard only as the whole leftmost label: "*.vault.localhost") and IP addresses;
//   subject and authority key identifiers.
// - Serial numbers: 16 random bytes (positive, so at most 128 bits), as RFC 5280 and the CA/B
//   Forum want them unpredictable.
//
// Keys cross the API as PEM: the certificate as "CERTIFICATE", the private key as unencrypted
// PKCS#8 "PRIVATE KEY" held in SecretBytes (it is zeroized when dropped; the caller decides
// where it is stored, e.g. a 0600 file).
//
// Failure: InvalidArgument for a bad name, address or input PEM (the message says which);
// Internal when OpenSSL fails to build or sign. Thread-safe (no shared state).
#ifndef KEYFOUNDRY_CRYPTO_X509_H_
#define KEYFOUNDRY_CRYPTO_X509_H_

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::crypto {

struct CertificateAndKey {
  std::string certificate_pem;  // one PEM "CERTIFICATE" block
  SecretBytes private_key_pem;  // PEM "PRIVATE KEY" (PKCS#8, unencrypted)
};

inline constexpr std::chrono::days kCaValidity{3652};
inline constexpr std::chrono::days kServerCertificateValidity{397};

// A new self-signed CA named CN=`common_name` (1 to 64 characters). InvalidArgument when the
// name is empty or too long.
StatusOr<CertificateAndKey> GenerateCa(std::string_view common_name);

// A new server certificate named CN=`common_name` (1 to 64 characters), signed by `ca`.
// `dns_names` are host names ("localhost", "*.vault.localhost"): letters, digits, '-' and '.',
// with an optional "*." prefix; `ip_addresses` are IPv4 or IPv6 literals ("127.0.0.1", "::1").
// At least one of the two lists must be non-empty. InvalidArgument when a name or address is
// malformed, when `ca` does not parse, when its key does not match its certificate, or when its
// certificate is not a CA.
StatusOr<CertificateAndKey> IssueServerCertificate(
    const CertificateAndKey& ca, std::string_view common_name,
    const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses,
    std::chrono::days validity = kServerCertificateValidity);

}  // namespace keyfoundry::crypto

#endif  // KEYFOUNDRY_CRYPTO_X509_H_
