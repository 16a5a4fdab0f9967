// The kf CLI's resource group, key vault, key and audit commands against the real keyfoundryd:
// az's command names and flags, kf's JSON and table output, exit codes and error messages.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/encoding.h"
#include "common/file_util.h"
#include "crypto/jwk.h"
#include "support/keyfoundryd_process.h"

namespace keyfoundry {
namespace {

using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;

struct KfRun {
  int exit_code = -1;
  std::string out;
  std::string err;

  Json json() const { return Json::parse(out, nullptr, false); }
};

class KfKeyVaultCliTest : public ::testing::Test {
 protected:
  // Runs kf with `args` and the profile in `config` (default: the admin's); returns its exit
  // code, stdout and stderr.
  KfRun Kf(const std::vector<std::string>& args, const std::string& config = "") {
    const std::string dir = config.empty() ? config_.path() : config;
    std::string command = "KEYFOUNDRY_CONFIG_DIR='" + dir + "' " KF_KF;
    for (const auto& a : args) command += " '" + a + "'";
    command += " 2>'" + dir + "/stderr'";
    KfRun run;
    FILE* pipe = ::popen(command.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) run.out.append(buf.data(), n);
    int status = ::pclose(pipe);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.err = ReadFile(dir + "/stderr").value_or("");
    return run;
  }

  // Runs kf and expects success; returns its JSON output.
  Json Ok(const std::vector<std::string>& args, const std::string& config = "") {
    KfRun run = Kf(args, config);
    EXPECT_EQ(run.exit_code, 0) << ArgsText(args) << "\n" << run.err;
    return run.out.empty() ? Json() : run.json();
  }

  static std::string ArgsText(const std::vector<std::string>& args) {
    std::string text = "kf";
    for (const auto& a : args) text += " " + a;
    return text;
  }

  void SignInAdmin() {
    ASSERT_EQ(Kf({"login", "--server", server_.base_url(), "--ca", CaPath(), "-u", "admin", "-p",
                  KeyfoundrydProcess::kAdminPassword})
                  .exit_code,
              0);
  }

  // A group and a vault in it, in access-policy mode (the admin gets every key permission).
  void CreateVault(const std::string& group, const std::string& vault) {
    Ok({"group", "create", "-n", group, "-l", "local"});
    Ok({"keyvault", "create", "-n", vault, "-g", group, "--retention-days", "7"});
  }

  std::string CaPath() const { return server_.data_dir() + "/tls/ca.pem"; }
  std::string Path(const std::string& name) const { return config_.path() + "/" + name; }

