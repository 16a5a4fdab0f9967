#include "encryption/local_vault_client.h"

#include <utility>

#include "keyvault/key_vault.h"

namespace keyfoundry::encryption {
namespace {

// A vault URI split into what KeyVault wants: the vault's name and the base of its kids.
struct LocalVault {
  std::string name;
  std::string base_url;  // "https://{vault}.vault.DOMAIN[:port]"
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::optional<LocalVault> SplitVaultUri(std::string_view uri, std::string_view suffix) {
  constexpr std::string_view kScheme = "https://";
  if (!uri.starts_with(kScheme)) return std::nullopt;
  std::string_view authority = uri.substr(kScheme.size());
  authority = authority.substr(0, authority.find('/'));
  const std::string host = Lower(authority.substr(0, authority.find(':')));
  if (host.size() <= suffix.size() || !host.ends_with(suffix)) return std::nullopt;
  LocalVault out;
  out.name = host.substr(0, host.size() - suffix.size());
  if (out.name.find('.') != std::string::npos) return std::nullopt;
  out.base_url = std::string(kScheme) + Lower(authority);
  return out;
}

// The vault of `uri`, or InvalidArgument (reason "VaultNotFound") when it is not ours.
StatusOr<LocalVault> OwnVault(std::string_view uri, std::string_view suffix) {
  auto vault = SplitVaultUri(uri, suffix);
  if (!vault.has_value()) {
    return InvalidArgumentError("not a vault of this deployment: " + std::string(uri))
        .WithReason("VaultNotFound");
  }
  return *std::move(vault);
}

keyvault::AccessContext ContextFor(const ActingIdentity& who, const LocalVault& vault) {
  keyvault::AccessContext ctx;
  ctx.object_id = who.object_id;
  ctx.app_id = who.client_id;
  ctx.tenant_id = who.tenant_id;
  ctx.origin.client_address = "127.0.0.1";
  ctx.origin.trusted_service = true;
  ctx.origin.caller = "appid=" + who.client_id + ";oid=" + who.object_id;
  ctx.base_url = vault.base_url;
  return ctx;
}

std::string KidOf(const LocalVault& vault, const keyvault::KeyVersion& version) {
  return vault.base_url + "/keys/" + version.name + "/" + version.version;
}

StatusOr<keyvault::EncryptionAlgorithm> Algorithm(std::string_view name) {
  auto alg = keyvault::ParseEncryptionAlgorithm(name);
  if (!alg.has_value()) {
    return InvalidArgumentError("unknown algorithm " + std::string(name))
        .WithReason("BadParameter");
  }
  return *alg;
}

}  // namespace

LocalVaultClient::LocalVaultClient(keyvault::KeyVault& key_vault, std::string domain)
    : key_vault_(key_vault), vault_suffix_(".vault." + Lower(domain)) {}

std::optional<std::string> LocalVaultClient::VaultName(std::string_view vault_uri) const {
  auto vault = SplitVaultUri(vault_uri, vault_suffix_);
  if (!vault.has_value()) return std::nullopt;
  return std::move(vault->name);
}

StatusOr<VaultKeyInfo> LocalVaultClient::GetKey(const ActingIdentity& who,
                                                const KeyReference& key) {
  ASSIGN_OR_RETURN(LocalVault vault, OwnVault(key.vault_uri, vault_suffix_));
  ASSIGN_OR_RETURN(keyvault::KeyVersion version,
                   key_vault_.GetKey(ContextFor(who, vault), vault.name, key.name, key.version));
  VaultKeyInfo info;
  info.kid = KidOf(vault, version);
  info.kty = std::string(keyvault::KeyTypeName(version.type));
  if (keyvault::IsRsa(version.type)) {
    size_t leading_zeros = 0;
    while (leading_zeros < version.rsa.n.size() && version.rsa.n[leading_zeros] == 0) {
      ++leading_zeros;
    }
    info.rsa_bits = static_cast<int>((version.rsa.n.size() - leading_zeros) * 8);
  }
  info.enabled = version.attributes.enabled;
  info.not_before = version.attributes.not_before;
  info.expires = version.attributes.expires;
  for (keyvault::KeyOperation op : version.key_ops) {
    info.key_ops.emplace_back(keyvault::KeyOperationName(op));
  }
  return info;
}

StatusOr<WrappedKey> LocalVaultClient::WrapKey(const ActingIdentity& who, const KeyReference& key,
                                               std::string_view algorithm,
                                               const SecretBytes& key_bytes) {
  ASSIGN_OR_RETURN(LocalVault vault, OwnVault(key.vault_uri, vault_suffix_));
  ASSIGN_OR_RETURN(keyvault::EncryptionAlgorithm alg, Algorithm(algorithm));
  ASSIGN_OR_RETURN(keyvault::KeyOperationOutput out,
                   key_vault_.WrapKey(ContextFor(who, vault), vault.name, key.name, key.version,
                                      alg, key_bytes.Reveal(InsecureSecretAccess())));
  return WrappedKey{KidOf(vault, out.key), std::move(out.value)};
}

StatusOr<SecretBytes> LocalVaultClient::UnwrapKey(const ActingIdentity& who, std::string_view kid,
                                                  std::string_view algorithm, ByteView wrapped) {
  ASSIGN_OR_RETURN(KeyReference ref, ParseKid(kid));
  ASSIGN_OR_RETURN(LocalVault vault, OwnVault(ref.vault_uri, vault_suffix_));
  ASSIGN_OR_RETURN(keyvault::EncryptionAlgorithm alg, Algorithm(algorithm));
  ASSIGN_OR_RETURN(keyvault::KeyOperationOutput out,
                   key_vault_.UnwrapKey(ContextFor(who, vault), vault.name, ref.name, ref.version,
                                        alg, wrapped));
  SecretBytes secret(out.value, InsecureSecretAccess());
  std::fill(out.value.begin(), out.value.end(), 0);
  return secret;
}

}  // namespace keyfoundry::encryption
