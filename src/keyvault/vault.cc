// Vaults: validation of ARM bodies, the firewall, access policies and the VaultStore.
//
// Firewall addresses are parsed with inet_pton (no hand-written address parser): an IPv4
// address is kept in 4 bytes, an IPv6 one in 16, and an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) becomes the IPv4 address it carries, so a client reaching a dual-stack
// listener matches the IPv4 rules written for it. A rule "a.b.c.d/n" matches the addresses
// whose first n bits equal the rule's; bits beyond the prefix are ignored.
//
// Storage: one record per vault name (lower case) in kv_vaults, live or deleted. Every change
// is a read-modify-write inside one MetadataStore Write, so concurrent PUTs, PATCHes, deletes
// and purges of one vault serialise on the store and none is lost.
#include "keyvault/vault.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <ctime>
#include <span>
#include <utility>

#include "common/clock.h"
#include "common/bytes.h"
#include "common/strings.h"
#include "identity/ids.h"

namespace keyfoundry::keyvault {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kVaultsTable = "kv_vaults";
constexpr int64_t kSecondsPerDay = 86400;
constexpr int kMinRetentionDays = 7;
constexpr int kMaxRetentionDays = 90;
constexpr size_t kMaxVaultNameSize = 24;
constexpr size_t kMinVaultNameSize = 3;
constexpr size_t kMaxLocationSize = 128;
constexpr size_t kMaxTagNameSize = 512;
constexpr size_t kMaxTagValueSize = 256;
constexpr size_t kMaxPermissionsPerList = 100;
constexpr size_t kMaxQuotedValue = 80;

constexpr KeyPermission kAllKeyPermissions[] = {
    KeyPermission::kEncrypt,
    KeyPermission::kDecrypt,
    KeyPermission::kWrapKey,
    KeyPermission::kUnwrapKey,
    KeyPermission::kSign,
    KeyPermission::kVerify,
    KeyPermission::kGet,
    KeyPermission::kList,
    KeyPermission::kCreate,
    KeyPermission::kUpdate,
    KeyPermission::kImport,
    KeyPermission::kDelete,
    KeyPermission::kBackup,
    KeyPermission::kRestore,
    KeyPermission::kRecover,
    KeyPermission::kPurge,
    KeyPermission::kRelease,
    KeyPermission::kRotate,
    KeyPermission::kGetRotationPolicy,
    KeyPermission::kSetRotationPolicy,
};

// The other permission lists of an access policy and the values ARM accepts in each.
constexpr std::string_view kSecretPermissions[] = {"all",    "get",     "list",    "set",  "delete",
                                                   "backup", "restore", "recover", "purge"};
constexpr std::string_view kCertificatePermissions[] = {
    "all",        "get",           "list",           "delete",     "create",
    "import",     "update",        "managecontacts", "getissuers", "listissuers",
    "setissuers", "deleteissuers", "manageissuers",  "recover",    "purge",
    "backup",     "restore"};
constexpr std::string_view kStoragePermissions[] = {
    "all",   "get",    "list",    "delete", "set",     "update", "regeneratekey", "recover",
    "purge", "backup", "restore", "setsas", "listsas", "getsas", "deletesas"};

struct OtherPermissionList {
  std::string_view name;
  std::span<const std::string_view> allowed;
};
constexpr OtherPermissionList kOtherPermissionLists[] = {
    {"secrets", kSecretPermissions},
    {"certificates", kCertificatePermissions},
    {"storage", kStoragePermissions},
};

// ---------------------------------------------------------------- small helpers

// A user-supplied value for a message: quoted, and cut short when long.
std::string Quoted(std::string_view value) {
  if (value.size() <= kMaxQuotedValue) return "'" + std::string(value) + "'";
  return "'" + std::string(value.substr(0, kMaxQuotedValue)) + "...'";
}

Status Bad(std::string_view field, std::string_view problem) {
  return InvalidArgumentError(std::string(field) + ": " + std::string(problem))
      .WithReason("BadRequest");
}

std::string JoinNames(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string AllowedKeyPermissions() {
  std::string out = "all";
  for (KeyPermission p : kAllKeyPermissions) {
    out += ", ";
    out += KeyPermissionName(p);
  }
  return out;
}

// A member of a JSON object by name, matched exactly or else ignoring ASCII case (ARM's
// deserialiser ignores case: "EnableSoftDelete" works there). nullptr when absent or null.
const Json* Member(const Json& object, std::string_view name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(std::string(name));
  if (it == object.end()) {
    for (auto i = object.begin(); i != object.end(); ++i) {
      if (EqualsIgnoreCase(i.key(), name)) {
        it = i;
        break;
      }
    }
  }
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

StatusOr<std::optional<bool>> OptionalBool(const Json& object, std::string_view name,
                                           std::string_view path) {
  const Json* value = Member(object, name);
  if (value == nullptr) return std::optional<bool>();
  if (!value->is_boolean()) return Bad(path, "must be true or false");
  return std::optional<bool>(value->get<bool>());
}

// The one canonical spelling in `allowed` that `value` equals ignoring case, or nullopt.
std::optional<std::string_view> Canonical(std::string_view value,
                                          std::initializer_list<std::string_view> allowed) {
  for (std::string_view a : allowed) {
    if (EqualsIgnoreCase(a, value)) return a;
  }
  return std::nullopt;
}

StatusOr<std::string> EnumMember(const Json& value, std::string_view path,
                                 std::initializer_list<std::string_view> allowed) {
  std::string list;
  for (std::string_view a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  if (!value.is_string()) return Bad(path, "must be one of " + list);
  auto canonical = Canonical(value.get_ref<const std::string&>(), allowed);
  if (!canonical) {
    return Bad(path, Quoted(value.get_ref<const std::string&>()) + " is not one of " + list);
  }
  return std::string(*canonical);
}

StatusOr<std::string> Guid(const Json& value, std::string_view path, std::string_view what) {
  if (!value.is_string() || !identity::IsUuid(value.get_ref<const std::string&>())) {
    return Bad(path, "must be " + std::string(what) + " (a GUID)");
  }
  return ToLowerAscii(value.get_ref<const std::string&>());
}

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// ---------------------------------------------------------------- IP addresses and ranges

// IPv4 in the first 4 bytes (v4 true), or IPv6 in all 16.
struct IpAddress {
  bool v4 = false;
  std::array<uint8_t, 16> bytes{};
};

struct IpNetwork {
  IpAddress address;
  int prefix = 0;  // bits: 0..32 for IPv4, 0..128 for IPv6
};

std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string z(text);  // inet_pton needs a NUL-terminated string
  IpAddress out;
  in_addr v4{};
  if (inet_pton(AF_INET, z.c_str(), &v4) == 1) {
    out.v4 = true;
    std::memcpy(out.bytes.data(), &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, z.c_str(), &v6) != 1) return std::nullopt;
  std::memcpy(out.bytes.data(), &v6, 16);
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(out.bytes.data(), kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    out.v4 = true;
    std::memmove(out.bytes.data(), out.bytes.data() + 12, 4);
    std::fill(out.bytes.begin() + 4, out.bytes.end(), uint8_t{0});
  }
  return out;
}

// "203.0.113.7", "203.0.113.0/24", "2001:db8::/32", "::ffff:203.0.113.0/120" (IPv4-mapped:
// the prefix must cover the mapping, /96 or longer, and counts as IPv4 /(n-96)).
std::optional<IpNetwork> ParseIpNetwork(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  std::optional<IpAddress> address = ParseIpAddress(address_text);
  if (!address) return std::nullopt;
  const bool mapped = address->v4 && address_text.find(':') != std::string_view::npos;
  IpNetwork out{*address, address->v4 ? 32 : 128};
  if (slash == std::string_view::npos) return out;
  const std::string_view digits = text.substr(slash + 1);
  if (digits.empty() || digits.size() > 3) return std::nullopt;
  int n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (mapped) {
    if (n < 96 || n > 128) return std::nullopt;
    n -= 96;
  }
  if (n > (out.address.v4 ? 32 : 128)) return std::nullopt;
  out.prefix = n;
  return out;
}

bool NetworkContains(const IpNetwork& network, const IpAddress& address) {
  if (network.address.v4 != address.v4) return false;
  const int whole = network.prefix / 8;
  const int rest = network.prefix % 8;
  if (std::memcmp(network.address.bytes.data(), address.bytes.data(), whole) != 0) return false;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (network.address.bytes[whole] & mask) == (address.bytes[whole] & mask);
}

// ---------------------------------------------------------------- ARM parsing

StatusOr<std::string> ParseSku(const Json& sku) {
  if (!sku.is_object()) {
    return Bad("properties.sku",
               "must be {\"family\": \"A\", \"name\": \"standard\" | \"premium\"}");
  }
  if (const Json* family = Member(sku, "family")) {
    RETURN_IF_ERROR(EnumMember(*family, "properties.sku.family", {"A"}).status());
  }
  const Json* name = Member(sku, "name");
  if (name == nullptr) {
    return Bad("properties.sku.name", "is required: \"standard\" or \"premium\"");
  }
  return EnumMember(*name, "properties.sku.name", {"standard", "premium"});
}

// A permissions list of strings (absent or null: empty).
StatusOr<std::vector<std::string>> PermissionStrings(const Json& permissions, std::string_view list,
                                                     const std::string& path) {
  std::vector<std::string> out;
  const Json* values = Member(permissions, list);
  if (values == nullptr) return out;
  if (!values->is_array()) return Bad(path, "must be an array of permission names");
  if (values->size() > kMaxPermissionsPerList) {
    return Bad(path, "lists " + std::to_string(values->size()) + " permissions; at most " +
                         std::to_string(kMaxPermissionsPerList) + " are accepted");
  }
  for (size_t i = 0; i < values->size(); ++i) {
    const Json& v = (*values)[i];
    if (!v.is_string()) {
      return Bad(path + "[" + std::to_string(i) + "]", "must be a permission name (a string)");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

StatusOr<AccessPolicy> ParsePolicy(const Json& entry, std::string_view vault_tenant,
                                   const std::string& path) {
  if (!entry.is_object()) {
    return Bad(path, "must be an object {\"tenantId\", \"objectId\", \"permissions\"}");
  }
  AccessPolicy policy;
  const Json* tenant = Member(entry, "tenantId");
  if (tenant == nullptr) return Bad(path + ".tenantId", "is required");
  ASSIGN_OR_RETURN(policy.tenant_id, Guid(*tenant, path + ".tenantId", "the vault's tenant id"));
  if (!EqualsIgnoreCase(policy.tenant_id, vault_tenant)) {
    return Bad(path + ".tenantId", Quoted(policy.tenant_id) + " is not the vault's tenant " +
                                       Quoted(vault_tenant) +
                                       "; every access policy must use the vault's tenant");
  }
  const Json* object = Member(entry, "objectId");
  if (object == nullptr) return Bad(path + ".objectId", "is required");
  ASSIGN_OR_RETURN(policy.object_id,
                   Guid(*object, path + ".objectId",
                        "the object id of a user, service principal or managed identity"));
  if (const Json* app = Member(entry, "applicationId");
      app != nullptr && !(app->is_string() && app->get_ref<const std::string&>().empty())) {
    ASSIGN_OR_RETURN(policy.application_id,
                     Guid(*app, path + ".applicationId", "an application id"));
  }
  const Json* permissions = Member(entry, "permissions");
  if (permissions == nullptr || !permissions->is_object()) {
    return Bad(path + ".permissions",
               "is required: {\"keys\": [...], \"secrets\": [...], \"certificates\": [...]}");
  }
  const std::string keys_path = path + ".permissions.keys";
  ASSIGN_OR_RETURN(std::vector<std::string> keys,
                   PermissionStrings(*permissions, "keys", keys_path));
  for (size_t i = 0; i < keys.size(); ++i) {
    if (EqualsIgnoreCase(keys[i], "all")) {
      policy.keys.insert(std::begin(kAllKeyPermissions), std::end(kAllKeyPermissions));
      continue;
    }
    std::optional<KeyPermission> p = ParseKeyPermission(keys[i]);
    if (!p) {
      return Bad(
          keys_path + "[" + std::to_string(i) + "]",
          "unknown key permission " + Quoted(keys[i]) + "; allowed: " + AllowedKeyPermissions());
    }
    policy.keys.insert(*p);
  }
  for (const OtherPermissionList& list : kOtherPermissionLists) {
    const std::string list_path = path + ".permissions." + std::string(list.name);
    ASSIGN_OR_RETURN(std::vector<std::string> values,
                     PermissionStrings(*permissions, list.name, list_path));
    if (Member(*permissions, list.name) == nullptr) continue;
    for (size_t i = 0; i < values.size(); ++i) {
      bool known = std::any_of(list.allowed.begin(), list.allowed.end(),
                               [&](std::string_view a) { return EqualsIgnoreCase(a, values[i]); });
      if (!known) {
        return Bad(
            list_path + "[" + std::to_string(i) + "]",
            "unknown permission " + Quoted(values[i]) + "; allowed: " + JoinNames(list.allowed));
      }
    }
    policy.other_permissions[std::string(list.name)] = values;
  }
  return policy;
}

bool SameIdentity(const AccessPolicy& a, const AccessPolicy& b) {
  return EqualsIgnoreCase(a.object_id, b.object_id) &&
         EqualsIgnoreCase(a.application_id, b.application_id);
}

StatusOr<std::vector<AccessPolicy>> ParsePolicies(const Json& list, std::string_view vault_tenant,
                                                  const std::string& path) {
  if (!list.is_array()) return Bad(path, "must be an array of access policies");
  if (list.size() > kMaxAccessPolicies) {
    return Bad(path, "holds " + std::to_string(list.size()) + " policies; a vault has at most " +
                         std::to_string(kMaxAccessPolicies));
  }
  std::vector<AccessPolicy> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string entry_path = path + "[" + std::to_string(i) + "]";
    ASSIGN_OR_RETURN(AccessPolicy policy, ParsePolicy(list[i], vault_tenant, entry_path));
    for (size_t j = 0; j < out.size(); ++j) {
      if (SameIdentity(out[j], policy)) {
        return Bad(entry_path, "repeats the identity of " + path + "[" + std::to_string(j) +
                                   "] (objectId " + policy.object_id +
                                   "); list each identity once");
      }
    }
    out.push_back(std::move(policy));
  }
  return out;
}

StatusOr<NetworkAcls> ParseNetworkAcls(const Json& acls, NetworkAcls base) {
  const std::string path = "properties.networkAcls";
  if (!acls.is_object()) {
    return Bad(path,
               "must be {\"defaultAction\", \"bypass\", \"ipRules\", \"virtualNetworkRules\"}");
  }
  if (const Json* v = Member(acls, "defaultAction")) {
    ASSIGN_OR_RETURN(base.default_action,
                     EnumMember(*v, path + ".defaultAction", {"Allow", "Deny"}));
  }
  if (const Json* v = Member(acls, "bypass")) {
    ASSIGN_OR_RETURN(base.bypass, EnumMember(*v, path + ".bypass", {"AzureServices", "None"}));
  }
  if (const Json* rules = Member(acls, "ipRules")) {
    if (!rules->is_array()) return Bad(path + ".ipRules", "must be an array of {\"value\": ...}");
    if (rules->size() > kMaxIpRules) {
      return Bad(path + ".ipRules", "holds " + std::to_string(rules->size()) +
                                        " rules; a vault has at most " +
                                        std::to_string(kMaxIpRules));
    }
    std::vector<IpRule> parsed;
    for (size_t i = 0; i < rules->size(); ++i) {
      const std::string rule_path = path + ".ipRules[" + std::to_string(i) + "]";
      const Json* value = Member((*rules)[i], "value");
      if (!(*rules)[i].is_object() || value == nullptr || !value->is_string()) {
        return Bad(rule_path, "must be {\"value\": \"203.0.113.7\" or \"203.0.113.0/24\"}");
      }
      const std::string& text = value->get_ref<const std::string&>();
      if (!ParseIpNetwork(text)) {
        return Bad(rule_path + ".value",
                   Quoted(text) +
                       " is not an IPv4 or IPv6 address or CIDR range (e.g. \"203.0.113.7\", "
                       "\"203.0.113.0/24\", \"2001:db8::/32\")");
      }
      parsed.push_back({text});
    }
    base.ip_rules = std::move(parsed);
  }
  if (const Json* rules = Member(acls, "virtualNetworkRules")) {
    if (!rules->is_array()) return Bad(path + ".virtualNetworkRules", "must be an array");
    if (rules->size() > kMaxVirtualNetworkRules) {
      return Bad(path + ".virtualNetworkRules", "holds " + std::to_string(rules->size()) +
                                                    " rules; a vault has at most " +
                                                    std::to_string(kMaxVirtualNetworkRules));
    }
    for (size_t i = 0; i < rules->size(); ++i) {
      const Json* id = Member((*rules)[i], "id");
      if (!(*rules)[i].is_object() || id == nullptr || !id->is_string()) {
        return Bad(path + ".virtualNetworkRules[" + std::to_string(i) + "]",
                   "must be {\"id\": \"<subnet resource id>\"}");
      }
    }
    base.virtual_network_rules = *rules;
  }
  return base;
}

constexpr std::string_view kBooleanExtras[] = {"enabledForDeployment", "enabledForDiskEncryption",
                                               "enabledForTemplateDeployment"};

StatusOr<Vault> ParseVault(const Json& body, Vault base, bool patch) {
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be a JSON object")
        .WithReason("InvalidRequestContent");
  }
  const bool existing = base.created_at != 0;
  const Json* location = Member(body, "location");
  if (location == nullptr && !patch) {
    return Bad("location", "is required: the vault's location (any name, e.g. \"local\")");
  }
  if (location != nullptr) {
    RETURN_IF_ERROR(ValidateArmLocation(*location, "location"));
    const std::string& given = location->get_ref<const std::string&>();
    if (!existing) {
      base.location = given;
    } else if (NormalizeArmLocation(given) != NormalizeArmLocation(base.location)) {
      return FailedPreconditionError("The resource '" + base.name +
                                     "' already exists in location '" + base.location +
                                     "' in resource group '" + base.resource_group +
                                     "'. A resource with the same name cannot be created in "
                                     "location " +
                                     Quoted(given) + ". Please select a new resource name.")
          .WithReason("InvalidResourceLocation");
    }
  }
  if (const Json* tags = Member(body, "tags")) {
    RETURN_IF_ERROR(ValidateArmTags(*tags));
    base.tags = *tags;
  } else if (!patch) {
    base.tags = Json::object();  // a PUT replaces the tags
  }

  const Json* props = Member(body, "properties");
  if (props == nullptr) {
    if (patch) return base;
    return Bad("properties",
               "is required: {\"tenantId\": ..., \"sku\": {\"family\": \"A\", \"name\": "
               "\"standard\"}, ...}");
  }
  if (!props->is_object()) return Bad("properties", "must be an object");
  RETURN_IF_ERROR(CreateModeOf(body).status());

  if (const Json* tenant = Member(*props, "tenantId")) {
    ASSIGN_OR_RETURN(std::string tenant_id, Guid(*tenant, "properties.tenantId", "the tenant id"));
    if (!base.tenant_id.empty() && !EqualsIgnoreCase(tenant_id, base.tenant_id)) {
      return Bad("properties.tenantId", "must be the tenant " + Quoted(base.tenant_id) +
                                            " (the deployment's), not " + Quoted(tenant_id));
    }
    base.tenant_id = std::move(tenant_id);
  } else if (!patch) {
    return Bad("properties.tenantId", "is required: the deployment's tenant id (a GUID)");
  }
  if (const Json* sku = Member(*props, "sku")) {
    ASSIGN_OR_RETURN(base.sku, ParseSku(*sku));
  } else if (!patch) {
    return Bad("properties.sku",
               "is required: {\"family\": \"A\", \"name\": \"standard\" or \"premium\"}");
  }

  ASSIGN_OR_RETURN(std::optional<bool> soft_delete,
                   OptionalBool(*props, "enableSoftDelete", "properties.enableSoftDelete"));
  if (soft_delete && !*soft_delete) {
    return Bad("properties.enableSoftDelete",
               "soft delete cannot be disabled: every vault keeps its deleted keys and, once "
               "deleted, itself recoverable for softDeleteRetentionInDays (7 to 90 days). Leave "
               "enableSoftDelete out or set it to true.");
  }
  if (const Json* days = Member(*props, "softDeleteRetentionInDays")) {
    const std::string path = "properties.softDeleteRetentionInDays";
    if (!days->is_number_integer()) return Bad(path, "must be a whole number of days, 7 to 90");
    const bool in_range = days->is_number_unsigned()
                              ? days->get<uint64_t>() <= kMaxRetentionDays &&
                                    days->get<uint64_t>() >= kMinRetentionDays
                              : days->get<int64_t>() <= kMaxRetentionDays &&
                                    days->get<int64_t>() >= kMinRetentionDays;
    if (!in_range) return Bad(path, "must be from 7 to 90 days, not " + days->dump());
    const int value = days->get<int>();
    if (existing && value != base.soft_delete_retention_days) {
      return Bad(path, "is fixed when the vault is created: this vault keeps deleted items " +
                           std::to_string(base.soft_delete_retention_days) +
                           " days, which cannot be changed to " + std::to_string(value));
    }
    base.soft_delete_retention_days = value;
  }
  ASSIGN_OR_RETURN(
      std::optional<bool> purge_protection,
      OptionalBool(*props, "enablePurgeProtection", "properties.enablePurgeProtection"));
  if (purge_protection) {
    if (!*purge_protection) {
      return InvalidArgumentError(
                 "The property \"enablePurgeProtection\" cannot be set to false. Enabling the "
                 "purge protection for a vault is an irreversible action.")
          .WithReason("BadRequest");
    }
    base.purge_protection = true;
  }
  ASSIGN_OR_RETURN(std::optional<bool> rbac, OptionalBool(*props, "enableRbacAuthorization",
                                                          "properties.enableRbacAuthorization"));
  if (rbac) base.rbac_authorization = *rbac;
  for (std::string_view name : kBooleanExtras) {
    ASSIGN_OR_RETURN(std::optional<bool> value,
                     OptionalBool(*props, name, "properties." + std::string(name)));
    if (value) base.extra_properties[std::string(name)] = *value;
  }
  if (const Json* access = Member(*props, "publicNetworkAccess")) {
    ASSIGN_OR_RETURN(
        base.public_network_access,
        EnumMember(*access, "properties.publicNetworkAccess", {"Enabled", "Disabled"}));
  }
  if (const Json* acls = Member(*props, "networkAcls")) {
    ASSIGN_OR_RETURN(base.network_acls, ParseNetworkAcls(*acls, base.network_acls));
  }
  if (const Json* policies = Member(*props, "accessPolicies")) {
    ASSIGN_OR_RETURN(base.access_policies,
                     ParsePolicies(*policies, base.tenant_id, "properties.accessPolicies"));
  }
  return base;
}

// ---------------------------------------------------------------- ARM output

Json PolicyToArm(const AccessPolicy& policy) {
  Json keys = Json::array();
  for (KeyPermission p : policy.keys) keys.push_back(KeyPermissionName(p));
  Json permissions = {{"keys", keys}};
  for (const auto& [name, list] : policy.other_permissions.items()) permissions[name] = list;
  Json out = {
      {"tenantId", policy.tenant_id}, {"objectId", policy.object_id}, {"permissions", permissions}};
  if (!policy.application_id.empty()) out["applicationId"] = policy.application_id;
  return out;
}

// ---------------------------------------------------------------- access policy updates

bool ContainsIgnoreCase(const Json& list, std::string_view value) {
  return std::any_of(list.begin(), list.end(), [&](const Json& v) {
    return v.is_string() && EqualsIgnoreCase(v.get_ref<const std::string&>(), value);
  });
}

void MergeOtherPermissions(Json& into, const Json& from) {
  for (const auto& [name, list] : from.items()) {
    Json& target = into[name];
    if (!target.is_array()) target = Json::array();
    for (const Json& v : list) {
      if (!ContainsIgnoreCase(target, v.get_ref<const std::string&>())) target.push_back(v);
    }
  }
}

void SubtractOtherPermissions(Json& from, const Json& remove) {
  for (const auto& [name, list] : remove.items()) {
    auto target = from.find(name);
    if (target == from.end() || !target->is_array()) continue;
    if (ContainsIgnoreCase(list, "all")) {
      *target = Json::array();
      continue;
    }
    Json kept = Json::array();
    for (const Json& v : *target) {
      if (!v.is_string() || !ContainsIgnoreCase(list, v.get_ref<const std::string&>())) {
        kept.push_back(v);
      }
    }
    *target = std::move(kept);
  }
}

bool HasNoPermissions(const AccessPolicy& policy) {
  if (!policy.keys.empty()) return false;
  for (const auto& [name, list] : policy.other_permissions.items()) {
    if (list.is_array() && !list.empty()) return false;
  }
  return true;
}

// ---------------------------------------------------------------- storage

Status Corrupt(std::string_view key) {
  return DataLossError("the vault record " + Quoted(key) + " is corrupt");
}

Status VaultNotFound(std::string_view name) {
  return NotFoundError("The vault '" + std::string(name) + "' was not found.")
      .WithReason("VaultNotFound");
}

Status DeletedVaultNotFound(std::string_view name) {
  return NotFoundError("There is no deleted vault named '" + std::string(name) + "'.")
      .WithReason("DeletedVaultNotFound");
}

Bytes EncodeVault(const Vault& v) {
  Json policies = Json::array();
  for (const AccessPolicy& p : v.access_policies) {
    Json keys = Json::array();
    for (KeyPermission k : p.keys) keys.push_back(KeyPermissionName(k));
    policies.push_back({{"tenant_id", p.tenant_id},
                        {"object_id", p.object_id},
                        {"application_id", p.application_id},
                        {"keys", keys},
                        {"other", p.other_permissions}});
  }
  Json ip_rules = Json::array();
  for (const IpRule& r : v.network_acls.ip_rules) ip_rules.push_back(r.value);
  Json json = {{"v", 1},
               {"name", v.name},
               {"subscription_id", v.subscription_id},
               {"resource_group", v.resource_group},
               {"location", v.location},
               {"tags", v.tags},
               {"tenant_id", v.tenant_id},
               {"sku", v.sku},
               {"retention_days", v.soft_delete_retention_days},
               {"purge_protection", v.purge_protection},
               {"rbac", v.rbac_authorization},
               {"policies", policies},
               {"network_acls",
                {{"default_action", v.network_acls.default_action},
                 {"bypass", v.network_acls.bypass},
                 {"ip_rules", ip_rules},
                 {"vnet_rules", v.network_acls.virtual_network_rules}}},
               {"public_network_access", v.public_network_access},
               {"extra", v.extra_properties},
               {"created_at", v.created_at},
               {"created_by", v.created_by},
               {"updated_at", v.updated_at},
               {"updated_by", v.updated_by}};
  if (v.deleted_at) json["deleted_at"] = *v.deleted_at;
  return ToBytes(json.dump(-1, ' ', false, Json::error_handler_t::replace));
}

StatusOr<Vault> DecodeVault(const storage::Record& record) {
  Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || json.value("v", 0) != 1) {
    return Corrupt(record.key);
  }
  Vault v;
  try {
    v.name = json.at("name").get<std::string>();
    v.subscription_id = json.at("subscription_id").get<std::string>();
    v.resource_group = json.at("resource_group").get<std::string>();
    v.location = json.at("location").get<std::string>();
    v.tags = json.at("tags");
    v.tenant_id = json.at("tenant_id").get<std::string>();
    v.sku = json.at("sku").get<std::string>();
    v.soft_delete_retention_days = json.at("retention_days").get<int>();
    v.purge_protection = json.at("purge_protection").get<bool>();
    v.rbac_authorization = json.at("rbac").get<bool>();
    for (const Json& p : json.at("policies")) {
      AccessPolicy policy;
      policy.tenant_id = p.at("tenant_id").get<std::string>();
      policy.object_id = p.at("object_id").get<std::string>();
      policy.application_id = p.at("application_id").get<std::string>();
      for (const Json& k : p.at("keys")) {
        std::optional<KeyPermission> permission = ParseKeyPermission(k.get<std::string>());
        if (!permission) return Corrupt(record.key);
        policy.keys.insert(*permission);
      }
      policy.other_permissions = p.at("other");
      v.access_policies.push_back(std::move(policy));
    }
    const Json& acls = json.at("network_acls");
    v.network_acls.default_action = acls.at("default_action").get<std::string>();
    v.network_acls.bypass = acls.at("bypass").get<std::string>();
    for (const Json& r : acls.at("ip_rules"))
      v.network_acls.ip_rules.push_back({r.get<std::string>()});
    v.network_acls.virtual_network_rules = acls.at("vnet_rules");
    v.public_network_access = json.at("public_network_access").get<std::string>();
    v.extra_properties = json.at("extra");
    v.created_at = json.at("created_at").get<int64_t>();
    v.created_by = json.at("created_by").get<std::string>();
    v.updated_at = json.at("updated_at").get<int64_t>();
    v.updated_by = json.at("updated_by").get<std::string>();
    if (json.contains("deleted_at")) v.deleted_at = json.at("deleted_at").get<int64_t>();
  } catch (const Json::exception&) {
    return Corrupt(record.key);
  }
  if (ToLowerAscii(v.name) != record.key || !v.tags.is_object() ||
      !v.extra_properties.is_object()) {
    return Corrupt(record.key);
  }
  return v;
}

StatusOr<std::optional<Vault>> ReadVault(storage::Transaction& tx, std::string_view name) {
  if (!ValidateVaultName(name).ok()) return std::optional<Vault>();
  ASSIGN_OR_RETURN(std::optional<storage::Record> record, tx.Get(kVaultsTable, ToLowerAscii(name)));
  if (!record) return std::optional<Vault>();
  ASSIGN_OR_RETURN(Vault vault, DecodeVault(*record));
  return std::optional<Vault>(std::move(vault));
}

Status WriteVault(storage::Transaction& tx, const Vault& vault) {
  return tx.Put(kVaultsTable, ToLowerAscii(vault.name), EncodeVault(vault));
}

// What every stored vault satisfies, whoever built it (a route, a test, a future API).
Status ValidateStoredVault(const Vault& v) {
  RETURN_IF_ERROR(ValidateVaultName(v.name));
  if (v.subscription_id.empty() || v.resource_group.empty()) {
    return Bad("vault", "needs a subscription and a resource group");
  }
  RETURN_IF_ERROR(ValidateArmLocation(Json(v.location), "location"));
  RETURN_IF_ERROR(ValidateArmTags(v.tags));
  if (!identity::IsUuid(v.tenant_id)) return Bad("properties.tenantId", "must be a GUID");
  if (v.sku != "standard" && v.sku != "premium") {
    return Bad("properties.sku.name", "must be \"standard\" or \"premium\"");
  }
  if (v.soft_delete_retention_days < kMinRetentionDays ||
      v.soft_delete_retention_days > kMaxRetentionDays) {
    return Bad("properties.softDeleteRetentionInDays", "must be from 7 to 90 days");
  }
  if (v.public_network_access != "Enabled" && v.public_network_access != "Disabled") {
    return Bad("properties.publicNetworkAccess", "must be \"Enabled\" or \"Disabled\"");
  }
  if (v.network_acls.default_action != "Allow" && v.network_acls.default_action != "Deny") {
    return Bad("properties.networkAcls.defaultAction", "must be \"Allow\" or \"Deny\"");
  }
  if (v.network_acls.bypass != "AzureServices" && v.network_acls.bypass != "None") {
    return Bad("properties.networkAcls.bypass", "must be \"AzureServices\" or \"None\"");
  }
  if (v.network_acls.ip_rules.size() > kMaxIpRules) {
    return Bad("properties.networkAcls.ipRules", "holds too many rules");
  }
  for (const IpRule& rule : v.network_acls.ip_rules) {
    if (!ParseIpNetwork(rule.value)) {
      return Bad("properties.networkAcls.ipRules", Quoted(rule.value) + " is not an IP range");
    }
  }
  if (!v.network_acls.virtual_network_rules.is_array() || !v.extra_properties.is_object()) {
    return Bad("properties", "virtualNetworkRules must be an array");
  }
  if (v.access_policies.size() > kMaxAccessPolicies) {
    return Bad("properties.accessPolicies",
               "a vault has at most " + std::to_string(kMaxAccessPolicies) + " policies");
  }
  for (const AccessPolicy& p : v.access_policies) {
    if (!identity::IsUuid(p.object_id) || !EqualsIgnoreCase(p.tenant_id, v.tenant_id) ||
        (!p.application_id.empty() && !identity::IsUuid(p.application_id)) ||
        !p.other_permissions.is_object()) {
      return Bad("properties.accessPolicies",
                 "every policy needs a GUID objectId and the vault's tenantId");
    }
  }
  return OkStatus();
}

// The rules an update must keep (the file comment of vault.h).
Status CheckTransition(const Vault& stored, const Vault& next) {
  if (next.soft_delete_retention_days != stored.soft_delete_retention_days) {
    return Bad("properties.softDeleteRetentionInDays",
               "is fixed when the vault is created: this vault keeps deleted items " +
                   std::to_string(stored.soft_delete_retention_days) + " days");
  }
  if (stored.purge_protection && !next.purge_protection) {
    return InvalidArgumentError(
               "The property \"enablePurgeProtection\" cannot be set to false. Enabling the purge "
               "protection for a vault is an irreversible action.")
        .WithReason("BadRequest");
  }
  return OkStatus();
}

Status CheckPurgeAllowed(const std::optional<Vault>& vault, std::string_view name, int64_t now) {
  if (!vault || !vault->deleted_at) return DeletedVaultNotFound(name);
  const int64_t scheduled = vault->ScheduledPurgeDate(*vault->deleted_at);
  if (vault->purge_protection && now < scheduled) {
    return FailedPreconditionError(
               "Operation 'DeletedVaultPurge' is not allowed: purge protection is enabled for the "
               "vault '" +
               vault->name + "'. It will be purged automatically on " + FormatIso8601(scheduled) +
               " (its scheduledPurgeDate); until then it can only be recovered.")
        .WithReason("MethodNotAllowed");
  }
  return OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- names and tags

Status ValidateVaultName(std::string_view name) {
  bool ok = name.size() >= kMinVaultNameSize && name.size() <= kMaxVaultNameSize;
  for (size_t i = 0; ok && i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    ok = letter || digit || c == '-';
    if (i == 0) ok = ok && letter;
    if (c == '-' && (i + 1 == name.size() || name[i + 1] == '-')) ok = false;
  }
  if (ok) return OkStatus();
  return InvalidArgumentError("The vault name " + Quoted(name) +
                              " is invalid. A vault's name must be between 3-24 alphanumeric "
                              "characters. The name must begin with a letter, end with a letter "
                              "or digit, and not contain consecutive hyphens.")
      .WithReason("VaultNameNotValid");
}

Status ValidateArmTags(const nlohmann::json& tags, std::string_view field) {
  if (!tags.is_object()) return Bad(field, "must be an object of \"name\": \"value\" strings");
  if (tags.size() > kMaxTags) {
    return Bad(field, "holds " + std::to_string(tags.size()) + " tags; a resource has at most " +
                          std::to_string(kMaxTags));
  }
  for (const auto& [name, value] : tags.items()) {
    const std::string path = std::string(field) + "." + name;
    if (name.empty() || name.size() > kMaxTagNameSize) {
      return Bad(field, "tag names are 1 to 512 characters");
    }
    for (char c : name) {
      if (IsControl(c) || std::string_view("<>%&\\?/").find(c) != std::string_view::npos) {
        return Bad(field, "the tag name " + Quoted(name) +
                              " holds a character tag names cannot contain (<, >, %, &, \\, ?, / "
                              "or a control character)");
      }
    }
    if (!value.is_string()) return Bad(path, "must be a string");
    if (value.get_ref<const std::string&>().size() > kMaxTagValueSize) {
      return Bad(path, "tag values are at most 256 characters");
    }
  }
  return OkStatus();
}

Status ValidateArmLocation(const nlohmann::json& location, std::string_view field) {
  if (!location.is_string() || location.get_ref<const std::string&>().empty() ||
      location.get_ref<const std::string&>().size() > kMaxLocationSize) {
    return Bad(field, "must be a location name of 1 to 128 characters (any name, e.g. \"local\")");
  }
  for (char c : location.get_ref<const std::string&>()) {
    if (IsControl(c)) return Bad(field, "must not contain control characters");
  }
  return OkStatus();
}

std::string NormalizeArmLocation(std::string_view location) {
  std::string out;
  for (char c : location) {
    if (c != ' ') out += LowerAscii(c);
  }
  return out;
}

// ---------------------------------------------------------------- permissions

std::string_view KeyPermissionName(KeyPermission permission) {
  switch (permission) {
    case KeyPermission::kEncrypt:
      return "encrypt";
    case KeyPermission::kDecrypt:
      return "decrypt";
    case KeyPermission::kWrapKey:
      return "wrapKey";
    case KeyPermission::kUnwrapKey:
      return "unwrapKey";
    case KeyPermission::kSign:
      return "sign";
    case KeyPermission::kVerify:
      return "verify";
    case KeyPermission::kGet:
      return "get";
    case KeyPermission::kList:
      return "list";
    case KeyPermission::kCreate:
      return "create";
    case KeyPermission::kUpdate:
      return "update";
    case KeyPermission::kImport:
      return "import";
    case KeyPermission::kDelete:
      return "delete";
    case KeyPermission::kBackup:
      return "backup";
    case KeyPermission::kRestore:
      return "restore";
    case KeyPermission::kRecover:
      return "recover";
    case KeyPermission::kPurge:
      return "purge";
    case KeyPermission::kRelease:
      return "release";
    case KeyPermission::kRotate:
      return "rotate";
    case KeyPermission::kGetRotationPolicy:
      return "getrotationpolicy";
    case KeyPermission::kSetRotationPolicy:
      return "setrotationpolicy";
  }
  return "unknown";
}

std::optional<KeyPermission> ParseKeyPermission(std::string_view name) {
  for (KeyPermission p : kAllKeyPermissions) {
    if (EqualsIgnoreCase(KeyPermissionName(p), name)) return p;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- Vault

std::string Vault::ResourceId() const {
  return "/subscriptions/" + subscription_id + "/resourceGroups/" + resource_group +
         "/providers/Microsoft.KeyVault/vaults/" + name;
}

int64_t Vault::ScheduledPurgeDate(int64_t deleted_at_seconds) const {
  return deleted_at_seconds + int64_t{soft_delete_retention_days} * kSecondsPerDay;
}

std::string Vault::RecoveryLevel() const {
  const bool customized = soft_delete_retention_days < kMaxRetentionDays;
  std::string level = customized ? "CustomizedRecoverable" : "Recoverable";
  if (!purge_protection) level += "+Purgeable";
  return level;
}

Status CheckFirewall(const Vault& vault, const NetworkOrigin& origin) {
  const bool trusted_bypass =
      origin.trusted_service && vault.network_acls.bypass == "AzureServices";
  if (trusted_bypass) return OkStatus();
  std::string why;
  if (vault.public_network_access == "Disabled") {
    why =
        "Public network access is disabled and request is not from a trusted service nor via an "
        "approved private link.";
  } else {
    if (vault.network_acls.default_action == "Allow") return OkStatus();
    if (std::optional<IpAddress> address = ParseIpAddress(origin.client_address)) {
      for (const IpRule& rule : vault.network_acls.ip_rules) {
        std::optional<IpNetwork> network = ParseIpNetwork(rule.value);
        if (network && NetworkContains(*network, *address)) return OkStatus();
      }
    }
    why = "Client address is not authorized and caller is not a trusted service.";
  }
  std::string message = why + "\r\nClient address: " + origin.client_address;
  if (!origin.caller.empty()) message += "\r\nCaller: " + origin.caller;
  message += "\r\nVault: " + vault.name + ";location=" + vault.location;
  return PermissionDeniedError(std::move(message)).WithReason("ForbiddenByFirewall");
}

bool PolicyGrants(const Vault& vault, std::string_view object_id, KeyPermission permission) {
  return std::any_of(
      vault.access_policies.begin(), vault.access_policies.end(), [&](const AccessPolicy& p) {
        return p.application_id.empty() && EqualsIgnoreCase(p.object_id, object_id) &&
               p.keys.count(permission) > 0;
      });
}

// ---------------------------------------------------------------- ARM JSON

StatusOr<Vault> VaultFromArm(const nlohmann::json& body, Vault base) {
  return ParseVault(body, std::move(base), /*patch=*/false);
}

StatusOr<Vault> VaultPatchFromArm(const nlohmann::json& body, Vault base) {
  return ParseVault(body, std::move(base), /*patch=*/true);
}

StatusOr<CreateMode> CreateModeOf(const nlohmann::json& body) {
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be a JSON object")
        .WithReason("InvalidRequestContent");
  }
  const Json* props = Member(body, "properties");
  if (props == nullptr || !props->is_object()) return CreateMode::kDefault;
  const Json* mode = Member(*props, "createMode");
  if (mode == nullptr) return CreateMode::kDefault;
  ASSIGN_OR_RETURN(std::string name,
                   EnumMember(*mode, "properties.createMode", {"default", "recover"}));
  return name == "recover" ? CreateMode::kRecover : CreateMode::kDefault;
}

nlohmann::json VaultToArm(const Vault& vault, std::string_view vault_uri) {
  Json ip_rules = Json::array();
  for (const IpRule& r : vault.network_acls.ip_rules) ip_rules.push_back({{"value", r.value}});
  Json props = {{"tenantId", vault.tenant_id},
                {"sku", {{"family", "A"}, {"name", vault.sku}}},
                {"accessPolicies", AccessPoliciesToArm(vault)},
                {"enableSoftDelete", true},
                {"softDeleteRetentionInDays", vault.soft_delete_retention_days},
                {"enableRbacAuthorization", vault.rbac_authorization},
                {"vaultUri", vault_uri},
                {"provisioningState", "Succeeded"},
                {"publicNetworkAccess", vault.public_network_access},
                {"networkAcls",
                 {{"defaultAction", vault.network_acls.default_action},
                  {"bypass", vault.network_acls.bypass},
                  {"ipRules", ip_rules},
                  {"virtualNetworkRules", vault.network_acls.virtual_network_rules}}}};
  if (vault.purge_protection) props["enablePurgeProtection"] = true;
  for (const auto& [name, value] : vault.extra_properties.items()) {
    if (!props.contains(name)) props[name] = value;
  }
  Json out = {
      {"id", vault.ResourceId()},   {"name", vault.name}, {"type", "Microsoft.KeyVault/vaults"},
      {"location", vault.location}, {"tags", vault.tags}, {"properties", props}};
  if (vault.created_at != 0) {
    out["systemData"] = {{"createdBy", vault.created_by},
                         {"createdAt", FormatIso8601(vault.created_at)},
                         {"lastModifiedBy", vault.updated_by},
                         {"lastModifiedAt", FormatIso8601(vault.updated_at)}};
  }
  return out;
}

nlohmann::json DeletedVaultToArm(const Vault& vault) {
  const int64_t deleted = vault.deleted_at.value_or(0);
  return {{"id", "/subscriptions/" + vault.subscription_id +
                     "/providers/Microsoft.KeyVault/locations/" +
                     NormalizeArmLocation(vault.location) + "/deletedVaults/" + vault.name},
          {"name", vault.name},
          {"type", "Microsoft.KeyVault/deletedVaults"},
          {"properties",
           {{"vaultId", vault.ResourceId()},
            {"location", vault.location},
            {"deletionDate", FormatIso8601(deleted)},
            {"scheduledPurgeDate", FormatIso8601(vault.ScheduledPurgeDate(deleted))},
            {"tags", vault.tags},
            {"purgeProtectionEnabled", vault.purge_protection}}}};
}

std::optional<AccessPolicyUpdateKind> ParseAccessPolicyUpdateKind(std::string_view kind) {
  if (EqualsIgnoreCase(kind, "add")) return AccessPolicyUpdateKind::kAdd;
  if (EqualsIgnoreCase(kind, "replace")) return AccessPolicyUpdateKind::kReplace;
  if (EqualsIgnoreCase(kind, "remove")) return AccessPolicyUpdateKind::kRemove;
  return std::nullopt;
}

StatusOr<std::vector<AccessPolicy>> AccessPoliciesFromArm(const nlohmann::json& body,
                                                          std::string_view vault_tenant_id) {
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be {\"properties\": {\"accessPolicies\": [...]}}")
        .WithReason("InvalidRequestContent");
  }
  const Json* props = Member(body, "properties");
  if (props == nullptr || !props->is_object()) {
    return Bad("properties", "is required: {\"accessPolicies\": [...]}");
  }
  const Json* list = Member(*props, "accessPolicies");
  if (list == nullptr) return Bad("properties.accessPolicies", "is required");
  return ParsePolicies(*list, vault_tenant_id, "properties.accessPolicies");
}

Status ApplyAccessPolicyUpdate(Vault& vault, AccessPolicyUpdateKind kind,
                               const std::vector<AccessPolicy>& policies) {
  std::vector<AccessPolicy> result;
  switch (kind) {
    case AccessPolicyUpdateKind::kReplace:
      result = policies;
      break;
    case AccessPolicyUpdateKind::kAdd:
      result = vault.access_policies;
      for (const AccessPolicy& p : policies) {
        auto it = std::find_if(result.begin(), result.end(),
                               [&](const AccessPolicy& q) { return SameIdentity(p, q); });
        if (it == result.end()) {
          result.push_back(p);
          continue;
        }
        it->keys.insert(p.keys.begin(), p.keys.end());
        MergeOtherPermissions(it->other_permissions, p.other_permissions);
      }
      break;
    case AccessPolicyUpdateKind::kRemove:
      result = vault.access_policies;
      for (const AccessPolicy& p : policies) {
        auto it = std::find_if(result.begin(), result.end(),
                               [&](const AccessPolicy& q) { return SameIdentity(p, q); });
        if (it == result.end()) continue;
        // A listed identity without permissions means the whole policy.
        if (HasNoPermissions(p)) {
          result.erase(it);
          continue;
        }
        for (KeyPermission k : p.keys) it->keys.erase(k);
        SubtractOtherPermissions(it->other_permissions, p.other_permissions);
        if (HasNoPermissions(*it)) result.erase(it);
      }
      break;
  }
  if (result.size() > kMaxAccessPolicies) {
    return Bad("properties.accessPolicies",
               "the vault would hold " + std::to_string(result.size()) +
                   " policies; a vault has at most " + std::to_string(kMaxAccessPolicies));
  }
  vault.access_policies = std::move(result);
  return OkStatus();
}

nlohmann::json AccessPoliciesToArm(const Vault& vault) {
  Json out = Json::array();
  for (const AccessPolicy& p : vault.access_policies) out.push_back(PolicyToArm(p));
  return out;
}

// ---------------------------------------------------------------- VaultStore

VaultStore::VaultStore(storage::MetadataStore& store, const Clock& clock)
    : store_(store), clock_(clock) {}

StatusOr<Vault> VaultStore::Get(std::string_view name) const {
  ASSIGN_OR_RETURN(Vault vault, GetAny(name));
  if (vault.deleted_at) return VaultNotFound(name);
  return vault;
}

StatusOr<Vault> VaultStore::GetAny(std::string_view name) const {
  const std::string key = ToLowerAscii(name);
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  const auto now = std::chrono::steady_clock::now();
  {
    MutexLock lock(&cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.generation == generation &&
        now - it->second.loaded < kCacheTtl) {
      return it->second.vault;
    }
  }
  std::optional<Vault> found;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(found, ReadVault(tx, name));
    return OkStatus();
  }));
  if (!found) return VaultNotFound(name);
  MutexLock lock(&cache_mutex_);
  // Only what was read before any write of this process since: a write in between bumped the
  // generation, and its result must not be shadowed by what was read before it.
  if (generation_.load(std::memory_order_acquire) == generation) {
    if (cache_.size() >= kCacheSize) cache_.clear();
    cache_[key] = CachedVault{*found, generation, now};
  }
  return *std::move(found);
}

Status VaultStore::Write(const storage::TransactionFn& fn) {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  Status status = store_.Write(fn);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return status;
}

StatusOr<Vault> VaultStore::Put(const Vault& vault, bool* created) {
  RETURN_IF_ERROR(ValidateStoredVault(vault));
  Vault stored;
  bool was_created = false;
  RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
    const int64_t now = UnixSeconds(clock_);
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, vault.name));
    Vault next = vault;
    next.deleted_at.reset();
    next.updated_at = now;
    if (!existing) {
      next.created_at = now;
      if (next.created_by.empty()) next.created_by = next.updated_by;
      RETURN_IF_ERROR(WriteVault(tx, next));
      stored = std::move(next);
      was_created = true;
      return OkStatus();
    }
    if (existing->deleted_at) {
      return AlreadyExistsError(
                 "A vault named '" + existing->name +
                 "' already exists in deleted state. Recover it (PUT with properties.createMode "
                 "\"recover\") or purge it before reusing its name.")
          .WithReason("ConflictError");
    }
    if (!EqualsIgnoreCase(existing->subscription_id, vault.subscription_id) ||
        !EqualsIgnoreCase(existing->resource_group, vault.resource_group)) {
      return AlreadyExistsError("The vault name '" + vault.name +
                                "' is already in use. Vault names are unique in the deployment; "
                                "this one belongs to another resource group.")
          .WithReason("VaultAlreadyExists");
    }
    RETURN_IF_ERROR(CheckTransition(*existing, next));
    next.name = existing->name;
    next.subscription_id = existing->subscription_id;
    next.resource_group = existing->resource_group;
    next.created_at = existing->created_at;
    next.created_by = existing->created_by;
    RETURN_IF_ERROR(WriteVault(tx, next));
    stored = std::move(next);
    was_created = false;
    return OkStatus();
  }));
  if (created != nullptr) *created = was_created;
  return stored;
}

