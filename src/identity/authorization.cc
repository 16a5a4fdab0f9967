#include "identity/authorization.h"

#include <algorithm>
#include <ctime>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

#include "crypto/random.h"
#include "identity/ids.h"

namespace keyfoundry::identity {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kAssignments = "role_assignments";
constexpr std::string_view kByScope = "role_assignments_by_scope";
constexpr std::string_view kByPrincipal = "role_assignments_by_principal";
constexpr size_t kMaxActionSize = 512;
constexpr size_t kUuidSize = 36;

// ---------------------------------------------------------------------------------------------
// The built-in roles, verbatim from Microsoft's built-in roles reference (role ids and
// permissions as published there).

// Shared by Key Vault Administrator, Crypto Officer and Reader.
constexpr std::string_view kKeyVaultRoleActions[] = {
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
};

constexpr std::string_view kAll[] = {"*"};
constexpr std::string_view kReadAll[] = {"*/read"};
constexpr std::string_view kContributorNotActions[] = {
    "Microsoft.Authorization/*/Delete",
    "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action",
    "Microsoft.Blueprint/blueprintAssignments/write",
    "Microsoft.Blueprint/blueprintAssignments/delete",
    "Microsoft.Compute/galleries/share/action",
    "Microsoft.Purview/consents/write",
    "Microsoft.Purview/consents/delete",
    "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
    "Microsoft.Subscription/cancel/action",
    "Microsoft.Subscription/enable/action",
};
constexpr std::string_view kKeyVaultAdministratorDataActions[] = {"Microsoft.KeyVault/vaults/*"};
constexpr std::string_view kKeyVaultCryptoOfficerDataActions[] = {
    "Microsoft.KeyVault/vaults/keys/*",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
};
constexpr std::string_view kKeyVaultCryptoUserDataActions[] = {
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/update/action",
    "Microsoft.KeyVault/vaults/keys/backup/action",
    "Microsoft.KeyVault/vaults/keys/encrypt/action",
    "Microsoft.KeyVault/vaults/keys/decrypt/action",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keys/unwrap/action",
    "Microsoft.KeyVault/vaults/keys/sign/action",
    "Microsoft.KeyVault/vaults/keys/verify/action",
};
constexpr std::string_view kKeyVaultServiceEncryptionActions[] = {
    "Microsoft.EventGrid/eventSubscriptions/write",
    "Microsoft.EventGrid/eventSubscriptions/read",
    "Microsoft.EventGrid/eventSubscriptions/delete",
};
constexpr std::string_view kKeyVaultServiceEncryptionDataActions[] = {
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keys/unwrap/action",
};
constexpr std::string_view kKeyVaultReaderDataActions[] = {
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
};
constexpr std::string_view kCognitiveServicesContributorActions[] = {
    "Microsoft.Authorization/*/read",
    "Microsoft.CognitiveServices/*",
    "Microsoft.Features/features/read",
    "Microsoft.Features/providers/features/read",
    "Microsoft.Features/providers/features/register/action",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Insights/diagnosticSettings/*",
    "Microsoft.Insights/logDefinitions/read",
    "Microsoft.Insights/metricdefinitions/read",
    "Microsoft.Insights/metrics/read",
    "Microsoft.ResourceHealth/availabilityStatuses/read",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/deployments/operations/read",
    "Microsoft.Resources/subscriptions/operationresults/read",
    "Microsoft.Resources/subscriptions/read",
    "Microsoft.Resources/subscriptions/resourcegroups/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
};
constexpr std::string_view kCognitiveServicesUserActions[] = {
    "Microsoft.CognitiveServices/*/read",
    "Microsoft.CognitiveServices/accounts/listkeys/action",
    "Microsoft.Insights/alertRules/read",
    "Microsoft.Insights/diagnosticSettings/read",
    "Microsoft.Insights/logDefinitions/read",
    "Microsoft.Insights/metricdefinitions/read",
    "Microsoft.Insights/metrics/read",
    "Microsoft.ResourceHealth/availabilityStatuses/read",
    "Microsoft.Resources/deployments/operations/read",
    "Microsoft.Resources/subscriptions/operationresults/read",
    "Microsoft.Resources/subscriptions/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
};
constexpr std::string_view kCognitiveServicesUserDataActions[] = {"Microsoft.CognitiveServices/*"};

constexpr RoleDefinition kRoles[] = {
    {role_ids::kOwner,
     "Owner",
     "Grants full access to manage all resources, including the ability to assign roles in "
     "Azure RBAC.",
     kAll,
     {},
     {},
     {}},
    {role_ids::kContributor,
     "Contributor",
     "Grants full access to manage all resources, but does not allow you to assign roles in "
     "Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
     kAll,
     kContributorNotActions,
     {},
     {}},
    {role_ids::kReader,
     "Reader",
     "View all resources, but does not allow you to make any changes.",
     kReadAll,
     {},
     {},
     {}},
    {role_ids::kKeyVaultAdministrator,
     "Key Vault Administrator",
     "Perform all data plane operations on a key vault and all objects in it, including "
     "certificates, keys, and secrets. Cannot manage key vault resources or manage role "
     "assignments. Only works for key vaults that use the 'Azure role-based access control' "
     "permission model.",
     kKeyVaultRoleActions,
     {},
     kKeyVaultAdministratorDataActions,
     {}},
    {role_ids::kKeyVaultCryptoOfficer,
     "Key Vault Crypto Officer",
     "Perform any action on the keys of a key vault, except manage permissions. Only works for "
     "key vaults that use the 'Azure role-based access control' permission model.",
     kKeyVaultRoleActions,
     {},
     kKeyVaultCryptoOfficerDataActions,
     {}},
    {role_ids::kKeyVaultCryptoUser,
     "Key Vault Crypto User",
     "Perform cryptographic operations using keys. Only works for key vaults that use the "
     "'Azure role-based access control' permission model.",
     {},
     {},
     kKeyVaultCryptoUserDataActions,
     {}},
    {role_ids::kKeyVaultCryptoServiceEncryptionUser,
     "Key Vault Crypto Service Encryption User",
     "Read metadata of keys and perform wrap/unwrap operations. Only works for key vaults that "
     "use the 'Azure role-based access control' permission model.",
     kKeyVaultServiceEncryptionActions,
     {},
     kKeyVaultServiceEncryptionDataActions,
     {}},
    {role_ids::kKeyVaultReader,
     "Key Vault Reader",
     "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read "
     "sensitive values such as secret contents or key material. Only works for key vaults that "
     "use the 'Azure role-based access control' permission model.",
     kKeyVaultRoleActions,
     {},
     kKeyVaultReaderDataActions,
     {}},
    {role_ids::kCognitiveServicesContributor,
     "Cognitive Services Contributor",
     "Lets you create, read, update, delete and manage keys of Cognitive Services.",
     kCognitiveServicesContributorActions,
     {},
     {},
     {}},
    {role_ids::kCognitiveServicesUser,
     "Cognitive Services User",
     "Lets you read and list keys of Cognitive Services.",
     kCognitiveServicesUserActions,
     {},
     kCognitiveServicesUserDataActions,
     {}},
};

// ---------------------------------------------------------------------------------------------

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string PrincipalPrefix(std::string_view principal_id) {
  return ToLowerAscii(principal_id) + "|";
}
std::string PrincipalKey(std::string_view principal_id, std::string_view role_id,
                         std::string_view normalized_scope) {
  return PrincipalPrefix(principal_id) + std::string(role_id) + "|" + std::string(normalized_scope);
}
std::string ScopeKey(std::string_view normalized_scope, std::string_view name) {
  return std::string(normalized_scope) + "#" + std::string(name);
}

std::string_view StripTrailingSlash(std::string_view scope) {
  while (scope.size() > 1 && scope.back() == '/') scope.remove_suffix(1);
  return scope;
}

bool ValidPrincipalType(std::string_view type) {
  return type.empty() || type == "User" || type == "ServicePrincipal" || type == "Group" ||
         type == "ForeignGroup" || type == "Device";
}

StatusOr<Bytes> EncodeAssignment(const RoleAssignment& a) {
  try {
    Json json = {{"v", 1},
                 {"name", a.name},
                 {"scope", a.scope},
                 {"principal_id", a.principal_id},
                 {"role_definition_id", a.role_definition_id},
                 {"principal_type", a.principal_type},
                 {"created_by", a.created_by},
                 {"created_at", a.created_at}};
    return ToBytes(json.dump());
  } catch (const std::exception&) {
    return InternalError("role assignment record is not valid UTF-8");
  }
}

StatusOr<RoleAssignment> DecodeAssignment(const storage::Record& record) {
  Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  auto corrupt = [&] { return DataLossError("role assignment " + record.key + " is corrupt"); };
  if (json.is_discarded() || !json.is_object()) return corrupt();
  RoleAssignment out;
  for (auto [name, field] : {std::pair{"name", &out.name}, std::pair{"scope", &out.scope},
                             std::pair{"principal_id", &out.principal_id},
                             std::pair{"role_definition_id", &out.role_definition_id},
                             std::pair{"principal_type", &out.principal_type},
                             std::pair{"created_by", &out.created_by}}) {
    auto it = json.find(name);
    if (it == json.end() || !it->is_string()) return corrupt();
    *field = it->get<std::string>();
  }
  auto created = json.find("created_at");
  if (created == json.end() || !created->is_number_integer() || out.name != record.key) {
    return corrupt();
  }
  out.created_at = created->get<int64_t>();
  return out;
}

StatusOr<std::optional<RoleAssignment>> ReadAssignment(storage::Transaction& txn,
                                                       std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<storage::Record> record, txn.Get(kAssignments, name));
  if (!record) return std::optional<RoleAssignment>();
  ASSIGN_OR_RETURN(RoleAssignment assignment, DecodeAssignment(*record));
  return std::optional<RoleAssignment>(std::move(assignment));
}