  KeyfoundrydProcess server_{KF_KEYFOUNDRYD};
  testutil::ScopedTempDir config_;
};

// The key permissions of `object_id`'s access policy in `vault` (a vault's JSON).
std::vector<std::string> KeyPermissions(const Json& vault, const std::string& object_id) {
  for (const Json& p : vault["properties"]["accessPolicies"]) {
    if (p["objectId"] == object_id) return p["permissions"]["keys"].get<std::vector<std::string>>();
  }
  return {};
}

std::string Str(const Json& value) { return value.get<std::string>(); }

bool HasPolicy(const Json& vault, const std::string& object_id) {
  for (const Json& p : vault["properties"]["accessPolicies"]) {
    if (p["objectId"] == object_id) return true;
  }
  return false;
}

TEST_F(KfKeyVaultCliTest, GroupsAndVaultsFromCreateToPurge) {
  SignInAdmin();
  Json group = Ok({"group", "create", "--name", "rg-cli", "--location", "local", "--tags",
                   "env=test", "owner"});
  EXPECT_EQ(group["name"], "rg-cli");
  EXPECT_EQ(group["location"], "local");
  EXPECT_EQ(group["tags"], Json({{"env", "test"}, {"owner", ""}}));
  EXPECT_EQ(Ok({"group", "show", "-n", "rg-cli"})["id"], group["id"]);
  Json groups = Ok({"group", "list"});
  ASSERT_TRUE(groups.is_array());
  EXPECT_TRUE(std::any_of(groups.begin(), groups.end(),
                          [](const Json& g) { return g["name"] == "rg-cli"; }));
  KfRun table = Kf({"group", "list", "-o", "table"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("Name", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("rg-cli"), std::string::npos);
  EXPECT_NE(table.out.find("------"), std::string::npos);

  // Create: the location is the group's, the creator gets an access policy.
  Json vault = Ok({"keyvault", "create", "--name", "kv-cli-1", "--resource-group", "rg-cli",
                   "--retention-days", "7", "--sku", "premium", "--tags", "team=sec"});
  EXPECT_EQ(vault["location"], "local");
  EXPECT_EQ(vault["properties"]["sku"]["name"], "premium");
  EXPECT_EQ(vault["properties"]["softDeleteRetentionInDays"], 7);
  EXPECT_EQ(vault["properties"]["enableRbacAuthorization"], false);
  ASSERT_EQ(vault["properties"]["accessPolicies"].size(), 1u);
  EXPECT_GE(vault["properties"]["accessPolicies"][0]["permissions"]["keys"].size(), 16u);
  KfRun again = Kf({"keyvault", "create", "-n", "kv-cli-1", "-g", "rg-cli"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("VaultAlreadyExists"), std::string::npos) << again.err;

  Json rbac = Ok({"keyvault", "create", "-n", "kv-cli-2", "-g", "rg-cli", "-l", "elsewhere",
                  "--enable-rbac-authorization", "true", "--enable-purge-protection", "true",
                  "--default-action", "deny", "--bypass", "AzureServices",
                  "--public-network-access", "Enabled"});
  EXPECT_EQ(rbac["location"], "elsewhere");
  EXPECT_TRUE(rbac["properties"]["accessPolicies"].empty());
  EXPECT_EQ(rbac["properties"]["enablePurgeProtection"], true);
  EXPECT_EQ(rbac["properties"]["networkAcls"]["defaultAction"], "Deny");

  // Show and update find the vault without -g; list by group and by subscription.
  EXPECT_EQ(Ok({"keyvault", "show", "-n", "kv-cli-1"})["id"], vault["id"]);
  EXPECT_EQ(Ok({"keyvault", "show", "-n", "kv-cli-1", "-g", "rg-cli"})["id"], vault["id"]);
  EXPECT_EQ(Ok({"keyvault", "list", "-g", "rg-cli"}).size(), 2u);
  EXPECT_GE(Ok({"keyvault", "list"}).size(), 2u);
  KfRun vault_table = Kf({"keyvault", "list", "--output", "table"});
  EXPECT_NE(vault_table.out.find("Location"), std::string::npos) << vault_table.out;
  EXPECT_NE(vault_table.out.find("ResourceGroup"), std::string::npos);
  EXPECT_NE(vault_table.out.find("kv-cli-2"), std::string::npos);

  Json updated = Ok({"keyvault", "update", "-n", "kv-cli-1", "--default-action", "Deny", "--bypass",
                     "None", "--enable-purge-protection", "true", "--tags", "a=1"});
  EXPECT_EQ(updated["properties"]["networkAcls"]["defaultAction"], "Deny");
  EXPECT_EQ(updated["properties"]["networkAcls"]["bypass"], "None");
  EXPECT_EQ(updated["properties"]["enablePurgeProtection"], true);
  EXPECT_EQ(updated["tags"], Json({{"a", "1"}}));
  EXPECT_EQ(updated["properties"]["accessPolicies"].size(), 1u);  // kept
  KfRun nothing = Kf({"keyvault", "update", "-n", "kv-cli-1"});
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_NE(nothing.err.find("nothing to update"), std::string::npos);
  KfRun irreversible =
      Kf({"keyvault", "update", "-n", "kv-cli-1", "--enable-purge-protection", "false"});
  EXPECT_EQ(irreversible.exit_code, 1);
  EXPECT_NE(irreversible.err.find("enablePurgeProtection"), std::string::npos) << irreversible.err;

  // A third vault goes through delete, recover, delete, purge.
  Ok({"keyvault", "create", "-n", "kv-cli-3", "-g", "rg-cli"});
  KfRun deleted = Kf({"keyvault", "delete", "-n", "kv-cli-3"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(Kf({"keyvault", "show", "-n", "kv-cli-3"}).exit_code, 1);
  Json list_deleted = Ok({"keyvault", "list-deleted"});
  ASSERT_EQ(list_deleted.size(), 1u);
  EXPECT_EQ(list_deleted[0]["name"], "kv-cli-3");
  KfRun deleted_table = Kf({"keyvault", "list-deleted", "-o", "table"});
  EXPECT_NE(deleted_table.out.find("ScheduledPurgeDate"), std::string::npos);
  Json recovered = Ok({"keyvault", "recover", "-n", "kv-cli-3"});
  EXPECT_EQ(recovered["name"], "kv-cli-3");
  EXPECT_EQ(recovered["properties"]["accessPolicies"].size(), 1u);  // as it was
  EXPECT_TRUE(Ok({"keyvault", "list-deleted"}).empty());
  Ok({"keyvault", "delete", "-n", "kv-cli-3", "-g", "rg-cli"});
  KfRun purged = Kf({"keyvault", "purge", "-n", "kv-cli-3", "--location", "local"});
  ASSERT_EQ(purged.exit_code, 0) << purged.err;
  EXPECT_TRUE(Ok({"keyvault", "list-deleted"}).empty());
  KfRun gone = Kf({"keyvault", "recover", "-n", "kv-cli-3"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("DeletedVaultNotFound"), std::string::npos) << gone.err;

  // Purge protection refuses the purge of a deleted protected vault.
  Ok({"keyvault", "delete", "-n", "kv-cli-2"});
  KfRun protected_purge = Kf({"keyvault", "purge", "-n", "kv-cli-2"});
  EXPECT_EQ(protected_purge.exit_code, 1);
  EXPECT_FALSE(protected_purge.err.empty());

  // Deleting the group needs --yes without a terminal, and soft-deletes its vaults.
  KfRun unconfirmed = Kf({"group", "delete", "-n", "rg-cli"});
  EXPECT_EQ(unconfirmed.exit_code, 1);
  EXPECT_NE(unconfirmed.err.find("--yes"), std::string::npos);
  KfRun group_deleted = Kf({"group", "delete", "-n", "rg-cli", "--yes"});
  ASSERT_EQ(group_deleted.exit_code, 0) << group_deleted.err;
  KfRun no_group = Kf({"group", "show", "-n", "rg-cli"});
  EXPECT_EQ(no_group.exit_code, 1);
  EXPECT_NE(no_group.err.find("ResourceGroupNotFound"), std::string::npos) << no_group.err;
  EXPECT_EQ(Ok({"keyvault", "list-deleted"}).size(), 2u);
}

TEST_F(KfKeyVaultCliTest, AccessPoliciesGrantReplaceAndRevokeKeyAccess) {
  SignInAdmin();
  CreateVault("rg-pol", "kv-pol");
  Ok({"keyvault", "key", "create", "--vault-name", "kv-pol", "-n", "cmk"});

  // A service principal with Reader (to sign in) and no vault access yet.
  Json sp = Ok({"ad", "sp", "create", "--display-name", "cli-policy-app"});
  const std::string app_id = sp["appId"];
  const std::string object_id = sp["id"];
  Ok({"role", "assignment", "create", "--assignee", app_id, "--role", "Reader"});
  testutil::ScopedTempDir sp_config;
  ASSERT_EQ(Kf({"login", "--service-principal", "--server", server_.base_url(), "--ca", CaPath(),
                "-u", app_id, "-p", Str(sp["password"]), "-t", server_.tenant()},
               sp_config.path())
                .exit_code,
            0);
  const std::vector<std::string> encrypt = {"keyvault",     "key",     "encrypt", "--vault-name",
                                            "kv-pol",       "-n",      "cmk",     "--algorithm",
                                            "RSA-OAEP-256", "--value", "aGVsbG8="};
  KfRun denied = Kf(encrypt, sp_config.path());
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("Forbidden"), std::string::npos) << denied.err;

  // set-policy by appId grants; by object id it replaces the list.
  Json vault = Ok({"keyvault", "set-policy", "-n", "kv-pol", "--spn", app_id, "--key-permissions",
                   "get", "list", "encrypt", "decrypt"});
  std::vector<std::string> keys = KeyPermissions(vault, object_id);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"decrypt", "encrypt", "get", "list"}));
  Json encrypted = Ok(encrypt, sp_config.path());
  EXPECT_FALSE(Str(encrypted["result"]).empty());
  EXPECT_EQ(encrypted["algorithm"], "RSA-OAEP-256");

  vault = Ok({"keyvault", "set-policy", "--name", "kv-pol", "-g", "rg-pol", "--object-id",
              object_id, "--key-permissions", "get", "wrapKey"});
  keys = KeyPermissions(vault, object_id);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"get", "wrapKey"}));
  KfRun narrowed = Kf(encrypt, sp_config.path());
  EXPECT_EQ(narrowed.exit_code, 1);
  EXPECT_NE(narrowed.err.find("Forbidden"), std::string::npos) << narrowed.err;
  EXPECT_EQ(Kf({"keyvault", "key", "show", "--vault-name", "kv-pol", "-n", "cmk"}, sp_config.path())
                .exit_code,
            0);
  // The admin's own policy stays as it was.
  Json admin =
      Ok({"keyvault", "set-policy", "-n", "kv-pol", "--upn", "admin", "--key-permissions", "all"});
  EXPECT_EQ(admin["properties"]["accessPolicies"].size(), 2u);

