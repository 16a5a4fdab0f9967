// AI accounts: Microsoft.CognitiveServices/accounts (kind AIServices, OpenAI, ...), the resource
// whose content keyfoundry encrypts, with its identity, encryption settings and API keys, and
// the per-subscription approvals some kinds need before customer-managed keys (BRIEF S10).
//
// An account's name is its custom subdomain: its OpenAI-compatible data plane is served at
// https://{name}.openai.DOMAIN:PORT/, so names are unique in the deployment (compared
// case-insensitively, kept as created): 2..64 characters of letters, digits and '-', starting
// with a letter or digit and not ending with '-'.
//
// This file knows the resource's shape and keeps it; the rules about which encryption changes
// are allowed (S3-S6, S10) need the vault, the directory and the key engine, and are applied by
// the control plane before Put.
//
// API keys: two random 32-byte keys shown as 64 hex characters (key1, key2), kept sealed under
// the HSM root for listKeys and as SHA-256 digests for checking an api-key header in constant
// time without the HSM.
//
// Storage (MetadataStore tables; JSON values with "v": 1):
//   cs_accounts       {lower name}                    the account
//   cmk_approvals     {lower subscription}/{lower kind}  {granted_by, granted_at}
//   cs_projects       {lower account name}/{lower project}  the project resource (ARM JSON)
//
// Cache. GetByName keeps the accounts it decodes, by lower-case name: every data-plane request
// looks its account up, and the store's read and the JSON decode cost more than the rest of a
// small download. The cache holds no more than the store: this class is the only writer of
// cs_accounts, each of its writes drops the account's entry once committed, and a read that
// overlapped any write does not fill the cache (its snapshot may predate the write).
//
// Thread safety: AccountStore may be used from many threads at once.
#ifndef KEYFOUNDRY_FOUNDRY_ACCOUNTS_H_
#define KEYFOUNDRY_FOUNDRY_ACCOUNTS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::hsm {
class KeyProvider;
}  // namespace keyfoundry::hsm

namespace keyfoundry::foundry {

inline constexpr std::string_view kServiceManagedKeySource = "Microsoft.CognitiveServices";
inline constexpr std::string_view kCustomerManagedKeySource = "Microsoft.KeyVault";

struct AccountEncryption {
  std::string key_source = std::string(kServiceManagedKeySource);
  std::string key_vault_uri;  // customer-managed: "https://{vault}.vault.DOMAIN:PORT/"
  std::string key_name;
  std::string key_version;  // empty: follow the key's latest version
  std::string identity_client_id;

  bool customer_managed() const { return key_source == kCustomerManagedKeySource; }
  friend bool operator==(const AccountEncryption&, const AccountEncryption&) = default;
};

struct Account {
  std::string subscription_id;
  std::string resource_group;  // as given at creation
  std::string name;            // as created
  std::string kind;            // "AIServices", "OpenAI", "SpeechServices", ...
  std::string sku = "S0";
  std::string location;
  nlohmann::json tags = nlohmann::json::object();
  // identity.type: "None" or "SystemAssigned" (principal and tenant set when on).
  bool system_assigned_identity = false;
  std::string principal_id;
  std::string identity_tenant_id;
  std::string identity_client_id;  // the managed identity's app id
  AccountEncryption encryption;
  bool disable_local_auth = false;
  std::string public_network_access = "Enabled";
  // Other ARM properties kept as given (networkAcls, apiProperties, ...), so a body
  // round-trips.
  nlohmann::json extra_properties = nlohmann::json::object();
  Bytes sealed_api_keys;           // key1 || key2 sealed under the HSM root
  std::string api_key_digests[2];  // hex SHA-256 of key1 and key2
  int64_t created_at = 0;
  std::string created_by;
  int64_t updated_at = 0;
  std::string updated_by;

