#include "identity/authorization.h"

#include <gtest/gtest.h>

#include <set>

#include "identity/ids.h"
#include "identity/test_util.h"

namespace keyfoundry::identity {
namespace {

using nlohmann::json;

const std::string kSub = "/subscriptions/00000000-1111-2222-3333-444444444444";
const std::string kRg = kSub + "/resourceGroups/rg1";
const std::string kOtherRg = kSub + "/resourceGroups/rg2";
const std::string kVault = kRg + "/providers/Microsoft.KeyVault/vaults/v1";
const std::string kSiblingVault = kRg + "/providers/Microsoft.KeyVault/vaults/v2";
const std::string kPrefixVault = kRg + "/providers/Microsoft.KeyVault/vaults/v10";
const std::string kAccount = kRg + "/providers/Microsoft.CognitiveServices/accounts/a1";

constexpr std::string_view kAlice = "11111111-1111-1111-1111-111111111111";
constexpr std::string_view kBob = "22222222-2222-2222-2222-222222222222";

constexpr std::string_view kUnwrap = "Microsoft.KeyVault/vaults/keys/unwrap/action";
constexpr std::string_view kWrap = "Microsoft.KeyVault/vaults/keys/wrap/action";
constexpr std::string_view kKeyRead = "Microsoft.KeyVault/vaults/keys/read";
constexpr std::string_view kDecrypt = "Microsoft.KeyVault/vaults/keys/decrypt/action";
constexpr std::string_view kKeyCreate = "Microsoft.KeyVault/vaults/keys/create/action";
constexpr std::string_view kVaultWrite = "Microsoft.KeyVault/vaults/write";
constexpr std::string_view kVaultRead = "Microsoft.KeyVault/vaults/read";
constexpr std::string_view kAssignmentWrite = "Microsoft.Authorization/roleAssignments/write";
constexpr std::string_view kChat =
    "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action";

const RoleDefinition& Role(std::string_view id) {
  const RoleDefinition* role = FindRoleDefinition(id);
  EXPECT_NE(role, nullptr) << id;
  return *role;
}

bool Grants(std::string_view role, std::string_view action, ActionType type) {
  return RoleGrants(Role(role), action, type);
}

// --- role definitions

TEST(RoleDefinitionsTest, BuiltInRolesHaveAzuresIdsAndNames) {
  const std::pair<std::string_view, std::string_view> expected[] = {
      {"8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"},
      {"b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"},
      {"acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"},
      {"00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator"},
      {"14b46e9e-c2b7-41b4-b07b-48a6ebf60603", "Key Vault Crypto Officer"},
      {"12338af0-0e69-4776-bea7-57ae8d297424", "Key Vault Crypto User"},
      {"e147488a-f6f5-4113-8e2d-b22465e65bf6", "Key Vault Crypto Service Encryption User"},
      {"21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader"},
      {"25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68", "Cognitive Services Contributor"},
      {"a97b65f3-24c7-4388-baec-2e87135dc908", "Cognitive Services User"},
  };
  ASSERT_EQ(BuiltInRoleDefinitions().size(), std::size(expected));
  for (const auto& [id, name] : expected) {
    const RoleDefinition* role = FindRoleDefinition(id);
    ASSERT_NE(role, nullptr) << name;
    EXPECT_EQ(role->name, name);
    EXPECT_EQ(FindRoleDefinitionByName(name), role);
    EXPECT_FALSE(role->description.empty());
  }
}

TEST(RoleDefinitionsTest, FindAcceptsArmIdsInAnyCase) {
  const RoleDefinition* reader = FindRoleDefinition(role_ids::kReader);
  EXPECT_EQ(FindRoleDefinition("ACDD72A7-3385-48EF-BD42-F606FBA81AE7"), reader);
  EXPECT_EQ(FindRoleDefinition(
                "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-"
                "f606fba81ae7"),
            reader);
  EXPECT_EQ(FindRoleDefinition(kSub + "/providers/microsoft.authorization/roledefinitions/"
                                      "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            reader);
  EXPECT_EQ(FindRoleDefinition("00000000-0000-0000-0000-000000000000"), nullptr);
  EXPECT_EQ(FindRoleDefinition("Reader"), nullptr);
  EXPECT_EQ(FindRoleDefinition(kRg + "/providers/Microsoft.Authorization/roleDefinitions/"
                                     "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            nullptr);
  EXPECT_EQ(FindRoleDefinition("/x/acdd72a7-3385-48ef-bd42-f606fba81ae7"), nullptr);
  EXPECT_EQ(FindRoleDefinitionByName("key vault crypto user"),
            FindRoleDefinition(role_ids::kKeyVaultCryptoUser));
  EXPECT_EQ(FindRoleDefinitionByName("Key Vault"), nullptr);
}

TEST(ActionMatchesTest, Wildcards) {
  EXPECT_TRUE(ActionMatches("*", "Microsoft.KeyVault/vaults/write"));
  EXPECT_TRUE(ActionMatches("*/read", "Microsoft.KeyVault/vaults/read"));
  EXPECT_FALSE(ActionMatches("*/read", "Microsoft.KeyVault/vaults/write"));
  EXPECT_TRUE(ActionMatches("Microsoft.KeyVault/vaults/*/read", kKeyRead));
  EXPECT_FALSE(ActionMatches("Microsoft.KeyVault/vaults/*/read", kVaultRead));
  EXPECT_TRUE(ActionMatches("Microsoft.KeyVault/vaults/keys/*", kUnwrap));
  EXPECT_TRUE(ActionMatches("microsoft.keyvault/VAULTS/keys/WRAP/action", kWrap));
  EXPECT_TRUE(ActionMatches("Microsoft.Authorization/*/Write", kAssignmentWrite));
  EXPECT_FALSE(ActionMatches("Microsoft.KeyVault/vaults/keys/read", kUnwrap));
  EXPECT_FALSE(ActionMatches("Microsoft.KeyVault/vaults/keys", kKeyRead));
  EXPECT_FALSE(ActionMatches("", "x"));
  EXPECT_TRUE(ActionMatches("", ""));
  EXPECT_TRUE(ActionMatches("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(ActionMatches("a*b*c", "aXXbYYcd"));
  // No exponential backtracking.
  EXPECT_FALSE(ActionMatches(std::string(50, '*') + "b", std::string(5000, 'a')));
}

TEST(RoleGrantsTest, ControlPlaneRoles) {
  using enum ActionType;
  EXPECT_TRUE(Grants(role_ids::kOwner, kVaultWrite, kAction));
  EXPECT_TRUE(Grants(role_ids::kOwner, kAssignmentWrite, kAction));
  EXPECT_TRUE(Grants(role_ids::kContributor, kVaultWrite, kAction));
  EXPECT_FALSE(Grants(role_ids::kContributor, kAssignmentWrite, kAction));  // notActions
  EXPECT_FALSE(
      Grants(role_ids::kContributor, "Microsoft.Authorization/roleAssignments/delete", kAction));
  EXPECT_TRUE(
      Grants(role_ids::kContributor, "Microsoft.Authorization/roleAssignments/read", kAction));
  EXPECT_TRUE(Grants(role_ids::kReader, kVaultRead, kAction));
  EXPECT_FALSE(Grants(role_ids::kReader, kVaultWrite, kAction));
  // Control-plane roles grant no data action.
  for (std::string_view role : {role_ids::kOwner, role_ids::kContributor, role_ids::kReader,
                                role_ids::kCognitiveServicesContributor}) {
    EXPECT_FALSE(Grants(role, kUnwrap, kDataAction)) << role;
    EXPECT_FALSE(Grants(role, kChat, kDataAction)) << role;
  }
}

TEST(RoleGrantsTest, KeyVaultDataRoles) {
  using enum ActionType;
  // Crypto Service Encryption User: get, wrapKey, unwrapKey (what CMK needs) and nothing more.
  const std::string_view encryption_user = role_ids::kKeyVaultCryptoServiceEncryptionUser;
  EXPECT_TRUE(Grants(encryption_user, kKeyRead, kDataAction));
  EXPECT_TRUE(Grants(encryption_user, kWrap, kDataAction));
  EXPECT_TRUE(Grants(encryption_user, kUnwrap, kDataAction));
  EXPECT_FALSE(Grants(encryption_user, kDecrypt, kDataAction));
  EXPECT_FALSE(Grants(encryption_user, kKeyCreate, kDataAction));
  EXPECT_FALSE(Grants(encryption_user, kVaultWrite, kAction));

  EXPECT_TRUE(Grants(role_ids::kKeyVaultCryptoUser, kDecrypt, kDataAction));
  EXPECT_TRUE(Grants(role_ids::kKeyVaultCryptoUser, "Microsoft.KeyVault/vaults/keys/sign/action",
                     kDataAction));
  EXPECT_FALSE(Grants(role_ids::kKeyVaultCryptoUser, kKeyCreate, kDataAction));
  EXPECT_FALSE(
      Grants(role_ids::kKeyVaultCryptoUser, "Microsoft.KeyVault/vaults/keys/delete", kDataAction));

  EXPECT_TRUE(Grants(role_ids::kKeyVaultCryptoOfficer, kKeyCreate, kDataAction));
  EXPECT_TRUE(Grants(role_ids::kKeyVaultCryptoOfficer,
                     "Microsoft.KeyVault/vaults/keyrotationpolicies/write", kDataAction));
  EXPECT_FALSE(Grants(role_ids::kKeyVaultCryptoOfficer,
                      "Microsoft.KeyVault/vaults/secrets/getSecret/action", kDataAction));
  EXPECT_FALSE(Grants(role_ids::kKeyVaultCryptoOfficer, kVaultWrite, kAction));
  EXPECT_TRUE(
      Grants(role_ids::kKeyVaultCryptoOfficer, "Microsoft.KeyVault/deletedVaults/read", kAction));

  EXPECT_TRUE(Grants(role_ids::kKeyVaultAdministrator, kUnwrap, kDataAction));
  EXPECT_TRUE(Grants(role_ids::kKeyVaultAdministrator,
                     "Microsoft.KeyVault/vaults/keys/purge/action", kDataAction));
  EXPECT_FALSE(Grants(role_ids::kKeyVaultAdministrator, kVaultWrite, kAction));

  EXPECT_TRUE(Grants(role_ids::kKeyVaultReader, kKeyRead, kDataAction));
  EXPECT_FALSE(Grants(role_ids::kKeyVaultReader, kUnwrap, kDataAction));
}

TEST(RoleGrantsTest, CognitiveServicesRoles) {
  using enum ActionType;
  EXPECT_TRUE(Grants(role_ids::kCognitiveServicesUser, kChat, kDataAction));
  EXPECT_TRUE(Grants(role_ids::kCognitiveServicesUser,
                     "Microsoft.CognitiveServices/accounts/listkeys/action", kAction));
  EXPECT_FALSE(Grants(role_ids::kCognitiveServicesUser,
                      "Microsoft.CognitiveServices/accounts/write", kAction));
  EXPECT_TRUE(Grants(role_ids::kCognitiveServicesContributor,
                     "Microsoft.CognitiveServices/accounts/write", kAction));
  EXPECT_FALSE(Grants(role_ids::kCognitiveServicesContributor, kVaultWrite, kAction));
}

// --- assignments and decisions

class AuthorizerTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    authorizer_ = std::make_unique<Authorizer>(*store_, clock_);
  }

  RoleAssignment Assign(std::string_view principal, std::string_view role,
                        const std::string& scope) {
    RoleAssignment assignment;
    assignment.name = *crypto::NewUuid();
    assignment.principal_id = std::string(principal);
    assignment.role_definition_id = std::string(role);
    assignment.scope = scope;
    assignment.principal_type = "User";
    auto created = authorizer_->Create(assignment);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : RoleAssignment();
  }

  bool Allowed(std::string_view principal, const std::string& scope, std::string_view action,
               ActionType type) {
    auto decision = authorizer_->Decide(principal, scope, action, type);
    EXPECT_TRUE(decision.ok()) << decision.status();
    return decision.ok() && decision->allowed;
  }

  std::unique_ptr<Authorizer> authorizer_;
};

TEST_F(AuthorizerTest, CreateGetDelete) {
  const RoleAssignment a = Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault + "/");
  EXPECT_EQ(a.scope, kVault);
  EXPECT_EQ(a.created_at, kTestStart);
  auto got = authorizer_->Get(a.name);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->principal_id, kAlice);
  EXPECT_EQ(got->role_definition_id, role_ids::kKeyVaultCryptoUser);
  EXPECT_EQ(got->scope, kVault);
  EXPECT_EQ(got->principal_type, "User");
  EXPECT_TRUE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));

  auto deleted = authorizer_->Delete(a.name);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->name, a.name);
  EXPECT_EQ(authorizer_->Get(a.name).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(authorizer_->Delete(a.name).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));
  // The same assignment can be made again after the delete.
  Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault);
}