  // The seed's revocation: after it the principal's key operations fail with 403.
  vault = Ok({"keyvault", "delete-policy", "--resource-group", "rg-pol", "--name", "kv-pol",
              "--object-id", object_id});
  EXPECT_FALSE(HasPolicy(vault, object_id));
  KfRun revoked =
      Kf({"keyvault", "key", "show", "--vault-name", "kv-pol", "-n", "cmk"}, sp_config.path());
  EXPECT_EQ(revoked.exit_code, 1);
  EXPECT_NE(revoked.err.find("Forbidden"), std::string::npos) << revoked.err;
  KfRun missing = Kf({"keyvault", "delete-policy", "--resource-group", "rg-pol", "--name", "kv-pol",
                      "--spn", "cli-policy-app"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("No matching policies"), std::string::npos) << missing.err;
  KfRun two =
      Kf({"keyvault", "delete-policy", "-n", "kv-pol", "--object-id", object_id, "--upn", "admin"});
  EXPECT_EQ(two.exit_code, 1);
  EXPECT_NE(two.err.find("exactly one"), std::string::npos) << two.err;
  KfRun nobody =
      Kf({"keyvault", "set-policy", "-n", "kv-pol", "--upn", "nobody", "--key-permissions", "get"});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("PrincipalNotFound"), std::string::npos) << nobody.err;
  KfRun bad_permission = Kf({"keyvault", "set-policy", "-n", "kv-pol", "--object-id", object_id,
                             "--key-permissions", "fly"});
  EXPECT_EQ(bad_permission.exit_code, 1);
  EXPECT_NE(bad_permission.err.find("fly"), std::string::npos) << bad_permission.err;
}

TEST_F(KfKeyVaultCliTest, NetworkRulesOpenAClosedFirewall) {
  SignInAdmin();
  CreateVault("rg-net", "kv-net");
  Ok({"keyvault", "key", "create", "--vault-name", "kv-net", "-n", "k1"});
  Ok({"keyvault", "update", "-n", "kv-net", "--default-action", "Deny", "--bypass", "None"});
  KfRun closed = Kf({"keyvault", "key", "show", "--vault-name", "kv-net", "-n", "k1"});
  EXPECT_EQ(closed.exit_code, 1);
  EXPECT_NE(closed.err.find("ForbiddenByFirewall"), std::string::npos) << closed.err;

  Ok({"keyvault", "network-rule", "add", "-n", "kv-net", "--ip-address", "203.0.113.0/24"});
  Json vault = Ok({"keyvault", "network-rule", "add", "--name", "kv-net", "-g", "rg-net",
                   "--ip-address", "127.0.0.1"});
  EXPECT_EQ(vault["properties"]["networkAcls"]["ipRules"].size(), 2u);
  // Adding a rule that is there already changes nothing.
  Ok({"keyvault", "network-rule", "add", "-n", "kv-net", "--ip-address", "127.0.0.1/32"});
  Json rules = Ok({"keyvault", "network-rule", "list", "-n", "kv-net"});
  ASSERT_EQ(rules["ipRules"].size(), 2u);
  EXPECT_EQ(rules["ipRules"][1]["value"], "127.0.0.1");
  EXPECT_TRUE(rules["virtualNetworkRules"].empty());
  KfRun table = Kf({"keyvault", "network-rule", "list", "-n", "kv-net", "-o", "table"});
  EXPECT_NE(table.out.find("203.0.113.0/24"), std::string::npos) << table.out;
  EXPECT_EQ(Kf({"keyvault", "key", "show", "--vault-name", "kv-net", "-n", "k1"}).exit_code, 0);

  Ok({"keyvault", "network-rule", "remove", "-n", "kv-net", "--ip-address", "127.0.0.1"});
  rules = Ok({"keyvault", "network-rule", "list", "-n", "kv-net"});
  ASSERT_EQ(rules["ipRules"].size(), 1u);
  EXPECT_EQ(rules["ipRules"][0]["value"], "203.0.113.0/24");
  EXPECT_EQ(Kf({"keyvault", "key", "show", "--vault-name", "kv-net", "-n", "k1"}).exit_code, 1);
}

TEST_F(KfKeyVaultCliTest, KeysLifecycleAndCryptoOperations) {
  SignInAdmin();
  CreateVault("rg-keys", "kv-keys");

  Json key = Ok(
      {"keyvault",     "key",        "create", "--vault-name", "kv-keys",   "--name",
       "k1",           "--kty",      "RSA",    "--size",       "2048",      "--ops",
       "encrypt",      "decrypt",    "sign",   "verify",       "--expires", "2099-01-31T00:00:00Z",
       "--not-before", "1700000000", "--tags", "purpose=cmk"});
  const std::string kid = key["key"]["kid"];
  EXPECT_EQ(kid.find("https://kv-keys.vault.localhost:"), 0u) << kid;
  EXPECT_EQ(key["key"]["kty"], "RSA");
  EXPECT_EQ(key["key"]["key_ops"].size(), 4u);
  EXPECT_EQ(key["attributes"]["exp"], 4073500800);
  EXPECT_EQ(key["attributes"]["nbf"], 1700000000);
  EXPECT_EQ(key["tags"], Json({{"purpose", "cmk"}}));
  Json ec = Ok({"keyvault", "key", "create", "--vault-name", "kv-keys", "-n", "ec1", "--kty", "EC",
                "--curve", "P-256"});
  EXPECT_EQ(ec["key"]["crv"], "P-256");

  // Show by name, by version and by id.
  const std::string version = kid.substr(kid.rfind('/') + 1);
  EXPECT_EQ(Ok({"keyvault", "key", "show", "--vault-name", "kv-keys", "-n", "k1"})["key"]["kid"],
            kid);
  EXPECT_EQ(Ok({"keyvault", "key", "show", "--vault-name", "kv-keys", "-n", "k1", "--version",
                version})["key"]["kid"],
            kid);
  EXPECT_EQ(Ok({"keyvault", "key", "show", "--id", kid})["key"]["kid"], kid);
  KfRun show_table = Kf({"keyvault", "key", "show", "--id", kid, "-o", "table"});
  EXPECT_NE(show_table.out.find("Kty"), std::string::npos) << show_table.out;
  EXPECT_NE(show_table.out.find("2099-01-31T00:00:00Z"), std::string::npos) << show_table.out;

  // Rotate, list, list-versions (all pages, or --maxresults).
  Json rotated = Ok({"keyvault", "key", "rotate", "--vault-name", "kv-keys", "-n", "k1"});
  EXPECT_NE(rotated["key"]["kid"], kid);
  EXPECT_EQ(Ok({"keyvault", "key", "list", "--vault-name", "kv-keys"}).size(), 2u);
  EXPECT_EQ(Ok({"keyvault", "key", "list", "--vault-name", "kv-keys", "--maxresults", "1"}).size(),
            1u);
  EXPECT_EQ(Ok({"keyvault", "key", "list-versions", "--vault-name", "kv-keys", "-n", "k1"}).size(),
            2u);
  KfRun list_table = Kf({"keyvault", "key", "list", "--vault-name", "kv-keys", "-o", "table"});
  EXPECT_EQ(list_table.out.rfind("Name", 0), 0u) << list_table.out;
  EXPECT_NE(list_table.out.find("ec1"), std::string::npos) << list_table.out;

  // Encrypt and decrypt (base64 and plaintext), on the latest version and on the first one.
  Json encrypted =
      Ok({"keyvault", "key", "encrypt", "--vault-name", "kv-keys", "-n", "k1", "--algorithm",
          "RSA-OAEP-256", "--value", "secret text", "--data-type", "plaintext"});
  Json decrypted =
      Ok({"keyvault", "key", "decrypt", "--vault-name", "kv-keys", "-n", "k1", "--algorithm",
          "RSA-OAEP-256", "--value", Str(encrypted["result"]), "--data-type", "plaintext"});
  EXPECT_EQ(decrypted["result"], "secret text");
  Json old_encrypted = Ok({"keyvault", "key", "encrypt", "--vault-name", "kv-keys", "-n", "k1",
                           "--version", version, "-a", "RSA-OAEP", "--value", "AAECAw=="});
  EXPECT_EQ(old_encrypted["kid"], kid);
  EXPECT_EQ(Ok({"keyvault", "key", "decrypt", "--id", kid, "-a", "RSA-OAEP", "--value",
                Str(old_encrypted["result"])})["result"],
            "AAECAw==");

  // Sign and verify a SHA-256 digest.
  const std::string digest = Base64Encode(Bytes(32, 0x5a));
  Json signed_digest = Ok({"keyvault", "key", "sign", "--vault-name", "kv-keys", "-n", "k1",
                           "--algorithm", "RS256", "--digest", digest});
  Json verified =
      Ok({"keyvault", "key", "verify", "--vault-name", "kv-keys", "-n", "k1", "--algorithm",
          "RS256", "--digest", digest, "--signature", Str(signed_digest["signature"])});
  EXPECT_EQ(verified["isValid"], true);
  Json forged = Ok({"keyvault", "key", "verify", "--vault-name", "kv-keys", "-n", "k1",
                    "--algorithm", "RS256", "--digest", Base64Encode(Bytes(32, 0x5b)),
                    "--signature", Str(signed_digest["signature"])});
  EXPECT_EQ(forged["isValid"], false);

  // set-attributes: disabling the key stops its use.
  Json disabled = Ok({"keyvault", "key", "set-attributes", "--vault-name", "kv-keys", "-n", "k1",
                      "--enabled", "false", "--tags", "state=off"});
  EXPECT_EQ(disabled["attributes"]["enabled"], false);
  EXPECT_EQ(disabled["tags"], Json({{"state", "off"}}));
  KfRun refused = Kf({"keyvault", "key", "encrypt", "--vault-name", "kv-keys", "-n", "k1", "-a",
                      "RSA-OAEP-256", "--value", "AAECAw=="});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("KeyDisabled"), std::string::npos) << refused.err;
  Ok({"keyvault", "key", "set-attributes", "--vault-name", "kv-keys", "-n", "k1", "--enabled",
      "true"});

