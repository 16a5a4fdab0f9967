// Azure RBAC: built-in role definitions, role assignments kept in the MetadataStore, and THE
// decision every handler asks for (Authorizer::Decide).
//
// Role definitions are Azure's own built-in roles, with their real ids, actions, notActions,
// dataActions and notDataActions, copied from Microsoft's "Azure built-in roles" reference
// (learn.microsoft.com/azure/role-based-access-control/built-in-roles, the General, Privileged,
// Security and AI + machine learning pages). Custom roles are not supported.
//
// A role assignment grants one role to one principal at one scope: "/subscriptions/{s}", a
// resource group "/subscriptions/{s}/resourceGroups/{rg}", or a resource id. It applies at its
// scope and to everything below it (segment by segment: an assignment on vault "v" does not
// cover vault "v2", and one on a resource group does not cover a sibling group).
//
// Decision, as Azure evaluates it:
//   - an action is allowed when some assignment of the principal at the scope or a parent
//     scope has a role that grants it;
//   - a role grants an action when the action matches one of its actions and none of its
//     notActions (dataActions and notDataActions for a data action). notActions subtract
//     within the role only: they are not deny rules, so another role may still grant the
//     action (Azure's deny assignments are not implemented);
//   - patterns match case-insensitively and '*' matches any run of characters, '/' included:
//     "Microsoft.KeyVault/vaults/*/read" matches "Microsoft.KeyVault/vaults/keys/read";
//     "*" matches everything. Control-plane actions and data actions are separate: Owner's
//     "*" grants no data action.
// Decide fails closed: a store failure is an error status, which callers treat as a denial.
//
// Storage (tables of the MetadataStore; JSON values with "v": 1):
//   role_assignments            {name}                            the assignment
//   role_assignments_by_scope   {normalised scope}#{name}         -> "" (list by scope)
//   role_assignments_by_principal {lower principal}|{role id}|{normalised scope} -> name
//                               (uniqueness of principal+role+scope, and Decide's one scan)
// '#' cannot occur in a scope (ids.h refuses it), so "scope#" never prefixes another scope.
//
// Thread safety: Authorizer may be used from many threads at once.
#ifndef KEYFOUNDRY_IDENTITY_AUTHORIZATION_H_
#define KEYFOUNDRY_IDENTITY_AUTHORIZATION_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::identity {

// The built-in role definition ids (GUIDs), as Azure has them.
namespace role_ids {
inline constexpr std::string_view kOwner = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
inline constexpr std::string_view kContributor = "b24988ac-6180-42a0-ab88-20f7382dd24c";
inline constexpr std::string_view kReader = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
inline constexpr std::string_view kKeyVaultAdministrator = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
inline constexpr std::string_view kKeyVaultCryptoOfficer = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";
inline constexpr std::string_view kKeyVaultCryptoUser = "12338af0-0e69-4776-bea7-57ae8d297424";
inline constexpr std::string_view kKeyVaultCryptoServiceEncryptionUser =
    "e147488a-f6f5-4113-8e2d-b22465e65bf6";
inline constexpr std::string_view kKeyVaultReader = "21090545-7ca7-4776-b22c-e363652d74d2";
inline constexpr std::string_view kCognitiveServicesContributor =
    "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68";
inline constexpr std::string_view kCognitiveServicesUser = "a97b65f3-24c7-4388-baec-2e87135dc908";
}  // namespace role_ids

struct RoleDefinition {
  std::string_view id;  // the GUID, lower case
  std::string_view name;
  std::string_view description;
  std::span<const std::string_view> actions;
  std::span<const std::string_view> not_actions;
  std::span<const std::string_view> data_actions;
  std::span<const std::string_view> not_data_actions;
};

// Every built-in role, in a fixed order.
std::span<const RoleDefinition> BuiltInRoleDefinitions();

// The role with this id: a GUID, "/providers/Microsoft.Authorization/roleDefinitions/{guid}" or
// "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}" (any case).
// nullptr when it is not a built-in role.
const RoleDefinition* FindRoleDefinition(std::string_view id);
// By its name ("Key Vault Crypto User"), case-insensitively; nullptr when unknown.
const RoleDefinition* FindRoleDefinitionByName(std::string_view name);

// True when `pattern` (with '*' wildcards) matches `action`, case-insensitively. Never
// backtracks exponentially: O(pattern size * action size) at worst.
bool ActionMatches(std::string_view pattern, std::string_view action);