// Every record of `table` whose key starts with `prefix`, page by page.
Status ScanAll(storage::Transaction& txn, std::string_view table, const std::string& prefix,
               const std::function<Status(const storage::Record&)>& fn) {
  std::string after;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<storage::Record> page,
                     txn.Scan(table, prefix, after, storage::kMaxScanLimit));
    for (const storage::Record& record : page) RETURN_IF_ERROR(fn(record));
    if (page.size() < storage::kMaxScanLimit) return OkStatus();
    after = page.back().key;
  }
}

Json StringArray(std::span<const std::string_view> values) {
  Json out = Json::array();
  for (std::string_view v : values) out.push_back(std::string(v));
  return out;
}

std::string RoleDefinitionArmId(std::string_view role_id, std::string_view subscription_id) {
  std::string out;
  if (!subscription_id.empty()) out = "/subscriptions/" + std::string(subscription_id);
  return out + "/providers/Microsoft.Authorization/roleDefinitions/" + std::string(role_id);
}

}  // namespace

// --- role definitions

std::span<const RoleDefinition> BuiltInRoleDefinitions() { return kRoles; }

const RoleDefinition* FindRoleDefinition(std::string_view id) {
  const size_t slash = id.rfind('/');
  if (slash != std::string_view::npos) {
    const std::string_view prefix = id.substr(0, slash + 1);
    constexpr std::string_view kSuffix = "/providers/Microsoft.Authorization/roleDefinitions/";
    if (prefix.size() < kSuffix.size() ||
        !EqualsIgnoreCase(prefix.substr(prefix.size() - kSuffix.size()), kSuffix)) {
      return nullptr;
    }
    const std::string_view head = prefix.substr(0, prefix.size() - kSuffix.size());
    if (!head.empty() && !ValidateScope(head).ok()) return nullptr;
    if (!head.empty() && SubscriptionOfScope(head).size() + 15 != head.size()) return nullptr;
    id = id.substr(slash + 1);
  }
  if (!IsUuid(id)) return nullptr;
  for (const RoleDefinition& role : kRoles) {
    if (EqualsIgnoreCase(role.id, id)) return &role;
  }
  return nullptr;
}