StatusOr<Vault> VaultStore::Update(std::string_view name,
                                   const std::function<Status(Vault&)>& mutate) {
  Vault stored;
  RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, name));
    if (!existing || existing->deleted_at) return VaultNotFound(name);
    Vault next = *existing;
    RETURN_IF_ERROR(mutate(next));
    next.name = existing->name;
    next.subscription_id = existing->subscription_id;
    next.resource_group = existing->resource_group;
    next.created_at = existing->created_at;
    next.created_by = existing->created_by;
    next.deleted_at.reset();
    next.updated_at = UnixSeconds(clock_);
    RETURN_IF_ERROR(ValidateStoredVault(next));
    RETURN_IF_ERROR(CheckTransition(*existing, next));
    RETURN_IF_ERROR(WriteVault(tx, next));
    stored = std::move(next);
    return OkStatus();
  }));
  return stored;
}

StatusOr<Vault> VaultStore::Delete(std::string_view name) {
  Vault deleted;
  RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, name));
    if (!existing || existing->deleted_at) return VaultNotFound(name);
    existing->deleted_at = UnixSeconds(clock_);
    RETURN_IF_ERROR(WriteVault(tx, *existing));
    deleted = *std::move(existing);
    return OkStatus();
  }));
  return deleted;
}

StatusOr<Vault> VaultStore::Recover(std::string_view name) {
  Vault recovered;
  RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, name));
    if (!existing || !existing->deleted_at) return DeletedVaultNotFound(name);
    existing->deleted_at.reset();
    existing->updated_at = UnixSeconds(clock_);
    RETURN_IF_ERROR(WriteVault(tx, *existing));
    recovered = *std::move(existing);
    return OkStatus();
  }));
  return recovered;
}

Status VaultStore::CanPurge(std::string_view name) const {
  return store_.Read([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, name));
    return CheckPurgeAllowed(existing, name, UnixSeconds(clock_));
  });
}

Status VaultStore::Purge(std::string_view name) {
  return Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Vault> existing, ReadVault(tx, name));
    RETURN_IF_ERROR(CheckPurgeAllowed(existing, name, UnixSeconds(clock_)));
    return tx.Delete(kVaultsTable, ToLowerAscii(existing->name));
  });
}

StatusOr<std::vector<Vault>> VaultStore::List(bool deleted) const {
  std::vector<Vault> out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    out.clear();
    std::string after;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<storage::Record> page,
                       tx.Scan(kVaultsTable, "", after, storage::kMaxScanLimit));
      for (const storage::Record& record : page) {
        ASSIGN_OR_RETURN(Vault vault, DecodeVault(record));
        if (vault.deleted_at.has_value() == deleted) out.push_back(std::move(vault));
      }
      if (page.size() < storage::kMaxScanLimit) break;
      after = page.back().key;
    }
    return OkStatus();
  }));
  return out;
}

}  // namespace keyfoundry::keyvault
