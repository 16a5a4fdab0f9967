// kf group create / list / show / delete: resource groups, as `az group`.
#include "cli/commands.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

struct GroupOptions {
  std::string name;
  std::string location;
  std::vector<std::string> tags;
  bool yes = false;
};

const std::vector<Column>& GroupColumns() {
  static const std::vector<Column> columns = {Field("Name", "/name"),
                                              Field("Location", "/location"),
                                              Field("Status", "/properties/provisioningState")};
  return columns;
}

std::string GroupPath(const Session& s, const std::string& name) {
  return "/subscriptions/" + s.profile.subscription_id + "/resourcegroups/" +
         http::PercentEncode(name) + "?api-version=" + kResourcesApiVersion;
}

Status Create(const GroupOptions& o) {
  ASSIGN_OR_RETURN(nlohmann::json tags, ParseTags(o.tags));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  nlohmann::json body = {{"location", o.location}};
  if (!o.tags.empty()) body["tags"] = tags;
  ASSIGN_OR_RETURN(ApiResult group, s.client->Call("PUT", GroupPath(s, o.name), s.token, body));
  Print(group.body, GroupColumns());
  return OkStatus();
}

Status Show(const GroupOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult group, s.client->Call("GET", GroupPath(s, o.name), s.token));
  Print(group.body, GroupColumns());
  return OkStatus();
}

Status List() {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(nlohmann::json groups,
                   ListPages(s, "/subscriptions/" + s.profile.subscription_id +
                                    "/resourcegroups?api-version=" + kResourcesApiVersion));
  Print(groups, GroupColumns());
  return OkStatus();
}

Status Delete(const GroupOptions& o) {
  RETURN_IF_ERROR(Confirm("Are you sure you want to delete the resource group '" + o.name +
                              "' and the vaults in it (they go to the deleted vaults)?",
                          o.yes));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  RETURN_IF_ERROR(s.client->Call("DELETE", GroupPath(s, o.name), s.token));
  return OkStatus();
}

}  // namespace

void AddGroupCommands(CLI::App& app) {
  CLI::App* group = app.add_subcommand("group", "resource groups");
  group->require_subcommand(1);
  auto o = std::make_shared<GroupOptions>();

  CLI::App* create = group->add_subcommand("create", "create or update a resource group");
  create->add_option("-n,--name,-g,--resource-group", o->name, "the group's name")->required();
  create->add_option("-l,--location", o->location, "its location (any name, e.g. local)")
      ->required();
  create->add_option("--tags", o->tags, "space-separated tags: key[=value] ...");
  create->callback([o] { Check(Create(*o)); });

  group->add_subcommand("list", "list the subscription's resource groups")->callback([] {
    Check(List());
  });

  CLI::App* show = group->add_subcommand("show", "show a resource group");
  show->add_option("-n,--name,-g,--resource-group", o->name, "the group's name")->required();
  show->callback([o] { Check(Show(*o)); });

  CLI::App* del = group->add_subcommand(
      "delete", "delete a resource group; its vaults are soft-deleted (recoverable)");
  del->add_option("-n,--name,-g,--resource-group", o->name, "the group's name")->required();
  del->add_flag("-y,--yes", o->yes, "do not ask for confirmation");
  del->callback([o] { Check(Delete(*o)); });
}

}  // namespace keyfoundry::cli
