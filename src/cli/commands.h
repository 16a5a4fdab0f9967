// The command groups of `kf` and what they share: the signed-in session and output.
#ifndef KEYFOUNDRY_CLI_COMMANDS_H_
#define KEYFOUNDRY_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/profile.h"
#include "common/status.h"
#include "keyfoundry/client.h"

namespace keyfoundry::cli {

void AddLoginCommands(CLI::App& app);    // login.cc
void AddAccountCommands(CLI::App& app);  // account.cc
void AddAdCommands(CLI::App& app);       // ad.cc
void AddRoleCommands(CLI::App& app);     // role.cc

// The signed-in profile and a client for its server, with a valid management token (a service
// principal's is renewed with its stored secret; a user is asked to sign in again).
struct Session {
  Profile profile;
  std::unique_ptr<Client> client;
  AccessToken token;
};
StatusOr<Session> OpenSession();

// Prints `value` as indented JSON on stdout.
void PrintJson(const nlohmann::json& value);
// Reports `status` on stderr and records a failing exit code; returns false when it failed.
bool Check(const Status& status);
int ExitCode();

// The management API's api-versions kf sends.
inline constexpr const char* kSubscriptionsApiVersion = "2022-12-01";
inline constexpr const char* kAuthorizationApiVersion = "2022-04-01";

}  // namespace keyfoundry::cli

#endif  // KEYFOUNDRY_CLI_COMMANDS_H_
