#include "server/tls.h"

#include <sys/stat.h>

#include <chrono>
#include <vector>

#include "common/file_util.h"
#include "common/logging.h"

namespace keyfoundry::server {
namespace {

namespace fs = std::filesystem;

bool IsIpLiteral(const std::string& host) {
  return !host.empty() && (host.find(':') != std::string::npos ||
                           host.find_first_not_of("0123456789.") == std::string::npos);
}

bool IsWildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

StatusOr<crypto::CertificateAndKey> LoadPair(const fs::path& cert, const fs::path& key) {
  crypto::CertificateAndKey pair;
  ASSIGN_OR_RETURN(pair.certificate_pem, ReadFile(cert.string()));
  ASSIGN_OR_RETURN(std::string key_pem, ReadFile(key.string()));
  pair.private_key_pem = SecretBytes(AsBytes(key_pem), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(key_pem.data()), key_pem.size()));
  return pair;
}

Status SavePair(const crypto::CertificateAndKey& pair, const fs::path& cert, const fs::path& key) {
  RETURN_IF_ERROR(WriteFileAtomically(
      key.string(), AsStringView(pair.private_key_pem.Reveal(InsecureSecretAccess())), 0600));
  return WriteFileAtomically(cert.string(), pair.certificate_pem, 0644);
}

// Days the certificate at `path` has left, from its modification time and the validity we
// issue with (the certificate itself is parsed only by crypto/).
bool NearExpiry(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return true;
  auto issued = std::chrono::system_clock::from_time_t(st.st_mtime);
  auto expires = issued + crypto::kServerCertificateValidity;
  return std::chrono::system_clock::now() + std::chrono::days(30) > expires;
}

}  // namespace

StatusOr<crypto::CertificateAndKey> EnsureTlsMaterial(const fs::path& data_dir,
                                                      const std::string& domain,
                                                      const std::string& listen_host) {
  const fs::path dir = data_dir / "tls";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return InternalError("cannot create " + dir.string() + ": " + ec.message());

  crypto::CertificateAndKey ca;
  if (fs::exists(dir / "ca.pem")) {
    ASSIGN_OR_RETURN(ca, LoadPair(dir / "ca.pem", dir / "ca-key.pem"));
  } else {
    ASSIGN_OR_RETURN(ca, crypto::GenerateCa("keyfoundry deployment CA"));
    RETURN_IF_ERROR(SavePair(ca, dir / "ca.pem", dir / "ca-key.pem"));
    Log(LogLevel::kInfo, "tls.ca_created", {{"ca", (dir / "ca.pem").string()}});
  }

  std::vector<std::string> dns = {"localhost", "*.vault." + domain, "*.openai." + domain,
                                  "vault." + domain, "management." + domain};
  if (domain != "localhost") dns.push_back(domain);
  std::vector<std::string> ips = {"127.0.0.1", "::1"};
  if (!IsWildcard(listen_host) && listen_host != "127.0.0.1" && listen_host != "::1" &&
      listen_host != "localhost") {
    (IsIpLiteral(listen_host) ? ips : dns).push_back(listen_host);
  }
  std::string names;
  for (const auto& n : dns) names += n + "\n";
  for (const auto& n : ips) names += n + "\n";

  StatusOr<std::string> recorded = ReadFile((dir / "server.names").string());
  if (recorded.ok() && *recorded == names && fs::exists(dir / "server-key.pem") &&
      !NearExpiry(dir / "server.pem")) {
    return LoadPair(dir / "server.pem", dir / "server-key.pem");
  }
  ASSIGN_OR_RETURN(crypto::CertificateAndKey server,
                   crypto::IssueServerCertificate(ca, "keyfoundryd", dns, ips));
  RETURN_IF_ERROR(SavePair(server, dir / "server.pem", dir / "server-key.pem"));
  RETURN_IF_ERROR(WriteFileAtomically((dir / "server.names").string(), names, 0644));
  Log(LogLevel::kInfo, "tls.server_certificate_issued",
      {{"certificate", (dir / "server.pem").string()}});
  return server;
}

}  // namespace keyfoundry::server
