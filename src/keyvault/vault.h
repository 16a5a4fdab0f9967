// Vaults: the Microsoft.KeyVault/vaults resources of the control plane, as the data plane and
// the encryption engine need them (who may do what, from where, and how long deleted things
// stay recoverable).
//
// A vault is named by a DNS label that is unique in the deployment (as vault names are unique
// in Azure's cloud): 3-24 characters, letters, digits and hyphens, starting with a letter, not
// ending with a hyphen, no "--". Names compare case-insensitively.
//
// Rules kept here, whatever the API:
//   - soft delete is always on (enableSoftDelete false is refused), softDeleteRetentionInDays
//     is 7..90 (default 90) and fixed at creation;
//   - purge protection, once on, stays on (enablePurgeProtection false is refused, as ARM does);
//   - a deleted vault keeps its keys; its name cannot be reused until it is purged; it is
//     recovered (createMode "recover") or purged (refused under purge protection until its
//     scheduled purge date); a purge destroys its keys;
//   - RSA-HSM and EC-HSM keys need the premium sku.
//
// ARM bodies. A PUT body is the whole resource, but a property it leaves out keeps its current
// value (tags aside, which a PUT replaces): an omitted networkAcls never opens a firewall and
// an omitted accessPolicies never revokes anyone by accident. Read-only properties (vaultUri,
// provisioningState, hsmPoolResourceId, privateEndpointConnections) and unknown ones are
// ignored, as ARM does. Every error is InvalidArgument naming the field ("properties.sku.name:
// ..."), with reason "BadRequest" unless another is said.
//
// Storage (MetadataStore tables; JSON values with "v": 1):
//   kv_vaults          {lower name}  -> the vault (deleted ones too, with deleted_at set)
//
// Thread safety: VaultStore may be used from many threads at once.
#ifndef KEYFOUNDRY_KEYVAULT_VAULT_H_
#define KEYFOUNDRY_KEYVAULT_VAULT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::keyvault {

inline constexpr size_t kMaxAccessPolicies = 1024;  // ARM's limit per vault
inline constexpr size_t kMaxIpRules = 1000;
inline constexpr size_t kMaxVirtualNetworkRules = 200;
inline constexpr size_t kMaxTags = 50;  // ARM's limit per resource

// OK for a valid vault name (the file comment's rule); InvalidArgument with reason
// "VaultNameNotValid" and ARM's message otherwise.
Status ValidateVaultName(std::string_view name);

// ARM's tag rules, shared by every ARM resource of the deployment: an object of at most
// kMaxTags string values, names 1..512 bytes without '<', '>', '%', '&', '\', '?', '/' or
// control characters, values at most 256 bytes. InvalidArgument naming `field` otherwise.
Status ValidateArmTags(const nlohmann::json& tags, std::string_view field = "tags");

// ARM takes any location name: a string of 1..128 bytes without control characters.
// InvalidArgument naming `field` otherwise.
Status ValidateArmLocation(const nlohmann::json& location, std::string_view field = "location");
// How ARM compares locations: "West US" and "westus" are one ("westus").
std::string NormalizeArmLocation(std::string_view location);

// The permissions.keys values of an access policy, as ARM spells them (compared
// case-insensitively; stored in this spelling). "all" expands to every other one.
enum class KeyPermission {
  kEncrypt = 1,
  kDecrypt,
  kWrapKey,
  kUnwrapKey,
  kSign,
  kVerify,
  kGet,
  kList,
  kCreate,
  kUpdate,
  kImport,
  kDelete,
  kBackup,
  kRestore,
  kRecover,
  kPurge,
  kRelease,
  kRotate,
  kGetRotationPolicy,
  kSetRotationPolicy,
};
// "encrypt", "wrapKey", "getrotationpolicy", ... (ARM's spelling).
std::string_view KeyPermissionName(KeyPermission permission);
// Case-insensitive; nullopt for an unknown name ("all" is handled by the parser).
std::optional<KeyPermission> ParseKeyPermission(std::string_view name);

struct AccessPolicy {
  std::string tenant_id;       // lower case
  std::string object_id;       // lower case
  std::string application_id;  // compound identity; empty in almost every policy; lower case
  std::set<KeyPermission> keys;
  // The other permission lists (secrets, certificates, storage) are validated and kept as
  // given, so a template's body round-trips, but grant nothing here.
  nlohmann::json other_permissions = nlohmann::json::object();

  friend bool operator==(const AccessPolicy&, const AccessPolicy&) = default;
};

struct IpRule {
  // "203.0.113.7" or "203.0.113.0/24" (IPv4 and IPv6 both accepted), as given. Bits beyond
  // the prefix are ignored when matching.
  std::string value;

  friend bool operator==(const IpRule&, const IpRule&) = default;
};

