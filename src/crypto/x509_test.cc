#include "crypto/x509.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "crypto/ossl_ptr.h"

namespace keyfoundry::crypto {
namespace {

const std::vector<std::string> kDnsNames = {"localhost", "*.vault.localhost", "*.openai.localhost"};
const std::vector<std::string> kIps = {"127.0.0.1", "::1"};

X509Ptr Parse(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  EXPECT_NE(cert, nullptr);
  return cert;
}

CertificateAndKey Ca(const char* name = "keyfoundry test CA") {
  auto ca = GenerateCa(name);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(ca).value();
}

CertificateAndKey Leaf(const CertificateAndKey& ca) {
  auto leaf = IssueServerCertificate(ca, "keyfoundry server", kDnsNames, kIps);
  EXPECT_TRUE(leaf.ok()) << leaf.status();
  return std::move(leaf).value();
}

// Verifies `leaf` against the single trust anchor `ca` for TLS server use and, when given,
// for host name `host`. Returns the X509_V_* result.
int Verify(const std::string& ca_pem, const std::string& leaf_pem, const char* host = nullptr) {
  X509Ptr ca = Parse(ca_pem);
  X509Ptr leaf = Parse(leaf_pem);
  X509StorePtr store(X509_STORE_new());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  EXPECT_EQ(X509_STORE_add_cert(store.get(), ca.get()), 1);
  EXPECT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr), 1);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (host != nullptr) X509_VERIFY_PARAM_set1_host(param, host, 0);
  X509_verify_cert(ctx.get());
  return X509_STORE_CTX_get_error(ctx.get());
}

double ValidityDays(const X509* cert) {
  int days = 0;
  int seconds = 0;
  EXPECT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert), X509_get0_notAfter(cert)),
            1);
  return days + seconds / 86400.0;
}

TEST(X509Test, CaIsSelfSignedP256CaCertificate) {
  const CertificateAndKey ca = Ca();
  X509Ptr cert = Parse(ca.certificate_pem);
  EXPECT_EQ(X509_check_ca(cert.get()), 1);
  EXPECT_EQ(X509_check_issued(cert.get(), cert.get()), X509_V_OK);
  EXPECT_EQ(X509_get_extension_flags(cert.get()) & EXFLAG_SS, static_cast<uint32_t>(EXFLAG_SS));
  EXPECT_NE(X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN, 0u);
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  char group[32] = {};
  EXPECT_EQ(EVP_PKEY_get_group_name(X509_get0_pubkey(cert.get()), group, sizeof(group), nullptr),
            1);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_NEAR(ValidityDays(cert.get()), 3652 + 1.0 / 24, 0.01);
  EXPECT_TRUE(std::string(reinterpret_cast<const char*>(
                              ca.private_key_pem.Reveal(InsecureSecretAccess()).data()),
                          ca.private_key_pem.size())
                  .starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

TEST(X509Test, ServerCertificateChainsToItsCaForTlsServerUse) {
  const CertificateAndKey ca = Ca();
  const CertificateAndKey leaf = Leaf(ca);
  EXPECT_EQ(Verify(ca.certificate_pem, leaf.certificate_pem), X509_V_OK);
  EXPECT_EQ(Verify(ca.certificate_pem, leaf.certificate_pem, "myvault.vault.localhost"), X509_V_OK);

  X509Ptr cert = Parse(leaf.certificate_pem);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  EXPECT_EQ(X509_check_purpose(cert.get(), X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_NE(X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER, 0u);
  EXPECT_NEAR(ValidityDays(cert.get()), 397 + 1.0 / 24, 0.01);
}

TEST(X509Test, SubjectAltNamesMatchTheGivenNamesAndNothingElse) {
  const CertificateAndKey leaf = Leaf(Ca());
  X509Ptr cert = Parse(leaf.certificate_pem);
  auto host = [&](const char* name) { return X509_check_host(cert.get(), name, 0, 0, nullptr); };
  EXPECT_EQ(host("localhost"), 1);
  EXPECT_EQ(host("myvault.vault.localhost"), 1);
  EXPECT_EQ(host("MyVault.Vault.LocalHost"), 1);
  EXPECT_EQ(host("acct.openai.localhost"), 1);
  EXPECT_EQ(host("a.b.vault.localhost"), 0);  // a wildcard covers one label
  EXPECT_EQ(host("vault.localhost"), 0);
  EXPECT_EQ(host("evil.localhost"), 0);
  EXPECT_EQ(host("example.com"), 0);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "0:0:0:0:0:0:0:1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.2", 0), 0);
}

TEST(X509Test, VerificationFailsAgainstAnotherCaOrForAnotherHost) {
  const CertificateAndKey ca = Ca();
  const CertificateAndKey leaf = Leaf(ca);
  EXPECT_EQ(Verify(Ca().certificate_pem, leaf.certificate_pem),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_EQ(Verify(ca.certificate_pem, leaf.certificate_pem, "evil.localhost"),
            X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST(X509Test, SerialNumbersAreRandomPositiveSixteenByteIntegers) {
  const CertificateAndKey ca = Ca();
  X509Ptr a = Parse(ca.certificate_pem);
  X509Ptr b = Parse(Leaf(ca).certificate_pem);
  X509Ptr c = Parse(Leaf(ca).certificate_pem);
  for (X509* cert : {a.get(), b.get(), c.get()}) {
    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
    EXPECT_EQ(ASN1_STRING_length(serial), 16);
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);  // not V_ASN1_NEG_INTEGER
  }
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(b.get()), X509_get0_serialNumber(c.get())), 0);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.get()), X509_get0_serialNumber(b.get())), 0);
}

