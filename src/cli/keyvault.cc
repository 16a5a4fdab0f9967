// kf keyvault: the Microsoft.KeyVault/vaults resources of the control plane, as `az keyvault`:
// create, show, list, update, delete, list-deleted, recover, purge, set-policy,
// delete-policy and network-rule add / remove / list. The keys inside a vault are
// `kf keyvault key` (key.cc).
//
// Access policies. `az keyvault set-policy` replaces the principal's key permissions with the
// list given (its other permission lists stay). az does it by reading the vault and sending
// every policy back with accessPolicies/replace; between the read and the write another
// administrator's change (a revocation, say) would be undone. kf gets the same end state from
// the server's atomic merge operations instead: accessPolicies/add with the new list, then
// accessPolicies/remove with the permissions the principal had that the list leaves out. In
// between the principal holds the union of its old and new permissions, never more, and
// nobody else's policy is touched. delete-policy is one accessPolicies/remove of the whole
// entry.
//
// Network rules are kept as az keeps them: read the vault, edit its ipRules, write them back
// (a PATCH of properties.networkAcls.ipRules alone).
#include "cli/commands.h"
#include "common/strings.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;

// The settings create and update take, as az spells them; empty or 0 means "not given".
struct VaultSettings {
  std::string sku;
  int retention_days = 0;
  std::string purge_protection;  // "true" | "false"
  std::string rbac;              // "true" | "false"
  std::string default_action;
  std::string bypass;
  std::string public_network_access;
  std::vector<std::string> tags;
};

struct VaultOptions {
  std::string name;
  std::string group;
  std::string location;
  VaultSettings settings;
  // Principals (set-policy, delete-policy).
  std::string object_id;
  std::string spn;
  std::string upn;
  std::vector<std::string> key_permissions;
  std::string ip_address;  // network-rule
};

// ---------------------------------------------------------------- paths and lookups

std::string SubscriptionPath(const Session& s) {
  return "/subscriptions/" + s.profile.subscription_id;
}

std::string WithApiVersion(const std::string& path) {
  return path + "?api-version=" + kKeyVaultApiVersion;
}

// The segment after `/{name}/` in an ARM id ("resourceGroups" -> the group), or "".
std::string IdSegment(const std::string& id, std::string_view name) {
  const std::string lower = ToLowerAscii(id);
  const std::string key = "/" + ToLowerAscii(name) + "/";
  const size_t at = lower.find(key);
  if (at == std::string::npos) return "";
  const size_t start = at + key.size();
  return id.substr(start, id.find('/', start) - start);
}

Column GroupColumn() {
  return {"ResourceGroup",
          [](const Json& row) { return Json(IdSegment(row.value("id", ""), "resourceGroups")); }};
}

const std::vector<Column>& VaultColumns() {
  static const std::vector<Column> columns = {Field("Location", "/location"),
                                              Field("Name", "/name"), GroupColumn()};
  return columns;
}

// The resource id of vault `name`: in `group` when one is given, else found among the
// subscription's vaults that the caller may read (as az does without -g).
StatusOr<std::string> VaultId(Session& s, const std::string& name, const std::string& group) {
  if (!group.empty()) {
    return SubscriptionPath(s) + "/resourceGroups/" + http::PercentEncode(group) +
           "/providers/Microsoft.KeyVault/vaults/" + http::PercentEncode(name);
  }
  ASSIGN_OR_RETURN(
      Json vaults,
      ListPages(s, WithApiVersion(SubscriptionPath(s) + "/providers/Microsoft.KeyVault/vaults")));
  for (const Json& v : vaults) {
    if (EqualsIgnoreCase(v.value("name", ""), name)) return v.value("id", "");
  }
  return NotFoundError("ResourceNotFound: no vault named '" + name +
                       "' among the subscription's vaults you may read (a deleted vault is in "
                       "`kf keyvault list-deleted`)");
}

StatusOr<Json> GetVault(Session& s, const std::string& id) {
  ASSIGN_OR_RETURN(ApiResult vault, s.client->Call("GET", WithApiVersion(id), s.token));
  return std::move(vault.body);
}