TEST_F(AuthorizerTest, CreateAcceptsRoleArmIdsAndUppercaseGuids) {
  RoleAssignment a;
  a.name = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE";
  a.principal_id = "33333333-AAAA-3333-3333-333333333333";
  a.role_definition_id = kSub +
                         "/providers/Microsoft.Authorization/roleDefinitions/"
                         "E147488A-F6F5-4113-8E2D-B22465E65BF6";
  a.scope = kVault;
  a.principal_type = "ServicePrincipal";
  auto created = authorizer_->Create(a);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->name, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
  EXPECT_EQ(created->principal_id, "33333333-aaaa-3333-3333-333333333333");
  EXPECT_EQ(created->role_definition_id, role_ids::kKeyVaultCryptoServiceEncryptionUser);
  EXPECT_TRUE(authorizer_->Get("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE").ok());
  EXPECT_TRUE(
      Allowed("33333333-AAAA-3333-3333-333333333333", kVault, kUnwrap, ActionType::kDataAction));
}

TEST_F(AuthorizerTest, CreateFollowsArmOnDuplicates) {
  const RoleAssignment a = Assign(kAlice, role_ids::kReader, kRg);
  // The same PUT again (same name, same properties) answers with the assignment.
  RoleAssignment again = a;
  again.scope = ToLowerAscii(kRg) + "/";
  auto same = authorizer_->Create(again);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->name, a.name);
  EXPECT_EQ(same->scope, kRg);
  // Another name for the same principal, role and scope: RoleAssignmentExists.
  RoleAssignment duplicate = a;
  duplicate.name = *crypto::NewUuid();
  auto exists = authorizer_->Create(duplicate);
  EXPECT_EQ(exists.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(exists.status().message().find("RoleAssignmentExists"), std::string::npos);
  // The same name with another role: RoleAssignmentUpdateNotPermitted.
  RoleAssignment changed = a;
  changed.role_definition_id = std::string(role_ids::kOwner);
  EXPECT_EQ(authorizer_->Create(changed).status().code(), StatusCode::kFailedPrecondition);
  // Nothing of those attempts was stored.
  EXPECT_EQ(authorizer_->List(kRg)->size(), 1u);
}