const RoleDefinition* FindRoleDefinitionByName(std::string_view name) {
  for (const RoleDefinition& role : kRoles) {
    if (EqualsIgnoreCase(role.name, name)) return &role;
  }
  return nullptr;
}

bool ActionMatches(std::string_view pattern, std::string_view action) {
  // Glob matching with one backtrack point (the latest '*'): O(pattern * action) at worst,
  // never exponential.
  size_t p = 0;
  size_t a = 0;
  size_t star = std::string_view::npos;
  size_t star_a = 0;
  while (a < action.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_a = a;
    } else if (p < pattern.size() && Lower(pattern[p]) == Lower(action[a])) {
      ++p;
      ++a;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      a = ++star_a;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool RoleGrants(const RoleDefinition& role, std::string_view action, ActionType type) {
  std::span<const std::string_view> grants;
  std::span<const std::string_view> excludes;
  switch (type) {
    case ActionType::kAction:
      grants = role.actions;
      excludes = role.not_actions;
      break;
    case ActionType::kDataAction:
      grants = role.data_actions;
      excludes = role.not_data_actions;
      break;
  }
  auto matches = [&](std::string_view pattern) { return ActionMatches(pattern, action); };
  return std::any_of(grants.begin(), grants.end(), matches) &&
         std::none_of(excludes.begin(), excludes.end(), matches);
}

// --- Authorizer

Authorizer::Authorizer(storage::MetadataStore& store, const Clock& clock)
    : store_(store), clock_(clock) {}

StatusOr<RoleAssignment> Authorizer::Create(RoleAssignment assignment) {
  if (!IsUuid(assignment.name)) {
    return InvalidArgumentError("the role assignment name must be a GUID");
  }
  RETURN_IF_ERROR(ValidateScope(assignment.scope));
  if (!IsUuid(assignment.principal_id)) {
    return InvalidArgumentError("the principal id must be a GUID (an object id)");
  }
  const RoleDefinition* role = FindRoleDefinition(assignment.role_definition_id);
  if (role == nullptr) {
    return InvalidArgumentError("the role definition '" +
                                assignment.role_definition_id.substr(0, 200) + "' does not exist");
  }
  if (!ValidPrincipalType(assignment.principal_type)) {
    return InvalidArgumentError(
        "principalType must be User, ServicePrincipal, Group, ForeignGroup or Device");
  }
  assignment.name = ToLowerAscii(assignment.name);
  assignment.scope = std::string(StripTrailingSlash(assignment.scope));
  assignment.principal_id = ToLowerAscii(assignment.principal_id);
  assignment.role_definition_id = std::string(role->id);
  assignment.created_at =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
  const std::string scope = NormalizeScope(assignment.scope);
  const std::string principal_key =
      PrincipalKey(assignment.principal_id, assignment.role_definition_id, scope);
  ASSIGN_OR_RETURN(Bytes record, EncodeAssignment(assignment));
  RoleAssignment result;
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(std::optional<RoleAssignment> existing, ReadAssignment(txn, assignment.name));
    if (existing) {
      if (existing->principal_id == assignment.principal_id &&
          existing->role_definition_id == assignment.role_definition_id &&
          NormalizeScope(existing->scope) == scope) {
        result = *std::move(existing);  // the same PUT again: ARM answers with it
        return OkStatus();
      }
      return FailedPreconditionError(
          "RoleAssignmentUpdateNotPermitted: the principal, role and scope of an existing "
          "role assignment cannot be changed; delete it and create a new one");
    }
    ASSIGN_OR_RETURN(std::optional<storage::Record> same, txn.Get(kByPrincipal, principal_key));
    if (same) {
      return AlreadyExistsError("RoleAssignmentExists: the role assignment already exists (as " +
                                std::string(AsStringView(same->value)) + ")");
    }
    RETURN_IF_ERROR(txn.Insert(kAssignments, assignment.name, record));
    RETURN_IF_ERROR(txn.Insert(kByScope, ScopeKey(scope, assignment.name), {}));
    RETURN_IF_ERROR(txn.Insert(kByPrincipal, principal_key, AsBytes(assignment.name)));
    result = assignment;
    return OkStatus();
  }));
  return result;
}