struct NetworkAcls {
  std::string default_action = "Allow";  // "Allow" | "Deny"
  std::string bypass = "AzureServices";  // "AzureServices" | "None"
  std::vector<IpRule> ip_rules;
  nlohmann::json virtual_network_rules = nlohmann::json::array();  // kept, not enforced

  friend bool operator==(const NetworkAcls&, const NetworkAcls&) = default;
};

struct Vault {
  std::string name;  // as created
  std::string subscription_id;
  std::string resource_group;  // as created
  std::string location;
  nlohmann::json tags = nlohmann::json::object();

  std::string tenant_id;
  std::string sku = "standard";  // "standard" | "premium"
  int soft_delete_retention_days = 90;
  bool purge_protection = false;
  bool rbac_authorization = false;
  std::vector<AccessPolicy> access_policies;
  NetworkAcls network_acls;
  std::string public_network_access = "Enabled";  // "Enabled" | "Disabled"
  // Other ARM properties kept as given (enabledForDeployment, ...), so a body round-trips.
  nlohmann::json extra_properties = nlohmann::json::object();

  int64_t created_at = 0;  // unix seconds
  std::string created_by;  // object id
  int64_t updated_at = 0;
  std::string updated_by;
  std::optional<int64_t> deleted_at;  // unix seconds, when soft-deleted

  // "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"
  std::string ResourceId() const;
  // deleted_at + retention: when the vault (or a key deleted now) is purged automatically.
  int64_t ScheduledPurgeDate(int64_t deleted_at_seconds) const;
  // Azure's recoveryLevel for keys in this vault: "Recoverable+Purgeable", "Recoverable",
  // "CustomizedRecoverable+Purgeable" or "CustomizedRecoverable" (retention under 90 days).
  std::string RecoveryLevel() const;
};

// Where a data-plane request comes from, for the firewall.
struct NetworkOrigin {
  std::string client_address;  // "203.0.113.7", "::1", "::ffff:203.0.113.7" (compared as IPv4)
  // A platform service acting for one of its resources (the encryption engine unwrapping an
  // account key): passes the firewall only when bypass is "AzureServices".
  bool trusted_service = false;
  // Who is calling, for the 403 message only, as Azure writes it: "appid=...;oid=...;iss=...".
  // The line is left out when empty.
  std::string caller;
};

// OK when the firewall lets `origin` reach `vault`'s data plane; PermissionDenied with reason
// "ForbiddenByFirewall" and Azure's message otherwise:
//   "Client address is not authorized and caller is not a trusted service.\r\nClient address:
//    X\r\nCaller: ...\r\nVault: NAME;location=LOC"
// Rules: publicNetworkAccess "Disabled" admits trusted services (with bypass AzureServices)
// only; defaultAction "Allow" admits all; "Deny" admits an address matching an ipRule (CIDR,
// IPv4 or IPv6; an IPv4-mapped IPv6 address matches as IPv4), and trusted services with bypass
// AzureServices. An address that does not parse matches no rule.
Status CheckFirewall(const Vault& vault, const NetworkOrigin& origin);

// True when an access policy of `vault` for `object_id` grants `permission`. A compound policy
// (with an applicationId) grants only to that application acting for the user, which an
// object id alone does not show, so it is not counted here.
bool PolicyGrants(const Vault& vault, std::string_view object_id, KeyPermission permission);

// ARM JSON, both ways. VaultFromArm parses a PUT body (the whole resource: location, tags,
// properties) over `base` (a new vault, or the existing one for an update: base.created_at is
// then set), validating every field: InvalidArgument naming the field and the allowed values.
// location and properties (with tenantId and sku) are required. Changing an existing vault's
// location is FailedPrecondition, reason "InvalidResourceLocation"; changing its retention, or
// enablePurgeProtection false, InvalidArgument. The tenant is fixed: when base.tenant_id is set
// (the deployment's tenant, for a new vault too), properties.tenantId must be it. Access
// policies must name the vault's tenant.
StatusOr<Vault> VaultFromArm(const nlohmann::json& body, Vault base);
// A PATCH body ({tags?, properties?}) merged onto `base` (an existing vault): what is given
// replaces, what is left out stays; the same validation as VaultFromArm.
StatusOr<Vault> VaultPatchFromArm(const nlohmann::json& body, Vault base);

enum class CreateMode {
  kDefault = 1,
  kRecover = 2,
};
// properties.createMode of a PUT body: "default" (also when absent) or "recover", compared
// case-insensitively; InvalidArgument otherwise.
StatusOr<CreateMode> CreateModeOf(const nlohmann::json& body);

// The resource as GET returns it; `vault_uri` is "https://{name}.vault.DOMAIN:PORT/".
nlohmann::json VaultToArm(const Vault& vault, std::string_view vault_uri);
// A soft-deleted vault as ARM lists it: {id: "/subscriptions/{s}/providers/Microsoft.KeyVault/
// locations/{location}/deletedVaults/{name}", name, type: "Microsoft.KeyVault/deletedVaults",
// properties: {vaultId, location, deletionDate, scheduledPurgeDate, tags,
// purgeProtectionEnabled}}. `vault` must be deleted.
nlohmann::json DeletedVaultToArm(const Vault& vault);