TEST_F(AuthorizerTest, CreateRefusesBadInput) {
  RoleAssignment good;
  good.name = *crypto::NewUuid();
  good.principal_id = std::string(kAlice);
  good.role_definition_id = std::string(role_ids::kReader);
  good.scope = kRg;
  auto with = [&](auto change) {
    RoleAssignment a = good;
    change(a);
    return authorizer_->Create(a).status().code();
  };
  EXPECT_EQ(with([](RoleAssignment& a) { a.name = "x"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment& a) { a.principal_id = "alice"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment& a) { a.scope = "/"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment& a) { a.scope = "/subscriptions/s/../x"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment& a) {
              a.role_definition_id = "00000000-0000-0000-0000-000000000000";
            }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment& a) { a.principal_type = "Robot"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](RoleAssignment&) {}), StatusCode::kOk);
}

TEST_F(AuthorizerTest, EnsureIsIdempotent) {
  auto first = authorizer_->Ensure(kAlice, "User", role_ids::kOwner, kSub);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = authorizer_->Ensure(kAlice, "User", role_ids::kOwner, ToLowerAscii(kSub));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->name, second->name);
  EXPECT_EQ(authorizer_->List(kSub)->size(), 1u);
  EXPECT_EQ(authorizer_->Ensure(kAlice, "User", "nope", kSub).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(AuthorizerTest, SubscriptionAssignmentCoversResourcesBelowIt) {
  Assign(kAlice, role_ids::kKeyVaultCryptoServiceEncryptionUser, kSub);
  for (const std::string& scope : {kSub, kRg, kVault, kSiblingVault, kOtherRg + "/x/y/z"}) {
    EXPECT_TRUE(Allowed(kAlice, scope, kUnwrap, ActionType::kDataAction)) << scope;
  }
  EXPECT_FALSE(Allowed(kAlice, "/subscriptions/99999999-1111-2222-3333-444444444444", kUnwrap,
                       ActionType::kDataAction));
  EXPECT_FALSE(Allowed(kBob, kVault, kUnwrap, ActionType::kDataAction));
}

TEST_F(AuthorizerTest, ResourceAssignmentDoesNotCoverSiblingsOrParents) {
  Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault);
  EXPECT_TRUE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));
  EXPECT_TRUE(Allowed(kAlice, kVault + "/keys/k1", kUnwrap, ActionType::kDataAction));
  EXPECT_FALSE(Allowed(kAlice, kSiblingVault, kUnwrap, ActionType::kDataAction));
  EXPECT_FALSE(Allowed(kAlice, kPrefixVault, kUnwrap, ActionType::kDataAction));
  EXPECT_FALSE(Allowed(kAlice, kRg, kUnwrap, ActionType::kDataAction));
  EXPECT_FALSE(Allowed(kAlice, kSub, kUnwrap, ActionType::kDataAction));
}