StatusOr<RoleAssignment> Authorizer::Ensure(std::string_view principal_id,
                                            std::string_view principal_type,
                                            std::string_view role_definition_id,
                                            std::string_view scope) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    const RoleDefinition* role = FindRoleDefinition(role_definition_id);
    if (role != nullptr && IsUuid(principal_id) && ValidateScope(scope).ok()) {
      const std::string key = PrincipalKey(principal_id, role->id, NormalizeScope(scope));
      std::optional<RoleAssignment> found;
      RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
        found.reset();
        ASSIGN_OR_RETURN(std::optional<storage::Record> index, txn.Get(kByPrincipal, key));
        if (!index) return OkStatus();
        ASSIGN_OR_RETURN(found, ReadAssignment(txn, AsStringView(index->value)));
        if (!found) return DataLossError("role assignment index points to nothing");
        return OkStatus();
      }));
      if (found) return *found;
    }
    RoleAssignment assignment;
    ASSIGN_OR_RETURN(assignment.name, crypto::NewUuid());
    assignment.scope = std::string(scope);
    assignment.principal_id = std::string(principal_id);
    assignment.principal_type = std::string(principal_type);
    assignment.role_definition_id = std::string(role_definition_id);
    StatusOr<RoleAssignment> created = Create(std::move(assignment));
    if (created.status().code() != StatusCode::kAlreadyExists) return created;
    // Someone created it between the read and the write: read it again.
  }
  return AbortedError("the role assignment kept changing; retry");
}