// The deleted vault `name` (at `location` when given, else found in the list of deleted vaults).
StatusOr<Json> FindDeletedVault(Session& s, const std::string& name, const std::string& location) {
  const std::string provider = SubscriptionPath(s) + "/providers/Microsoft.KeyVault";
  if (!location.empty()) {
    ASSIGN_OR_RETURN(
        ApiResult found,
        s.client->Call("GET",
                       WithApiVersion(provider + "/locations/" + http::PercentEncode(location) +
                                      "/deletedVaults/" + http::PercentEncode(name)),
                       s.token));
    return std::move(found.body);
  }
  ASSIGN_OR_RETURN(Json deleted, ListPages(s, WithApiVersion(provider + "/deletedVaults")));
  for (Json& v : deleted) {
    if (EqualsIgnoreCase(v.value("name", ""), name)) return std::move(v);
  }
  return NotFoundError("DeletedVaultNotFound: there is no deleted vault named '" + name + "'");
}

// The object id of the principal named by exactly one of --object-id, --spn, --upn.
StatusOr<std::string> ResolvePrincipal(Session& s, const VaultOptions& o) {
  const int given = !o.object_id.empty() + !o.spn.empty() + !o.upn.empty();
  if (given != 1) {
    return InvalidArgumentError("name the principal with exactly one of --object-id, --spn, --upn");
  }
  if (!o.object_id.empty()) return o.object_id;
  if (!o.upn.empty()) {
    ASSIGN_OR_RETURN(
        ApiResult user,
        s.client->Call("GET", "/v1.0/principals/" + http::PercentEncode(o.upn), s.token));
    if (user.body.value("principalType", "") != "User") {
      return NotFoundError("--upn: '" + o.upn + "' is not a user");
    }
    return user.body.value("id", "");
  }
  // A service principal by its application (client) id, object id, or display name.
  ASSIGN_OR_RETURN(ApiResult list, s.client->Call("GET", "/v1.0/servicePrincipals", s.token));
  const Json& all = list.body.value("value", Json::array());
  std::vector<std::string> by_name;
  for (const Json& sp : all) {
    if (EqualsIgnoreCase(sp.value("appId", ""), o.spn) ||
        EqualsIgnoreCase(sp.value("id", ""), o.spn)) {
      return sp.value("id", "");
    }
    if (sp.value("displayName", "") == o.spn) by_name.push_back(sp.value("id", ""));
  }
  if (by_name.size() == 1) return by_name[0];
  if (by_name.size() > 1) {
    return InvalidArgumentError("--spn: " + std::to_string(by_name.size()) +
                                " service principals are named '" + o.spn +
                                "'; give its appId instead");
  }
  return NotFoundError("--spn: no service principal with the appId or name '" + o.spn + "'");
}

// The access policy of `object_id` (a plain one, without a compound applicationId), or null.
Json PolicyOf(const Json& vault, const std::string& object_id) {
  const Json empty = Json::array();
  const Json& policies =
      vault.contains("properties") ? vault["properties"].value("accessPolicies", empty) : empty;
  for (const Json& p : policies) {
    if (EqualsIgnoreCase(p.value("objectId", ""), object_id) &&
        p.value("applicationId", "").empty()) {
      return p;
    }
  }
  return nullptr;
}

Status UpdatePolicies(Session& s, const std::string& id, const char* kind, const Json& entry) {
  return s.client
      ->Call("PUT", WithApiVersion(id + "/accessPolicies/" + kind), s.token,
             {{"properties", {{"accessPolicies", Json::array({entry})}}}})
      .status();
}

// Adds the given settings (tags aside) to `props`; whether anything was given.
StatusOr<bool> ApplySettings(const VaultSettings& v, Json& props) {
  bool any = false;
  if (!v.sku.empty()) {
    props["sku"] = {{"family", "A"}, {"name", ToLowerAscii(v.sku)}};
    any = true;
  }
  if (v.retention_days != 0) {
    props["softDeleteRetentionInDays"] = v.retention_days;
    any = true;
  }
  if (!v.purge_protection.empty()) {
    ASSIGN_OR_RETURN(bool on, ParseBool("--enable-purge-protection", v.purge_protection));
    props["enablePurgeProtection"] = on;
    any = true;
  }
  if (!v.rbac.empty()) {
    ASSIGN_OR_RETURN(bool on, ParseBool("--enable-rbac-authorization", v.rbac));
    props["enableRbacAuthorization"] = on;
    any = true;
  }
  if (!v.default_action.empty() || !v.bypass.empty()) {
    Json acls = Json::object();
    if (!v.default_action.empty()) acls["defaultAction"] = v.default_action;
    if (!v.bypass.empty()) acls["bypass"] = v.bypass;
    props["networkAcls"] = acls;
    any = true;
  }
  if (!v.public_network_access.empty()) {
    props["publicNetworkAccess"] = v.public_network_access;
    any = true;
  }
  return any;
}