TEST_F(AuthorizerTest, ResourceGroupAssignmentDoesNotCoverAnotherGroup) {
  Assign(kAlice, role_ids::kContributor, kRg);
  EXPECT_TRUE(Allowed(kAlice, kVault, kVaultWrite, ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kOtherRg + "/providers/Microsoft.KeyVault/vaults/v1", kVaultWrite,
                       ActionType::kAction));
}

TEST_F(AuthorizerTest, ScopesCompareCaseInsensitively) {
  Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault);
  EXPECT_TRUE(Allowed(kAlice, ToLowerAscii(kVault), kUnwrap, ActionType::kDataAction));
  std::string upper = kVault;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(Allowed(std::string(kAlice), upper, std::string(kUnwrap), ActionType::kDataAction));
  EXPECT_TRUE(Allowed(kAlice, kVault, "MICROSOFT.KEYVAULT/vaults/keys/UNWRAP/action",
                      ActionType::kDataAction));
}

TEST_F(AuthorizerTest, NotActionsSubtractAndTheReasonSaysSo) {
  Assign(kAlice, role_ids::kContributor, kSub);
  auto decision = authorizer_->Decide(kAlice, kRg, kAssignmentWrite, ActionType::kAction);
  ASSERT_TRUE(decision.ok());
  EXPECT_FALSE(decision->allowed);
  EXPECT_NE(decision->reason.find("Contributor"), std::string::npos) << decision->reason;
  EXPECT_NE(decision->reason.find("notActions"), std::string::npos) << decision->reason;
  // notActions are no deny: Owner elsewhere in the chain grants it.
  const RoleAssignment owner = Assign(kAlice, role_ids::kOwner, kRg);
  decision = authorizer_->Decide(kAlice, kVault, kAssignmentWrite, ActionType::kAction);
  ASSERT_TRUE(decision.ok());
  EXPECT_TRUE(decision->allowed);
  EXPECT_EQ(decision->assignment_name, owner.name);
  EXPECT_EQ(decision->role_definition_id, role_ids::kOwner);
  EXPECT_NE(decision->reason.find("Owner"), std::string::npos) << decision->reason;
}