StatusOr<RoleAssignment> Authorizer::Get(std::string_view name) const {
  if (!IsUuid(name)) return NotFoundError("no role assignment has this name");
  std::optional<RoleAssignment> found;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(found, ReadAssignment(txn, ToLowerAscii(name)));
    return OkStatus();
  }));
  if (!found) return NotFoundError("no role assignment has this name");
  return *found;
}

StatusOr<RoleAssignment> Authorizer::Delete(std::string_view name) {
  if (!IsUuid(name)) return NotFoundError("no role assignment has this name");
  RoleAssignment deleted;
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(std::optional<RoleAssignment> found, ReadAssignment(txn, ToLowerAscii(name)));
    if (!found) return NotFoundError("no role assignment has this name");
    const std::string scope = NormalizeScope(found->scope);
    RETURN_IF_ERROR(txn.Delete(kAssignments, found->name));
    RETURN_IF_ERROR(txn.Delete(kByScope, ScopeKey(scope, found->name)));
    RETURN_IF_ERROR(txn.Delete(
        kByPrincipal, PrincipalKey(found->principal_id, found->role_definition_id, scope)));
    deleted = *std::move(found);
    return OkStatus();
  }));
  return deleted;
}

StatusOr<std::vector<RoleAssignment>> Authorizer::List(std::string_view scope,
                                                       const ListOptions& options) const {
  RETURN_IF_ERROR(ValidateScope(scope));
  const std::string target = NormalizeScope(scope);
  // The scopes whose own assignments we want: ancestors from "/subscriptions/{s}" down to the
  // parent of `target` (when inherited ones are asked for), then `target` itself.
  std::vector<std::string> exact;
  if (options.include_inherited) {
    size_t slash = target.find('/', std::string_view("/subscriptions/").size());
    while (slash != std::string::npos) {
      exact.push_back(target.substr(0, slash));
      slash = target.find('/', slash + 1);
    }
  }
  exact.push_back(target);
  const std::string principal =
      options.principal_id.empty() ? "" : ToLowerAscii(options.principal_id);

  std::vector<RoleAssignment> out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    out.clear();
    std::vector<std::string> names;
    for (const std::string& s : exact) {
      RETURN_IF_ERROR(ScanAll(txn, kByScope, s + "#", [&](const storage::Record& record) {
        names.push_back(record.key.substr(s.size() + 1));
        return OkStatus();
      }));
    }
    if (options.include_children) {
      RETURN_IF_ERROR(ScanAll(txn, kByScope, target + "/", [&](const storage::Record& record) {
        const size_t hash = record.key.rfind('#');
        if (hash != std::string::npos) names.push_back(record.key.substr(hash + 1));
        return OkStatus();
      }));
    }
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(std::optional<RoleAssignment> found, ReadAssignment(txn, name));
      if (!found) return DataLossError("role assignment scope index points to nothing");
      if (!principal.empty() && found->principal_id != principal) continue;
      out.push_back(*std::move(found));
    }
    return OkStatus();
  }));
  std::sort(out.begin(), out.end(), [](const RoleAssignment& a, const RoleAssignment& b) {
    const std::string sa = NormalizeScope(a.scope);
    const std::string sb = NormalizeScope(b.scope);
    return sa != sb ? sa < sb : a.name < b.name;
  });
  return out;
}

