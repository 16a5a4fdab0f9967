#include "keyvault/vault.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/test_util.h"

namespace keyfoundry::keyvault {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kTenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
constexpr char kOtherTenant[] = "11111111-2222-3333-4444-555555555555";
constexpr char kSubscription[] = "00000000-1111-2222-3333-444444444444";
constexpr char kAlice[] = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr char kBob[] = "bbbbbbbb-0000-4000-8000-000000000002";
constexpr char kApp[] = "cccccccc-0000-4000-8000-000000000003";
constexpr int64_t kStart = 1700000000;

Vault NewVault(std::string name = "kv-test1", std::string group = "rg1") {
  Vault v;
  v.name = std::move(name);
  v.subscription_id = kSubscription;
  v.resource_group = std::move(group);
  v.tenant_id = kTenant;
  v.created_by = kAlice;
  v.updated_by = kAlice;
  return v;
}

// A body using every field; each negative test changes one thing in it.
Json GoodBody() {
  return Json::parse(std::string(R"({
    "location": "local",
    "tags": {"env": "test"},
    "properties": {
      "tenantId": ")") +
                     kTenant + R"(",
      "sku": {"family": "A", "name": "Standard"},
      "enableSoftDelete": true,
      "softDeleteRetentionInDays": 30,
      "enableRbacAuthorization": false,
      "enabledForDeployment": true,
      "enabledForDiskEncryption": false,
      "publicNetworkAccess": "enabled",
      "createMode": "default",
      "vaultUri": "https://ignored.example/",
      "provisioningState": "Whatever",
      "networkAcls": {
        "defaultAction": "deny",
        "bypass": "azureservices",
        "ipRules": [{"value": "203.0.113.0/24"}, {"value": "2001:db8::/32"}],
        "virtualNetworkRules": [{"id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/virtualNetworks/v/subnets/s"}]
      },
      "accessPolicies": [{
        "tenantId": ")" +
                     kTenant + R"(",
        "objectId": ")" +
                     kAlice + R"(",
        "permissions": {"keys": ["Get", "wrapKey", "UNWRAPKEY"], "secrets": ["get"]}
      }]
    }
  })");
}

StatusOr<Vault> Parse(const Json& body) { return VaultFromArm(body, NewVault()); }

// An existing vault (as the store returns it) built from GoodBody.
Vault Existing() {
  StatusOr<Vault> v = Parse(GoodBody());
  EXPECT_TRUE(v.ok()) << v.status();
  Vault out = *v;
  out.created_at = kStart;
  out.updated_at = kStart;
  return out;
}

AccessPolicy Policy(std::string object_id, std::set<KeyPermission> keys,
                    Json other = Json::object(), std::string app = "") {
  AccessPolicy p;
  p.tenant_id = kTenant;
  p.object_id = std::move(object_id);
  p.application_id = std::move(app);
  p.keys = std::move(keys);
  p.other_permissions = std::move(other);
  return p;
}

// ---------------------------------------------------------------- parsing

TEST(VaultFromArmTest, ParsesEveryFieldOfAGoodBody) {
  StatusOr<Vault> v = Parse(GoodBody());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->location, "local");
  EXPECT_EQ(v->tags, Json({{"env", "test"}}));
  EXPECT_EQ(v->tenant_id, kTenant);
  EXPECT_EQ(v->sku, "standard");  // lower case out, as ARM
  EXPECT_EQ(v->soft_delete_retention_days, 30);
  EXPECT_FALSE(v->purge_protection);
  EXPECT_FALSE(v->rbac_authorization);
  EXPECT_EQ(v->public_network_access, "Enabled");
  EXPECT_EQ(v->network_acls.default_action, "Deny");
  EXPECT_EQ(v->network_acls.bypass, "AzureServices");
  ASSERT_EQ(v->network_acls.ip_rules.size(), 2u);
  EXPECT_EQ(v->network_acls.ip_rules[0].value, "203.0.113.0/24");
  EXPECT_EQ(v->network_acls.virtual_network_rules.size(), 1u);
  EXPECT_EQ(v->extra_properties,
            Json({{"enabledForDeployment", true}, {"enabledForDiskEncryption", false}}));
  ASSERT_EQ(v->access_policies.size(), 1u);
  const AccessPolicy& p = v->access_policies[0];
  EXPECT_EQ(p.object_id, kAlice);
  EXPECT_EQ(p.keys, (std::set<KeyPermission>{KeyPermission::kGet, KeyPermission::kWrapKey,
                                             KeyPermission::kUnwrapKey}));
  EXPECT_EQ(p.other_permissions, Json({{"secrets", {"get"}}}));
}

TEST(VaultFromArmTest, AMinimalBodyGetsAzureDefaults) {
  Json body = {{"location", "local"},
               {"properties", {{"tenantId", kTenant}, {"sku", {{"name", "premium"}}}}}};
  StatusOr<Vault> v = Parse(body);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->sku, "premium");
  EXPECT_EQ(v->soft_delete_retention_days, 90);
  EXPECT_FALSE(v->purge_protection);
  EXPECT_EQ(v->public_network_access, "Enabled");
  EXPECT_EQ(v->network_acls.default_action, "Allow");
  EXPECT_EQ(v->network_acls.bypass, "AzureServices");
  EXPECT_TRUE(v->access_policies.empty());
  EXPECT_EQ(v->tags, Json::object());
}

TEST(VaultFromArmTest, MemberNamesAndEnumValuesAreCaseInsensitive) {
  Json body = {{"Location", "local"},
               {"Properties",
                {{"TenantId", kTenant},
                 {"SKU", {{"Family", "a"}, {"Name", "STANDARD"}}},
                 {"EnablePurgeProtection", true},
                 {"accessPolicies",
                  {{{"tenantId", kTenant},
                    {"objectId", "AAAAAAAA-0000-4000-8000-000000000001"},
                    {"permissions", {{"keys", {"ALL"}}}}}}}}}};
  StatusOr<Vault> v = Parse(body);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->sku, "standard");
  EXPECT_TRUE(v->purge_protection);
  ASSERT_EQ(v->access_policies.size(), 1u);
  EXPECT_EQ(v->access_policies[0].object_id, kAlice);  // stored lower case
  EXPECT_EQ(v->access_policies[0].keys.size(), 20u);   // "all" expands
}

