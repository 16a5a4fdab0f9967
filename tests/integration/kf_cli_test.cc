// The kf CLI against the real keyfoundryd: sign in as the admin and as a service principal,
// show the account, create a service principal, and create, list and delete role
// assignments, checking kf's JSON output and exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "support/keyfoundryd_process.h"

namespace keyfoundry {
namespace {

using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;

struct KfRun {
  int exit_code = -1;
  std::string out;
};

class KfCliTest : public ::testing::Test {
 protected:
  // Runs kf with `args`, its profile in this test's own folder; returns exit code and stdout.
  KfRun Kf(const std::vector<std::string>& args) {
    std::string command = "KEYFOUNDRY_CONFIG_DIR='" + config_.path() + "' " KF_KF;
    for (const auto& a : args) command += " '" + a + "'";
    command += " 2>" + config_.path() + "/stderr";
    KfRun run;
    FILE* pipe = ::popen(command.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) run.out.append(buf.data(), n);
    int status = ::pclose(pipe);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return run;
  }
  std::string Stderr() { return ReadFile(config_.path() + "/stderr").value_or(""); }

  std::string CaPath() const { return server_.data_dir() + "/tls/ca.pem"; }

  KeyfoundrydProcess server_{KF_KEYFOUNDRYD};
  testutil::ScopedTempDir config_;
};

TEST_F(KfCliTest, AdminSignsInManagesServicePrincipalsAndRoleAssignments) {
  KfRun login = Kf({"login", "--server", server_.base_url(), "--ca", CaPath(), "-u", "admin", "-p",
                    KeyfoundrydProcess::kAdminPassword});
  ASSERT_EQ(login.exit_code, 0) << Stderr();
  Json accounts = Json::parse(login.out);
  ASSERT_EQ(accounts.size(), 1u);
  EXPECT_EQ(accounts[0]["id"], server_.subscription());
  EXPECT_EQ(accounts[0]["tenantId"], server_.tenant());
  EXPECT_EQ(accounts[0]["user"]["type"], "user");
  struct stat st;
  ASSERT_EQ(::stat((config_.path() + "/profile.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  KfRun show = Kf({"account", "show"});
  ASSERT_EQ(show.exit_code, 0) << Stderr();
  EXPECT_EQ(Json::parse(show.out)["user"]["name"], "admin");

  KfRun sp = Kf({"ad", "sp", "create", "--display-name", "cli-app"});
  ASSERT_EQ(sp.exit_code, 0) << Stderr();
  Json credentials = Json::parse(sp.out);
  const std::string app_id = credentials["appId"];
  ASSERT_FALSE(credentials["password"].get<std::string>().empty());

  KfRun assign = Kf({"role", "assignment", "create", "--assignee", app_id, "--role", "Reader"});
  ASSERT_EQ(assign.exit_code, 0) << Stderr();
  EXPECT_EQ(Json::parse(assign.out)["properties"]["principalId"], credentials["id"]);
  KfRun again = Kf({"role", "assignment", "create", "--assignee", app_id, "--role", "Reader"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(Stderr().find("RoleAssignmentExists"), std::string::npos);

  KfRun list = Kf({"role", "assignment", "list", "--assignee", app_id});
  ASSERT_EQ(list.exit_code, 0) << Stderr();
  ASSERT_EQ(Json::parse(list.out).size(), 1u);

  // The service principal signs in with its secret and sees the subscription (Reader).
  testutil::ScopedTempDir sp_config;
  std::string command = "KEYFOUNDRY_CONFIG_DIR='" + sp_config.path() + "' " KF_KF +
                        std::string(" login --service-principal --server ") + server_.base_url() +
                        " --ca " + CaPath() + " -u " + app_id + " -p '" +
                        credentials["password"].get<std::string>() + "' -t " + server_.tenant() +
                        " >/dev/null 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0);

  KfRun remove = Kf({"role", "assignment", "delete", "--assignee", app_id, "--role", "Reader"});
  ASSERT_EQ(remove.exit_code, 0) << Stderr();
  KfRun empty = Kf({"role", "assignment", "list", "--assignee", app_id});
  EXPECT_TRUE(Json::parse(empty.out).empty());
}

TEST_F(KfCliTest, ErrorsAreClearAndExitNonZero) {
  KfRun not_signed_in = Kf({"account", "show"});
  EXPECT_EQ(not_signed_in.exit_code, 1);
  EXPECT_NE(Stderr().find("kf login"), std::string::npos);

  KfRun wrong = Kf({"login", "--server", server_.base_url(), "--ca", CaPath(), "-u", "admin", "-p",
                    "wrong-password"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(Stderr().find("invalid_grant"), std::string::npos);

  KfRun no_ca = Kf({"login", "--server", server_.base_url(), "--ca", "/nonexistent.pem", "-u",
                    "admin", "-p", "x"});
  EXPECT_EQ(no_ca.exit_code, 1);
  EXPECT_NE(Stderr().find("--ca"), std::string::npos);
}

}  // namespace
}  // namespace keyfoundry