  // "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{n}"
  std::string ResourceId() const;
  // The resource id in lower case: the account's key in the key engine and the file store.
  std::string Key() const;
};

// OK, or InvalidArgument (reason "InvalidAccountName") saying what a name may hold.
Status ValidateAccountName(std::string_view name);

// Kinds that need an approval per subscription before CMK can be enabled (S10).
bool KindNeedsCmkApproval(std::string_view kind);

// A PUT body {kind, sku{name}, location, tags, identity{type}, properties{...}} over `base` (a
// new account or the existing one), or a PATCH body (`patch`: only what is given changes).
// Checks shapes and values: InvalidArgument (reason "BadRequest" or "InvalidRequestContent")
// naming the field. Sets `*identity_type` to the requested identity type ("None",
// "SystemAssigned") when the body names one. Encryption rules beyond shapes are the caller's.
StatusOr<Account> AccountFromArm(const nlohmann::json& body, Account base, bool patch,
                                 std::optional<std::string>* identity_type);

// The ARM resource. `endpoint` is the account's data-plane base URL.
nlohmann::json AccountToArm(const Account& account, std::string_view endpoint);

class AccountStore {
 public:
  // Every reference must outlive the store.
  AccountStore(storage::MetadataStore& store, hsm::KeyProvider& hsm,
               const Clock& clock = Clock::Real());

  // Creates (with new API keys) or replaces an account. *created tells which. AlreadyExists
  // (reason "CustomDomainInUse") when another resource group has an account of that name.
  StatusOr<Account> Put(Account account, bool* created = nullptr);
  // NotFound when there is no account of that name (in any group).
  StatusOr<Account> GetByName(std::string_view name) const;
  // The account of that group and name; NotFound (reason "ResourceNotFound") otherwise.
  StatusOr<Account> Get(std::string_view subscription_id, std::string_view group,
                        std::string_view name) const;
  // Accounts of the subscription (and group, when not empty), by name.
  StatusOr<std::vector<Account>> List(std::string_view subscription_id,
                                      std::string_view group) const;
  Status Delete(const Account& account);

  // key1 and key2.
  StatusOr<std::vector<SecretBytes>> ListKeys(const Account& account);
  // Replaces key 1 or 2 (`which`) with a new random key; returns the account as stored.
  StatusOr<Account> RegenerateKey(const Account& account, int which);
  // True when `api_key` is one of the account's keys (constant time).
  static bool CheckApiKey(const Account& account, std::string_view api_key);

  // Projects: child resources of an account (Foundry projects), kept as their ARM body with
  // the name as created. Put validates the name (as an account's, 2..64) and the body's
  // shape: {location?, tags?, identity?, properties?: {displayName?, description?}}.
  StatusOr<nlohmann::json> PutProject(const Account& account, std::string_view name,
                                      const nlohmann::json& body, bool* created);
  StatusOr<nlohmann::json> GetProject(const Account& account, std::string_view name) const;
  StatusOr<std::vector<nlohmann::json>> ListProjects(const Account& account) const;
  Status DeleteProject(const Account& account, std::string_view name);
  Status DeleteProjects(const Account& account);

  // CMK approvals (S10).
  Status GrantApproval(std::string_view subscription_id, std::string_view kind,
                       std::string_view granted_by);
  Status RevokeApproval(std::string_view subscription_id, std::string_view kind);
  StatusOr<bool> HasApproval(std::string_view subscription_id, std::string_view kind) const;
  // {kind, grantedBy, grantedAt} of the subscription.
  StatusOr<nlohmann::json> ListApprovals(std::string_view subscription_id) const;

 private:
  Status NewKeys(Account& account);
  int64_t Now() const;
  // Every write of an account: runs `fn` in a write transaction, then drops the cached account
  // (committed or not) and keeps reads begun before from filling the cache.
  Status WriteAccount(const std::string& lower_name, const storage::TransactionFn& fn);

  storage::MetadataStore& store_;
  hsm::KeyProvider& hsm_;
  const Clock& clock_;
  mutable Mutex cache_mu_;
  mutable std::unordered_map<std::string, Account> cache_ GUARDED_BY(cache_mu_);
  uint64_t writes_ GUARDED_BY(cache_mu_) = 0;  // WriteAccount calls so far
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_ACCOUNTS_H_