struct BadField {
  const char* pointer;  // a JSON pointer into GoodBody
  Json value;           // null: remove the member
  const char* expected_in_message;
};

class VaultFromArmNegativeTest : public ::testing::TestWithParam<BadField> {};

TEST_P(VaultFromArmNegativeTest, RefusesTheChangedFieldNamingIt) {
  const BadField& bad = GetParam();
  Json body = GoodBody();
  const Json::json_pointer pointer(bad.pointer);
  if (bad.value.is_null()) {
    body[pointer.parent_pointer()].erase(pointer.back());
  } else {
    body[pointer] = bad.value;
  }
  StatusOr<Vault> v = Parse(body);
  ASSERT_FALSE(v.ok()) << bad.pointer << " = " << bad.value.dump();
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << v.status();
  EXPECT_THAT(v.status().message(), HasSubstr(bad.expected_in_message)) << bad.pointer;
  EXPECT_FALSE(v.status().reason().empty());
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, VaultFromArmNegativeTest,
    ::testing::Values(
        BadField{"/location", nullptr, "location: is required"},
        BadField{"/location", 5, "location"}, BadField{"/location", "", "location"},
        BadField{"/tags", "x", "tags"}, BadField{"/tags/bad<name", "v", "tag name"},
        BadField{"/tags/env", 5, "tags.env"},
        BadField{"/tags/env", std::string(257, 'v'), "tags.env"},
        BadField{"/properties", nullptr, "properties: is required"},
        BadField{"/properties", Json::array(), "properties"},
        BadField{"/properties/tenantId", nullptr, "properties.tenantId"},
        BadField{"/properties/tenantId", "not-a-guid", "properties.tenantId"},
        BadField{"/properties/tenantId", kOtherTenant, "properties.tenantId: must be the tenant"},
        BadField{"/properties/sku", nullptr, "properties.sku"},
        BadField{"/properties/sku", "standard", "properties.sku"},
        BadField{"/properties/sku/name", "gold", "properties.sku.name"},
        BadField{"/properties/sku/name", nullptr, "properties.sku.name"},
        BadField{"/properties/sku/family", "B", "properties.sku.family"},
        BadField{"/properties/enableSoftDelete", false, "soft delete cannot be disabled"},
        BadField{"/properties/enableSoftDelete", "yes", "properties.enableSoftDelete"},
        BadField{"/properties/softDeleteRetentionInDays", 6, "7 to 90"},
        BadField{"/properties/softDeleteRetentionInDays", 91, "7 to 90"},
        BadField{"/properties/softDeleteRetentionInDays", -1, "7 to 90"},
        BadField{"/properties/softDeleteRetentionInDays", 30.5, "whole number"},
        BadField{"/properties/softDeleteRetentionInDays", "30", "whole number"},
        BadField{"/properties/softDeleteRetentionInDays", Json(18446744073709551615ULL), "7 to 90"},
        BadField{"/properties/enablePurgeProtection", false,
                 "The property \"enablePurgeProtection\" cannot be set to false"},
        BadField{"/properties/enablePurgeProtection", "true", "properties.enablePurgeProtection"},
        BadField{"/properties/enableRbacAuthorization", 1, "properties.enableRbacAuthorization"},
        BadField{"/properties/enabledForDeployment", "true", "properties.enabledForDeployment"},
        BadField{"/properties/publicNetworkAccess", "Sometimes", "properties.publicNetworkAccess"},
        BadField{"/properties/createMode", "restore", "properties.createMode"},
        BadField{"/properties/networkAcls", Json::array(), "properties.networkAcls"},
        BadField{"/properties/networkAcls/defaultAction", "Block",
                 "properties.networkAcls.defaultAction"},
        BadField{"/properties/networkAcls/bypass", "Everything", "properties.networkAcls.bypass"},
        BadField{"/properties/networkAcls/ipRules", Json::object(),
                 "properties.networkAcls.ipRules"},
        BadField{"/properties/networkAcls/ipRules/0", "203.0.113.7",
                 "properties.networkAcls.ipRules[0]"},
        BadField{"/properties/networkAcls/ipRules/0/value", "300.1.1.1", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "1.2.3.4/33", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "1.2.3.4/", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "1.2.3.4/ 24", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/1/value", "2001:db8::/129", "ipRules[1].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "not an ip", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "01.2.3.4", "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "::ffff:1.2.3.0/95",
                 "ipRules[0].value"},
        BadField{"/properties/networkAcls/ipRules/0/value", "fe80::1%eth0", "ipRules[0].value"},
        BadField{"/properties/networkAcls/virtualNetworkRules/0", Json::object(),
                 "virtualNetworkRules[0]"},
        BadField{"/properties/accessPolicies", Json::object(), "properties.accessPolicies"},
        BadField{"/properties/accessPolicies/0", "x", "properties.accessPolicies[0]"},
        BadField{"/properties/accessPolicies/0/tenantId", kOtherTenant,
                 "is not the vault's tenant"},
        BadField{"/properties/accessPolicies/0/tenantId", nullptr,
                 "properties.accessPolicies[0].tenantId"},
        BadField{"/properties/accessPolicies/0/objectId", "abc",
                 "properties.accessPolicies[0].objectId"},
        BadField{"/properties/accessPolicies/0/objectId", nullptr,
                 "properties.accessPolicies[0].objectId"},
        BadField{"/properties/accessPolicies/0/applicationId", "x",
                 "properties.accessPolicies[0].applicationId"},
        BadField{"/properties/accessPolicies/0/permissions", nullptr,
                 "properties.accessPolicies[0].permissions"},
        BadField{"/properties/accessPolicies/0/permissions/keys", "get",
                 "properties.accessPolicies[0].permissions.keys"},
        BadField{"/properties/accessPolicies/0/permissions/keys/1", "fly",
                 "properties.accessPolicies[0].permissions.keys[1]: unknown key permission "
                 "'fly'"},
        BadField{"/properties/accessPolicies/0/permissions/keys/0", 5,
                 "properties.accessPolicies[0].permissions.keys[0]"},
        BadField{"/properties/accessPolicies/0/permissions/secrets/0", "fly",
                 "properties.accessPolicies[0].permissions.secrets[0]"},
        BadField{"/properties/accessPolicies/0/permissions/certificates", Json({"get", "x"}),
                 "properties.accessPolicies[0].permissions.certificates[1]"},
        BadField{"/properties/accessPolicies/0/permissions/storage", Json({"teleport"}),
                 "properties.accessPolicies[0].permissions.storage[0]"}));