TEST_F(AuthorizerTest, ControlAndDataActionsAreSeparate) {
  Assign(kAlice, role_ids::kOwner, kSub);
  EXPECT_TRUE(Allowed(kAlice, kVault, kVaultWrite, ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));
  // The brief's admin: Owner + Key Vault Administrator + Cognitive Services roles.
  Assign(kAlice, role_ids::kKeyVaultAdministrator, kSub);
  Assign(kAlice, role_ids::kCognitiveServicesUser, kSub);
  EXPECT_TRUE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));
  EXPECT_TRUE(Allowed(kAlice, kAccount, kChat, ActionType::kDataAction));
  // A data action name asked as a control-plane action is matched against actions only.
  EXPECT_TRUE(Allowed(kAlice, kVault, kUnwrap, ActionType::kAction));  // Owner's "*"
  EXPECT_FALSE(Allowed(kBob, kVault, kUnwrap, ActionType::kAction));
}

TEST_F(AuthorizerTest, DenialReasonsAndMalformedRequests) {
  auto decision = authorizer_->Decide(kAlice, kVault, kUnwrap, ActionType::kDataAction);
  ASSERT_TRUE(decision.ok());
  EXPECT_FALSE(decision->allowed);
  EXPECT_NE(decision->reason.find("no role assignment"), std::string::npos) << decision->reason;

  Assign(kAlice, role_ids::kKeyVaultReader, kVault);
  decision = authorizer_->Decide(kAlice, kVault, kUnwrap, ActionType::kDataAction);
  ASSERT_TRUE(decision.ok());
  EXPECT_FALSE(decision->allowed);
  EXPECT_NE(decision->reason.find("none grants"), std::string::npos) << decision->reason;

  // Malformed requests are denied, never allowed by a wildcard.
  Assign(kAlice, role_ids::kOwner, kSub);
  EXPECT_FALSE(Allowed("not-a-guid", kVault, kVaultWrite, ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, "/", kVaultWrite, ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, "", ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, "*", ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, "Microsoft.KeyVault/*", ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, std::string(513, 'a'), ActionType::kAction));
  EXPECT_FALSE(Allowed(kAlice, kVault, kVaultWrite, ActionType{}));
}

