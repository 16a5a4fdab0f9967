// The deployment's TLS material in DATA_DIR/tls: a private CA (ca.pem, ca-key.pem) made on the
// first start, and a server certificate it signs (server.pem, server-key.pem) for localhost,
// 127.0.0.1, ::1, the listen address, and the wildcard hosts of vaults and accounts
// (*.vault.DOMAIN, *.openai.DOMAIN). Keys are mode 0600. The server certificate is issued anew
// when the domain or listen host changes (server.names records what it covers) or when it
// is within 30 days of expiry; the CA stays, so clients keep trusting the deployment.
#ifndef KEYFOUNDRY_SERVER_TLS_H_
#define KEYFOUNDRY_SERVER_TLS_H_

#include <filesystem>
#include <string>

#include "common/status.h"
#include "crypto/x509.h"

namespace keyfoundry::server {

StatusOr<crypto::CertificateAndKey> EnsureTlsMaterial(const std::filesystem::path& data_dir,
                                                      const std::string& domain,
                                                      const std::string& listen_host);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_TLS_H_