TEST(VaultFromArmTest, RefusesABodyThatIsNotAnObject) {
  StatusOr<Vault> v = Parse(Json::array());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().reason(), "InvalidRequestContent");
}

TEST(VaultFromArmTest, RefusesTheSameIdentityTwice) {
  Json body = GoodBody();
  body["properties"]["accessPolicies"].push_back(body["properties"]["accessPolicies"][0]);
  StatusOr<Vault> v = Parse(body);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("properties.accessPolicies[1]"));
  // The same user through an application is another identity.
  body["properties"]["accessPolicies"][1]["applicationId"] = kApp;
  EXPECT_TRUE(Parse(body).ok());
}

TEST(VaultFromArmTest, RefusesMoreThan1024Policies) {
  Json body = GoodBody();
  Json& list = body["properties"]["accessPolicies"];
  list = Json::array();
  for (int i = 0; i < 1025; ++i) {
    char oid[40];
    (void)std::snprintf(oid, sizeof(oid), "00000000-0000-4000-8000-%012d", i);
    list.push_back(
        {{"tenantId", kTenant}, {"objectId", oid}, {"permissions", {{"keys", {"get"}}}}});
  }
  StatusOr<Vault> v = Parse(body);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("at most 1024"));
  list.erase(list.size() - 1);
  EXPECT_TRUE(Parse(body).ok());
}

TEST(VaultFromArmTest, AcceptsEveryFormOfIpRule) {
  Json body = GoodBody();
  body["properties"]["networkAcls"]["ipRules"] =
      Json::parse(R"([{"value":"203.0.113.7"},{"value":"203.0.113.7/32"},{"value":"0.0.0.0/0"},
                      {"value":"::1"},{"value":"2001:db8::/48"},{"value":"::ffff:10.0.0.0/104"},
                      {"value":"10.1.2.3/8"}])");
  StatusOr<Vault> v = Parse(body);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->network_acls.ip_rules.size(), 7u);
}

// ---------------------------------------------------------------- updates

TEST(VaultFromArmTest, RetentionIsFixedOnceCreated) {
  Json body = GoodBody();
  EXPECT_TRUE(VaultFromArm(body, Existing()).ok());  // same value
  body["properties"]["softDeleteRetentionInDays"] = 60;
  StatusOr<Vault> v = VaultFromArm(body, Existing());
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("fixed when the vault is created"));
  body["properties"].erase("softDeleteRetentionInDays");
  v = VaultFromArm(body, Existing());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->soft_delete_retention_days, 30);  // absent: kept
}

TEST(VaultFromArmTest, PurgeProtectionStaysOnAndCannotBeSetFalse) {
  Vault protected_vault = Existing();
  protected_vault.purge_protection = true;
  Json body = GoodBody();
  StatusOr<Vault> v = VaultFromArm(body, protected_vault);  // absent: stays on
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->purge_protection);
  body["properties"]["enablePurgeProtection"] = false;
  v = VaultFromArm(body, protected_vault);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(),
              HasSubstr("The property \"enablePurgeProtection\" cannot be set to false. Enabling "
                        "the purge protection for a vault is an irreversible action."));
  body["properties"]["enablePurgeProtection"] = true;
  v = VaultFromArm(body, Existing());  // turned on by an update
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->purge_protection);
}

TEST(VaultFromArmTest, LocationCannotChangeButItsSpellingMay) {
  Vault existing = Existing();
  existing.location = "West US";
  Json body = GoodBody();
  body["location"] = "westus";
  StatusOr<Vault> v = VaultFromArm(body, existing);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->location, "West US");
  body["location"] = "eastus";
  v = VaultFromArm(body, existing);
  EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(v.status().reason(), "InvalidResourceLocation");
}

TEST(VaultFromArmTest, APutKeepsOmittedPropertiesButReplacesTags) {
  Json body = {{"location", "local"},
               {"properties", {{"tenantId", kTenant}, {"sku", {{"name", "premium"}}}}}};
  StatusOr<Vault> v = VaultFromArm(body, Existing());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->sku, "premium");
  EXPECT_EQ(v->access_policies.size(), 1u);
  EXPECT_EQ(v->network_acls.default_action, "Deny");
  EXPECT_EQ(v->tags, Json::object());
}

TEST(VaultPatchFromArmTest, MergesWhatIsGivenAndKeepsTheRest) {
  StatusOr<Vault> v = VaultPatchFromArm(Json::object(), Existing());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->access_policies, Existing().access_policies);
  EXPECT_EQ(v->tags, Existing().tags);

  Json patch = {
      {"properties",
       {{"networkAcls", {{"defaultAction", "Allow"}}}, {"enableRbacAuthorization", true}}}};
  v = VaultPatchFromArm(patch, Existing());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->network_acls.default_action, "Allow");
  EXPECT_EQ(v->network_acls.ip_rules.size(), 2u);  // kept
  EXPECT_TRUE(v->rbac_authorization);
  EXPECT_EQ(v->tags, Existing().tags);  // a PATCH without tags keeps them

  patch = {{"tags", {{"team", "red"}}}, {"properties", {{"accessPolicies", Json::array()}}}};
  v = VaultPatchFromArm(patch, Existing());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->access_policies.empty());
  EXPECT_EQ(v->tags, Json({{"team", "red"}}));
}

TEST(VaultPatchFromArmTest, AppliesTheSameValidation) {
  for (const Json& patch :
       {Json{{"properties", {{"softDeleteRetentionInDays", 7}}}},
        Json{{"properties", {{"enablePurgeProtection", false}}}},
        Json{{"properties", {{"enableSoftDelete", false}}}},
        Json{{"properties", {{"sku", {{"name", "free"}}}}}},
        Json{{"properties", {{"networkAcls", {{"ipRules", {{{"value", "1.2.3"}}}}}}}}},
        Json{{"location", "elsewhere"}}}) {
    EXPECT_FALSE(VaultPatchFromArm(patch, Existing()).ok()) << patch.dump();
  }
}