// ---------------------------------------------------------------- commands

Status Create(const VaultOptions& o, bool tags_given) {
  ASSIGN_OR_RETURN(Json tags, ParseTags(o.settings.tags));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  const std::string group_path = SubscriptionPath(s) + "/resourcegroups/" +
                                 http::PercentEncode(o.group) +
                                 "?api-version=" + kResourcesApiVersion;
  ASSIGN_OR_RETURN(ApiResult group, s.client->Call("GET", group_path, s.token));
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  // A PUT on an existing vault would replace its access policies: refuse, as a create.
  StatusOr<ApiResult> existing = s.client->Call("GET", WithApiVersion(id), s.token);
  if (existing.ok()) {
    return AlreadyExistsError("VaultAlreadyExists: the vault '" + o.name +
                              "' already exists in resource group '" + o.group +
                              "'; change it with `kf keyvault update`");
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();

  Json props = {{"tenantId", s.profile.tenant_id},
                {"sku", {{"family", "A"}, {"name", "standard"}}}};
  Json body = {{"location", o.location.empty() ? group.body.value("location", "") : o.location}};
  RETURN_IF_ERROR(ApplySettings(o.settings, props).status());
  if (tags_given) body["tags"] = tags;
  const bool rbac = props.value("enableRbacAuthorization", false);
  if (!rbac) {
    // As az: in access-policy mode the creator may use the vault's keys at once.
    ASSIGN_OR_RETURN(std::string oid, SignedInObjectId(s));
    props["accessPolicies"] = Json::array({{{"tenantId", s.profile.tenant_id},
                                            {"objectId", oid},
                                            {"permissions",
                                             {{"keys", {"all"}},
                                              {"secrets", {"all"}},
                                              {"certificates", {"all"}},
                                              {"storage", {"all"}}}}}});
  }
  body["properties"] = props;
  ASSIGN_OR_RETURN(ApiResult vault, s.client->Call("PUT", WithApiVersion(id), s.token, body));
  Print(vault.body, VaultColumns());
  return OkStatus();
}

Status Show(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  ASSIGN_OR_RETURN(Json vault, GetVault(s, id));
  Print(vault, VaultColumns());
  return OkStatus();
}

Status List(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  const std::string scope =
      o.group.empty() ? SubscriptionPath(s)
                      : SubscriptionPath(s) + "/resourceGroups/" + http::PercentEncode(o.group);
  ASSIGN_OR_RETURN(Json vaults,
                   ListPages(s, WithApiVersion(scope + "/providers/Microsoft.KeyVault/vaults")));
  Print(vaults, VaultColumns());
  return OkStatus();
}

Status Update(const VaultOptions& o, bool tags_given) {
  ASSIGN_OR_RETURN(Json tags, ParseTags(o.settings.tags));
  Json body = Json::object();
  Json props = Json::object();
  ASSIGN_OR_RETURN(bool any, ApplySettings(o.settings, props));
  if (!any && !tags_given) {
    return InvalidArgumentError(
        "nothing to update: give a setting such as --default-action, "
        "--enable-purge-protection or --tags");
  }
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  RETURN_IF_ERROR(GetVault(s, id).status());
  if (!props.empty()) body["properties"] = props;
  if (tags_given) body["tags"] = tags;
  ASSIGN_OR_RETURN(ApiResult vault, s.client->Call("PATCH", WithApiVersion(id), s.token, body));
  Print(vault.body, VaultColumns());
  return OkStatus();
}

Status Delete(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  RETURN_IF_ERROR(GetVault(s, id).status());  // ARM answers 204 for a vault that is not there
  return s.client->Call("DELETE", WithApiVersion(id), s.token).status();
}

const std::vector<Column>& DeletedVaultColumns() {
  static const std::vector<Column> columns = {
      Field("Name", "/name"), Field("Location", "/properties/location"),
      Field("DeletionDate", "/properties/deletionDate"),
      Field("ScheduledPurgeDate", "/properties/scheduledPurgeDate"),
      Field("PurgeProtection", "/properties/purgeProtectionEnabled")};
  return columns;
}

Status ListDeleted() {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(Json deleted, ListPages(s, WithApiVersion(SubscriptionPath(s) +
                                                             "/providers/Microsoft.KeyVault/"
                                                             "deletedVaults")));
  Print(deleted, DeletedVaultColumns());
  return OkStatus();
}

Status Recover(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(Json deleted, FindDeletedVault(s, o.name, o.location));
  const Json& props = deleted.value("properties", Json::object());
  const std::string group =
      o.group.empty() ? IdSegment(props.value("vaultId", ""), "resourceGroups") : o.group;
  if (group.empty()) return InternalError("the deleted vault names no resource group");
  // The body is validated as a create's; createMode "recover" brings the vault back as it was.
  Json body = {{"location", props.value("location", o.location)},
               {"properties",
                {{"tenantId", s.profile.tenant_id},
                 {"sku", {{"family", "A"}, {"name", "standard"}}},
                 {"createMode", "recover"}}}};
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, group));
  ASSIGN_OR_RETURN(ApiResult vault, s.client->Call("PUT", WithApiVersion(id), s.token, body));
  Print(vault.body, VaultColumns());
  return OkStatus();
}

