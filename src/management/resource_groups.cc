#include "management/resource_groups.h"

#include <chrono>
#include <optional>
#include <utility>

#include "common/bytes.h"
#include "common/strings.h"
#include "identity/ids.h"
#include "keyvault/vault.h"

namespace keyfoundry::management {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kTable = "resource_groups";
Status Bad(std::string_view field, std::string_view problem) {
  return InvalidArgumentError(std::string(field) + ": " + std::string(problem))
      .WithReason("BadRequest");
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.' || c == '(' || c == ')';
}

Status LocationConflict(const ResourceGroup& existing, std::string_view location) {
  return FailedPreconditionError("Invalid resource group location '" + std::string(location) +
                                 "'. The Resource group already exists in location '" +
                                 existing.location + "'.")
      .WithReason("InvalidResourceGroupLocation");
}

Status GroupNotFound(std::string_view name) {
  return NotFoundError("Resource group '" + std::string(name) + "' could not be found.")
      .WithReason("ResourceGroupNotFound");
}

std::string Key(std::string_view subscription_id, std::string_view name) {
  return ToLowerAscii(subscription_id) + "/" + ToLowerAscii(name);
}

Bytes Encode(const ResourceGroup& g) {
  Json json = {{"v", 1},
               {"subscription_id", g.subscription_id},
               {"name", g.name},
               {"location", g.location},
               {"tags", g.tags},
               {"created_at", g.created_at},
               {"created_by", g.created_by},
               {"updated_at", g.updated_at},
               {"updated_by", g.updated_by}};
  return ToBytes(json.dump(-1, ' ', false, Json::error_handler_t::replace));
}

Status Corrupt(std::string_view key) {
  return DataLossError("the resource group record '" + std::string(key) + "' is corrupt");
}

StatusOr<ResourceGroup> Decode(const storage::Record& record) {
  Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || json.value("v", 0) != 1)
    return Corrupt(record.key);
  ResourceGroup g;
  try {
    g.subscription_id = json.at("subscription_id").get<std::string>();
    g.name = json.at("name").get<std::string>();
    g.location = json.at("location").get<std::string>();
    g.tags = json.at("tags");
    g.created_at = json.at("created_at").get<int64_t>();
    g.created_by = json.at("created_by").get<std::string>();
    g.updated_at = json.at("updated_at").get<int64_t>();
    g.updated_by = json.at("updated_by").get<std::string>();
  } catch (const Json::exception&) {
    return Corrupt(record.key);
  }
  if (Key(g.subscription_id, g.name) != record.key || !g.tags.is_object()) {
    return Corrupt(record.key);
  }
  return g;
}

StatusOr<std::optional<ResourceGroup>> Read(storage::Transaction& tx,
                                            std::string_view subscription_id,
                                            std::string_view name) {
  if (!identity::IsUuid(subscription_id) || !ValidateResourceGroupName(name).ok()) {
    return std::optional<ResourceGroup>();
  }
  ASSIGN_OR_RETURN(std::optional<storage::Record> record,
                   tx.Get(kTable, Key(subscription_id, name)));
  if (!record) return std::optional<ResourceGroup>();
  ASSIGN_OR_RETURN(ResourceGroup group, Decode(*record));
  return std::optional<ResourceGroup>(std::move(group));
}

}  // namespace

std::string ResourceGroup::ResourceId() const {
  return "/subscriptions/" + subscription_id + "/resourceGroups/" + name;
}

Status ValidateResourceGroupName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxResourceGroupNameSize && name.back() != '.';
  for (char c : name) ok = ok && IsNameChar(c);
  if (ok) return OkStatus();
  std::string shown(name.substr(0, kMaxResourceGroupNameSize));
  return InvalidArgumentError("Resource group name '" + shown +
                              "' is invalid. It must be 1 to 90 characters of letters, digits, "
                              "underscores, hyphens, periods and parentheses, and cannot end in "
                              "a period.")
      .WithReason("InvalidResourceGroupName");
}