TEST(CreateModeOfTest, DefaultRecoverOrRefused) {
  EXPECT_EQ(*CreateModeOf(GoodBody()), CreateMode::kDefault);
  EXPECT_EQ(*CreateModeOf(Json::object()), CreateMode::kDefault);
  Json body = GoodBody();
  body["properties"]["createMode"] = "Recover";
  EXPECT_EQ(*CreateModeOf(body), CreateMode::kRecover);
  body["properties"]["createMode"] = "undelete";
  EXPECT_EQ(CreateModeOf(body).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateModeOf(Json("x")).status().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- names, tags, permissions

TEST(ValidateVaultNameTest, FollowsAzureRules) {
  for (const char* good : {"abc", "a-b-c", "A1b2", "kv-0123456789abcdef-xyz"}) {
    EXPECT_TRUE(ValidateVaultName(good).ok()) << good;
  }
  for (const char* bad : {"", "ab", "abcdefghijklmnopqrstuvwxy", "1abc", "-abc", "abc-", "a--b",
                          "ab_c", "ab.c", "ab c", "\xc3\xa9tude"}) {
    Status s = ValidateVaultName(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.reason(), "VaultNameNotValid") << bad;
  }
}

TEST(ValidateArmTagsTest, EnforcesArmLimits) {
  EXPECT_TRUE(ValidateArmTags({{"a", "b"}, {"empty", ""}}).ok());
  Json many = Json::object();
  for (int i = 0; i < 51; ++i) many["t" + std::to_string(i)] = "v";
  EXPECT_FALSE(ValidateArmTags(many).ok());
  for (const char* name : {"a/b", "a?b", "a%b", "a&b", "a<b", "a>b", "a\\b", "a\nb"}) {
    EXPECT_FALSE(ValidateArmTags({{name, "v"}}).ok()) << name;
  }
  EXPECT_FALSE(ValidateArmTags({{std::string(513, 'n'), "v"}}).ok());
  EXPECT_FALSE(ValidateArmTags({{"a", std::string(257, 'v')}}).ok());
  EXPECT_FALSE(ValidateArmTags({{"a", Json::array()}}).ok());
}

TEST(KeyPermissionTest, NamesRoundTripCaseInsensitively) {
  int count = 0;
  for (int i = 1; i <= 20; ++i) {
    const auto p = static_cast<KeyPermission>(i);
    std::string name(KeyPermissionName(p));
    EXPECT_EQ(ParseKeyPermission(name), p) << name;
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(ParseKeyPermission(name), p) << name;
    ++count;
  }
  EXPECT_EQ(count, 20);
  EXPECT_EQ(KeyPermissionName(KeyPermission::kWrapKey), "wrapKey");
  EXPECT_EQ(KeyPermissionName(KeyPermission::kGetRotationPolicy), "getrotationpolicy");
  EXPECT_FALSE(ParseKeyPermission("all"));
  EXPECT_FALSE(ParseKeyPermission("wrap"));
  EXPECT_FALSE(ParseKeyPermission(""));
}

// ---------------------------------------------------------------- access policy updates

TEST(AccessPolicyUpdateTest, AddMergesPermissionsPerIdentity) {
  Vault v = NewVault();
  v.access_policies = {Policy(kAlice, {KeyPermission::kGet}, {{"secrets", {"get"}}})};
  ASSERT_TRUE(ApplyAccessPolicyUpdate(
                  v, AccessPolicyUpdateKind::kAdd,
                  {Policy(kAlice, {KeyPermission::kWrapKey}, {{"secrets", {"GET", "list"}}}),
                   Policy(kBob, {KeyPermission::kSign}),
                   Policy(kAlice, {KeyPermission::kDecrypt}, Json::object(), kApp)})
                  .ok());
  ASSERT_EQ(v.access_policies.size(), 3u);
  EXPECT_EQ(v.access_policies[0].keys,
            (std::set<KeyPermission>{KeyPermission::kGet, KeyPermission::kWrapKey}));
  EXPECT_EQ(v.access_policies[0].other_permissions, Json({{"secrets", {"get", "list"}}}));
  EXPECT_EQ(v.access_policies[1].object_id, kBob);
  EXPECT_EQ(v.access_policies[2].application_id, kApp);  // a compound identity is its own
}

TEST(AccessPolicyUpdateTest, ReplaceReplacesTheWholeList) {
  Vault v = NewVault();
  v.access_policies = {Policy(kAlice, {KeyPermission::kGet}), Policy(kBob, {KeyPermission::kGet})};
  ASSERT_TRUE(ApplyAccessPolicyUpdate(v, AccessPolicyUpdateKind::kReplace,
                                      {Policy(kBob, {KeyPermission::kSign})})
                  .ok());
  ASSERT_EQ(v.access_policies.size(), 1u);
  EXPECT_EQ(v.access_policies[0].object_id, kBob);
  EXPECT_EQ(v.access_policies[0].keys, std::set<KeyPermission>{KeyPermission::kSign});
}

TEST(AccessPolicyUpdateTest, RemoveSubtractsAndDropsEmptiedPolicies) {
  Vault v = NewVault();
  v.access_policies = {
      Policy(kAlice, {KeyPermission::kGet, KeyPermission::kWrapKey}, {{"secrets", {"get"}}}),
      Policy(kBob, {KeyPermission::kGet}),
      Policy(kAlice, {KeyPermission::kGet}, Json::object(), kApp)};
  ASSERT_TRUE(ApplyAccessPolicyUpdate(
                  v, AccessPolicyUpdateKind::kRemove,
                  {Policy(kAlice, {KeyPermission::kWrapKey}, {{"secrets", {"GET"}}}),
                   Policy(kBob, {KeyPermission::kGet}),
                   Policy("dddddddd-0000-4000-8000-000000000004", {KeyPermission::kGet})})
                  .ok());
  ASSERT_EQ(v.access_policies.size(), 2u);
  EXPECT_EQ(v.access_policies[0].object_id, kAlice);
  EXPECT_EQ(v.access_policies[0].keys, std::set<KeyPermission>{KeyPermission::kGet});
  EXPECT_EQ(v.access_policies[0].other_permissions, Json({{"secrets", Json::array()}}));
  EXPECT_EQ(v.access_policies[1].application_id, kApp);  // other identity untouched

  // An identity listed without permissions loses its whole policy.
  ASSERT_TRUE(
      ApplyAccessPolicyUpdate(v, AccessPolicyUpdateKind::kRemove, {Policy(kAlice, {})}).ok());
  ASSERT_EQ(v.access_policies.size(), 1u);
  EXPECT_EQ(v.access_policies[0].application_id, kApp);
}

TEST(AccessPolicyUpdateTest, AddBeyond1024IsRefusedAndChangesNothing) {
  Vault v = NewVault();
  std::vector<AccessPolicy> many;
  for (int i = 0; i < 1024; ++i) {
    char oid[40];
    (void)std::snprintf(oid, sizeof(oid), "00000000-0000-4000-8000-%012d", i);
    many.push_back(Policy(oid, {KeyPermission::kGet}));
  }
  ASSERT_TRUE(ApplyAccessPolicyUpdate(v, AccessPolicyUpdateKind::kReplace, many).ok());
  Status s = ApplyAccessPolicyUpdate(v, AccessPolicyUpdateKind::kAdd,
                                     {Policy(kAlice, {KeyPermission::kGet})});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(v.access_policies.size(), 1024u);
}

TEST(AccessPoliciesFromArmTest, ParsesAndValidates) {
  Json body = {{"properties",
                {{"accessPolicies",
                  {{{"tenantId", kTenant},
                    {"objectId", kBob},
                    {"permissions", {{"keys", {"get", "unwrapKey"}}}}}}}}}};
  StatusOr<std::vector<AccessPolicy>> policies = AccessPoliciesFromArm(body, kTenant);
  ASSERT_TRUE(policies.ok()) << policies.status();
  ASSERT_EQ(policies->size(), 1u);
  EXPECT_EQ((*policies)[0].keys,
            (std::set<KeyPermission>{KeyPermission::kGet, KeyPermission::kUnwrapKey}));
  EXPECT_FALSE(AccessPoliciesFromArm(body, kOtherTenant).ok());
  EXPECT_FALSE(AccessPoliciesFromArm(Json::object(), kTenant).ok());
  EXPECT_FALSE(AccessPoliciesFromArm({{"properties", Json::object()}}, kTenant).ok());
  EXPECT_EQ(AccessPoliciesFromArm(Json::array(), kTenant).status().reason(),
            "InvalidRequestContent");
}

TEST(AccessPolicyUpdateTest, KindsParseCaseInsensitively) {
  EXPECT_EQ(ParseAccessPolicyUpdateKind("add"), AccessPolicyUpdateKind::kAdd);
  EXPECT_EQ(ParseAccessPolicyUpdateKind("Replace"), AccessPolicyUpdateKind::kReplace);
  EXPECT_EQ(ParseAccessPolicyUpdateKind("REMOVE"), AccessPolicyUpdateKind::kRemove);
  EXPECT_FALSE(ParseAccessPolicyUpdateKind("merge"));
}

TEST(PolicyGrantsTest, OnlyTheNamedPermissionOfTheNamedObject) {
  Vault v = NewVault();
  v.access_policies = {Policy(kAlice, {KeyPermission::kGet, KeyPermission::kUnwrapKey}),
                       Policy(kBob, {KeyPermission::kSign}, Json::object(), kApp)};
  EXPECT_TRUE(PolicyGrants(v, kAlice, KeyPermission::kUnwrapKey));
  EXPECT_TRUE(PolicyGrants(v, "AAAAAAAA-0000-4000-8000-000000000001", KeyPermission::kGet));
  EXPECT_FALSE(PolicyGrants(v, kAlice, KeyPermission::kWrapKey));
  EXPECT_FALSE(PolicyGrants(v, kBob, KeyPermission::kSign));  // compound: app + user only
  EXPECT_FALSE(PolicyGrants(v, kApp, KeyPermission::kSign));
}

// ---------------------------------------------------------------- firewall

Vault Firewalled(std::vector<std::string> rules, std::string bypass = "AzureServices") {
  Vault v = NewVault("fw-vault");
  v.location = "local";
  v.network_acls.default_action = "Deny";
  v.network_acls.bypass = std::move(bypass);
  for (auto& r : rules) v.network_acls.ip_rules.push_back({std::move(r)});
  return v;
}

bool Admits(const Vault& v, const std::string& address, bool trusted = false) {
  return CheckFirewall(v, {.client_address = address, .trusted_service = trusted, .caller = ""})
      .ok();
}

TEST(CheckFirewallTest, DefaultAllowAdmitsEveryone) {
  Vault v = NewVault();
  EXPECT_TRUE(Admits(v, "203.0.113.7"));
  EXPECT_TRUE(Admits(v, "not-an-address"));
}

TEST(CheckFirewallTest, DenyAdmitsOnlyMatchingIpv4Ranges) {
  Vault v = Firewalled({"203.0.113.0/24", "198.51.100.7", "10.16.0.0/12", "192.0.2.128/25"});
  EXPECT_TRUE(Admits(v, "203.0.113.0"));
  EXPECT_TRUE(Admits(v, "203.0.113.255"));
  EXPECT_FALSE(Admits(v, "203.0.114.1"));
  EXPECT_TRUE(Admits(v, "198.51.100.7"));
  EXPECT_FALSE(Admits(v, "198.51.100.8"));
  EXPECT_TRUE(Admits(v, "10.31.255.255"));  // /12 ends mid-octet
  EXPECT_FALSE(Admits(v, "10.32.0.0"));
  EXPECT_FALSE(Admits(v, "10.15.255.255"));
  EXPECT_TRUE(Admits(v, "192.0.2.200"));
  EXPECT_FALSE(Admits(v, "192.0.2.127"));
  EXPECT_FALSE(Admits(v, "2001:db8::1"));
  EXPECT_FALSE(Admits(v, "garbage"));
  EXPECT_FALSE(Admits(v, ""));
}

TEST(CheckFirewallTest, HostBitsBeyondThePrefixAreIgnored) {
  Vault v = Firewalled({"203.0.113.77/24"});
  EXPECT_TRUE(Admits(v, "203.0.113.1"));
}

TEST(CheckFirewallTest, ZeroPrefixMatchesItsFamilyOnly) {
  Vault v4 = Firewalled({"0.0.0.0/0"});
  EXPECT_TRUE(Admits(v4, "1.2.3.4"));
  EXPECT_FALSE(Admits(v4, "2001:db8::1"));
  Vault v6 = Firewalled({"::/0"});
  EXPECT_TRUE(Admits(v6, "2001:db8::1"));
  EXPECT_FALSE(Admits(v6, "1.2.3.4"));
}

TEST(CheckFirewallTest, Ipv6RangesAndAddresses) {
  Vault v = Firewalled({"2001:db8::/32", "::1", "2001:db8:ffff:ff80::/57"});
  EXPECT_TRUE(Admits(v, "2001:db8:1::5"));
  EXPECT_TRUE(Admits(v, "2001:DB8::"));
  EXPECT_FALSE(Admits(v, "2001:db9::1"));
  EXPECT_TRUE(Admits(v, "::1"));
  EXPECT_FALSE(Admits(v, "::2"));
  EXPECT_FALSE(Admits(v, "127.0.0.1"));
}

TEST(CheckFirewallTest, Ipv4MappedAddressesCompareAsIpv4) {
  Vault v = Firewalled({"127.0.0.0/8"});
  EXPECT_TRUE(Admits(v, "::ffff:127.0.0.1"));
  EXPECT_TRUE(Admits(v, "::FFFF:7f00:1"));
  EXPECT_FALSE(Admits(v, "::ffff:128.0.0.1"));
  Vault mapped_rule = Firewalled({"::ffff:10.0.0.0/104"});  // = 10.0.0.0/8
  EXPECT_TRUE(Admits(mapped_rule, "10.1.2.3"));
  EXPECT_TRUE(Admits(mapped_rule, "::ffff:10.9.9.9"));
  EXPECT_FALSE(Admits(mapped_rule, "11.0.0.1"));
}

TEST(CheckFirewallTest, TrustedServicesPassOnlyWithTheAzureServicesBypass) {
  EXPECT_TRUE(Admits(Firewalled({}), "203.0.113.7", /*trusted=*/true));
  EXPECT_FALSE(Admits(Firewalled({}, "None"), "203.0.113.7", /*trusted=*/true));
}

TEST(CheckFirewallTest, DeniedWithAzuresMessageAndReason) {
  Vault v = Firewalled({"10.0.0.0/8"});
  Status s = CheckFirewall(v, {.client_address = "203.0.113.7",
                               .trusted_service = false,
                               .caller = "appid=a;oid=b;iss=https://x/"});
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.reason(), "ForbiddenByFirewall");
  EXPECT_EQ(s.message(),
            "Client address is not authorized and caller is not a trusted service.\r\n"
            "Client address: 203.0.113.7\r\nCaller: appid=a;oid=b;iss=https://x/\r\n"
            "Vault: fw-vault;location=local");
  s = CheckFirewall(v, {.client_address = "203.0.113.7", .trusted_service = false, .caller = ""});
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("Caller:")));
}

