// The key vault control plane of the real keyfoundryd over HTTPS: resource groups and
// Microsoft.KeyVault/vaults in ARM's shapes (create, read, update, patch, access policies,
// network rules), every bad body refused with a 400 that changes nothing, authorization,
// soft delete, recovery, purge and purge protection.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "http/url.h"
#include "identity/authorization.h"
#include "support/keyfoundryd_process.h"

namespace keyfoundry {
namespace {

using testutil::Body;
using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;

constexpr char kApiVersion[] = "2023-07-01";
constexpr char kPrincipal1[] = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr char kPrincipal2[] = "bbbbbbbb-0000-4000-8000-000000000002";

class VaultManagementTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new KeyfoundrydProcess(KF_KEYFOUNDRYD);
    admin_ = new std::string(server_->AdminToken());
  }
  static void TearDownTestSuite() {
    delete admin_;
    delete server_;
    admin_ = nullptr;
    server_ = nullptr;
  }

  // A control-plane call with an api-version, as the admin unless `token` is given.
  static http::ClientResponse Arm(const std::string& method, const std::string& path,
                                  const Json& body = nullptr, const std::string& token = "") {
    const std::string url =
        path + (path.find('?') == std::string::npos ? "?" : "&") + "api-version=" + kApiVersion;
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + (token.empty() ? *admin_ : token)}};
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("Content-Type", "application/json");
      text = body.is_string() ? body.get<std::string>() : body.dump();
    }
    return server_->Call(method, url, headers, text);
  }

  static std::string Sub() { return "/subscriptions/" + server_->subscription(); }
  static std::string Group(const std::string& rg) { return Sub() + "/resourceGroups/" + rg; }
  static std::string VaultPath(const std::string& rg, const std::string& name) {
    return Group(rg) + "/providers/Microsoft.KeyVault/vaults/" + name;
  }
  static std::string DeletedPath(const std::string& name, const std::string& location = "local") {
    return Sub() + "/providers/Microsoft.KeyVault/locations/" + location + "/deletedVaults/" + name;
  }

  static void CreateGroup(const std::string& rg) {
    http::ClientResponse r = Arm("PUT", Group(rg), {{"location", "local"}});
    ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
  }

  static Json Policy(const std::string& object_id, const Json& keys) {
    return {{"tenantId", server_->tenant()},
            {"objectId", object_id},
            {"permissions", {{"keys", keys}, {"secrets", Json::array()}}}};
  }

  static Json VaultBody(const Json& extra_properties = Json::object()) {
    Json body = {{"location", "local"},
                 {"tags", {{"env", "test"}}},
                 {"properties",
                  {{"tenantId", server_->tenant()},
                   {"sku", {{"family", "A"}, {"name", "standard"}}},
                   {"accessPolicies", {Policy(kPrincipal1, {"get", "wrapKey", "unwrapKey"})}}}}};
    for (const auto& [k, v] : extra_properties.items()) body["properties"][k] = v;
    return body;
  }

  static Json CreateVault(const std::string& rg, const std::string& name,
                          const Json& extra_properties = Json::object()) {
    http::ClientResponse r = Arm("PUT", VaultPath(rg, name), VaultBody(extra_properties));
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }

  static Json CreateServicePrincipal(const std::string& name) {
    http::ClientResponse r = server_->Call(
        "POST", "/v1.0/servicePrincipals",
        {{"Authorization", "Bearer " + *admin_}, {"Content-Type", "application/json"}},
        Json{{"displayName", name}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }

  static std::string SpToken(const Json& sp) {
    return server_->Token(
        "grant_type=client_credentials&client_id=" + sp["appId"].get<std::string>() +
        "&client_secret=" + http::PercentEncode(sp["secretText"].get<std::string>()) +
        "&scope=https%3A%2F%2Fmanagement.localhost%2F.default");
  }

  static http::ClientResponse Assign(const std::string& scope, const std::string& principal,
                                     std::string_view role) {
    static int n = 0;
    char name[40];
    (void)std::snprintf(name, sizeof(name), "00000000-0000-4000-9000-%012d", ++n);
    return server_->Call(
        "PUT",
        scope + "/providers/Microsoft.Authorization/roleAssignments/" + name +
            "?api-version=2022-04-01",
        {{"Authorization", "Bearer " + *admin_}, {"Content-Type", "application/json"}},
        Json{{"properties",
              {{"roleDefinitionId", "/subscriptions/" + server_->subscription() +
                                        "/providers/Microsoft.Authorization/roleDefinitions/" +
                                        std::string(role)},
               {"principalId", principal}}}}
            .dump());
  }

  static KeyfoundrydProcess* server_;
  static std::string* admin_;
};

KeyfoundrydProcess* VaultManagementTest::server_ = nullptr;
std::string* VaultManagementTest::admin_ = nullptr;

TEST_F(VaultManagementTest, ResourceGroupLifecycle) {
  http::ClientResponse r =
      Arm("PUT", Group("Rg-Life"), {{"location", "local"}, {"tags", {{"a", "b"}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  Json group = Body(r);
  EXPECT_EQ(group["id"], Group("Rg-Life"));
  EXPECT_EQ(group["name"], "Rg-Life");
  EXPECT_EQ(group["type"], "Microsoft.Resources/resourceGroups");
  EXPECT_EQ(group["location"], "local");
  EXPECT_EQ(group["tags"], Json({{"a", "b"}}));
  EXPECT_EQ(group["properties"]["provisioningState"], "Succeeded");

  // Paths and names compare case-insensitively; the name keeps its first spelling.
  r = Arm("PUT", Sub() + "/resourcegroups/RG-LIFE", {{"location", "local"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["name"], "Rg-Life");
  EXPECT_EQ(Arm("GET", Sub() + "/RESOURCEGROUPS/rg-life").status, 200);
  EXPECT_EQ(Arm("HEAD", Group("rg-life")).status, 204);
  EXPECT_EQ(Arm("HEAD", Group("rg-nothere")).status, 404);

  r = Arm("PATCH", Group("rg-life"), {{"tags", {{"c", "d"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["tags"], Json({{"c", "d"}}));

  r = Arm("PUT", Group("rg-life"), {{"location", "westus"}});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(Body(r)["error"]["code"], "InvalidResourceGroupLocation");

  r = Arm("GET", Sub() + "/resourceGroups");
  ASSERT_EQ(r.status, 200);
  bool listed = false;
  const Json groups = Body(r)["value"];
  for (const Json& g : groups) listed = listed || g["name"] == "Rg-Life";
  EXPECT_TRUE(listed);

  r = Arm("GET", Group("rg-nothere"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["error"]["code"], "ResourceGroupNotFound");

  r = Arm("PUT", Group("bad."), {{"location", "local"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "InvalidResourceGroupName");
  r = Arm("PUT", Group("rg-life"), Json("{not json"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "InvalidRequestContent");
  r = Arm("PUT", Group("rg-nolocation"), {{"tags", Json::object()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find("location"), std::string::npos);
  EXPECT_EQ(Arm("GET", Group("rg-nolocation")).status, 404);

  EXPECT_EQ(Arm("DELETE", Group("rg-life")).status, 200);
  EXPECT_EQ(Arm("GET", Group("rg-life")).status, 404);
  EXPECT_EQ(Arm("DELETE", Group("rg-life")).status, 404);
}

TEST_F(VaultManagementTest, CreateGetUpdateAndList) {
  CreateGroup("rg-crud");
  Json created = CreateVault("rg-crud", "kv-crud");
  EXPECT_EQ(created["id"], VaultPath("rg-crud", "kv-crud"));
  EXPECT_EQ(created["type"], "Microsoft.KeyVault/vaults");
  EXPECT_EQ(created["location"], "local");
  EXPECT_EQ(created["tags"], Json({{"env", "test"}}));
  const Json& p = created["properties"];
  EXPECT_EQ(p["vaultUri"],
            "https://kv-crud.vault.localhost:" + std::to_string(server_->port()) + "/");
  EXPECT_EQ(p["tenantId"], server_->tenant());
  EXPECT_EQ(p["sku"], Json({{"family", "A"}, {"name", "standard"}}));
  EXPECT_EQ(p["enableSoftDelete"], true);
  EXPECT_EQ(p["softDeleteRetentionInDays"], 90);
  EXPECT_EQ(p["enableRbacAuthorization"], false);
  EXPECT_EQ(p["provisioningState"], "Succeeded");
  EXPECT_EQ(p["publicNetworkAccess"], "Enabled");
  EXPECT_EQ(p["accessPolicies"][0]["objectId"], kPrincipal1);
  EXPECT_EQ(p["accessPolicies"][0]["permissions"]["keys"], Json({"wrapKey", "unwrapKey", "get"}));

  http::ClientResponse r = Arm("GET", VaultPath("RG-CRUD", "KV-CRUD"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["properties"], created["properties"]);
  EXPECT_EQ(Body(r)["systemData"]["createdBy"], created["systemData"]["createdBy"]);

  // A PUT of an existing vault updates it: 200.
  r = Arm("PUT", VaultPath("rg-crud", "kv-crud"),
          VaultBody({{"sku", {{"family", "A"}, {"name", "Premium"}}},
                     {"enableRbacAuthorization", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["properties"]["sku"]["name"], "premium");
  EXPECT_EQ(Body(r)["properties"]["enableRbacAuthorization"], true);

  // PATCH merges.
  r = Arm("PATCH", VaultPath("rg-crud", "kv-crud"),
          {{"properties", {{"enableRbacAuthorization", false}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["properties"]["enableRbacAuthorization"], false);
  EXPECT_EQ(Body(r)["properties"]["sku"]["name"], "premium");
  EXPECT_EQ(Body(r)["tags"], Json({{"env", "test"}}));

  // Lists: the group's, the subscription's, and the generic resources list az uses.
  r = Arm("GET", Group("rg-crud") + "/providers/Microsoft.KeyVault/vaults");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Body(r)["value"].size(), 1u);
  EXPECT_EQ(Body(r)["value"][0]["name"], "kv-crud");
  r = Arm("GET", Sub() + "/providers/Microsoft.KeyVault/vaults");
  ASSERT_EQ(r.status, 200);
  bool listed = false;
  const Json vaults = Body(r)["value"];
  for (const Json& v : vaults) listed = listed || v["name"] == "kv-crud";
  EXPECT_TRUE(listed);
  r = server_->Call("GET",
                    Sub() +
                        "/resources?$filter=resourceType%20eq%20%27Microsoft.KeyVault%2Fvaults"
                        "%27&api-version=2015-11-01",
                    {{"Authorization", "Bearer " + *admin_}});
  ASSERT_EQ(r.status, 200) << r.body;
  listed = false;
  const Json resources = Body(r)["value"];
  for (const Json& v : resources) {
    if (v["name"] == "kv-crud") {
      listed = true;
      EXPECT_EQ(v["id"], VaultPath("rg-crud", "kv-crud"));
      EXPECT_EQ(v["type"], "Microsoft.KeyVault/vaults");
    }
  }
  EXPECT_TRUE(listed);

  // The resource group must exist; the vault must be in it.
  r = Arm("PUT", VaultPath("rg-missing", "kv-orphan"), VaultBody());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["error"]["code"], "ResourceGroupNotFound");
  CreateGroup("rg-crud2");
  r = Arm("GET", VaultPath("rg-crud2", "kv-crud"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["error"]["code"], "ResourceNotFound");
}

TEST_F(VaultManagementTest, AccessPoliciesAddReplaceRemove) {
  CreateGroup("rg-ap");
  CreateVault("rg-ap", "kv-ap");
  const std::string base = VaultPath("rg-ap", "kv-ap") + "/accessPolicies/";

  http::ClientResponse r =
      Arm("PUT", base + "add",
          {{"properties",
            {{"accessPolicies", {Policy(kPrincipal1, {"Sign"}), Policy(kPrincipal2, {"get"})}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json out = Body(r);
  EXPECT_EQ(out["type"], "Microsoft.KeyVault/vaults/accessPolicies");
  EXPECT_EQ(out["id"], VaultPath("rg-ap", "kv-ap") + "/accessPolicies/add");
  ASSERT_EQ(out["properties"]["accessPolicies"].size(), 2u);
  EXPECT_EQ(out["properties"]["accessPolicies"][0]["permissions"]["keys"],
            Json({"wrapKey", "unwrapKey", "sign", "get"}));

  r = Arm("PUT", base + "remove",
          {{"properties",
            {{"accessPolicies",
              {Policy(kPrincipal1, {"sign", "wrapKey"}), Policy(kPrincipal2, {"get"})}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  out = Body(r);
  ASSERT_EQ(out["properties"]["accessPolicies"].size(), 1u);  // principal 2 left with nothing
  EXPECT_EQ(out["properties"]["accessPolicies"][0]["permissions"]["keys"],
            Json({"unwrapKey", "get"}));

  r = Arm("PUT", base + "replace",
          {{"properties", {{"accessPolicies", {Policy(kPrincipal2, {"all"})}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  r = Arm("GET", VaultPath("rg-ap", "kv-ap"));
  Json policies = Body(r)["properties"]["accessPolicies"];
  ASSERT_EQ(policies.size(), 1u);
  EXPECT_EQ(policies[0]["objectId"], kPrincipal2);
  EXPECT_EQ(policies[0]["permissions"]["keys"].size(), 20u);

  // PATCH of the vault can set the list too.
  r = Arm("PATCH", VaultPath("rg-ap", "kv-ap"),
          {{"properties", {{"accessPolicies", {Policy(kPrincipal1, {"get"})}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["properties"]["accessPolicies"][0]["objectId"], kPrincipal1);

  // Bad operations and bodies change nothing.
  for (const auto& [kind, body] : std::vector<std::pair<std::string, Json>>{
           {"merge", {{"properties", {{"accessPolicies", Json::array()}}}}},
           {"add", Json::object()},
           {"add", {{"properties", {{"accessPolicies", {Policy(kPrincipal2, {"fly"})}}}}}},
           {"add", {{"properties", {{"accessPolicies", {Policy("not-a-guid", {"get"})}}}}}},
           {"replace", Json("[")}}) {
    r = Arm("PUT", base + kind, body);
    EXPECT_EQ(r.status, 400) << kind << " " << body.dump() << " " << r.body;
  }
  r = Arm("GET", VaultPath("rg-ap", "kv-ap"));
  EXPECT_EQ(Body(r)["properties"]["accessPolicies"].size(), 1u);
  EXPECT_EQ(Arm("PUT", VaultPath("rg-ap", "kv-none") + "/accessPolicies/add",
                {{"properties", {{"accessPolicies", Json::array()}}}})
                .status,
            404);
}

TEST_F(VaultManagementTest, NetworkRules) {
  CreateGroup("rg-net");
  CreateVault("rg-net", "kv-net");
  http::ClientResponse r =
      Arm("PATCH", VaultPath("rg-net", "kv-net"),
          {{"properties",
            {{"networkAcls",
              {{"defaultAction", "Deny"},
               {"bypass", "None"},
               {"ipRules", {{{"value", "203.0.113.0/24"}}, {{"value", "2001:db8::/32"}}}}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json acls = Body(r)["properties"]["networkAcls"];
  EXPECT_EQ(acls["defaultAction"], "Deny");
  EXPECT_EQ(acls["bypass"], "None");
  EXPECT_EQ(acls["ipRules"],
            Json::parse(R"([{"value":"203.0.113.0/24"},{"value":"2001:db8::/32"}])"));

  r = Arm("PATCH", VaultPath("rg-net", "kv-net"),
          {{"properties", {{"networkAcls", {{"ipRules", {{{"value", "203.0.113.0/33"}}}}}}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find("ipRules[0].value"),
            std::string::npos);
  r = Arm("PATCH", VaultPath("rg-net", "kv-net"),
          {{"properties", {{"publicNetworkAccess", "Disabled"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["properties"]["publicNetworkAccess"], "Disabled");
  EXPECT_EQ(Body(r)["properties"]["networkAcls"], acls);
}

TEST_F(VaultManagementTest, BadBodiesAre400AndChangeNothing) {
  CreateGroup("rg-bad");
  CreateVault("rg-bad", "kv-bad", {{"softDeleteRetentionInDays", 30}});
  const Json before = Body(Arm("GET", VaultPath("rg-bad", "kv-bad")));

  auto with = [](const char* pointer, const Json& value) {
    Json body = VaultBody({{"softDeleteRetentionInDays", 30}});
    body[Json::json_pointer(pointer)] = value;
    return body;
  };
  struct Case {
    const char* method;
    Json body;
    const char* field;  // named in the message
  };
  const std::vector<Case> cases = {
      {"PUT", Json("not json"), ""},
      {"PUT", Json::array(), ""},
      {"PUT", with("/location", 7), "location"},
      {"PUT", with("/properties/tenantId", "11111111-2222-3333-4444-555555555555"),
       "properties.tenantId"},
      {"PUT", with("/properties/sku/name", "gold"), "properties.sku.name"},
      {"PUT", with("/properties/enableSoftDelete", false), "soft delete cannot be disabled"},
      {"PUT", with("/properties/softDeleteRetentionInDays", 60), "softDeleteRetentionInDays"},
      {"PUT", with("/properties/softDeleteRetentionInDays", 3), "softDeleteRetentionInDays"},
      {"PUT", with("/properties/enablePurgeProtection", false), "enablePurgeProtection"},
      {"PUT", with("/properties/accessPolicies/0/permissions/keys/0", "fly"), "'fly'"},
      {"PUT", with("/properties/networkAcls", {{"defaultAction", "Block"}}), "defaultAction"},
      {"PUT", with("/properties/createMode", "undelete"), "createMode"},
      {"PUT", with("/tags", {{"a/b", "c"}}), "tags"},
      {"PATCH", {{"properties", {{"sku", {{"name", "gold"}}}}}}, "properties.sku.name"},
      {"PATCH", {{"properties", {{"softDeleteRetentionInDays", 7}}}}, "softDeleteRetentionInDays"},
      {"PATCH", {{"properties", {{"enableRbacAuthorization", "yes"}}}}, "enableRbacAuthorization"},
      {"PATCH", {{"properties", {{"accessPolicies", "none"}}}}, "accessPolicies"},
      {"PATCH", {{"location", "elsewhere"}}, ""},
  };
  for (const Case& c : cases) {
    http::ClientResponse r = Arm(c.method, VaultPath("rg-bad", "kv-bad"), c.body);
    EXPECT_TRUE(r.status == 400 || (r.status == 409 && c.body.contains("location")))
        << c.method << " " << c.body.dump() << " -> " << r.status << " " << r.body;
    Json error = Body(r)["error"];
    EXPECT_TRUE(error["code"] == "BadRequest" || error["code"] == "InvalidRequestContent" ||
                error["code"] == "InvalidResourceLocation")
        << r.body;
    EXPECT_NE(error["message"].get<std::string>().find(c.field), std::string::npos)
        << c.field << " in " << r.body;
  }
  EXPECT_EQ(Body(Arm("GET", VaultPath("rg-bad", "kv-bad"))), before);

  // Purge protection: false refused with ARM's message; on, it stays on.
  http::ClientResponse r = Arm("PATCH", VaultPath("rg-bad", "kv-bad"),
                               {{"properties", {{"enablePurgeProtection", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  r = Arm("PATCH", VaultPath("rg-bad", "kv-bad"),
          {{"properties", {{"enablePurgeProtection", false}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["message"],
            "The property \"enablePurgeProtection\" cannot be set to false. Enabling the purge "
            "protection for a vault is an irreversible action.");
  EXPECT_EQ(Body(Arm("GET", VaultPath("rg-bad", "kv-bad")))["properties"]["enablePurgeProtection"],
            true);
}

TEST_F(VaultManagementTest, NamesAreValidatedAndUnique) {
  CreateGroup("rg-names1");
  CreateGroup("rg-names2");
  CreateVault("rg-names1", "kv-names");
  http::ClientResponse r = Arm("PUT", VaultPath("rg-names2", "KV-Names"), VaultBody());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(Body(r)["error"]["code"], "VaultAlreadyExists");
  r = Arm("PUT", VaultPath("rg-names1", "1-bad--name"), VaultBody());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "VaultNameNotValid");

  const std::string check = Sub() + "/providers/Microsoft.KeyVault/checkNameAvailability";
  r = Arm("POST", check, {{"name", "kv-names"}, {"type", "Microsoft.KeyVault/vaults"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["nameAvailable"], false);
  EXPECT_EQ(Body(r)["reason"], "AlreadyExists");
  r = Arm("POST", check, {{"name", "kv-free-name"}, {"type", "Microsoft.KeyVault/vaults"}});
  EXPECT_EQ(Body(r), Json({{"nameAvailable", true}}));
  r = Arm("POST", check, {{"name", "a"}, {"type", "Microsoft.KeyVault/vaults"}});
  EXPECT_EQ(Body(r)["reason"], "AccountNameInvalid");
  EXPECT_EQ(Arm("POST", check, {{"name", "x"}}).status, 400);
}

TEST_F(VaultManagementTest, CallersWithoutRolesAreRefused) {
  CreateGroup("rg-authz");
  CreateVault("rg-authz", "kv-authz");
  Json sp = CreateServicePrincipal("vault-mgmt-nobody");
  const std::string token = SpToken(sp);
  ASSERT_FALSE(token.empty());

  for (const auto& [method, path, body] : std::vector<std::tuple<std::string, std::string, Json>>{
           {"GET", VaultPath("rg-authz", "kv-authz"), nullptr},
           {"PUT", VaultPath("rg-authz", "kv-authz"), VaultBody()},
           {"PATCH", VaultPath("rg-authz", "kv-authz"), Json::object()},
           {"DELETE", VaultPath("rg-authz", "kv-authz"), nullptr},
           {"PUT",
            VaultPath("rg-authz", "kv-authz") + "/accessPolicies/add",
            {{"properties", {{"accessPolicies", Json::array()}}}}},
           {"PUT", VaultPath("rg-authz", "kv-new"), VaultBody()},
           {"GET", Group("rg-authz"), nullptr},
           {"PUT", Group("rg-authz2"), {{"location", "local"}}},
           {"DELETE", Group("rg-authz"), nullptr},
           {"GET", Group("rg-authz") + "/providers/Microsoft.KeyVault/vaults", nullptr},
           {"GET", Sub() + "/providers/Microsoft.KeyVault/deletedVaults", nullptr},
           {"POST", DeletedPath("kv-authz") + "/purge", nullptr}}) {
    http::ClientResponse r = Arm(method, path, body, token);
    EXPECT_EQ(r.status, 403) << method << " " << path << " " << r.body;
    EXPECT_EQ(Body(r)["error"]["code"], "AuthorizationFailed") << r.body;
  }
  // Subscription-wide lists show only what the caller may read: nothing.
  http::ClientResponse r =
      Arm("GET", Sub() + "/providers/Microsoft.KeyVault/vaults", nullptr, token);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(Body(r)["value"].empty());
  EXPECT_EQ(Arm("GET", Group("rg-authz2")).status, 404);
  EXPECT_EQ(Arm("GET", VaultPath("rg-authz", "kv-authz")).status, 200);

  // Reader on the vault: reads it, cannot change it.
  ASSERT_EQ(Assign(VaultPath("rg-authz", "kv-authz"), sp["id"], identity::role_ids::kReader).status,
            201);
  EXPECT_EQ(Arm("GET", VaultPath("rg-authz", "kv-authz"), nullptr, token).status, 200);
  EXPECT_EQ(Arm("PATCH", VaultPath("rg-authz", "kv-authz"), Json::object(), token).status, 403);
  r = Arm("GET", Sub() + "/providers/Microsoft.KeyVault/vaults", nullptr, token);
  ASSERT_EQ(Body(r)["value"].size(), 1u);
  EXPECT_EQ(Body(r)["value"][0]["name"], "kv-authz");
}

TEST_F(VaultManagementTest, DeleteRecoverDeletePurge) {
  CreateGroup("rg-life2");
  CreateVault("rg-life2", "kv-cycle", {{"softDeleteRetentionInDays", 7}});
  ASSERT_EQ(Arm("PATCH", VaultPath("rg-life2", "kv-cycle"),
                {{"properties", {{"accessPolicies", {Policy(kPrincipal2, {"get"})}}}}})
                .status,
            200);

  EXPECT_EQ(Arm("DELETE", VaultPath("rg-life2", "kv-cycle")).status, 200);
  EXPECT_EQ(Arm("DELETE", VaultPath("rg-life2", "kv-cycle")).status, 204);
  EXPECT_EQ(Arm("GET", VaultPath("rg-life2", "kv-cycle")).status, 404);

  http::ClientResponse r = Arm("GET", Sub() + "/providers/Microsoft.KeyVault/deletedVaults");
  ASSERT_EQ(r.status, 200) << r.body;
  Json found;
  const Json deleted = Body(r)["value"];
  for (const Json& v : deleted) {
    if (v["name"] == "kv-cycle") found = v;
  }
  ASSERT_FALSE(found.is_null()) << r.body;
  EXPECT_EQ(found["id"], DeletedPath("kv-cycle"));
  EXPECT_EQ(found["type"], "Microsoft.KeyVault/deletedVaults");
  EXPECT_EQ(found["properties"]["vaultId"], VaultPath("rg-life2", "kv-cycle"));
  EXPECT_EQ(found["properties"]["location"], "local");
  EXPECT_EQ(found["properties"]["purgeProtectionEnabled"], false);
  EXPECT_EQ(found["properties"]["tags"], Json({{"env", "test"}}));
  EXPECT_TRUE(found["properties"]["deletionDate"].is_string());
  EXPECT_TRUE(found["properties"]["scheduledPurgeDate"].is_string());
  r = Arm("GET", DeletedPath("kv-cycle"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), found);
  EXPECT_EQ(Arm("GET", DeletedPath("kv-cycle", "elsewhere")).status, 404);

  // The name is held by the deleted vault.
  r = Arm("PUT", VaultPath("rg-life2", "kv-cycle"), VaultBody());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(Body(r)["error"]["code"], "ConflictError");

  // Recover: the vault comes back as it was.
  r = Arm("PUT", VaultPath("rg-life2", "kv-cycle"),
          {{"location", "local"},
           {"properties",
            {{"tenantId", server_->tenant()},
             {"sku", {{"family", "A"}, {"name", "standard"}}},
             {"createMode", "recover"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  r = Arm("GET", VaultPath("rg-life2", "kv-cycle"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["properties"]["softDeleteRetentionInDays"], 7);
  EXPECT_EQ(Body(r)["properties"]["accessPolicies"][0]["objectId"], kPrincipal2);
  EXPECT_EQ(Arm("GET", DeletedPath("kv-cycle")).status, 404);

  // Delete again, then purge: gone for good, and the name is free.
  ASSERT_EQ(Arm("DELETE", VaultPath("rg-life2", "kv-cycle")).status, 200);
  r = Arm("POST", DeletedPath("kv-cycle") + "/purge");
  EXPECT_TRUE(r.status == 200 || r.status == 204) << r.body;
  EXPECT_EQ(Arm("GET", DeletedPath("kv-cycle")).status, 404);
  EXPECT_EQ(Arm("POST", DeletedPath("kv-cycle") + "/purge").status, 404);
  r = Arm("PUT", VaultPath("rg-life2", "kv-cycle"), VaultBody({{"createMode", "recover"}}));
  EXPECT_EQ(r.status, 404);
  CreateVault("rg-life2", "kv-cycle");
}

TEST_F(VaultManagementTest, PurgeIsRefusedUnderPurgeProtection) {
  CreateGroup("rg-protect");
  CreateVault("rg-protect", "kv-protected", {{"enablePurgeProtection", true}});
  ASSERT_EQ(Arm("DELETE", VaultPath("rg-protect", "kv-protected")).status, 200);
  http::ClientResponse r = Arm("POST", DeletedPath("kv-protected") + "/purge");
  EXPECT_EQ(r.status, 409) << r.body;
  const std::string scheduled =
      Body(Arm("GET", DeletedPath("kv-protected")))["properties"]["scheduledPurgeDate"];
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find(scheduled), std::string::npos)
      << r.body;
  EXPECT_EQ(Arm("GET", DeletedPath("kv-protected")).status, 200);
}

TEST_F(VaultManagementTest, DeletingAGroupSoftDeletesItsVaults) {
  CreateGroup("rg-gone");
  CreateVault("rg-gone", "kv-in-gone");
  ASSERT_EQ(Arm("DELETE", Group("rg-gone")).status, 200);
  EXPECT_EQ(Arm("GET", Group("rg-gone")).status, 404);
  EXPECT_EQ(Arm("GET", DeletedPath("kv-in-gone")).status, 200);
  // Recreate the group, then recover the vault into it.
  CreateGroup("rg-gone");
  http::ClientResponse r =
      Arm("PUT", VaultPath("rg-gone", "kv-in-gone"), VaultBody({{"createMode", "recover"}}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Arm("GET", VaultPath("rg-gone", "kv-in-gone")).status, 200);
}

TEST_F(VaultManagementTest, RoleAssignmentsUnderAVaultStillReachTheirRoutes) {
  CreateGroup("rg-ra");
  CreateVault("rg-ra", "kv-ra");
  Json sp = CreateServicePrincipal("vault-mgmt-ra");
  EXPECT_EQ(
      Assign(VaultPath("rg-ra", "kv-ra"), sp["id"], identity::role_ids::kKeyVaultCryptoUser).status,
      201);
  http::ClientResponse r =
      server_->Call("GET",
                    VaultPath("rg-ra", "kv-ra") +
                        "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
                    {{"Authorization", "Bearer " + *admin_}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(Body(r)["value"].empty());
}

TEST_F(VaultManagementTest, TheUsualPreconditions) {
  CreateGroup("rg-pre");
  http::ClientResponse r =
      server_->Call("GET", VaultPath("rg-pre", "kv-pre"), {{"Authorization", "Bearer " + *admin_}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["code"], "MissingApiVersionParameter");
  r = server_->Call("GET", VaultPath("rg-pre", "kv-pre") + "?api-version=2023-07-01");
  EXPECT_EQ(r.status, 401);
  r = Arm("GET", "/subscriptions/99999999-0000-4000-8000-000000000000/resourceGroups/rg-pre");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["error"]["code"], "SubscriptionNotFound");
}

}  // namespace
}  // namespace keyfoundry