Status Purge(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(Json deleted, FindDeletedVault(s, o.name, o.location));
  const std::string location =
      o.location.empty() ? deleted.value("properties", Json::object()).value("location", "")
                         : o.location;
  return s.client
      ->Call("POST",
             WithApiVersion(SubscriptionPath(s) + "/providers/Microsoft.KeyVault/locations/" +
                            http::PercentEncode(location) + "/deletedVaults/" +
                            http::PercentEncode(deleted.value("name", o.name)) + "/purge"),
             s.token)
      .status();
}

Status SetPolicy(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  ASSIGN_OR_RETURN(std::string object_id, ResolvePrincipal(s, o));
  ASSIGN_OR_RETURN(Json vault, GetVault(s, id));
  const std::string tenant = vault["properties"].value("tenantId", s.profile.tenant_id);
  const Json old_policy = PolicyOf(vault, object_id);

  RETURN_IF_ERROR(UpdatePolicies(s, id, "add",
                                 {{"tenantId", tenant},
                                  {"objectId", object_id},
                                  {"permissions", {{"keys", o.key_permissions}}}}));

  auto listed = [&](const std::string& p) {
    for (const std::string& k : o.key_permissions) {
      if (EqualsIgnoreCase(k, p) || EqualsIgnoreCase(k, "all")) return true;
    }
    return false;
  };
  Json stale = Json::array();
  if (!old_policy.is_null() && old_policy.contains("permissions")) {
    for (const Json& k : old_policy["permissions"].value("keys", Json::array())) {
      if (k.is_string() && !listed(k.get<std::string>())) stale.push_back(k);
    }
  }
  if (!stale.empty()) {
    RETURN_IF_ERROR(UpdatePolicies(
        s, id, "remove",
        {{"tenantId", tenant}, {"objectId", object_id}, {"permissions", {{"keys", stale}}}}));
  }
  ASSIGN_OR_RETURN(Json updated, GetVault(s, id));
  Print(updated, VaultColumns());
  return OkStatus();
}

Status DeletePolicy(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  ASSIGN_OR_RETURN(std::string object_id, ResolvePrincipal(s, o));
  ASSIGN_OR_RETURN(Json vault, GetVault(s, id));
  if (PolicyOf(vault, object_id).is_null()) {
    return NotFoundError("No matching policies found: the vault '" + vault.value("name", o.name) +
                         "' has no access policy for the object id " + object_id);
  }
  // An entry without permissions removes the principal's whole policy.
  RETURN_IF_ERROR(
      UpdatePolicies(s, id, "remove",
                     {{"tenantId", vault["properties"].value("tenantId", s.profile.tenant_id)},
                      {"objectId", object_id},
                      {"permissions", Json::object()}}));
  ASSIGN_OR_RETURN(Json updated, GetVault(s, id));
  Print(updated, VaultColumns());
  return OkStatus();
}