TEST(CheckFirewallTest, DisabledPublicAccessAdmitsTrustedServicesOnly) {
  Vault v = NewVault("closed");
  v.public_network_access = "Disabled";
  v.network_acls.ip_rules.push_back({"203.0.113.0/24"});
  Status s =
      CheckFirewall(v, {.client_address = "203.0.113.7", .trusted_service = false, .caller = ""});
  EXPECT_EQ(s.reason(), "ForbiddenByFirewall");
  EXPECT_THAT(s.message(), HasSubstr("Public network access is disabled"));
  EXPECT_TRUE(Admits(v, "203.0.113.7", /*trusted=*/true));
  v.network_acls.bypass = "None";
  EXPECT_FALSE(Admits(v, "203.0.113.7", /*trusted=*/true));
}

// ---------------------------------------------------------------- output

TEST(VaultToArmTest, HasArmsShapeAndRoundTrips) {
  Vault v = Existing();
  v.created_at = kStart;
  v.updated_at = kStart + 60;
  Json arm = VaultToArm(v, "https://kv-test1.vault.localhost:8443/");
  EXPECT_EQ(arm["id"], std::string("/subscriptions/") + kSubscription +
                           "/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-test1");
  EXPECT_EQ(arm["name"], "kv-test1");
  EXPECT_EQ(arm["type"], "Microsoft.KeyVault/vaults");
  EXPECT_EQ(arm["location"], "local");
  EXPECT_EQ(arm["tags"], Json({{"env", "test"}}));
  EXPECT_EQ(arm["systemData"]["createdAt"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(arm["systemData"]["lastModifiedAt"], "2023-11-14T22:14:20Z");
  const Json& p = arm["properties"];
  EXPECT_EQ(p["sku"], Json({{"family", "A"}, {"name", "standard"}}));
  EXPECT_EQ(p["tenantId"], kTenant);
  EXPECT_EQ(p["vaultUri"], "https://kv-test1.vault.localhost:8443/");
  EXPECT_EQ(p["provisioningState"], "Succeeded");
  EXPECT_EQ(p["enableSoftDelete"], true);
  EXPECT_EQ(p["softDeleteRetentionInDays"], 30);
  EXPECT_FALSE(p.contains("enablePurgeProtection"));  // ARM leaves it out until it is on
  EXPECT_EQ(p["enabledForDeployment"], true);
  EXPECT_EQ(p["publicNetworkAccess"], "Enabled");
  EXPECT_EQ(p["networkAcls"]["defaultAction"], "Deny");
  EXPECT_EQ(p["networkAcls"]["ipRules"][0], Json({{"value", "203.0.113.0/24"}}));
  EXPECT_EQ(p["accessPolicies"][0]["permissions"]["keys"], Json({"wrapKey", "unwrapKey", "get"}));
  EXPECT_EQ(p["accessPolicies"][0]["permissions"]["secrets"], Json({"get"}));
  EXPECT_FALSE(p["accessPolicies"][0].contains("applicationId"));

  // What GET returns is a PUT body that changes nothing.
  StatusOr<Vault> again = VaultFromArm(arm, v);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->access_policies, v.access_policies);
  EXPECT_EQ(again->network_acls, v.network_acls);
  EXPECT_EQ(again->extra_properties, v.extra_properties);
  EXPECT_EQ(again->tags, v.tags);

  v.purge_protection = true;
  EXPECT_EQ(VaultToArm(v, "u")["properties"]["enablePurgeProtection"], true);
}

TEST(VaultTest, RecoveryLevelAndScheduledPurgeDate) {
  Vault v = NewVault();
  EXPECT_EQ(v.RecoveryLevel(), "Recoverable+Purgeable");
  v.purge_protection = true;
  EXPECT_EQ(v.RecoveryLevel(), "Recoverable");
  v.soft_delete_retention_days = 7;
  EXPECT_EQ(v.RecoveryLevel(), "CustomizedRecoverable");
  v.purge_protection = false;
  EXPECT_EQ(v.RecoveryLevel(), "CustomizedRecoverable+Purgeable");
  EXPECT_EQ(v.ScheduledPurgeDate(kStart), kStart + int64_t{7} * 86400);
}

TEST(DeletedVaultToArmTest, HasArmsShape) {
  Vault v = Existing();
  v.location = "West US";
  v.deleted_at = kStart;
  v.purge_protection = true;
  Json arm = DeletedVaultToArm(v);
  EXPECT_EQ(arm["id"], std::string("/subscriptions/") + kSubscription +
                           "/providers/Microsoft.KeyVault/locations/westus/deletedVaults/kv-test1");
  EXPECT_EQ(arm["type"], "Microsoft.KeyVault/deletedVaults");
  EXPECT_EQ(arm["properties"]["vaultId"], v.ResourceId());
  EXPECT_EQ(arm["properties"]["location"], "West US");
  EXPECT_EQ(arm["properties"]["deletionDate"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(arm["properties"]["scheduledPurgeDate"], "2023-12-14T22:13:20Z");
  EXPECT_EQ(arm["properties"]["purgeProtectionEnabled"], true);
  EXPECT_EQ(arm["properties"]["tags"], Json({{"env", "test"}}));
}

// ---------------------------------------------------------------- VaultStore on SQLite

class VaultStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    vaults_.reset();
    store_.reset();
    auto store = storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    vaults_ = std::make_unique<VaultStore>(*store_, clock_);
  }

  Vault Created(std::string name = "kv-test1", std::string group = "rg1") {
    Vault v = NewVault(std::move(name), std::move(group));
    v.location = "local";
    bool created = false;
    StatusOr<Vault> stored = vaults_->Put(v, &created);
    EXPECT_TRUE(stored.ok()) << stored.status();
    EXPECT_TRUE(created);
    return stored.ok() ? *stored : Vault{};
  }

  testutil::ScopedTempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(std::chrono::seconds(kStart))};
  std::unique_ptr<storage::SqliteMetadataStore> store_;
  std::unique_ptr<VaultStore> vaults_;
};