StatusOr<ResourceGroup> ResourceGroupFromArm(const nlohmann::json& body, ResourceGroup base,
                                             bool patch) {
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be a JSON object {\"location\": ..., \"tags\": {}}")
        .WithReason("InvalidRequestContent");
  }
  const bool existing = base.created_at != 0;
  auto location = body.find("location");
  const bool has_location = location != body.end() && !location->is_null();
  if (!has_location && !patch) {
    return Bad("location", "is required: the group's location (any name, e.g. \"local\")");
  }
  if (has_location) {
    RETURN_IF_ERROR(keyvault::ValidateArmLocation(*location));
    const std::string& given = location->get_ref<const std::string&>();
    if (!existing) {
      base.location = given;
    } else if (keyvault::NormalizeArmLocation(given) !=
               keyvault::NormalizeArmLocation(base.location)) {
      return LocationConflict(base, given);
    }
  }
  auto tags = body.find("tags");
  if (tags != body.end() && !tags->is_null()) {
    RETURN_IF_ERROR(keyvault::ValidateArmTags(*tags));
    base.tags = *tags;
  } else if (!patch) {
    base.tags = Json::object();
  }
  if (auto managed_by = body.find("managedBy");
      managed_by != body.end() && !managed_by->is_null() && !managed_by->is_string()) {
    return Bad("managedBy", "must be a resource id (a string)");
  }
  if (auto props = body.find("properties");
      props != body.end() && !props->is_null() && !props->is_object()) {
    return Bad("properties", "must be an object");
  }
  return base;
}

nlohmann::json ResourceGroupToArm(const ResourceGroup& group) {
  return {{"id", group.ResourceId()},
          {"name", group.name},
          {"type", "Microsoft.Resources/resourceGroups"},
          {"location", group.location},
          {"tags", group.tags},
          {"properties", {{"provisioningState", "Succeeded"}}}};
}

ResourceGroupStore::ResourceGroupStore(storage::MetadataStore& store, const Clock& clock)
    : store_(store), clock_(clock) {}

StatusOr<ResourceGroup> ResourceGroupStore::Put(const ResourceGroup& group, bool* created) {
  if (!identity::IsUuid(group.subscription_id)) {
    return Bad("subscriptionId", "must be a subscription id (a GUID)");
  }
  RETURN_IF_ERROR(ValidateResourceGroupName(group.name));
  RETURN_IF_ERROR(keyvault::ValidateArmLocation(Json(group.location)));
  RETURN_IF_ERROR(keyvault::ValidateArmTags(group.tags));
  ResourceGroup stored;
  bool was_created = false;
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& tx) -> Status {
    const int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
    ASSIGN_OR_RETURN(std::optional<ResourceGroup> existing,
                     Read(tx, group.subscription_id, group.name));
    ResourceGroup next = group;
    next.updated_at = now;
    if (existing) {
      if (keyvault::NormalizeArmLocation(existing->location) !=
          keyvault::NormalizeArmLocation(group.location)) {
        return LocationConflict(*existing, group.location);
      }
      next.subscription_id = existing->subscription_id;
      next.name = existing->name;
      next.location = existing->location;
      next.created_at = existing->created_at;
      next.created_by = existing->created_by;
    } else {
      next.created_at = now;
      if (next.created_by.empty()) next.created_by = next.updated_by;
    }
    RETURN_IF_ERROR(tx.Put(kTable, Key(next.subscription_id, next.name), Encode(next)));
    was_created = !existing.has_value();
    stored = std::move(next);
    return OkStatus();
  }));
  if (created != nullptr) *created = was_created;
  return stored;
}

StatusOr<ResourceGroup> ResourceGroupStore::Get(std::string_view subscription_id,
                                                std::string_view name) const {
  std::optional<ResourceGroup> found;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(found, Read(tx, subscription_id, name));
    return OkStatus();
  }));
  if (!found) return GroupNotFound(name);
  return *std::move(found);
}

StatusOr<std::vector<ResourceGroup>> ResourceGroupStore::List(
    std::string_view subscription_id) const {
  std::vector<ResourceGroup> out;
  if (!identity::IsUuid(subscription_id)) return out;
  const std::string prefix = ToLowerAscii(subscription_id) + "/";
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    out.clear();
    std::string after;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<storage::Record> page,
                       tx.Scan(kTable, prefix, after, storage::kMaxScanLimit));
      for (const storage::Record& record : page) {
        ASSIGN_OR_RETURN(ResourceGroup group, Decode(record));
        out.push_back(std::move(group));
      }
      if (page.size() < storage::kMaxScanLimit) break;
      after = page.back().key;
    }
    return OkStatus();
  }));
  return out;
}

StatusOr<ResourceGroup> ResourceGroupStore::Delete(std::string_view subscription_id,
                                                   std::string_view name) {
  ResourceGroup deleted;
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<ResourceGroup> existing, Read(tx, subscription_id, name));
    if (!existing) return GroupNotFound(name);
    RETURN_IF_ERROR(tx.Delete(kTable, Key(existing->subscription_id, existing->name)));
    deleted = *std::move(existing);
    return OkStatus();
  }));
  return deleted;
}

}  // namespace keyfoundry::management