  // Rotation policy: az's body, inline and from a file.
  Json policy = Ok({"keyvault", "key", "rotation-policy", "update", "--vault-name", "kv-keys", "-n",
                    "k1", "--value",
                    R"({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},)"
                    R"("action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P2Y"}})"});
  EXPECT_EQ(policy["lifetimeActions"][0]["trigger"]["timeAfterCreate"], "P90D");
  EXPECT_EQ(policy["attributes"]["expiryTime"], "P2Y");
  ASSERT_TRUE(
      WriteFileAtomically(Path("policy.json"),
                          R"({"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P30D"},)"
                          R"("action":{"type":"Notify"}}],"attributes":{"expiryTime":"P1Y"}})",
                          0600)
          .ok());
  Ok({"keyvault", "key", "rotation-policy", "update", "--vault-name", "kv-keys", "-n", "k1",
      "--value", Path("policy.json")});
  Json shown =
      Ok({"keyvault", "key", "rotation-policy", "show", "--vault-name", "kv-keys", "-n", "k1"});
  EXPECT_EQ(shown["lifetimeActions"][0]["action"]["type"], "Notify");
  EXPECT_EQ(shown["attributes"]["expiryTime"], "P1Y");

  // Backup, delete (the seed's form), list-deleted, recover, delete, purge, restore.
  KfRun backup = Kf({"keyvault", "key", "backup", "--vault-name", "kv-keys", "-n", "k1", "--file",
                     Path("k1.backup")});
  ASSERT_EQ(backup.exit_code, 0) << backup.err;
  ASSERT_FALSE(ReadFile(Path("k1.backup")).value_or("").empty());
  Json deleted = Ok({"keyvault", "key", "delete", "--vault-name", "kv-keys", "--name", "k1"});
  EXPECT_NE(deleted["recoveryId"].get<std::string>().find("/deletedkeys/k1"), std::string::npos);
  Json deleted_list = Ok({"keyvault", "key", "list-deleted", "--vault-name", "kv-keys"});
  ASSERT_EQ(deleted_list.size(), 1u);
  EXPECT_EQ(
      Ok({"keyvault", "key", "show-deleted", "--vault-name", "kv-keys", "-n", "k1"})["recoveryId"],
      deleted["recoveryId"]);
  EXPECT_EQ(Kf({"keyvault", "key", "show", "--vault-name", "kv-keys", "-n", "k1"}).exit_code, 1);
  Json recovered = Ok({"keyvault", "key", "recover", "--vault-name", "kv-keys", "-n", "k1"});
  EXPECT_EQ(recovered["key"]["kid"], rotated["key"]["kid"]);
  Ok({"keyvault", "key", "delete", "--vault-name", "kv-keys", "--name", "k1"});
  KfRun purged = Kf({"keyvault", "key", "purge", "--vault-name", "kv-keys", "-n", "k1"});
  ASSERT_EQ(purged.exit_code, 0) << purged.err;
  EXPECT_TRUE(Ok({"keyvault", "key", "list-deleted", "--vault-name", "kv-keys"}).empty());
  Json restored =
      Ok({"keyvault", "key", "restore", "--vault-name", "kv-keys", "--file", Path("k1.backup")});
  EXPECT_EQ(restored["key"]["kid"], rotated["key"]["kid"]);
  EXPECT_EQ(Ok({"keyvault", "key", "list-versions", "--vault-name", "kv-keys", "-n", "k1"}).size(),
            2u);
}

