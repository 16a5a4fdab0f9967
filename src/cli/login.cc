// kf login / kf logout.
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "common/file_util.h"

namespace keyfoundry::cli {
namespace {

struct LoginOptions {
  std::string server = "https://127.0.0.1:8443";
  std::string ca;  // default: the CA of `make run`'s data directory
  std::string connect_address;
  std::string username;
  std::string password;
  std::string tenant = "common";
  bool service_principal = false;
};

// The password from -p, $KEYFOUNDRY_PASSWORD, or asked for on the terminal without echo.
SecretBytes ReadPassword(const LoginOptions& options) {
  std::string value = options.password;
  if (value.empty()) {
    if (const char* env = std::getenv("KEYFOUNDRY_PASSWORD")) value = env;
  }
  if (value.empty()) {
    std::cerr << (options.service_principal ? "Client secret: " : "Password: ");
    termios saved{};
    const bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::getline(std::cin, value);
    if (tty) {
      tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      std::cerr << "\n";
    }
  }
  SecretBytes secret(AsBytes(value), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(value.data()), value.size()));
  return secret;
}

Status Login(const LoginOptions& options) {
  if (options.username.empty()) {
    return InvalidArgumentError(options.service_principal
                                    ? "give the service principal's client id with -u"
                                    : "give a user name with -u (the first user is admin)");
  }
  Profile profile;
  profile.server = options.server;
  profile.ca_path = options.ca.empty() ? ConfigDir() + "/data/tls/ca.pem" : options.ca;
  profile.connect_address = options.connect_address;
  profile.user = options.username;
  profile.service_principal = options.service_principal;
  StatusOr<std::string> ca = ReadFile(profile.ca_path);
  if (!ca.ok()) {
    return NotFoundError("cannot read the CA certificate " + profile.ca_path +
                         ": give the deployment's DATA_DIR/tls/ca.pem with --ca");
  }
  ClientOptions client_options{profile.server, *ca, std::nullopt};
  if (!profile.connect_address.empty()) client_options.connect_address = profile.connect_address;
  Client client(client_options);
  ASSIGN_OR_RETURN(Endpoints endpoints, client.GetEndpoints());
  profile.management_audience = endpoints.management_audience;
  const std::string scope = endpoints.management_audience + "/.default";

  SecretBytes password = ReadPassword(options);
  StatusOr<AccessToken> token =
      options.service_principal
          ? client.TokenForServicePrincipal(options.tenant, options.username, password, scope)
          : client.TokenForUser(options.tenant, options.username, password, scope);
  RETURN_IF_ERROR(token);
  if (options.service_principal) {
    profile.client_secret = std::string(AsStringView(password.Reveal(InsecureSecretAccess())));
  }
  profile.tokens[scope] = {token->token, token->expires_on};

  // The key vaults' data plane takes tokens of its own audience. A user gets one now, with the
  // password just given, since kf keeps no password or refresh credential for users; a service
  // principal's is fetched when first needed with its stored secret (session.cc).
  profile.vault_dns_suffix = endpoints.vault_dns_suffix;
  if (profile.vault_dns_suffix.empty()) {
    return InternalError("the server's /metadata/endpoints names no keyVaultDns suffix");
  }
  if (!options.service_principal) {
    const std::pair<std::string, const char*> data_planes[] = {
        {VaultScope(profile), "the key vaults (`kf keyvault key`)"},
        {CognitiveServicesScope(profile), "the AI accounts' data plane (`kf openai`)"}};
    for (const auto& [plane_scope, what] : data_planes) {
      StatusOr<AccessToken> plane_token =
          client.TokenForUser(options.tenant, options.username, password, plane_scope);
      if (plane_token.ok()) {
        profile.tokens[plane_scope] = {plane_token->token, plane_token->expires_on};
      } else {
        std::cerr << "WARNING: no token for " << what << " (" << plane_token.status().message()
                  << "): those commands will fail until the next `kf login`\n";
      }
    }
  }

  ASSIGN_OR_RETURN(
      ApiResult subscriptions,
      client.Call("GET", std::string("/subscriptions?api-version=") + kSubscriptionsApiVersion,
                  *token));
  const nlohmann::json& list = subscriptions.body["value"];
  if (!list.is_array() || list.empty()) {
    return NotFoundError("signed in, but no subscription is visible to " + options.username +
                         ": ask an Owner for a role assignment");
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& sub : list) {
    const bool is_default = out.empty();
    if (is_default) {
      profile.subscription_id = sub.value("subscriptionId", "");
      profile.tenant_id = sub.value("tenantId", "");
    }
    out.push_back({{"cloudName", "keyfoundry"},
                   {"id", sub.value("subscriptionId", "")},
                   {"isDefault", is_default},
                   {"name", sub.value("displayName", "")},
                   {"state", sub.value("state", "")},
                   {"tenantId", sub.value("tenantId", "")},
                   {"user",
                    {{"name", options.username},
                     {"type", options.service_principal ? "servicePrincipal" : "user"}}}});
  }
  RETURN_IF_ERROR(SaveProfile(ConfigDir(), profile));
  PrintJson(out);
  return OkStatus();
}

}  // namespace

void AddLoginCommands(CLI::App& app) {
  auto options = std::make_shared<LoginOptions>();
  CLI::App* login = app.add_subcommand("login", "sign in to a keyfoundry deployment");
  login->add_option("--server", options->server, "https://HOST:PORT of keyfoundryd")
      ->capture_default_str();
  login->add_option("--ca", options->ca,
                    "the deployment's CA certificate (default ~/.keyfoundry/data/tls/ca.pem)");
  login->add_option("--connect-address", options->connect_address,
                    "connect to this IP address whatever the host names resolve to");
  login->add_option("-u,--username", options->username,
                    "user name, or a service principal's client id");
  login->add_option("-p,--password", options->password,
                    "password or client secret (else $KEYFOUNDRY_PASSWORD, else asked)");
  login->add_flag("--service-principal", options->service_principal,
                  "sign in as a service principal (client credentials)");
  login->add_option("-t,--tenant", options->tenant, "tenant id")->capture_default_str();
  login->callback([options] { Check(Login(*options)); });

  CLI::App* logout = app.add_subcommand("logout", "forget the signed-in session");
  logout->callback([] {
    std::error_code ec;
    std::filesystem::remove(ConfigDir() + "/profile.json", ec);
    if (ec) Check(InternalError("cannot remove the profile: " + ec.message()));
  });
}

}  // namespace keyfoundry::cli