TEST_F(VaultStoreTest, PutCreatesAndGetFindsCaseInsensitively) {
  Vault created = Created("KV-Test1");
  EXPECT_EQ(created.created_at, kStart);
  EXPECT_EQ(created.updated_at, kStart);
  EXPECT_EQ(created.created_by, kAlice);
  StatusOr<Vault> got = vaults_->Get("kv-test1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name, "KV-Test1");
  EXPECT_EQ(got->tenant_id, kTenant);
  EXPECT_FALSE(got->deleted_at);
  EXPECT_EQ(vaults_->Get("nope").status().reason(), "VaultNotFound");
  EXPECT_EQ(vaults_->Get("bad_name").status().code(), StatusCode::kNotFound);
}

TEST_F(VaultStoreTest, EveryFieldSurvivesStorageAndReopening) {
  Vault v = Existing();
  v.purge_protection = true;
  v.rbac_authorization = true;
  v.access_policies.push_back(Policy(kBob, {KeyPermission::kSign}, Json::object(), kApp));
  ASSERT_TRUE(vaults_->Put(v).ok());
  Open();
  StatusOr<Vault> got = vaults_->Get(v.name);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->location, v.location);
  EXPECT_EQ(got->tags, v.tags);
  EXPECT_EQ(got->sku, v.sku);
  EXPECT_EQ(got->soft_delete_retention_days, 30);
  EXPECT_TRUE(got->purge_protection);
  EXPECT_TRUE(got->rbac_authorization);
  EXPECT_EQ(got->access_policies, v.access_policies);
  EXPECT_EQ(got->network_acls, v.network_acls);
  EXPECT_EQ(got->public_network_access, v.public_network_access);
  EXPECT_EQ(got->extra_properties, v.extra_properties);
}