TEST(X509Test, RefusesMalformedNamesAndAddresses) {
  const CertificateAndKey ca = Ca();
  auto issue = [&](std::vector<std::string> dns, std::vector<std::string> ips,
                   std::string_view cn = "server") {
    return IssueServerCertificate(ca, cn, dns, ips).status().code();
  };
  ASSERT_EQ(issue({"localhost"}, {}), StatusCode::kOk);
  ASSERT_EQ(issue({}, {"10.1.2.3"}), StatusCode::kOk);
  for (const char* bad : {"", "*", "*.", "a..b", ".a", "a.", "a b", "a,DNS:evil", "x.*.y", "a*.b",
                          "\xc3\xa9.localhost"}) {
    EXPECT_EQ(issue({bad}, {}), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(issue({std::string(64, 'a') + ".b"}, {}), StatusCode::kInvalidArgument);
  for (const char* bad : {"", "256.1.1.1", "1.2.3", "::g", "localhost", "1.2.3.4/8"}) {
    EXPECT_EQ(issue({}, {bad}), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(issue({}, {std::string("127.0.0.1\0evil", 14)}), StatusCode::kInvalidArgument);
  EXPECT_EQ(issue({}, {}), StatusCode::kInvalidArgument);
  EXPECT_EQ(issue({"localhost"}, {}, ""), StatusCode::kInvalidArgument);
  EXPECT_EQ(issue({"localhost"}, {}, std::string(65, 'c')), StatusCode::kInvalidArgument);
  EXPECT_EQ(GenerateCa("").status().code(), StatusCode::kInvalidArgument);
}

TEST(X509Test, RefusesABadCa) {
  const CertificateAndKey ca = Ca();
  const CertificateAndKey other = Ca();
  const CertificateAndKey leaf = Leaf(ca);
  auto issue_with = [&](std::string cert_pem, const SecretBytes& key_pem) {
    CertificateAndKey bad{std::move(cert_pem), key_pem.Clone()};
    return IssueServerCertificate(bad, "server", kDnsNames, kIps).status();
  };
  EXPECT_EQ(issue_with(ca.certificate_pem, other.private_key_pem),
            InvalidArgumentError("the CA key does not match the CA certificate"));
  EXPECT_EQ(issue_with(leaf.certificate_pem, leaf.private_key_pem),
            InvalidArgumentError("the CA certificate is not a CA certificate"));
  EXPECT_EQ(issue_with("not a certificate", ca.private_key_pem).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      issue_with(ca.certificate_pem, SecretBytes(AsBytes("junk"), InsecureSecretAccess())).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      IssueServerCertificate(ca, "server", kDnsNames, kIps, std::chrono::days(0)).status().code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::crypto