TEST_F(AuthorizerTest, ListAtScopeWithInheritanceChildrenAndPrincipalFilter) {
  const RoleAssignment at_sub = Assign(kAlice, role_ids::kReader, kSub);
  const RoleAssignment at_rg = Assign(kBob, role_ids::kContributor, kRg);
  const RoleAssignment at_vault = Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault);
  const RoleAssignment at_sibling = Assign(kBob, role_ids::kKeyVaultReader, kSiblingVault);
  const RoleAssignment at_other_rg = Assign(kAlice, role_ids::kReader, kOtherRg);

  auto names = [](const std::vector<RoleAssignment>& list) {
    std::set<std::string> out;
    for (const RoleAssignment& a : list) out.insert(a.name);
    return out;
  };
  // atScope(): at the scope and above.
  EXPECT_EQ(names(*authorizer_->List(kVault)), (std::set{at_sub.name, at_rg.name, at_vault.name}));
  EXPECT_EQ(names(*authorizer_->List(kRg)), (std::set{at_sub.name, at_rg.name}));
  // Only at the scope.
  EXPECT_EQ(names(*authorizer_->List(kRg, {.include_inherited = false})), (std::set{at_rg.name}));
  // At, above and below.
  EXPECT_EQ(names(*authorizer_->List(kRg, {.include_children = true})),
            (std::set{at_sub.name, at_rg.name, at_vault.name, at_sibling.name}));
  EXPECT_EQ(names(*authorizer_->List(kSub, {.include_children = true})).size(), 5u);
  // One principal's.
  EXPECT_EQ(
      names(*authorizer_->List(kRg, {.include_children = true, .principal_id = std::string(kBob)})),
      (std::set{at_rg.name, at_sibling.name}));
  // The vault "v1" is not a child of "v10" or the other way round.
  EXPECT_EQ(names(*authorizer_->List(kPrefixVault, {.include_children = true})),
            (std::set{at_sub.name, at_rg.name}));
  // Ordered by scope.
  const auto list = *authorizer_->List(kVault);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, at_sub.name);
  EXPECT_EQ(list[2].name, at_vault.name);
  EXPECT_EQ(authorizer_->List("nope").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AuthorizerTest, AssignmentsSurviveReopeningTheStore) {
  Assign(kAlice, role_ids::kKeyVaultCryptoUser, kVault);
  authorizer_.reset();
  directory_.reset();
  store_.reset();
  store_ = *storage::SqliteMetadataStore::Open(dir_.path() + "/metadata.db");
  authorizer_ = std::make_unique<Authorizer>(*store_, clock_);
  EXPECT_TRUE(Allowed(kAlice, kVault, kUnwrap, ActionType::kDataAction));
}