TEST_F(KfKeyVaultCliTest, ImportsPemAndJwkKeys) {
  SignInAdmin();
  CreateVault("rg-imp", "kv-imp");

  // A PKCS#8 PEM from openssl.
  const std::string pem = Path("rsa.pem");
  ASSERT_EQ(std::system(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '" +
                         pem + "' 2>/dev/null")
                            .c_str()),
            0);
  Json from_pem = Ok({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "pem-key",
                      "--pem-file", pem, "--ops", "wrapKey", "unwrapKey", "--tags", "src=pem"});
  EXPECT_EQ(from_pem["key"]["kty"], "RSA");
  EXPECT_EQ(from_pem["key"]["key_ops"], Json({"wrapKey", "unwrapKey"}));
  EXPECT_EQ(from_pem["tags"], Json({{"src", "pem"}}));
  EXPECT_FALSE(from_pem["key"].contains("d"));

  // A private JWK (RSA), and an EC one.
  StatusOr<crypto::RsaPrivateKey> rsa = crypto::RsaPrivateKey::Generate(2048);
  ASSERT_TRUE(rsa.ok());
  StatusOr<SecretBytes> rsa_jwk = crypto::ToJwk(*rsa);
  ASSERT_TRUE(rsa_jwk.ok());
  ASSERT_TRUE(WriteFileAtomically(Path("rsa.jwk"),
                                  AsStringView(rsa_jwk->Reveal(InsecureSecretAccess())), 0600)
                  .ok());
  Json from_jwk = Ok({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "jwk-key",
                      "--jwk-file", Path("rsa.jwk"), "--disabled", "true"});
  EXPECT_EQ(from_jwk["attributes"]["enabled"], false);
  Json public_jwk = Json::parse(AsStringView(rsa_jwk->Reveal(InsecureSecretAccess())));
  EXPECT_EQ(from_jwk["key"]["n"], public_jwk["n"]);

  StatusOr<crypto::EcPrivateKey> ec_key = crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256);
  ASSERT_TRUE(ec_key.ok());
  StatusOr<SecretBytes> ec_jwk = crypto::ToJwk(*ec_key);
  ASSERT_TRUE(ec_jwk.ok());
  ASSERT_TRUE(WriteFileAtomically(Path("ec.jwk"),
                                  AsStringView(ec_jwk->Reveal(InsecureSecretAccess())), 0600)
                  .ok());
  Json from_ec = Ok({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "ec-key",
                     "--jwk-file", Path("ec.jwk")});
  EXPECT_EQ(from_ec["key"]["kty"], "EC");
  EXPECT_EQ(from_ec["key"]["crv"], "P-256");
  const std::string digest = Base64Encode(Bytes(32, 0x01));
  Json signature = Ok({"keyvault", "key", "sign", "--vault-name", "kv-imp", "-n", "ec-key", "-a",
                       "ES256", "--digest", digest});
  EXPECT_EQ(
      Ok({"keyvault", "key", "verify", "--vault-name", "kv-imp", "-n", "ec-key", "-a", "ES256",
          "--digest", digest, "--signature", Str(signature["signature"])})["isValid"],
      true);

  // Files that hold no importable key are refused, naming the problem.
  Json public_only = public_jwk;
  for (const char* member : {"d", "p", "q", "dp", "dq", "qi"}) public_only.erase(member);
  ASSERT_TRUE(WriteFileAtomically(Path("public.jwk"), public_only.dump(), 0600).ok());
  KfRun no_private = Kf({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "x",
                         "--jwk-file", Path("public.jwk")});
  EXPECT_EQ(no_private.exit_code, 1);
  EXPECT_NE(no_private.err.find("private key"), std::string::npos) << no_private.err;
  ASSERT_TRUE(WriteFileAtomically(Path("pkcs1.pem"),
                                  "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE "
                                  "KEY-----\n",
                                  0600)
                  .ok());
  KfRun pkcs1 = Kf({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "x", "--pem-file",
                    Path("pkcs1.pem")});
  EXPECT_EQ(pkcs1.exit_code, 1);
  EXPECT_NE(pkcs1.err.find("openssl pkcs8 -topk8"), std::string::npos) << pkcs1.err;
  KfRun both = Kf({"keyvault", "key", "import", "--vault-name", "kv-imp", "-n", "x", "--pem-file",
                   pem, "--jwk-file", Path("rsa.jwk")});
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_NE(both.err.find("exactly one"), std::string::npos) << both.err;
}