// "10.0.0.1" and "10.0.0.1/32" are one rule.
std::string CanonicalRule(const std::string& value) {
  const bool v6 = value.find(':') != std::string::npos;
  const std::string whole = v6 ? "/128" : "/32";
  if (value.size() > whole.size() &&
      value.compare(value.size() - whole.size(), whole.size(), whole) == 0) {
    return ToLowerAscii(value.substr(0, value.size() - whole.size()));
  }
  return ToLowerAscii(value);
}

Status EditNetworkRule(const VaultOptions& o, bool add) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  ASSIGN_OR_RETURN(Json vault, GetVault(s, id));
  const Json acls = vault["properties"].value("networkAcls", Json::object());
  Json rules = Json::array();
  bool present = false;
  for (const Json& rule : acls.value("ipRules", Json::array())) {
    const bool same = CanonicalRule(rule.value("value", "")) == CanonicalRule(o.ip_address);
    present = present || same;
    if (!(same && !add)) rules.push_back(rule);
  }
  if (add && present) {  // nothing to change
    Print(vault, VaultColumns());
    return OkStatus();
  }
  if (add) rules.push_back({{"value", o.ip_address}});
  ASSIGN_OR_RETURN(ApiResult updated,
                   s.client->Call("PATCH", WithApiVersion(id), s.token,
                                  {{"properties", {{"networkAcls", {{"ipRules", rules}}}}}}));
  Print(updated.body, VaultColumns());
  return OkStatus();
}

Status ListNetworkRules(const VaultOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(std::string id, VaultId(s, o.name, o.group));
  ASSIGN_OR_RETURN(Json vault, GetVault(s, id));
  const Json acls = vault["properties"].value("networkAcls", Json::object());
  if (Output() == OutputFormat::kTable) {
    Print(acls.value("ipRules", Json::array()), {Field("IpAddressOrRange", "/value")});
    return OkStatus();
  }
  Print({{"ipRules", acls.value("ipRules", Json::array())},
         {"virtualNetworkRules", acls.value("virtualNetworkRules", Json::array())}},
        {});
  return OkStatus();
}

// ---------------------------------------------------------------- registration

void AddNameOptions(CLI::App* cmd, VaultOptions& o, bool group_required) {
  cmd->add_option("-n,--name", o.name, "the vault's name")->required();
  CLI::Option* group = cmd->add_option(
      "-g,--resource-group", o.group,
      group_required ? "its resource group" : "its resource group (default: found by name)");
  if (group_required) group->required();
}

void AddSettingOptions(CLI::App* cmd, VaultSettings& v) {
  cmd->add_option("--sku", v.sku, "standard or premium (premium holds HSM keys)")
      ->check(CLI::IsMember({"standard", "premium"}, CLI::ignore_case));
  cmd->add_option("--retention-days", v.retention_days,
                  "days deleted vaults and keys stay recoverable, 7-90 (fixed at creation)")
      ->check(CLI::Range(7, 90));
  cmd->add_option("--enable-purge-protection", v.purge_protection,
                  "true: nothing deleted can be purged before its retention ends (irreversible)")
      ->check(CLI::IsMember({"true", "false"}, CLI::ignore_case));
  cmd->add_option("--enable-rbac-authorization", v.rbac,
                  "true: the data plane is authorized by role assignments, not access policies")
      ->check(CLI::IsMember({"true", "false"}, CLI::ignore_case));
  cmd->add_option("--default-action", v.default_action,
                  "the firewall's action when no rule matches: Allow or Deny")
      ->transform(CLI::IsMember({"Allow", "Deny"}, CLI::ignore_case));
  cmd->add_option("--bypass", v.bypass,
                  "AzureServices (trusted services pass the firewall) or None")
      ->transform(CLI::IsMember({"AzureServices", "None"}, CLI::ignore_case));
  cmd->add_option("--public-network-access", v.public_network_access, "Enabled or Disabled")
      ->transform(CLI::IsMember({"Enabled", "Disabled"}, CLI::ignore_case));
  cmd->add_option("--tags", v.tags, "space-separated tags: key[=value] ...");
}