enum class ActionType {
  kAction = 1,      // control plane: "Microsoft.KeyVault/vaults/write"
  kDataAction = 2,  // data plane: "Microsoft.KeyVault/vaults/keys/unwrap/action"
};

// True when `role` grants `action` of `type` (the rule of the file comment).
bool RoleGrants(const RoleDefinition& role, std::string_view action, ActionType type);

struct RoleAssignment {
  std::string name;                // a GUID, lower case: the assignment's ARM name
  std::string scope;               // as given at creation (without a trailing '/')
  std::string principal_id;        // object id, lower case
  std::string role_definition_id;  // GUID, lower case
  std::string principal_type;      // "User", "ServicePrincipal", "Group" (as given)
  std::string created_by;          // object id of the creator, or empty
  int64_t created_at = 0;          // seconds since the epoch
};

struct Decision {
  bool allowed = false;
  // Why, in words fit for an audit record and an error message ("allowed by role assignment
  // {name} (Key Vault Crypto User) at {scope}", or the reason for the denial).
  std::string reason;
  std::string assignment_name;     // the assignment that allowed it, when allowed
  std::string role_definition_id;  // its role, when allowed
};

struct ListOptions {
  bool include_inherited = true;  // assignments at parent scopes (Azure's atScope())
  bool include_children = false;  // assignments at scopes below (Azure's unfiltered list)
  std::string principal_id;       // only this principal's, when not empty
};

class Authorizer {
 public:
  // `store` and `clock` must outlive the authorizer.
  explicit Authorizer(storage::MetadataStore& store, const Clock& clock = Clock::Real());

  // Creates `assignment` (name, scope, principal_id, role_definition_id and principal_type
  // are used; created_at is set here; created_by as given). As ARM does:
  //   InvalidArgument    a malformed name (not a GUID), scope, principal id (not a GUID), or a
  //                      role that is not a built-in role (ARM: RoleDefinitionDoesNotExist)
  //   AlreadyExists      the principal already has this role at this scope, under any name
  //                      (ARM: 409 RoleAssignmentExists)
  //   FailedPrecondition an assignment with this name exists with other properties (ARM: 409
  //                      RoleAssignmentUpdateNotPermitted)
  // Returns the stored assignment. The caller checks that the principal exists.
  StatusOr<RoleAssignment> Create(RoleAssignment assignment);

  // Start-up helper: the assignment of `role_definition_id` to `principal_id` at `scope`,
  // creating it (with a new name) when there is none.
  StatusOr<RoleAssignment> Ensure(std::string_view principal_id, std::string_view principal_type,
                                  std::string_view role_definition_id, std::string_view scope);

  // NotFound when there is no assignment with this name.
  StatusOr<RoleAssignment> Get(std::string_view name) const;
  // Deletes and returns the assignment. NotFound when there is none.
  StatusOr<RoleAssignment> Delete(std::string_view name);

  // The assignments that apply at `scope` (and, per `options`, above and below it), ordered by
  // scope then name. InvalidArgument for a malformed scope.
  StatusOr<std::vector<RoleAssignment>> List(std::string_view scope,
                                             const ListOptions& options = {}) const;

  // May `principal_id` perform `action` of `type` on `scope` (a resource id, compared
  // case-insensitively)? See the file comment. A malformed principal, scope or action (empty,
  // longer than 512 bytes, or holding '*') is denied, with the reason.
  StatusOr<Decision> Decide(std::string_view principal_id, std::string_view scope,
                            std::string_view action, ActionType type) const;

 private:
  storage::MetadataStore& store_;
  const Clock& clock_;
};

// --- ARM JSON

// {"id":"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}","name",
//  "type":"Microsoft.Authorization/roleAssignments","properties":{"roleDefinitionId":
//  "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}","principalId",
//  "principalType","scope","condition":null,"conditionVersion":null,"createdOn","updatedOn",
//  "createdBy","updatedBy"}} where {s} is the subscription of the assignment's scope.
nlohmann::json RoleAssignmentJson(const RoleAssignment& assignment);

// {"id":"/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}","name",
//  "type":"Microsoft.Authorization/roleDefinitions","properties":{"roleName","type":
//  "BuiltInRole","description","assignableScopes":["/"],"permissions":[{"actions",
//  "notActions","dataActions","notDataActions"}]}}; without "/subscriptions/{s}" when
// `subscription_id` is empty.
nlohmann::json RoleDefinitionJson(const RoleDefinition& role, std::string_view subscription_id);

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_AUTHORIZATION_H_
