// kf's login state: which deployment it talks to, how it trusts it, who is signed in, and the
// access tokens it holds, in ~/.keyfoundry/profile.json ($KEYFOUNDRY_CONFIG_DIR overrides the
// folder). The folder is mode 0700 and the file 0600: the file holds bearer tokens, and for a
// service principal its secret (as `az` keeps service principal secrets), so kf can get new
// tokens without asking again. Users sign in again when their tokens expire: `kf login` gets a
// user two tokens with the one password it asks for, one for the control plane
// (https://management.DOMAIN) and one for the key vaults' data plane (https://vault.DOMAIN),
// and keeps neither the password nor any refresh credential.
//
// Written whole to a temporary file and renamed, so a crash leaves the old or the new profile.
#ifndef KEYFOUNDRY_CLI_PROFILE_H_
#define KEYFOUNDRY_CLI_PROFILE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace keyfoundry::cli {

struct CachedToken {
  std::string access_token;
  int64_t expires_on = 0;  // unix seconds
};

struct Profile {
  std::string server;           // https://HOST:PORT
  std::string ca_path;          // the deployment's CA certificate (PEM)
  std::string connect_address;  // optional: IP to connect to for *.DOMAIN hosts
  std::string tenant_id;
  std::string subscription_id;
  std::string management_audience;  // https://management.DOMAIN
  std::string vault_dns_suffix;     // vault.DOMAIN: vault V answers at https://V.vault.DOMAIN:PORT
  std::string user;                 // a user name, or a service principal's client id
  bool service_principal = false;
  std::string client_secret;                  // service principals only
  std::map<std::string, CachedToken> tokens;  // by scope
};

// The scope of tokens for the key vaults' data plane: https://vault.DOMAIN/.default.
std::string VaultScope(const Profile& profile);
// The deployment's domain ("localhost"), from the vault suffix "vault.DOMAIN".
std::string ProfileDomain(const Profile& profile);
// The scope of tokens for the AI data plane: https://cognitiveservices.DOMAIN/.default.
std::string CognitiveServicesScope(const Profile& profile);

// The folder kf keeps its state in.
std::string ConfigDir();

// NotFound when nobody has signed in yet (the message says to run `kf login`).
StatusOr<Profile> LoadProfile(const std::string& dir);
Status SaveProfile(const std::string& dir, const Profile& profile);

}  // namespace keyfoundry::cli

#endif  // KEYFOUNDRY_CLI_PROFILE_H_