// --- ARM JSON

TEST_F(AuthorizerTest, RoleAssignmentJsonHasArmsShape) {
  const RoleAssignment a = Assign(kAlice, role_ids::kKeyVaultCryptoServiceEncryptionUser, kVault);
  const json j = RoleAssignmentJson(a);
  EXPECT_EQ(j["id"], kVault + "/providers/Microsoft.Authorization/roleAssignments/" + a.name);
  EXPECT_EQ(j["name"], a.name);
  EXPECT_EQ(j["type"], "Microsoft.Authorization/roleAssignments");
  const json& p = j["properties"];
  EXPECT_EQ(p["roleDefinitionId"], kSub +
                                       "/providers/Microsoft.Authorization/roleDefinitions/"
                                       "e147488a-f6f5-4113-8e2d-b22465e65bf6");
  EXPECT_EQ(p["principalId"], kAlice);
  EXPECT_EQ(p["principalType"], "User");
  EXPECT_EQ(p["scope"], kVault);
  EXPECT_EQ(p["createdOn"], "2023-11-14T22:13:20Z");
  EXPECT_TRUE(p["condition"].is_null());
}

TEST(RoleDefinitionJsonTest, HasArmsShape) {
  const json j = RoleDefinitionJson(*FindRoleDefinition(role_ids::kContributor),
                                    "00000000-1111-2222-3333-444444444444");
  EXPECT_EQ(j["id"], kSub + "/providers/Microsoft.Authorization/roleDefinitions/" +
                         std::string(role_ids::kContributor));
  EXPECT_EQ(j["name"], role_ids::kContributor);
  EXPECT_EQ(j["type"], "Microsoft.Authorization/roleDefinitions");
  EXPECT_EQ(j["properties"]["roleName"], "Contributor");
  EXPECT_EQ(j["properties"]["type"], "BuiltInRole");
  EXPECT_EQ(j["properties"]["assignableScopes"], json::array({"/"}));
  const json& permissions = j["properties"]["permissions"];
  ASSERT_EQ(permissions.size(), 1u);
  EXPECT_EQ(permissions[0]["actions"], json::array({"*"}));
  EXPECT_EQ(permissions[0]["notActions"].size(), 11u);
  EXPECT_EQ(permissions[0]["notActions"][1], "Microsoft.Authorization/*/Write");
  EXPECT_EQ(permissions[0]["dataActions"], json::array());
  EXPECT_EQ(RoleDefinitionJson(*FindRoleDefinition(role_ids::kReader), "")["id"],
            "/providers/Microsoft.Authorization/roleDefinitions/" + std::string(role_ids::kReader));
}

}  // namespace
}  // namespace keyfoundry::identity
