#include <ctime>
#include <iostream>

#include "cli/commands.h"
#include "common/file_util.h"

namespace keyfoundry::cli {
namespace {

int exit_code = 0;

}  // namespace

void PrintJson(const nlohmann::json& value) { std::cout << value.dump(2) << "\n"; }

bool Check(const Status& status) {
  if (status.ok()) return true;
  std::cerr << "ERROR: " << status.message() << "\n";
  exit_code = 1;
  return false;
}

int ExitCode() { return exit_code; }

StatusOr<Session> OpenSession() {
  Session session;
  ASSIGN_OR_RETURN(session.profile, LoadProfile(ConfigDir()));
  ASSIGN_OR_RETURN(std::string ca, ReadFile(session.profile.ca_path));
  ClientOptions options{session.profile.server, ca, std::nullopt};
  if (!session.profile.connect_address.empty()) {
    options.connect_address = session.profile.connect_address;
  }
  session.client = std::make_unique<Client>(std::move(options));

  const std::string scope = session.profile.management_audience + "/.default";
  auto cached = session.profile.tokens.find(scope);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (cached != session.profile.tokens.end() && cached->second.expires_on > now + 60) {
    session.token = {cached->second.access_token, cached->second.expires_on};
    return session;
  }
  if (!session.profile.service_principal) {
    return UnauthenticatedError("the sign-in of " + session.profile.user +
                                " has expired: run `kf login` again");
  }
  SecretBytes secret(AsBytes(session.profile.client_secret), InsecureSecretAccess());
  ASSIGN_OR_RETURN(session.token,
                   session.client->TokenForServicePrincipal(session.profile.tenant_id,
                                                            session.profile.user, secret, scope));
  session.profile.tokens[scope] = {session.token.token, session.token.expires_on};
  RETURN_IF_ERROR(SaveProfile(ConfigDir(), session.profile));
  return session;
}

}  // namespace keyfoundry::cli