void AddPrincipalOptions(CLI::App* cmd, VaultOptions& o) {
  cmd->add_option("--object-id", o.object_id, "the principal's object id");
  cmd->add_option("--spn", o.spn, "a service principal's appId or display name");
  cmd->add_option("--upn", o.upn, "a user's name");
}

}  // namespace

void AddKeyVaultCommands(CLI::App& app) {
  CLI::App* kv = app.add_subcommand("keyvault", "key vaults, their access policies and firewall");
  kv->require_subcommand(1);
  auto o = std::make_shared<VaultOptions>();

  CLI::App* create = kv->add_subcommand("create", "create a key vault");
  AddNameOptions(create, *o, /*group_required=*/true);
  create->add_option("-l,--location", o->location, "its location (default: the group's)");
  AddSettingOptions(create, o->settings);
  create->callback([o, create] { Check(Create(*o, create->count("--tags") > 0)); });

  CLI::App* show = kv->add_subcommand("show", "show a key vault");
  AddNameOptions(show, *o, false);
  show->callback([o] { Check(Show(*o)); });

  CLI::App* list = kv->add_subcommand("list", "list key vaults");
  list->add_option("-g,--resource-group", o->group, "only this resource group's");
  list->callback([o] { Check(List(*o)); });

  CLI::App* update = kv->add_subcommand("update", "change a key vault's settings");
  AddNameOptions(update, *o, false);
  AddSettingOptions(update, o->settings);
  update->callback([o, update] { Check(Update(*o, update->count("--tags") > 0)); });

  CLI::App* del = kv->add_subcommand("delete", "delete a key vault (recoverable until purged)");
  AddNameOptions(del, *o, false);
  del->callback([o] { Check(Delete(*o)); });

  kv->add_subcommand("list-deleted", "list the deleted key vaults")->callback([] {
    Check(ListDeleted());
  });

  CLI::App* recover = kv->add_subcommand("recover", "recover a deleted key vault");
  AddNameOptions(recover, *o, false);
  recover->add_option("-l,--location", o->location, "its location (default: found by name)");
  recover->callback([o] { Check(Recover(*o)); });

  CLI::App* purge = kv->add_subcommand("purge", "destroy a deleted key vault and its keys");
  purge->add_option("-n,--name", o->name, "the vault's name")->required();
  purge->add_option("-l,--location", o->location, "its location (default: found by name)");
  purge->callback([o] { Check(Purge(*o)); });

  CLI::App* set_policy =
      kv->add_subcommand("set-policy", "set a principal's key permissions (replacing them)");
  AddNameOptions(set_policy, *o, false);
  AddPrincipalOptions(set_policy, *o);
  set_policy
      ->add_option("--key-permissions", o->key_permissions,
                   "space-separated: all get list create update import delete backup restore "
                   "recover purge encrypt decrypt wrapKey unwrapKey sign verify rotate "
                   "getrotationpolicy setrotationpolicy release")
      ->required();
  set_policy->callback([o] { Check(SetPolicy(*o)); });

  CLI::App* delete_policy =
      kv->add_subcommand("delete-policy", "remove a principal's access policy");
  AddNameOptions(delete_policy, *o, false);
  AddPrincipalOptions(delete_policy, *o);
  delete_policy->callback([o] { Check(DeletePolicy(*o)); });

  CLI::App* rule = kv->add_subcommand("network-rule", "the vault firewall's IP rules");
  rule->require_subcommand(1);
  CLI::App* rule_add = rule->add_subcommand("add", "allow an IP address or range");
  CLI::App* rule_remove = rule->add_subcommand("remove", "remove an IP rule");
  for (CLI::App* cmd : {rule_add, rule_remove}) {
    AddNameOptions(cmd, *o, false);
    cmd->add_option("--ip-address", o->ip_address, "an IPv4/IPv6 address or CIDR range")
        ->required();
  }
  rule_add->callback([o] { Check(EditNetworkRule(*o, true)); });
  rule_remove->callback([o] { Check(EditNetworkRule(*o, false)); });
  CLI::App* rule_list = rule->add_subcommand("list", "list the vault's network rules");
  AddNameOptions(rule_list, *o, false);
  rule_list->callback([o] { Check(ListNetworkRules(*o)); });

  AddKeyCommands(*kv);
}

}  // namespace keyfoundry::cli