TEST_F(VaultStoreTest, PutReplacesInItsGroupAndKeepsCreation) {
  Created("kv-test1");
  clock_.Advance(std::chrono::seconds(10));
  Vault update = NewVault("KV-TEST1");
  update.location = "local";
  update.sku = "premium";
  update.updated_by = kBob;
  update.created_by = kBob;
  bool created = true;
  StatusOr<Vault> stored = vaults_->Put(update, &created);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_FALSE(created);
  EXPECT_EQ(stored->name, "kv-test1");  // as first created
  EXPECT_EQ(stored->sku, "premium");
  EXPECT_EQ(stored->created_at, kStart);
  EXPECT_EQ(stored->created_by, kAlice);
  EXPECT_EQ(stored->updated_at, kStart + 10);
  EXPECT_EQ(stored->updated_by, kBob);
}

TEST_F(VaultStoreTest, NameTakenInAnotherGroupConflicts) {
  Created("kv-test1", "rg1");
  Vault other = NewVault("kv-test1", "rg2");
  other.location = "local";
  StatusOr<Vault> stored = vaults_->Put(other);
  EXPECT_EQ(stored.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(stored.status().reason(), "VaultAlreadyExists");
  EXPECT_EQ(vaults_->Get("kv-test1")->resource_group, "rg1");
}

TEST_F(VaultStoreTest, PutEnforcesOneWayAndCreationOnlyFields) {
  Vault v = Created();
  v.purge_protection = true;
  ASSERT_TRUE(vaults_->Put(v).ok());
  v.purge_protection = false;
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);
  v.purge_protection = true;
  v.soft_delete_retention_days = 45;
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);
  StatusOr<Vault> got = vaults_->Get(v.name);
  EXPECT_TRUE(got->purge_protection);
  EXPECT_EQ(got->soft_delete_retention_days, 90);
}

