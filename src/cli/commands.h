// The command groups of `kf` and what they share: the signed-in session, output (-o json|table)
// and the parsing of az-style argument values.
#ifndef KEYFOUNDRY_CLI_COMMANDS_H_
#define KEYFOUNDRY_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/profile.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/status.h"
#include "keyfoundry/client.h"

namespace keyfoundry::cli {

void AddLoginCommands(CLI::App& app);     // login.cc
void AddAccountCommands(CLI::App& app);   // account.cc
void AddAdCommands(CLI::App& app);        // ad.cc
void AddRoleCommands(CLI::App& app);      // role.cc
void AddGroupCommands(CLI::App& app);     // group.cc
void AddKeyVaultCommands(CLI::App& app);  // keyvault.cc; it adds `keyvault key` from key.cc
void AddKeyCommands(CLI::App& keyvault);  // key.cc
void AddAuditCommands(CLI::App& app);     // audit.cc
void AddCognitiveServicesCommands(CLI::App& app);  // cognitiveservices.cc
void AddOpenAiCommands(CLI::App& app);             // openai.cc; it adds the rest of `openai`:
void AddOpenAiModelCommands(CLI::App& openai);     // openai_models.cc (fine-tuning, model, chat)
void AddOutputOption(CLI::App& app);               // output.cc: the global -o/--output

// The signed-in profile, a client and a valid token: for the control plane (OpenSession) or
// for one vault's data plane (OpenVaultSession). A service principal's token is renewed with
// its stored secret; a user whose token has expired is asked to sign in again.
struct Session {
  Profile profile;
  std::unique_ptr<Client> client;
  AccessToken token;
};
StatusOr<Session> OpenSession();
// The client talks to https://{vault}.vault.DOMAIN:PORT (the server's port), connecting to the
// profile's --connect-address, else to the server's own address when that is an IP literal or
// "localhost", since vault host names often do not resolve (README "Reaching the server").
StatusOr<Session> OpenVaultSession(const std::string& vault_name);
// The same for AI account `account_name`'s data plane: https://{account}.openai.DOMAIN:PORT,
// with a token for https://cognitiveservices.DOMAIN.
StatusOr<Session> OpenAccountSession(const std::string& account_name);

// OpenAccountSession for `kf openai` commands; with an `api_key` (their --api-key) the token is
// left empty and the key is sent instead, as an api-key header added to *headers (openai.cc).
StatusOr<Session> OpenOpenAiSession(const std::string& account_name, const std::string& api_key,
                                    std::vector<std::pair<std::string, std::string>>* headers);

// The object id (the `oid` claim) of the signed-in identity, read from its token.
StatusOr<std::string> SignedInObjectId(const Session& session);

// The path and query of an absolute nextLink, to be called on the session's own server: a
// bearer token is never sent to whatever origin a link names.
std::string PathOfLink(std::string_view link);

// GETs `path` and the pages its nextLinks lead to, and returns their "value" items: all of
// them, or the first `limit` when it is not 0 (then no further page is fetched).
StatusOr<nlohmann::json> ListPages(Session& session, std::string path, size_t limit = 0);

// ---------------------------------------------------------------- output

enum class OutputFormat { kJson = 1, kTable };
OutputFormat Output();

// A column of -o table: its heading and how to read a row's cell.
struct Column {
  std::string heading;
  std::function<nlohmann::json(const nlohmann::json& row)> cell;
};
// The value at `json_pointer` ("/properties/location") of each row, or null.
Column Field(std::string heading, const std::string& json_pointer);
// The same for a time in unix seconds, shown as ISO 8601 (UTC).
Column TimeField(std::string heading, const std::string& json_pointer);

// Prints `value` (an object, or an array of rows) as -o asks: indented JSON, or a table with
// `columns` (a null value prints nothing in a table).
void Print(const nlohmann::json& value, const std::vector<Column>& columns);
// Prints `value` as indented JSON; under -o table, as a table of its scalar members.
void PrintJson(const nlohmann::json& value);

// Reports `status` on stderr and records a failing exit code; returns false when it failed.
bool Check(const Status& status);
int ExitCode();

// ---------------------------------------------------------------- argument values

// az's "--tags a=1 b=2" (a bare "a" is a tag with an empty value) as a JSON object.
StatusOr<nlohmann::json> ParseTags(const std::vector<std::string>& pairs);
// "true" or "false" (any case), as az's boolean arguments; `flag` names the argument in errors.
StatusOr<bool> ParseBool(std::string_view flag, std::string_view text);
// A time given as ISO 8601 ("2030-01-31", "2030-01-31T12:00:00Z", "...+02:00") or as unix
// seconds, in unix seconds.
StatusOr<int64_t> ParseTime(std::string_view flag, std::string_view text);
// FormatIso8601 (common/clock.h) formats times.
// Bytes given in base64 (standard or URL alphabet, padded or not).
StatusOr<Bytes> DecodeBase64Argument(std::string_view flag, std::string_view text);

// Asks "question (y/n)" on the terminal unless `yes`; FailedPrecondition when there is no
// terminal to ask on (as az: "use --yes").
Status Confirm(const std::string& question, bool yes);

// The api-versions kf sends.
inline constexpr const char* kSubscriptionsApiVersion = "2022-12-01";
inline constexpr const char* kAuthorizationApiVersion = "2022-04-01";
inline constexpr const char* kResourcesApiVersion = "2022-09-01";
inline constexpr const char* kKeyVaultApiVersion = "2023-07-01";
inline constexpr const char* kKeysApiVersion = "7.5";
inline constexpr const char* kAuditApiVersion = "2024-01-01";
inline constexpr const char* kCognitiveServicesApiVersion = "2024-10-01";
inline constexpr const char* kOpenAiApiVersion = "2024-10-21";

}  // namespace keyfoundry::cli

#endif  // KEYFOUNDRY_CLI_COMMANDS_H_
