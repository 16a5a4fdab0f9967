// LocalVaultClient: the VaultClient for the key vault built into this keyfoundryd. It calls
// KeyVault in process, as the account's managed identity and as a trusted platform service:
// the vault checks access policies or RBAC for that identity, the firewall (passed only when
// the vault's bypass is AzureServices or an IP rule admits the loopback address), the key's
// state and operations, and audits the call under the identity's oid — exactly what an HTTPS
// call with a managed-identity token would meet, without the round trip.
//
// It serves vault URIs "https://{vault}.vault.{domain}[:port][/]"; others are not its own
// (Owns says so). Thread safety: as KeyVault, safe from many threads.
#ifndef KEYFOUNDRY_ENCRYPTION_LOCAL_VAULT_CLIENT_H_
#define KEYFOUNDRY_ENCRYPTION_LOCAL_VAULT_CLIENT_H_

#include <optional>
#include <string>
#include <string_view>

#include "encryption/vault_client.h"

namespace keyfoundry::keyvault {
class KeyVault;
}  // namespace keyfoundry::keyvault

namespace keyfoundry::encryption {

class LocalVaultClient final : public VaultClient {
 public:
  // `domain`: the deployment's domain ("localhost"); `key_vault` must outlive the client.
  LocalVaultClient(keyvault::KeyVault& key_vault, std::string domain);

  // True when `vault_uri` names a vault of this deployment.
  bool Owns(std::string_view vault_uri) const { return VaultName(vault_uri).has_value(); }
  // The lower-case name of the vault `vault_uri` names, when it is one of this deployment's.
  std::optional<std::string> VaultName(std::string_view vault_uri) const;

  StatusOr<VaultKeyInfo> GetKey(const ActingIdentity& who, const KeyReference& key) override;
  StatusOr<WrappedKey> WrapKey(const ActingIdentity& who, const KeyReference& key,
                               std::string_view algorithm, const SecretBytes& key_bytes) override;
  StatusOr<SecretBytes> UnwrapKey(const ActingIdentity& who, std::string_view kid,
                                  std::string_view algorithm, ByteView wrapped) override;

 private:
  keyvault::KeyVault& key_vault_;
  const std::string vault_suffix_;  // ".vault.{domain}"
};

}  // namespace keyfoundry::encryption

#endif  // KEYFOUNDRY_ENCRYPTION_LOCAL_VAULT_CLIENT_H_