TEST_F(VaultStoreTest, PutValidatesTheWholeVault) {
  Vault v = NewVault("ab");
  v.location = "local";
  EXPECT_EQ(vaults_->Put(v).status().reason(), "VaultNameNotValid");
  v = NewVault();
  v.location = "local";
  v.tenant_id = "tenant";
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);
  v = NewVault();
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);  // no location
  v.location = "local";
  v.network_acls.ip_rules.push_back({"1.2.3.4/40"});
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);
  v = NewVault();
  v.location = "local";
  v.access_policies.push_back(Policy(kAlice, {}));
  v.access_policies.back().tenant_id = kOtherTenant;
  EXPECT_EQ(vaults_->Put(v).status().code(), StatusCode::kInvalidArgument);
  StatusOr<std::vector<Vault>> all = vaults_->List(false);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

TEST_F(VaultStoreTest, UpdateIsAReadModifyWriteOfALiveVault) {
  Created();
  clock_.Advance(std::chrono::seconds(5));
  StatusOr<Vault> updated = vaults_->Update("KV-test1", [](Vault& v) {
    v.rbac_authorization = true;
    v.resource_group = "elsewhere";  // ignored: identity fields stay
    v.name = "renamed";
    return OkStatus();
  });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_TRUE(updated->rbac_authorization);
  EXPECT_EQ(updated->name, "kv-test1");
  EXPECT_EQ(updated->resource_group, "rg1");
  EXPECT_EQ(updated->updated_at, kStart + 5);
  EXPECT_TRUE(vaults_->Get("kv-test1")->rbac_authorization);

  StatusOr<Vault> failed = vaults_->Update("kv-test1", [](Vault& v) {
    v.sku = "basic";
    return InvalidArgumentError("nope");
  });
  EXPECT_EQ(failed.status().message(), "nope");
  EXPECT_EQ(vaults_->Get("kv-test1")->sku, "standard");
  EXPECT_EQ(vaults_
                ->Update("kv-test1",
                         [](Vault& v) {
                           v.soft_delete_retention_days = 7;
                           return OkStatus();
                         })
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(vaults_->Update("missing", [](Vault&) { return OkStatus(); }).status().reason(),
            "VaultNotFound");
}

TEST_F(VaultStoreTest, SoftDeleteRecoverAndPurge) {
  Created();
  clock_.Advance(std::chrono::seconds(100));
  StatusOr<Vault> deleted = vaults_->Delete("kv-test1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted_at, kStart + 100);
  EXPECT_EQ(vaults_->Get("kv-test1").status().reason(), "VaultNotFound");
  EXPECT_TRUE(vaults_->GetAny("kv-test1")->deleted_at.has_value());
  EXPECT_EQ(vaults_->Delete("kv-test1").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(vaults_->List(false)->empty());
  ASSERT_EQ(vaults_->List(true)->size(), 1u);
  EXPECT_EQ(vaults_->Update("kv-test1", [](Vault&) { return OkStatus(); }).status().code(),
            StatusCode::kNotFound);

  // The name stays taken until the vault is recovered or purged.
  Vault again = NewVault("kv-test1");
  again.location = "local";
  EXPECT_EQ(vaults_->Put(again).status().reason(), "ConflictError");

  StatusOr<Vault> recovered = vaults_->Recover("kv-test1");
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_FALSE(recovered->deleted_at);
  EXPECT_TRUE(vaults_->Get("kv-test1").ok());
  EXPECT_EQ(vaults_->Recover("kv-test1").status().reason(), "DeletedVaultNotFound");
  EXPECT_EQ(vaults_->Purge("kv-test1").code(), StatusCode::kNotFound);  // live: not purgeable

  ASSERT_TRUE(vaults_->Delete("kv-test1").ok());
  EXPECT_TRUE(vaults_->CanPurge("kv-test1").ok());
  ASSERT_TRUE(vaults_->Purge("kv-test1").ok());
  EXPECT_EQ(vaults_->GetAny("kv-test1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(vaults_->Purge("kv-test1").code(), StatusCode::kNotFound);
  Created("kv-test1");  // the name is free again
}

TEST_F(VaultStoreTest, PurgeProtectionRefusesPurgeUntilTheScheduledDate) {
  Vault v = Created();
  v.purge_protection = true;
  ASSERT_TRUE(vaults_->Put(v).ok());
  ASSERT_TRUE(vaults_->Delete(v.name).ok());
  Status refused = vaults_->Purge(v.name);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.reason(), "MethodNotAllowed");
  EXPECT_THAT(refused.message(), HasSubstr("2024-02-12T22:13:20Z"));  // deleted + 90 days
  EXPECT_EQ(vaults_->CanPurge(v.name).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(vaults_->GetAny(v.name).ok());
  clock_.Advance(std::chrono::hours(int64_t{24} * 90));
  EXPECT_TRUE(vaults_->CanPurge(v.name).ok());
  EXPECT_TRUE(vaults_->Purge(v.name).ok());
}

TEST_F(VaultStoreTest, ListsLiveOrDeletedInNameOrder) {
  Created("zeta");
  Created("Alpha");
  Created("mid");
  ASSERT_TRUE(vaults_->Delete("mid").ok());
  StatusOr<std::vector<Vault>> live = vaults_->List(false);
  ASSERT_TRUE(live.ok());
  ASSERT_EQ(live->size(), 2u);
  EXPECT_EQ((*live)[0].name, "Alpha");
  EXPECT_EQ((*live)[1].name, "zeta");
  StatusOr<std::vector<Vault>> deleted = vaults_->List(true);
  ASSERT_EQ(deleted->size(), 1u);
  EXPECT_EQ((*deleted)[0].name, "mid");
}

TEST_F(VaultStoreTest, ACorruptRecordIsDataLoss) {
  ASSERT_TRUE(store_
                  ->Write([](storage::Transaction& tx) {
                    return tx.Put("kv_vaults", "broken", AsBytes(R"({"v":1,"name":"broken"})"));
                  })
                  .ok());
  EXPECT_EQ(vaults_->Get("broken").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(vaults_->List(false).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace keyfoundry::keyvault