TEST_F(KfKeyVaultCliTest, BadArgumentsFailClearly) {
  SignInAdmin();
  KfRun unknown = Kf({"keyvault", "key", "create", "--vault-name", "v", "-n", "k", "--bogus"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("--bogus"), std::string::npos) << unknown.err;
  KfRun bad_kty = Kf({"keyvault", "key", "create", "--vault-name", "v", "-n", "k", "--kty", "DSA"});
  EXPECT_NE(bad_kty.exit_code, 0);
  EXPECT_NE(bad_kty.err.find("DSA"), std::string::npos) << bad_kty.err;
  KfRun bad_days = Kf({"keyvault", "create", "-n", "v", "-g", "g", "--retention-days", "3"});
  EXPECT_NE(bad_days.exit_code, 0);
  EXPECT_NE(bad_days.err.find("--retention-days"), std::string::npos) << bad_days.err;
  KfRun missing = Kf({"keyvault", "delete-policy", "--name", "v", "--object-id", "x"});
  EXPECT_EQ(missing.exit_code, 1);  // no such vault in the subscription
  EXPECT_NE(missing.err.find("no vault named 'v'"), std::string::npos) << missing.err;
  KfRun bad_time = Kf(
      {"keyvault", "key", "create", "--vault-name", "v", "-n", "k", "--expires", "next tuesday"});
  EXPECT_EQ(bad_time.exit_code, 1);
  EXPECT_NE(bad_time.err.find("ISO 8601"), std::string::npos) << bad_time.err;
  KfRun no_vault = Kf({"keyvault", "key", "show", "--vault-name", "nosuchvault", "-n", "k"});
  EXPECT_EQ(no_vault.exit_code, 1);
  EXPECT_NE(no_vault.err.find("ERROR: "), std::string::npos) << no_vault.err;
  KfRun bad_output = Kf({"group", "list", "-o", "yaml"});
  EXPECT_NE(bad_output.exit_code, 0);
  EXPECT_NE(bad_output.err.find("yaml"), std::string::npos) << bad_output.err;
}

TEST_F(KfKeyVaultCliTest, AuditListsAndVerifiesTheTrail) {
  SignInAdmin();
  CreateVault("rg-audit", "kv-audit");
  Ok({"keyvault", "key", "create", "--vault-name", "kv-audit", "-n", "k1"});
  EXPECT_EQ(Kf({"keyvault", "key", "show", "--vault-name", "kv-audit", "-n", "nope"}).exit_code, 1);

  Json all = Ok({"audit", "list"});
  ASSERT_TRUE(all.is_array());
  EXPECT_GE(all.size(), 4u);
  Json creates = Ok({"audit", "list", "--operation", "KeyCreate"});
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0]["result"], "Success");
  EXPECT_NE(creates[0]["keyId"].get<std::string>().find("k1"), std::string::npos)
      << creates[0].dump();
  Json failures = Ok({"audit", "list", "--result", "failure", "--operation", "KeyGet"});
  ASSERT_GE(failures.size(), 1u);
  EXPECT_EQ(failures[0]["result"], "Failure");
  EXPECT_EQ(Ok({"audit", "list", "--top", "2"}).size(), 2u);
  Json by_caller =
      Ok({"audit", "list", "--caller", Str(creates[0]["callerObjectId"]), "--resource-id",
          Str(creates[0]["resourceId"]), "--from", "2020-01-01", "--order", "asc"});
  EXPECT_GE(by_caller.size(), 1u);
  EXPECT_TRUE(Ok({"audit", "list", "--to", "2020-01-01T00:00:00Z"}).empty());
  KfRun table = Kf({"audit", "list", "--top", "3", "-o", "table"});
  EXPECT_EQ(table.out.rfind("Time", 0), 0u) << table.out;

  Json verified = Ok({"audit", "verify"});
  EXPECT_EQ(verified["valid"], true);
  EXPECT_GE(verified["checked"].get<int>(), 4);
}

}  // namespace
}  // namespace keyfoundry
