// Resource groups: the Microsoft.Resources/resourceGroups containers of a subscription, in
// which vaults (and later AI accounts) live.
//
// A group is named by 1-90 characters: letters, digits, '_', '-', '.', '(' and ')', not ending
// in '.'. Names compare case-insensitively, as ARM's do, and are kept as first created. A
// group's location is set at creation and cannot change (ARM: 409
// InvalidResourceGroupLocation); its tags can.
//
// Deleting a group does not look inside it: the caller deals with the resources it holds (the
// vault routes soft-delete its vaults first, as Azure does).
//
// Storage (MetadataStore table; JSON values with "v": 1):
//   resource_groups   {lower subscription id}/{lower name}  -> the group
//
// Thread safety: ResourceGroupStore may be used from many threads at once.
#ifndef KEYFOUNDRY_MANAGEMENT_RESOURCE_GROUPS_H_
#define KEYFOUNDRY_MANAGEMENT_RESOURCE_GROUPS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/metadata_store.h"

namespace keyfoundry::management {

inline constexpr size_t kMaxResourceGroupNameSize = 90;

struct ResourceGroup {
  std::string subscription_id;
  std::string name;  // as created
  std::string location;
  nlohmann::json tags = nlohmann::json::object();
  int64_t created_at = 0;  // unix seconds
  std::string created_by;  // object id
  int64_t updated_at = 0;
  std::string updated_by;

  // "/subscriptions/{s}/resourceGroups/{name}"
  std::string ResourceId() const;
};

// OK for a valid name (the file comment's rule); InvalidArgument with reason
// "InvalidResourceGroupName" and a message saying what is allowed otherwise.
Status ValidateResourceGroupName(std::string_view name);

// A PUT body {location, tags?, managedBy?, properties?} over `base` (a new group or the
// existing one): location is required; tags replace the group's (absent: none). A PATCH body
// (`patch` true) may give tags (replacing them) and location (which must then be the group's).
// InvalidArgument (reason "InvalidRequestContent" for a body that is not an object,
// "BadRequest" for a bad field, naming it); FailedPrecondition (reason
// "InvalidResourceGroupLocation") for another location than an existing group's.
StatusOr<ResourceGroup> ResourceGroupFromArm(const nlohmann::json& body, ResourceGroup base,
                                             bool patch);

// {id, name, type: "Microsoft.Resources/resourceGroups", location, tags,
//  properties: {provisioningState: "Succeeded"}}
nlohmann::json ResourceGroupToArm(const ResourceGroup& group);

class ResourceGroupStore {
 public:
  // `store` and `clock` must outlive the ResourceGroupStore.
  explicit ResourceGroupStore(storage::MetadataStore& store, const Clock& clock = Clock::Real());

  // Creates or updates the group. The name, subscription and location are validated
  // (InvalidArgument); an existing group keeps its name's spelling, creation time and creator,
  // and refuses another location (FailedPrecondition, reason "InvalidResourceGroupLocation").
  // *created (when given) tells whether the group is new.
  StatusOr<ResourceGroup> Put(const ResourceGroup& group, bool* created = nullptr);
  // NotFound (reason "ResourceGroupNotFound", ARM's message) when there is no such group.
  StatusOr<ResourceGroup> Get(std::string_view subscription_id, std::string_view name) const;
  // The subscription's groups, ordered by lower-case name.
  StatusOr<std::vector<ResourceGroup>> List(std::string_view subscription_id) const;
  // Removes the group and returns it; NotFound as Get.
  StatusOr<ResourceGroup> Delete(std::string_view subscription_id, std::string_view name);

 private:
  storage::MetadataStore& store_;
  const Clock& clock_;
};

}  // namespace keyfoundry::management

#endif  // KEYFOUNDRY_MANAGEMENT_RESOURCE_GROUPS_H_