StatusOr<Decision> Authorizer::Decide(std::string_view principal_id, std::string_view scope,
                                      std::string_view action, ActionType type) const {
  Decision decision;
  const std::string_view kind = type == ActionType::kDataAction ? "data action" : "action";
  if (!IsUuid(principal_id)) {
    decision.reason = "denied: the caller has no valid object id";
    return decision;
  }
  if (Status st = ValidateScope(scope); !st.ok()) {
    decision.reason = "denied: " + st.message();
    return decision;
  }
  if (action.empty() || action.size() > kMaxActionSize ||
      action.find('*') != std::string_view::npos) {
    decision.reason = "denied: the requested " + std::string(kind) + " is not a valid action";
    return decision;
  }
  if (type != ActionType::kAction && type != ActionType::kDataAction) {
    decision.reason = "denied: unknown action type";
    return decision;
  }

  const std::string target = NormalizeScope(scope);
  size_t covering = 0;
  std::string excluded_by;  // a role that matched the action but excludes it
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    decision = Decision();
    covering = 0;
    excluded_by.clear();
    return ScanAll(
        txn, kByPrincipal, PrincipalPrefix(principal_id),
        [&](const storage::Record& record) -> Status {
          if (decision.allowed) return OkStatus();
          // {principal}|{role}|{scope}
          const std::string& key = record.key;
          if (key.size() < 2 * kUuidSize + 3) {
            return DataLossError("role assignment index key is corrupt");
          }
          const std::string_view role_id = std::string_view(key).substr(kUuidSize + 1, kUuidSize);
          const std::string_view assigned_scope = std::string_view(key).substr(2 * kUuidSize + 2);
          if (!ScopeContains(assigned_scope, target)) return OkStatus();
          ++covering;
          const RoleDefinition* role = FindRoleDefinition(role_id);
          if (role == nullptr) return OkStatus();  // not ours: grants nothing
          if (RoleGrants(*role, action, type)) {
            decision.allowed = true;
            decision.assignment_name = std::string(AsStringView(record.value));
            decision.role_definition_id = std::string(role->id);
            decision.reason = "allowed by role assignment " + decision.assignment_name + " (" +
                              std::string(role->name) + ") at " + std::string(assigned_scope);
          } else if (excluded_by.empty()) {
            const auto grants = type == ActionType::kAction ? role->actions : role->data_actions;
            for (std::string_view pattern : grants) {
              if (ActionMatches(pattern, action)) {
                excluded_by = std::string(role->name);
                break;
              }
            }
          }
          return OkStatus();
        });
  }));
  if (decision.allowed) return decision;
  std::string reason = "denied: the principal " + ToLowerAscii(principal_id) + " ";
  if (covering == 0) {
    reason += "has no role assignment at or above the scope " + std::string(scope);
  } else {
    reason += "has " + std::to_string(covering) + " role assignment" + (covering == 1 ? "" : "s") +
              " at or above the scope " + std::string(scope) + " but none grants the " +
              std::string(kind) + " " + std::string(action);
    if (!excluded_by.empty()) {
      reason += " (the role " + excluded_by + " excludes it in its not" +
                (type == ActionType::kAction ? "Actions" : "DataActions") + ")";
    }
  }
  decision.reason = std::move(reason);
  return decision;
}

// --- ARM JSON

nlohmann::json RoleAssignmentJson(const RoleAssignment& a) {
  const std::string created = FormatIso8601(a.created_at);
  Json created_by = a.created_by.empty() ? Json(nullptr) : Json(a.created_by);
  return {
      {"id", a.scope + "/providers/Microsoft.Authorization/roleAssignments/" + a.name},
      {"name", a.name},
      {"type", "Microsoft.Authorization/roleAssignments"},
      {"properties",
       {{"roleDefinitionId",
         RoleDefinitionArmId(a.role_definition_id, SubscriptionOfScope(a.scope))},
        {"principalId", a.principal_id},
        {"principalType", a.principal_type.empty() ? Json(nullptr) : Json(a.principal_type)},
        {"scope", a.scope},
        {"condition", nullptr},
        {"conditionVersion", nullptr},
        {"createdOn", created},
        {"updatedOn", created},
        {"createdBy", created_by},
        {"updatedBy", created_by}}},
  };
}

nlohmann::json RoleDefinitionJson(const RoleDefinition& role, std::string_view subscription_id) {
  return {
      {"id", RoleDefinitionArmId(role.id, subscription_id)},
      {"name", std::string(role.id)},
      {"type", "Microsoft.Authorization/roleDefinitions"},
      {"properties",
       {{"roleName", std::string(role.name)},
        {"type", "BuiltInRole"},
        {"description", std::string(role.description)},
        {"assignableScopes", Json::array({"/"})},
        {"permissions", Json::array({{{"actions", StringArray(role.actions)},
                                      {"notActions", StringArray(role.not_actions)},
                                      {"dataActions", StringArray(role.data_actions)},
                                      {"notDataActions", StringArray(role.not_data_actions)}}})}}},
  };
}

}  // namespace keyfoundry::identity