// PUT .../vaults/{name}/accessPolicies/{kind}.
enum class AccessPolicyUpdateKind {
  kAdd = 1,      // merges the permissions of each listed policy into the vault's (by objectId
                 // and applicationId), adding the policy when the vault has none
  kReplace = 2,  // the listed policies become the vault's whole list
  kRemove = 3,   // subtracts the listed permissions; a policy left with none is dropped, and
                 // an identity listed without permissions loses its whole policy
};
// "add", "replace", "remove" (case-insensitive); nullopt otherwise.
std::optional<AccessPolicyUpdateKind> ParseAccessPolicyUpdateKind(std::string_view kind);
// The policies of a body {"properties": {"accessPolicies": [...]}}, validated as in a vault
// body against `vault_tenant_id`.
StatusOr<std::vector<AccessPolicy>> AccessPoliciesFromArm(const nlohmann::json& body,
                                                          std::string_view vault_tenant_id);
// Applies an update to `vault.access_policies`; InvalidArgument when the result would exceed
// kMaxAccessPolicies (and `vault` is then unchanged).
Status ApplyAccessPolicyUpdate(Vault& vault, AccessPolicyUpdateKind kind,
                               const std::vector<AccessPolicy>& policies);
// The vault's policies in ARM's shape (the array of properties.accessPolicies).
nlohmann::json AccessPoliciesToArm(const Vault& vault);

class VaultStore {
 public:
  explicit VaultStore(storage::MetadataStore& store, const Clock& clock = Clock::Real());

  // NotFound (reason "VaultNotFound") unless a live vault has this name.
  StatusOr<Vault> Get(std::string_view name) const;
  // Live or deleted; NotFound when the name is free.
  StatusOr<Vault> GetAny(std::string_view name) const;
  // Creates or replaces. AlreadyExists when the name is taken by a vault of another resource
  // group or subscription (reason "VaultAlreadyExists"), or by a deleted vault (reason
  // "ConflictError"; recover or purge it). Creation-only fields (retention) and one-way fields
  // (purge protection) are enforced here: InvalidArgument. The whole vault is validated
  // (InvalidArgument). created_at/created_by are set on creation and kept on replacement;
  // updated_at is set, updated_by taken from `vault`. *created (when given) tells which.
  StatusOr<Vault> Put(const Vault& vault, bool* created = nullptr);
  // Read-modify-write of a live vault in one transaction: `mutate` changes a copy of the
  // stored vault (its name, subscription and resource group stay), then Put's rules apply.
  // NotFound (reason "VaultNotFound") when there is no live vault; `mutate`'s error as is.
  // `mutate` may run more than once (store retries), each time on a fresh copy.
  StatusOr<Vault> Update(std::string_view name, const std::function<Status(Vault&)>& mutate);
  // Soft delete: sets deleted_at. NotFound when there is no live vault.
  StatusOr<Vault> Delete(std::string_view name);
  // Clears deleted_at. NotFound (reason "DeletedVaultNotFound") when no deleted vault has this
  // name.
  StatusOr<Vault> Recover(std::string_view name);
  // OK when Purge would remove the deleted vault now: NotFound (reason "DeletedVaultNotFound")
  // when there is none; FailedPrecondition (reason "MethodNotAllowed", the message naming the
  // scheduled purge date) under purge protection before that date. Lets the caller check
  // before it destroys the vault's keys.
  Status CanPurge(std::string_view name) const;
  // Removes the record of a deleted vault, with CanPurge's errors. The caller destroys its
  // keys first.
  Status Purge(std::string_view name);
  // Every live vault (deleted false) or every deleted one (true), by lower-case name.
  StatusOr<std::vector<Vault>> List(bool deleted) const;

 private:
  // Every write goes through here: it bumps the cache generation before and after.
  Status Write(const storage::TransactionFn& fn);

  // Vaults are read on every data-plane request: a small cache of what was read. An entry is
  // used while no write of this process happened since it was read (the generation) and for
  // at most kCacheTtl, which bounds how long another node's change can go unseen.
  static constexpr std::chrono::seconds kCacheTtl{1};
  static constexpr size_t kCacheSize = 1024;
  struct CachedVault {
    Vault vault;
    uint64_t generation = 0;
    std::chrono::steady_clock::time_point loaded;
  };

  storage::MetadataStore& store_;
  const Clock& clock_;
  mutable std::atomic<uint64_t> generation_{0};
  mutable Mutex cache_mutex_;
  mutable std::unordered_map<std::string, CachedVault> cache_ GUARDED_BY(cache_mutex_);
};

}  // namespace keyfoundry::keyvault

#endif  // KEYFOUNDRY_KEYVAULT_VAULT_H_
